package sync_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// adGUID returns a 16-byte objectGUID whose bytes start at first.
func adGUID(first byte) []byte {
	b := make([]byte, 16)
	for i := range b {
		b[i] = first + byte(i)
	}
	return b
}

// guidString is the canonical form of an objectGUID: the first three groups are
// stored little-endian.
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// domainSID is the domain part of the test objectSids: S-1-5-21-1004336348-1177238915-682003330.
var domainSID = []uint32{21, 1004336348, 1177238915, 682003330}

// adSID returns the binary objectSid of the domain's account rid.
func adSID(rid uint32) []byte {
	b := []byte{1, byte(len(domainSID) + 1), 0, 0, 0, 0, 0, 5} // revision, sub-authorities, authority 5 (NT)
	for _, sub := range append(domainSID, rid) {
		b = binary.LittleEndian.AppendUint32(b, sub)
	}
	return b
}

type adUser struct {
	cn, sam, display, uac, pwdLastSet string
	guid                              byte
	rid                               uint32
}

type adGroup struct {
	cn      string
	guid    byte
	rid     uint32
	members []string // CNs of users and groups
}

const adBase = "OU=Corp,DC=example,DC=org"

func adDN(cn string) string { return "CN=" + cn + "," + adBase }

// adLDIF writes AD-shaped entries (msuser schema). msuser attaches sAMAccountName and
// objectSid to no object class (AD has the auxiliary securityPrincipal for them), so
// the entries add extensibleObject.
func adLDIF(users []adUser, groups []adGroup) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: %s\nobjectClass: organizationalUnit\nou: Corp\n\n", adBase)
	common := func(category string, guid []byte, sid []byte) {
		fmt.Fprintf(&b, "instanceType: 4\nnTSecurityDescriptor:: AQAEgA==\nobjectCategory: CN=%s,CN=Schema,CN=Configuration,DC=example,DC=org\n", category)
		fmt.Fprintf(&b, "objectGUID:: %s\nobjectSid:: %s\n", base64.StdEncoding.EncodeToString(guid), base64.StdEncoding.EncodeToString(sid))
	}
	for _, u := range users {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\nobjectClass: extensibleObject\n", adDN(u.cn))
		fmt.Fprintf(&b, "cn: %s\nsn: %s\ngivenName: %s\nsAMAccountName: %s\nuserPrincipalName: %s@example.org\nmail: %s@example.org\n",
			u.cn, u.cn, u.cn, u.sam, u.sam, u.sam)
		if u.display != "" {
			fmt.Fprintf(&b, "displayName: %s\n", u.display)
		}
		fmt.Fprintf(&b, "userAccountControl: %s\npwdLastSet: %s\n", u.uac, u.pwdLastSet)
		common("Person", adGUID(u.guid), adSID(u.rid))
		b.WriteString("\n")
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "dn: %s\nobjectClass: top\nobjectClass: group\nobjectClass: extensibleObject\ncn: %s\nsAMAccountName: %s\ngroupType: -2147483646\n",
			adDN(g.cn), g.cn, g.cn)
		for _, m := range g.members {
			fmt.Fprintf(&b, "member: %s\n", adDN(m))
		}
		common("Group", adGUID(g.guid), adSID(g.rid))
		b.WriteString("\n")
	}
	return b.String()
}

func TestActiveDirectoryPreset(t *testing.T) {
	t.Parallel()
	users := []adUser{
		{cn: "Alice Smith", sam: "alice", display: "Alice S.", uac: "512", pwdLastSet: "133497216000000000", guid: 0x00, rid: 1101},
		{cn: "Bob Jones", sam: "bob", display: "Bob J.", uac: "514", pwdLastSet: "133497216000000001", guid: 0x20, rid: 1102},
		{cn: "Carol King", sam: "carol", uac: "66048", pwdLastSet: "0", guid: 0x40, rid: 1103},
	}
	groups := []adGroup{
		{cn: "Engineers", guid: 0x60, rid: 1201, members: []string{"Alice Smith", "Bob Jones", "Admins"}},
		{cn: "Admins", guid: 0x80, rid: 1202, members: []string{"Carol King"}},
	}
	srv := slapdtest.New(t, slapdtest.Options{Users: -1, Groups: -1, Schemas: []string{"msuser"}, ExtraLDIF: adLDIF(users, groups)})

	if got := guidString(adGUID(0)); got != "03020100-0504-0706-0809-0a0b0c0d0e0f" {
		t.Fatalf("test's own GUID form %s", got)
	}
	sidString := func(rid uint32) string { return fmt.Sprintf("S-1-5-21-1004336348-1177238915-682003330-%d", rid) }

	tests := []struct {
		field   string
		userID  func(adUser) string
		groupID func(adGroup) string
	}{
		{"objectGUID", func(u adUser) string { return guidString(adGUID(u.guid)) }, func(g adGroup) string { return guidString(adGUID(g.guid)) }},
		{"objectSid", func(u adUser) string { return sidString(u.rid) }, func(g adGroup) string { return sidString(g.rid) }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			e := newEnvAt(t, srv.URL, srv.ServiceDN, srv.ServicePassword, srv.Suffix)
			sn := e.sync(config(t, func(c *ldapsync.Config) {
				c.Preset = "active-directory"
				// The preset's filter, (&(objectCategory=person)(objectClass=user)), relies
				// on AD expanding "person" to the category's DN; msuser's objectCategory
				// has no equality rule, so on OpenLDAP it matches nothing.
				c.UserFilter = "(objectClass=user)"
				if tt.field != "objectGUID" { // the preset's
					c.UniquenessField = tt.field
				}
			}))
			if n, m := sn.Counts(); n != len(users) || m != len(groups) {
				t.Fatalf("stored %d users and %d groups, want %d and %d", n, m, len(users), len(groups))
			}
			for _, au := range users {
				u, ok := sn.UserByID(tt.userID(au))
				if !ok {
					t.Fatalf("user %s not stored under %s", au.sam, tt.userID(au))
				}
				name := au.display
				if name == "" {
					name = au.cn
				}
				if !strings.EqualFold(u.DN, adDN(au.cn)) || u.Username != au.sam || u.Name != name || u.Email != au.sam+"@example.org" ||
					u.IsActive != (au.uac != "514") || u.PasswordMarker != "pwdLastSet:"+au.pwdLastSet {
					t.Errorf("user %s = %+v", au.sam, *u)
				}
				if u.Attributes["upn"] != au.sam+"@example.org" || u.Attributes["object_guid"] != guidString(adGUID(au.guid)) {
					t.Errorf("user %s attributes %v", au.sam, u.Attributes)
				}
			}
			for _, ag := range groups {
				if g, ok := sn.GroupByID(tt.groupID(ag)); !ok || g.Name != ag.cn || !strings.EqualFold(g.DN, adDN(ag.cn)) {
					t.Fatalf("group %s under %s = %+v, %v", ag.cn, tt.groupID(ag), g, ok)
				}
			}
			want := graph{
				users:  map[string][]string{"alice": {"Engineers"}, "bob": {"Engineers"}, "carol": {"Admins"}},
				groups: map[string][]string{"Admins": {"Engineers"}},
			}
			if got := graphOf(t, sn); !equalGraph(got, want) {
				t.Errorf("memberships %v, want %v", got, want)
			}
			if st := e.status(cache.KindUsers); st.Skipped != 0 || st.Objects != len(users) {
				t.Errorf("users status %+v", st)
			}
		})
	}
}
