package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// syncOn is a sync section for tests: a sync at start, none after.
const syncOn = "  enabled: true\n  interval: 1h\n  nested_groups: true"

// waitSynced waits until the proxy answers a cached search for user0001.
func waitSynced(t *testing.T, p *proxy, up *slapdtest.Server) {
	t.Helper()
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the first sync to be served", func() bool {
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0001)", []string{"1.1"}, nil))
		return err == nil && len(res.Entries) == 1
	})
}

func TestCachedSearch(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 50, Groups: 5})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": syncOn}))
	waitSynced(t, p, up)

	c := dial(t, p.URL)
	if err := c.Bind(up.UserDN(7), slapdtest.UserPassword(7)); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=inetOrgPerson)", []string{"uid", "mail", "memberOf", "userPassword"}, nil))
	if err != nil || len(res.Entries) != 50 {
		t.Fatalf("users: %d entries, %v; want 50", len(res.Entries), err)
	}
	for _, e := range res.Entries {
		if e.GetAttributeValue("userPassword") != "" {
			t.Fatalf("%s: a password was served", e.DN)
		}
	}
	e := res.Entries[0]
	for _, en := range res.Entries {
		if en.DN == up.UserDN(11) {
			e = en
		}
	}
	if e.DN != up.UserDN(11) || e.GetAttributeValue("mail") != "user0011@example.org" {
		t.Fatalf("user0011 served as %s mail %q", e.DN, e.GetAttributeValue("mail"))
	}
	var want []string
	for _, g := range up.UserGroups(11) {
		want = append(want, strings.ToLower(up.GroupDN(g)))
	}
	// group001 contains group002: with nested_groups, members of group002 are in group001 too.
	if contains(want, strings.ToLower(up.GroupDN(2))) && !contains(want, strings.ToLower(up.GroupDN(1))) {
		want = append(want, strings.ToLower(up.GroupDN(1)))
	}
	got := lower(e.GetAttributeValues("memberOf"))
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("memberOf of user0011 = %v, want %v", got, want)
	}

	groups, err := c.Search(ldap.NewSearchRequest(up.GroupsDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(objectClass=groupOfNames)", []string{"cn", "member"}, nil))
	if err != nil || len(groups.Entries) != 5 {
		t.Fatalf("groups: %d, %v", len(groups.Entries), err)
	}

	out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.URL, "-D", up.ServiceDN, "-w", up.ServicePassword,
		"-b", up.Suffix, "-E", "pr=7/noprompt", "(uid=*)", "uid")
	if n := len(regexp.MustCompile(`(?m)^dn: uid=`).FindAllString(out, -1)); code != 0 || n != 50 {
		t.Fatalf("paged ldapsearch: exit %d, %d entries\n%s", code, n, tail(out, 5))
	}
	if out, code := tool(t, nil, "ldapcompare", "-x", "-H", p.URL, "-D", up.ServiceDN, "-w", up.ServicePassword, up.UserDN(3), "uid:user0003"); code != 6 {
		t.Fatalf("cached compare: exit %d %s", code, out)
	}

	// The upstream goes away: searches go on from the store; binds cannot.
	up.Stop()
	res, err = c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0042)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("search with the upstream down: %d entries, %v", len(res.Entries), err)
	}
	c2 := dial(t, p.URL)
	if err := c2.Bind(up.UserDN(1), slapdtest.UserPassword(1)); resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("bind with the upstream down: %v, want unavailable", err)
	}
	_, err = c2.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0042)", nil, nil))
	if resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
		t.Fatalf("search after a failed bind: %v, want insufficientAccessRights", err)
	}
	text := p.scrape(t)
	for _, want := range []string{`ldapproxy_sync_runs_total{kind="users",result="success"} 1`, `ldapproxy_sync_objects{kind="users"} 50`,
		`ldapproxy_sync_objects{kind="groups"} 5`, `ldapproxy_sync_last_success_timestamp_seconds{kind="users"}`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, _ := p.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d with a synced store in cached mode", code)
	}
}

