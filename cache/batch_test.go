package cache

import (
	"slices"
	"strconv"
	"testing"
)

// TestBatch applies a batch of each kind of change to a synced store: only what it
// names changes, as the next generation, and a reopened store holds the same state and
// the cookie committed with it.
func TestBatch(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 100, 10, "a", nil)
	before := s.Snapshot()
	var seen []*Snapshot
	s.OnCommit(func(sn *Snapshot) { seen = append(seen, sn) })

	b, err := s.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginSync(KindUsers); err != ErrSyncRunning {
		t.Fatalf("BeginSync during a batch: %v", err)
	}
	renamed := testUser(3, 10, "a")
	renamed.DN = "uid=user000003,ou=moved,dc=example,dc=org"
	changed := testUser(4, 10, "b")
	added := testUser(200, 10, "a")
	unchanged := testUser(5, 10, "a")
	for _, u := range []*User{renamed, changed, added, unchanged} {
		if err := b.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	b.DeleteUser(userID(6))
	b.DeleteUser("no-such-user")
	b.DeleteGroup(groupID(9))
	if u, ok := b.User(userID(3)); !ok || u.DN != renamed.DN {
		t.Fatalf("batch view of user 3: %+v", u)
	}
	if _, ok := b.User(userID(6)); ok {
		t.Fatal("batch view shows a deleted user")
	}
	b.SetCookie("users", []byte("rid=000,csn=1"))
	c, err := b.Commit()
	if err != nil {
		t.Fatal(err)
	}
	want := BatchCounts{UsersCreated: 1, UsersUpdated: 2, UsersDeleted: 1, GroupsDeleted: 1}
	if c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	sn := s.Snapshot()
	if sn.Generation() != before.Generation()+1 || len(seen) != 1 || seen[0] != sn {
		t.Fatalf("generation %d after %d, %d OnCommit calls", sn.Generation(), before.Generation(), len(seen))
	}
	ch := sn.ChangesSince(before)
	if wantIDs := []string{userID(3), userID(4), userID(6), userID(200)}; !slices.Equal(ch.Users, wantIDs) {
		t.Fatalf("changed users %v, want %v", ch.Users, wantIDs)
	}
	if !slices.Equal(ch.Groups, []string{groupID(9)}) {
		t.Fatalf("changed groups %v", ch.Groups)
	}
	if u, ok := sn.UserByDN(renamed.DN); !ok || u.ID != userID(3) {
		t.Fatal("renamed user not found by its new DN")
	}
	if _, ok := sn.UserByDN(testUser(3, 10, "a").DN); ok {
		t.Fatal("renamed user still found by its old DN")
	}
	if users, _ := sn.Members(groupID(3)); !slices.Contains(users, userID(3)) {
		t.Fatal("renamed user lost its membership")
	}

	// A batch that changes nothing commits no generation, but keeps its cookie.
	b, err = s.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutUser(testUser(5, 10, "a")); err != nil {
		t.Fatal(err)
	}
	b.SetCookie("users", []byte("rid=000,csn=2"))
	if c, err := b.Commit(); err != nil || c.Writes() != 0 {
		t.Fatalf("unchanged batch: %+v %v", c, err)
	}
	if s.Snapshot().Generation() != sn.Generation() || len(seen) != 1 {
		t.Fatal("an unchanged batch made a new snapshot")
	}

	// An aborted batch changes nothing.
	b, err = s.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	b.DeleteUser(userID(7))
	b.SetCookie("users", []byte("rid=000,csn=3"))
	b.Abort()
	if _, ok := s.Snapshot().UserByID(userID(7)); !ok || string(s.Cookie("users")) != "rid=000,csn=2" {
		t.Fatal("an aborted batch changed the store")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openDir(t, dir)
	defer s.Close()
	re := s.Snapshot()
	if re.Generation() != sn.Generation() || !re.ChangesSince(sn).Empty() {
		t.Fatalf("reopened at %d with changes %v", re.Generation(), re.ChangesSince(sn))
	}
	if got := string(s.Cookie("users")); got != "rid=000,csn=2" {
		t.Fatalf("cookie after reopen %q", got)
	}
	if n := countRecords(t, s); n != 100+1-1+10-1 {
		t.Fatalf("%d records after reopen", n)
	}
}

// TestSyncCookie: a full sync stores a cookie with its generation, or deletes it, and
// one that does not set it keeps it.
func TestSyncCookie(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	w.SetCookie("groups", []byte("c1"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if string(s.Cookie("groups")) != "c1" {
		t.Fatal("cookie not stored")
	}
	writeSync(t, s, 3, 2, "a", nil)
	if string(s.Cookie("groups")) != "c1" {
		t.Fatal("a sync that did not set the cookie dropped it")
	}
	w, err = s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	w.SetCookie("groups", nil)
	w.SetCookie("users", []byte("c2"))
	w.Abort()
	if s.Cookie("users") != nil || string(s.Cookie("groups")) != "c1" {
		t.Fatal("an aborted sync changed the cookies")
	}
	w, err = s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	w.SetCookie("groups", nil)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.Cookie("groups") != nil {
		t.Fatal("cookie not deleted")
	}
}

// BenchmarkBatch commits batches of one changed user to a store on disk of 100,000 users
// and 2,000 groups: what each change pushed by a stream costs the store.
func BenchmarkBatch(b *testing.B) {
	s := openDir(b, b.TempDir())
	defer s.Close()
	writeSync(b, s, benchUsers, benchGroups, "1", nil)
	n := 0
	for b.Loop() {
		n++
		batch, err := s.BeginBatch()
		if err != nil {
			b.Fatal(err)
		}
		if err := batch.PutUser(testUser(n%benchUsers, benchGroups, "b"+strconv.Itoa(n))); err != nil {
			b.Fatal(err)
		}
		if _, err := batch.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}
