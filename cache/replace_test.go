package cache

import (
	"slices"
	"testing"
)

// TestReplaceUser: a user put in a sync can be replaced before the commit, whether the
// first put wrote a new version or kept the stored one; the replacement is what a
// reopened store holds, counted as one update, and User and UserIDs see it.
func TestReplaceUser(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 10, 3, "a", nil)

	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range 3 {
		if err := w.PutGroup(testGroup(i, "a")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		u := testUser(i, 3, "a")
		if i == 2 {
			u.Name = "changed" // written by this run, then replaced
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.ReplaceUser(testUser(42, 3, "a")); err == nil {
		t.Fatal("ReplaceUser of a user not put: no error")
	}
	for _, i := range []int{0, 2} {
		u, ok := w.User(userID(i))
		if !ok {
			t.Fatalf("User(%d): not found", i)
		}
		u.Groups = []string{groupID(2), groupID(1), groupID(2)}
		if err := w.ReplaceUser(u); err != nil {
			t.Fatal(err)
		}
	}
	ids := w.UserIDs(map[string]bool{"uid=user000001,ou=people,dc=example,dc=org": true, "uid=nobody,dc=example,dc=org": true}, false)
	if len(ids) != 1 || ids["uid=user000001,ou=people,dc=example,dc=org"] != userID(1) {
		t.Fatalf("UserIDs: %v", ids)
	}
	if ids := w.UserIDs(map[string]bool{"user000002": true}, true); ids["user000002"] != userID(2) {
		t.Fatalf("UserIDs by name: %v", ids)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if st := s.Status()[0]; st.Kind != KindUsers || st.Updated != 2 || st.Created != 0 {
		t.Fatalf("status: %+v, want 2 users updated", st)
	}
	want := s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	got := s.Snapshot()
	sameSnapshot(t, got, want)
	for _, i := range []int{0, 2} {
		u, _ := got.UserByID(userID(i))
		if !slices.Equal(u.Groups, []string{groupID(1), groupID(2)}) {
			t.Fatalf("user %d groups %v after reopening", i, u.Groups)
		}
	}
	if u, _ := got.UserByID(userID(2)); u.Name != "changed" {
		t.Fatalf("user 2: %+v", u)
	}
}
