package directory

import (
	"context"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// A search within a part of the tree walks the scope as usual and returns only that
// part; a compare outside it finds no such object; paging counts only what is returned.
func TestSearchWithin(t *testing.T) {
	tree := testTree(t)
	within := tree.Within([]string{"UID=Alice, ou=People,dc=example,dc=org", "cn=devs,ou=groups," + testBase, "cn=nobody," + testBase})
	for _, c := range []struct {
		base, filter string
		scope        int
		want         string
	}{
		{testBase, "(objectClass=*)", ScopeSubtree, "cn=devs uid=alice"},
		{testBase, "(uid=bob)", ScopeSubtree, ""},
		{testBase, "(|(uid=alice)(uid=bob))", ScopeSubtree, "uid=alice"},
		{"ou=groups," + testBase, "(member=*)", ScopeOne, "cn=devs"},
		{"uid=bob,ou=people," + testBase, "(objectClass=*)", ScopeBase, ""},
		{testBase, "(objectClass=*)", ScopeBase, ""},
	} {
		var got []string
		res := tree.SearchWithin(context.Background(), searchRequest(t, c.base, c.scope, c.filter).Search, nil, within, func(e *Entry) error {
			got = append(got, e.DN)
			return nil
		})
		if res == nil || res.Code != 0 || rdnsOf(got) != c.want {
			t.Errorf("base %q %s scope %d: %q (%v), want %q", c.base, c.filter, c.scope, rdnsOf(got), res, c.want)
		}
	}
	// The whole tree, for comparison: bob is there.
	var all []string
	tree.SearchWithin(context.Background(), searchRequest(t, testBase, ScopeSubtree, "(uid=bob)").Search, nil, nil, func(e *Entry) error {
		all = append(all, e.DN)
		return nil
	})
	if len(all) != 1 {
		t.Fatalf("without a limit: %v", all)
	}

	for _, c := range []struct {
		dn   string
		code uint16
	}{
		{"uid=alice,ou=people," + testBase, ldap.LDAPResultCompareTrue},
		{"uid=bob,ou=people," + testBase, ldap.LDAPResultNoSuchObject},
	} {
		q := &CompareRequest{DN: c.dn, Attribute: "objectClass", Value: []byte("inetOrgPerson")}
		if res := tree.CompareWithin(q, within); res.Code != c.code {
			t.Errorf("compare %s: %d, want %d", c.dn, res.Code, c.code)
		}
	}
}

// TestSearchWithinLong checks that a search calls its long function, once, before it
// looks at more than quickCandidates entries (a scope walked entry by entry, an index's
// long list), and not when it looks at a few; and that it finds what SearchWithin finds.
func TestSearchWithinLong(t *testing.T) {
	tree := benchTree(t, 200) // 50 groups of 4 members
	for _, c := range []struct {
		base, filter string
		scope        int
		long         bool
	}{
		{testBase, "(uid=user0042)", ScopeSubtree, false},
		{testBase, "(&(objectClass=person)(uid=user0042))", ScopeSubtree, false},
		{testBase, "(memberOf=cn=group07,ou=groups," + testBase + ")", ScopeSubtree, false},
		{"uid=user0042,ou=people," + testBase, "(description=*)", ScopeBase, false},
		{testBase, "(objectClass=person)", ScopeSubtree, true},                     // 200 candidates
		{testBase, "(description=*)", ScopeSubtree, true},                          // no index
		{"ou=groups," + testBase, "(cn=group0*)", ScopeOne, true},                  // no index: the tree is walked
		{testBase, "(|(uid=user0001)(displayName=User 0002))", ScopeSubtree, true}, // displayName: no index
	} {
		q := searchRequest(t, c.base, c.scope, c.filter).Search
		var want, got []string
		tree.SearchWithin(context.Background(), q, nil, nil, func(e *Entry) error { want = append(want, e.DN); return nil })
		calls := 0
		tree.SearchWithinLong(context.Background(), q, nil, nil, func(e *Entry) error { got = append(got, e.DN); return nil },
			func() { calls++ })
		if rdnsOf(got) != rdnsOf(want) {
			t.Errorf("%s under %s: found %q, SearchWithin %q", c.filter, c.base, rdnsOf(got), rdnsOf(want))
		}
		if wantCalls := map[bool]int{false: 0, true: 1}[c.long]; calls != wantCalls {
			t.Errorf("%s under %s: long called %d times, want %d", c.filter, c.base, calls, wantCalls)
		}
	}
}
