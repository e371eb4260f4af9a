package sync_test

import (
	"slices"
	"testing"

	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

func TestRangeRetrieval(t *testing.T) {
	t.Parallel()
	const users = 3200
	f := &fakeAD{users: users, rangeSize: 1500}
	e := serveFake(t, f)
	sn := e.sync(config(t, func(c *ldapsync.Config) { c.Preset = "active-directory" }))

	if n, m := sn.Counts(); n != users || m != 2 {
		t.Fatalf("stored %d users and %d groups, want %d and 2", n, m, users)
	}
	big, ok := sn.GroupByDN(f.groupDN("Big"))
	if !ok || big.ID != guidString(fakeGUID(-1)) {
		t.Fatalf("group Big = %+v, %v", big, ok)
	}
	small, _ := sn.GroupByDN(f.groupDN("Small"))
	members, _ := sn.Members(big.ID)
	var want []string
	for i := 1; i <= users; i++ {
		want = append(want, guidString(fakeGUID(i)))
	}
	slices.Sort(want)
	if !slices.Equal(members, want) {
		t.Errorf("Big has %d members, want all %d users", len(members), users)
	}
	if u, _ := sn.UserByUsername("user3200"); !slices.Equal(u.Groups, []string{big.ID}) {
		t.Errorf("user3200 (in the last range) groups %v, want [Big]", u.Groups)
	}
	if u, _ := sn.UserByUsername("user0002"); !slices.Equal(u.Groups, sorted(big.ID, small.ID)) {
		t.Errorf("user0002 groups %v, want Big and Small", u.Groups)
	}
	if !slices.Equal(big.Parents, []string{small.ID}) {
		t.Errorf("Big parents %v, want [Small]", big.Parents)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []string{"member;range=1500-*", "member;range=3000-*"}; !slices.Equal(f.ranges, want) {
		t.Errorf("range retrievals %v, want %v", f.ranges, want)
	}
	// The active-directory preset's filters, as AD understands them.
	for _, want := range []string{"(objectClass=group)", "(&(objectCategory=person)(objectClass=user))"} {
		if !slices.Contains(f.filters, want) {
			t.Errorf("filters sent %v, want %s among them", f.filters, want)
		}
	}
}
