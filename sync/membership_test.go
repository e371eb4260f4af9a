package sync_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestMembershipFields syncs the same memberships stored four ways and expects the
// same graph from each: slapdtest's rule (Server.UserGroups), and group001 containing
// group002 where the field can express nesting.
func TestMembershipFields(t *testing.T) {
	t.Parallel()
	const users, groups = 12, 3
	// rule has slapdtest's membership rule and DNs without a running server.
	rule := &slapdtest.Server{Users: users, Groups: groups, Suffix: slapdtest.DefaultSuffix,
		PeopleDN: "ou=people," + slapdtest.DefaultSuffix}

	// groupsLDIF writes the sample memberships as groups under ou=<ou>: head holds a
	// group's object class (and required attribute) lines, and value turns member i (a
	// user, or group002 when i is 0) into an attribute line.
	groupsLDIF := func(ou, head string, value func(i int) string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n", ou, rule.Suffix, ou)
		for g := 1; g <= groups; g++ {
			fmt.Fprintf(&b, "dn: cn=%s,ou=%s,%s\ncn: %s\n%s", slapdtest.GroupName(g), ou, rule.Suffix, slapdtest.GroupName(g), head)
			for i := 1; i <= users; i++ {
				for _, ug := range rule.UserGroups(i) {
					if ug == g {
						b.WriteString(value(i) + "\n")
					}
				}
			}
			if g == 1 {
				if v := value(0); v != "" {
					b.WriteString(v + "\n")
				}
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	uniqueLDIF := groupsLDIF("ugroups", "objectClass: groupOfUniqueNames\n", func(i int) string {
		switch {
		case i == 0:
			return "uniqueMember: cn=group002,ou=ugroups," + rule.Suffix + "#'0101'B"
		case i%2 == 1: // the optional unique identifier is not part of the DN
			return "uniqueMember: " + rule.UserDN(i) + "#'" + fmt.Sprintf("%b", i) + "'B"
		}
		return "uniqueMember: " + rule.UserDN(i)
	})
	posixLDIF := groupsLDIF("pgroups", "objectClass: posixGroup\ngidNumber: 30000\n", func(i int) string {
		if i == 0 {
			return "" // memberUid holds user names: groups cannot nest that way
		}
		return "memberUid: " + slapdtest.UserName(i)
	})

	tests := []struct {
		field string
		opts  slapdtest.Options
		cfg   func(*ldapsync.Config)
		// nesting is false when the field cannot express groups in groups.
		nesting bool
	}{
		{"member", slapdtest.Options{}, nil, true},
		{"uniqueMember", slapdtest.Options{ExtraLDIF: uniqueLDIF}, func(c *ldapsync.Config) { c.GroupDN = "ou=ugroups" }, true},
		{"memberUid", slapdtest.Options{ExtraLDIF: posixLDIF}, func(c *ldapsync.Config) { c.GroupDN = "ou=pgroups" }, false},
		// The memberof overlay keeps memberOf in step with member, so that syncing by member
		// would give the same graph. But slapadd bypasses the overlay: a group loaded
		// from ExtraLDIF lists user 1 as a member without user 1's memberOf saying so,
		// which only a sync by memberOf leaves out.
		{"memberOf", slapdtest.Options{MemberOf: true, ExtraLDIF: "dn: cn=shadow,ou=groups," + rule.Suffix +
			"\nobjectClass: groupOfNames\ncn: shadow\nmember: " + rule.UserDN(1) + "\n"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			tt.opts.Users, tt.opts.Groups = users, groups
			e := newEnv(t, tt.opts)
			sn := e.sync(config(t, func(c *ldapsync.Config) {
				c.MembershipField = tt.field
				if tt.cfg != nil {
					tt.cfg(c)
				}
			}))
			want := sampleGraph(e.srv)
			if !tt.nesting {
				clear(want.groups)
			}
			if got := graphOf(t, sn); !equalGraph(got, want) {
				t.Errorf("membership graph by %s:\n got %v\nwant %v", tt.field, got, want)
			}
			if _, n := sn.Counts(); n < groups {
				t.Errorf("%d groups stored, want at least %d", n, groups)
			}
		})
	}
}
