package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// A group's member values are served from the synced memberships at the served DNs;
// upstream values naming no synced object stay, and a uniqueMember value naming a
// synced user with its optional unique identifier is that user, not a second member.
func TestServedGroupMembers(t *testing.T) {
	alice := "uid=alice,ou=people,dc=example,dc=org"
	synced := map[string]bool{directory.NormalizeDN(alice): true}
	r := &servedRefs{
		groupDN: func(string) (string, bool) { return "", false },
		parents: func(string) []string { return nil },
		userDN: func(id string) (string, bool) {
			return map[string]string{"u-alice": "uid=alice,ou=served,dc=example,dc=org"}[id], id == "u-alice"
		},
		members: func(string) ([]string, []string) { return []string{"u-alice"}, nil },
		synced:  func(dn string) bool { return synced[directory.NormalizeDN(dn)] },
	}
	g := &cache.Group{ID: "g-1", DN: "cn=staff,ou=groups,dc=example,dc=org", Name: "staff", Upstream: []cache.Attribute{
		{Name: "objectClass", Values: []string{"groupOfUniqueNames"}},
		{Name: "cn", Values: []string{"staff"}},
		{Name: "uniqueMember", Values: []string{alice + "#'0101'B", "cn=printer,ou=devices,dc=example,dc=org"}},
	}}
	e := servedGroup(g, ServedOptions{MembershipField: "uniqueMember"}, r)
	var got []string
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, "uniqueMember") {
			for _, v := range a.Values {
				got = append(got, string(v))
			}
		}
	}
	slices.Sort(got)
	want := []string{"cn=printer,ou=devices,dc=example,dc=org", "uid=alice,ou=served,dc=example,dc=org"}
	if !slices.Equal(got, want) {
		t.Errorf("uniqueMember %q, want %q", got, want)
	}
}
