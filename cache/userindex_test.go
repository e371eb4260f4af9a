package cache

import (
	"fmt"
	"strings"
	"testing"
)

// TestUserIndex: a key one user has finds that user, one two users share finds neither
// (but is told apart from a key none has), and an empty key is never indexed.
func TestUserIndex(t *testing.T) {
	var list []*userRec
	for i := range 5000 {
		r := &userRec{id: fmt.Sprint(i)}
		r.setKey(keyName, fmt.Sprintf("user%d", i), "")
		if i%7 != 0 {
			r.setKey(keyMail, fmt.Sprintf("u%d@x", i%2500), "")
		}
		list = append(list, r)
	}
	byName, byMail := newUserIndex(list, nameKeyOf), newUserIndex(list, mailKeyOf)
	for i, r := range list {
		if got, ok := byName.get(r.key(keyName)); !ok || got != r {
			t.Fatalf("user %d by name: %v %v", i, got, ok)
		}
		if r.key(keyMail) == "" {
			continue
		}
		other := list[(i+2500)%5000]
		got, ok := byMail.get(r.key(keyMail))
		switch {
		case other.key(keyMail) == r.key(keyMail) && (got != nil || !ok):
			t.Fatalf("mail %s, shared: %v %v", r.key(keyMail), got, ok)
		case other.key(keyMail) != r.key(keyMail) && got != r:
			t.Fatalf("mail %s: %v %v", r.key(keyMail), got, ok)
		}
	}
	for _, k := range []string{"", "user5000", "nobody"} {
		if got, ok := byName.get(k); ok || got != nil {
			t.Fatalf("%q: %v %v", k, got, ok)
		}
	}
	if got, ok := byMail.get(""); ok || got != nil {
		t.Fatalf("the empty mail finds %v %v", got, ok)
	}
	var none *userIndex
	if got, ok := none.get("x"); ok || got != nil {
		t.Fatal("a nil index finds a user")
	}
}

// indexMap is what x finds for every key of its users, as a map kept by addUnique.
func indexMap(x *userIndex) map[string]*userRec {
	m := map[string]*userRec{}
	for _, r := range x.list {
		if k := x.key(r); k != "" {
			m[k], _ = x.get(k)
		}
	}
	return m
}

// TestSnapshotUserByID: a snapshot finds each of its users by ID in its sorted list, and
// no user for an ID it lacks, before, between or after its own.
func TestSnapshotUserByID(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 1000} {
		sn := &Snapshot{}
		for i := range n {
			sn.userList = append(sn.userList, &userRec{id: fmt.Sprintf("id%05d", 2*i+1)})
		}
		for i, r := range sn.userList {
			if got := sn.userRec(r.id); got != r {
				t.Fatalf("%d users: user %d (%s) found as %v", n, i, r.id, got)
			}
		}
		for i := 0; i <= 2*n; i += 2 {
			if got := sn.userRec(fmt.Sprintf("id%05d", i)); got != nil {
				t.Fatalf("%d users: id%05d found as %s", n, i, got.id)
			}
		}
		if got := sn.userRec(""); got != nil {
			t.Fatalf("%d users: the empty ID found as %s", n, got.id)
		}
	}
}

// TestUserRecKeys: a user's keys are offsets into its record when the record holds them
// already normalised, and kept apart when it does not; either way they read back right.
func TestUserRecKeys(t *testing.T) {
	norm := func(dn string) string { return strings.ToLower(strings.ReplaceAll(dn, ", ", ",")) }
	for _, tc := range []struct {
		u                 User
		dn, name, mail    string
		inRecord, hasMore bool
	}{
		{User{ID: "1", DN: "uid=a,dc=x", Username: "a", Email: "a@x"}, "uid=a,dc=x", "a", "a@x", true, false},
		{User{ID: "2", DN: "UID=B, DC=X", Username: "B", Email: "B@X"}, "uid=b,dc=x", "b", "b@x", false, true},
		{User{ID: "3", DN: "uid=c,dc=x", Username: "C"}, "uid=c,dc=x", "c", "", false, true},
		{User{ID: "4", DN: "uid=d,dc=x", Username: "d", Path: "UID=D,OU=Y"}, "uid=d,dc=x", "d", "", true, true},
	} {
		r, err := newUserRec(tc.u.ID, string(appendUser(nil, &tc.u)), 1, norm)
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]string{r.key(keyDN), r.key(keyName), r.key(keyMail)}; got != [3]string{tc.dn, tc.name, tc.mail} {
			t.Fatalf("user %s: keys %q", tc.u.ID, got)
		}
		if (r.more != nil) != tc.hasMore {
			t.Fatalf("user %s: more %v, want it: %v", tc.u.ID, r.more, tc.hasMore)
		}
		if tc.inRecord != (r.keys[keyDN].off != keyElsewhere && r.keys[keyName].off != keyElsewhere) {
			t.Fatalf("user %s: keys %v, want them in the record: %v", tc.u.ID, r.keys, tc.inRecord)
		}
	}
}
