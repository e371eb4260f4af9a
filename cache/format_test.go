package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// upstreamUser is testUser with upstream attributes, some of whose names attrNames
// lists and some not.
func upstreamUser(i int) *User {
	u := testUser(i, 5, "f")
	u.Upstream = []Attribute{
		{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
		{Name: "uid", Values: []string{u.Username}},
		{Name: "x-site", Values: []string{fmt.Sprint("site", i%3)}},
		{Name: "entryUUID", Values: []string{u.ID}},
	}
	return u
}

// syncUpstreamUsers syncs n upstreamUsers and one group with upstream attributes and
// returns what the commit wrote of them.
func syncUpstreamUsers(t *testing.T, s *Store, n int) Status {
	t.Helper()
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	g := testGroup(0, "f")
	g.Upstream = []Attribute{{Name: "cn", Values: []string{g.Name}}, {Name: "member", Values: []string{"uid=a"}}}
	if err := w.PutGroup(g); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.PutUser(upstreamUser(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, st := range s.Status() {
		if st.Kind == KindUsers {
			return st
		}
	}
	t.Fatal("no users' status")
	return Status{}
}

// A store written by the versions before format 7 (format 3: upstream attributes' names
// written out; format 4: fields the upstream attributes hold written twice; format 5:
// upstream values that others repeat written twice; format 6: group IDs as text, mapped
// attributes' names written out) opens
// unchanged, from its checkpoint and from Badger; its next sync rewrites each object
// once, in the current format, and the one after writes nothing.
func TestFormat3StoreUpgrades(t *testing.T) {
	for _, old := range []byte{formatV3, formatV4, formatV5, formatV6} {
		t.Run(fmt.Sprint("format", old), func(t *testing.T) { testStoreUpgrades(t, old) })
	}
}

func testStoreUpgrades(t *testing.T, old byte) {
	const n = 50
	dir := t.TempDir()
	defer func(f byte) { upstreamFormat = f }(upstreamFormat)
	current := upstreamFormat
	upstreamFormat = old
	s := openDir(t, dir)
	syncUpstreamUsers(t, s, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	upstreamFormat = current

	check := func(s *Store, format byte) {
		t.Helper()
		sn := s.Snapshot()
		if users, _ := sn.Counts(); users != n {
			t.Fatalf("%d users, want %d", users, n)
		}
		for i := range n {
			want := upstreamUser(i)
			if err := prepareUser(want); err != nil {
				t.Fatal(err)
			}
			got, ok := sn.UserByID(want.ID)
			if !ok || !reflect.DeepEqual(got.Upstream, want.Upstream) || got.DN != want.DN || !reflect.DeepEqual(got.Groups, want.Groups) {
				t.Fatalf("user %d: %+v, want %+v", i, got, want)
			}
			if f := sn.UserSource(want.ID)[0]; f != format {
				t.Fatalf("user %d in format %d, want %d", i, f, format)
			}
		}
		g, ok := sn.GroupByID(groupID(0))
		if !ok || len(g.Upstream) != 2 || g.Upstream[1].Name != "member" {
			t.Fatalf("group: %+v", g)
		}
		if f := sn.GroupSource(groupID(0))[0]; f != format {
			t.Fatalf("group in format %d, want %d", f, format)
		}
	}
	for _, from := range []string{"checkpoint", "badger"} {
		if from == "badger" {
			if err := os.Remove(filepath.Join(dir, checkpointName)); err != nil {
				t.Fatal(err)
			}
		}
		s := openDir(t, dir)
		if s.fromCheckpoint != (from == "checkpoint") {
			t.Fatalf("opened from the checkpoint: %v, want %v", s.fromCheckpoint, from == "checkpoint")
		}
		check(s, old)
		s.Close()
	}

	s = openDir(t, dir)
	defer s.Close()
	if st := syncUpstreamUsers(t, s, n); st.Updated != n || st.Created != 0 || st.Deleted != 0 {
		t.Fatalf("the first sync after the upgrade: %+v, want %d updated", st, n)
	}
	check(s, current)
	if st := syncUpstreamUsers(t, s, n); st.Updated != 0 || st.Created != 0 || st.Deleted != 0 {
		t.Fatalf("the sync after: %+v, want nothing written", st)
	}
	s.Close()
	s = openDir(t, dir)
	check(s, current)
	s.Close()
}