func TestBindNames(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 10, Groups: 2})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": syncOn + `
  mappings:
    users:
      - name: openldap-is-active
        field: is_active
        expression: 'list_flatten(ldap.uid) != "user0004"'`}))
	waitSynced(t, p, up)
	tests := []struct {
		name, bind, pass string
		code             uint16
		whoami           string
	}{
		{"user name", "user0003", slapdtest.UserPassword(3), 0, "dn:" + up.UserDN(3)},
		{"user name, any case", "USER0003", slapdtest.UserPassword(3), 0, "dn:" + up.UserDN(3)},
		{"mail address", "user0005@example.org", slapdtest.UserPassword(5), 0, "dn:" + up.UserDN(5)},
		{"user name, wrong password", "user0003", "wrong", ldap.LDAPResultInvalidCredentials, ""},
		{"DN", up.UserDN(6), slapdtest.UserPassword(6), 0, "dn:" + up.UserDN(6)},
		{"disabled user, right password", "user0004", slapdtest.UserPassword(4), ldap.LDAPResultInvalidCredentials, ""},
		{"disabled user by DN", up.UserDN(4), slapdtest.UserPassword(4), ldap.LDAPResultInvalidCredentials, ""},
		// The directory takes other spellings of the same DN; none may escape the check.
		{"disabled user, DN with an escaped space", `UID=user0004\20,ou=people,` + up.Suffix, slapdtest.UserPassword(4), ldap.LDAPResultInvalidCredentials, ""},
		{"disabled user, DN with an OID type", "0.9.2342.19200300.100.1.1=user0004,OU=People," + up.Suffix, slapdtest.UserPassword(4), ldap.LDAPResultInvalidCredentials, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, p.URL)
			err := c.Bind(tt.bind, tt.pass)
			if got := resultCode(err); got != tt.code {
				t.Fatalf("bind %q: %v, want code %d", tt.bind, err, tt.code)
			}
			if tt.whoami != "" {
				who, err := c.WhoAmI(nil)
				if err != nil || !strings.EqualFold(who.AuthzID, tt.whoami) {
					t.Fatalf("whoami = %q, %v; want %q", who.AuthzID, err, tt.whoami)
				}
			}
		})
	}
}

func TestWarmStart(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 15, Groups: 2})
	dir := filepath.Join(t.TempDir(), "store")
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn, "listen": "  allow_anonymous: true"})
	cfg = strings.Replace(cfg, `path: ":memory:"`, "path: "+dir, 1)
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	before := servedEntries(t, p, up.Suffix)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	up.Stop()
	// Restarted with the upstream down: the last synced state is served at once, from
	// the served tree's image, the same entries with the same attributes.
	p2 := startProxy(t, cfg)
	if !strings.Contains(p2.logs.String(), `"from_image":true`) {
		t.Error("the restart built the served tree instead of reading its image")
	}
	if after := servedEntries(t, p2, up.Suffix); after != before {
		t.Errorf("served after the restart:\n%s\nbefore:\n%s", after, before)
	}
	c := dial(t, p2.URL)
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0009)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("search after a restart with the upstream down: %d entries, %v", len(res.Entries), err)
	}
	if code, _ := p2.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d: a warm store is enough to serve", code)
	}
}

// servedEntries renders every entry the proxy serves, with all its attributes, sorted.
func servedEntries(t *testing.T, p *proxy, base string) string {
	t.Helper()
	c := dial(t, p.URL)
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(objectClass=*)", []string{"*", "+"}, nil), 500)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range res.Entries {
		for _, a := range e.Attributes {
			for _, v := range a.Values {
				lines = append(lines, e.DN+" "+a.Name+": "+v)
			}
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lower(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToLower(s)
	}
	return out
}

// TestCachedBeforeFirstSync: until its first sync, a cached-mode proxy does not know the
// directory, and says so: searches and compares are unavailable (52), never an empty
// answer that a client would take for "no such user", and /readyz is 503.
func TestCachedBeforeFirstSync(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	// The service account's password is wrong: every sync fails, and the store stays empty.
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn})
	cfg = strings.Replace(cfg, fmt.Sprintf("bind_password: %q", up.ServicePassword), `bind_password: "not-the-password"`, 1)
	p := startProxy(t, cfg)
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	_, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0001)", []string{"uid"}, nil))
	if resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("search before the first sync: %v, want unavailable (52)", err)
	}
	if _, err := c.Compare(up.UserDN(1), "uid", slapdtest.UserName(1)); resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("compare before the first sync: %v, want unavailable (52)", err)
	}
	if code, body := p.get(t, "/readyz"); code != 503 || !strings.Contains(body, "first sync") {
		t.Fatalf("/readyz before the first sync: %d %q", code, body)
	}
	// A user can still log in: binds go upstream.
	if err := c.Bind(up.UserDN(2), slapdtest.UserPassword(2)); err != nil {
		t.Fatalf("bind before the first sync: %v", err)
	}
}
