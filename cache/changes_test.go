package cache

import (
	"slices"
	"testing"
)

// TestChangesSince checks the objects two snapshots differ by: what a sync added,
// changed and deleted, and nothing after a sync that changed nothing.
func TestChangesSince(t *testing.T) {
	s := openMem(t)
	empty := s.Snapshot()
	writeSync(t, s, 20, 4, "a", nil)
	first := s.Snapshot()
	if c := first.ChangesSince(empty); len(c.Users) != 20 || len(c.Groups) != 4 {
		t.Errorf("first sync: %d users, %d groups", len(c.Users), len(c.Groups))
	}
	if c := first.ChangesSince(nil); len(c.Users) != 20 || len(c.Groups) != 4 {
		t.Errorf("since nil: %d users, %d groups", len(c.Users), len(c.Groups))
	}

	writeSync(t, s, 20, 4, "a", nil)
	same := s.Snapshot()
	if same.Generation() == first.Generation() {
		t.Fatal("no new generation")
	}
	if c := same.ChangesSince(first); !c.Empty() {
		t.Errorf("unchanged sync: %+v", c)
	}

	// User 3 is gone, user 20 is new, user 5 is renamed, group 2 changes.
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		g := testGroup(i, "a")
		if i == 2 {
			g.Name = "renamed"
		}
		if err := w.PutGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 21 {
		if i == 3 {
			continue
		}
		u := testUser(i, 4, "a")
		if i == 5 {
			u.DN = "uid=moved,ou=elsewhere,dc=example,dc=org"
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	c := s.Snapshot().ChangesSince(same)
	if want := []string{userID(3), userID(5), userID(20)}; !slices.Equal(c.Users, want) {
		t.Errorf("users %v, want %v", c.Users, want)
	}
	if want := []string{groupID(2)}; !slices.Equal(c.Groups, want) {
		t.Errorf("groups %v, want %v", c.Groups, want)
	}
	// Across several commits, and backwards, the same objects differ.
	if c2 := same.ChangesSince(s.Snapshot()); !slices.Equal(c2.Users, c.Users) || !slices.Equal(c2.Groups, c.Groups) {
		t.Errorf("backwards: %+v", c2)
	}
	if c3 := s.Snapshot().ChangesSince(first); !slices.Equal(c3.Users, c.Users) {
		t.Errorf("since the first: %+v", c3)
	}
}

func TestUserDNs(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	u := testUser(1, 1, "a")
	u.Path = "uid=one,ou=mapped,dc=example,dc=org"
	if err := w.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	dn, path, ok := s.Snapshot().UserDNs(userID(1))
	if !ok || dn != "uid=user000001,ou=people,dc=example,dc=org" || path != "uid=one,ou=mapped,dc=example,dc=org" {
		t.Errorf("UserDNs: %q %q %v", dn, path, ok)
	}
	if _, _, ok := s.Snapshot().UserDNs("nobody"); ok {
		t.Error("UserDNs found nobody")
	}
}
