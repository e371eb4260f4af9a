package cache

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/ldapproxy/ldapproxy/directory"
)

// TestPatchMatchesRebuild applies random batches (adds, changes, renames onto another
// user's DN or mail, deletes, group changes) with patch and checks every index and
// member list against a snapshot built from scratch from the same objects.
func TestPatchMatchesRebuild(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const numUsers, numGroups = 300, 12
	users := map[string]*userRec{}
	groups := map[string]*groupRec{}
	norm := directory.NormalizeDN
	a := newArena(nil)
	mkUser := func(i int, variant int) *userRec {
		u := testUser(i, numGroups, fmt.Sprint(variant))
		switch variant % 5 {
		case 1: // a DN, name and mail another user has too
			o := i + 1
			u.DN = testUser(o, numGroups, "").DN
			u.Username = fmt.Sprintf("user%06d", o)
			u.Email = u.Username + "@example.org"
		case 2: // in other groups
			u.Groups = []string{groupID(variant % numGroups)}
		case 3:
			u.Path = fmt.Sprintf("uid=p%d,ou=served,dc=example,dc=org", variant%7)
			u.Attributes[UPNAttribute] = []string{"same@example.org", u.Username + "@example.org"}
		}
		r, err := a.put(u.ID, string(appendUser(nil, normalized(t, u))), 1, norm)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range numUsers {
		users[userID(i)] = mkUser(i, 0)
	}
	for i := range numGroups {
		g := testGroup(i, "0")
		r, err := newGroupRec(g.ID, string(appendGroup(nil, g)), 1, norm)
		if err != nil {
			t.Fatal(err)
		}
		groups[g.ID] = r
	}
	sn := newSnapshot(1, maps.Clone(users), a.rs, maps.Clone(groups), norm)
	for round := range 200 {
		uc, gc := map[string]*userRec{}, map[string]*groupRec{}
		for range 1 + rnd.IntN(8) {
			i := rnd.IntN(numUsers + 20)
			if rnd.IntN(4) == 0 {
				uc[userID(i)] = nil
			} else {
				uc[userID(i)] = mkUser(i, rnd.IntN(50))
			}
		}
		if round%10 == 0 {
			i := rnd.IntN(numGroups)
			if rnd.IntN(2) == 0 {
				gc[groupID(i)] = nil
			} else {
				g := testGroup(i, fmt.Sprint(round))
				r, _ := newGroupRec(g.ID, string(appendGroup(nil, g)), 1, norm)
				gc[g.ID] = r
			}
		}
		for id, r := range uc {
			if r == nil {
				delete(users, id)
			} else {
				users[id] = r
			}
		}
		for id, r := range gc {
			if r == nil {
				delete(groups, id)
			} else {
				groups[id] = r
			}
		}
		sn = sn.patch(uint64(round+2), uc, a.rs, gc)
		want := newSnapshot(uint64(round+2), maps.Clone(users), a.rs, maps.Clone(groups), norm)
		for name, pair := range map[string][2]any{
			"userList":  {sn.userList, want.userList},
			"usersByDN": {indexMap(sn.usersByDN), indexMap(want.usersByDN)}, "usersByPath": {sn.usersByPath, want.usersByPath},
			"usersByName": {indexMap(sn.usersByName), indexMap(want.usersByName)}, "usersByUPN": {sn.usersByUPN, want.usersByUPN},
			"usersByMail": {indexMap(sn.usersByMail), indexMap(want.usersByMail)}, "groups": {sn.groups, want.groups},
			"groupsByDN": {sn.groupsByDN, want.groupsByDN},
		} {
			if !reflect.DeepEqual(pair[0], pair[1]) {
				t.Fatalf("round %d: %s differs from a rebuild", round, name)
			}
		}
		for gid := range groups {
			gu, gg := sn.Members(gid)
			wu, wg := want.Members(gid)
			if len(gu) != len(wu) || len(gg) != len(wg) || len(gu) > 0 && !reflect.DeepEqual(gu, wu) || len(gg) > 0 && !reflect.DeepEqual(gg, wg) {
				t.Fatalf("round %d: members of %s: %v %v, want %v %v", round, gid, gu, gg, wu, wg)
			}
		}
		for _, m := range []map[string]*userRec{sn.usersByPath, sn.usersByUPN} {
			for k, r := range m {
				if r != nil && (len(sn.userList) == 0 || sn.indexOf(r) >= len(sn.userList) || &sn.userList[sn.indexOf(r)] != r) {
					t.Fatalf("round %d: key %q names a record outside the snapshot's list", round, k)
				}
			}
		}
		if !reflect.DeepEqual(sn.members, want.members) {
			t.Fatalf("round %d: member index %v, want %v", round, sn.members, want.members)
		}
	}
}

// normalized applies PutUser's conversions.
func normalized(t *testing.T, u *User) *User {
	if err := normalizeAttributes(u.Attributes); err != nil {
		t.Fatal(err)
	}
	u.Groups = sortedSet(u.Groups)
	return u
}
