package sync_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

func upstreamNames(attrs []cache.Attribute) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, strings.ToLower(a.Name))
	}
	return out
}

func upstreamValues(attrs []cache.Attribute, name string) []string {
	for _, a := range attrs {
		if strings.EqualFold(a.Name, name) {
			return a.Values
		}
	}
	return nil
}

// A synced object keeps the attributes the service account read, values byte for byte
// and operational ones included, but never a secret: here the service account is the
// rootdn, which reads userPassword, and the store still has none.
func TestObjectsKeepUpstreamAttributes(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 20, Groups: 2, MemberOf: true})
	e := newEnvAt(t, srv.URL, srv.AdminDN, srv.AdminPassword, srv.Suffix)
	sn := e.sync(config(t, nil))

	u, ok := sn.UserByDN(srv.UserDN(10))
	if !ok {
		t.Fatal("user 10 not synced")
	}
	names := upstreamNames(u.Upstream)
	for _, want := range []string{"objectclass", "uid", "cn", "sn", "uidnumber", "gidnumber", "homedirectory",
		"loginshell", "gecos", "telephonenumber", "manager", "jpegphoto", "entryuuid", "createtimestamp",
		"modifytimestamp", "creatorsname", "memberof", "entrycsn", "structuralobjectclass"} {
		if !slices.Contains(names, want) {
			t.Errorf("user keeps %v, without %s", names, want)
		}
	}
	for _, never := range []string{"userpassword", "entrydn", "hassubordinates", "subschemasubentry"} {
		if slices.Contains(names, never) {
			t.Errorf("user keeps %s", never)
		}
	}
	if got := upstreamValues(u.Upstream, "objectClass"); !slices.Equal(got, []string{"inetOrgPerson", "posixAccount"}) {
		t.Errorf("objectClass %q, want the upstream's", got)
	}
	if got := upstreamValues(u.Upstream, "cn"); !slices.Equal(got, []string{"User 0010"}) {
		t.Errorf("cn %q, want the upstream's (not the display name mapping's)", got)
	}
	photo := upstreamValues(u.Upstream, "jpegPhoto")
	if len(photo) != 1 || photo[0] != string([]byte{0xff, 0xd8, 0xff, 0xe0, 0, 10, 0, 0x80, 0xd9}) {
		t.Errorf("jpegPhoto %x, want the upstream's bytes", photo)
	}
	g, ok := sn.GroupByDN(srv.GroupDN(1))
	if !ok {
		t.Fatal("group001 not synced")
	}
	if got := upstreamValues(g.Upstream, "gidNumber"); !slices.Equal(got, []string{"20001"}) {
		t.Errorf("group gidNumber %q", got)
	}
}

// sync.attributes keeps the attributes named (and objectClass); exclude_attributes drops
// some of all.
func TestAttributeLists(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 10, Groups: 2})
	sn := e.sync(config(t, func(c *ldapsync.Config) {
		c.Attributes = []string{"uid", "uidNumber", "gidNumber", "homeDirectory", "loginShell", "cn", "member"}
	}))
	u, _ := sn.UserByDN(e.srv.UserDN(1))
	if got := upstreamNames(u.Upstream); !slices.Equal(slices.Sorted(slices.Values(got)),
		[]string{"cn", "gidnumber", "homedirectory", "loginshell", "objectclass", "uid", "uidnumber"}) {
		t.Errorf("limited list keeps %v", got)
	}
	if u.Email == "" {
		t.Error("the mappings lost their input (mail) when it is not kept")
	}

	sn = e.sync(config(t, func(c *ldapsync.Config) { c.ExcludeAttributes = []string{"jpegPhoto", "telephoneNumber"} }))
	u, _ = sn.UserByDN(e.srv.UserDN(10))
	names := upstreamNames(u.Upstream)
	if slices.Contains(names, "jpegphoto") || slices.Contains(names, "telephonenumber") || !slices.Contains(names, "mail") {
		t.Errorf("with jpegPhoto and telephoneNumber excluded, keeps %v", names)
	}
}

func TestAttributeListsValidated(t *testing.T) {
	for _, tc := range []struct {
		attrs, exclude []string
		want           string
	}{
		{[]string{"*", "uid"}, nil, `"*" keeps every attribute`},
		{[]string{"userPassword"}, nil, "holds a secret"},
		{[]string{"bad name"}, nil, "not an attribute name"},
		{nil, []string{"x;y"}, "not an attribute name"},
	} {
		cfg := ldapsync.Default()
		cfg.Attributes, cfg.ExcludeAttributes = tc.attrs, tc.exclude
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("attributes %q exclude %q: %v, want %q", tc.attrs, tc.exclude, err, tc.want)
		}
	}
}
