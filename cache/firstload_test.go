package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// The first sync of an empty store writes its records as tables of Badger's last level,
// of the base table size, with no level-0 table (where a level-0 to level-0 compaction
// would take a 256 MiB buffer); what the store held besides leftovers is kept; the
// records read back from Badger; and the next sync writes as any.
func TestFirstSyncLoadsLastLevel(t *testing.T) {
	const users, groups = 20_000, 20
	dir := t.TempDir()
	s := openDir(t, dir)
	hashKey, hash := credentialKey("someone"), []byte("a hash stored before the first sync")
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(hashKey, hash) }); err != nil {
		t.Fatal(err)
	}
	dieDuringSync(t, s, 30, 2) // leftovers: an interrupted first load
	s = openDir(t, dir)
	if n := countRecords(t, s); n != 0 {
		t.Fatalf("%d object records after an interrupted first sync, want none", n)
	}
	writeSync(t, s, users, groups, "a", nil)

	last := len(s.db.Levels()) - 1
	tables := s.db.Tables()
	if len(tables) < 2 {
		t.Fatalf("%d tables after the first sync, want the records in several", len(tables))
	}
	for _, tb := range tables {
		if tb.Level != last {
			t.Errorf("table %d at level %d, want all at the last level, %d", tb.ID, tb.Level, last)
		}
		if tb.OnDiskSize > baseTableSize {
			t.Errorf("table %d of %d bytes, more than the base table size", tb.ID, tb.OnDiskSize)
		}
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(hashKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != string(hash) {
				t.Errorf("kept record %q, want %q", v, hash)
			}
			return nil
		})
	}); err != nil {
		t.Fatalf("the record stored before the first sync: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Read back from Badger, not from the checkpoint.
	if err := os.Remove(filepath.Join(dir, checkpointName)); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if s.fromCheckpoint {
		t.Fatal("started from the checkpoint")
	}
	sn := s.Snapshot()
	if u, g := sn.Counts(); sn.Generation() != 1 || u != users || g != groups {
		t.Fatalf("generation %d with %d users and %d groups, want 1, %d and %d", sn.Generation(), u, g, users, groups)
	}
	for i := range users {
		u, ok := sn.UserByID(userID(i))
		if want := testUser(i, groups, "a"); !ok || u.DN != want.DN || u.Attributes["tag"] != "a" {
			t.Fatalf("user %d read back as %+v", i, u)
		}
	}
	if n := countRecords(t, s); n != users+groups {
		t.Fatalf("%d object records, want %d", n, users+groups)
	}

	// The next sync writes through Badger's write batches, over the loaded records.
	writeSync(t, s, users, groups, "b", func(i int) bool { return i%10 == 0 })
	if w := s.active; w != nil {
		t.Fatal("sync still open")
	}
	sn = s.Snapshot()
	if u, _ := sn.Counts(); sn.Generation() != 2 || u != users-users/10 {
		t.Fatalf("generation %d with %d users after the second sync", sn.Generation(), u)
	}
	if n := countRecords(t, s); n != users-users/10+groups {
		t.Fatalf("%d object records after the second sync, want %d", n, users-users/10+groups)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	if u, _ := s.Snapshot().Counts(); s.Snapshot().Generation() != 2 || u != users-users/10 {
		t.Fatalf("reopened at generation %d with %d users", s.Snapshot().Generation(), u)
	}
}

// A first sync whose load fails before it began to write leaves nothing, and one that
// is aborted writes nothing at all.
func TestFirstSyncAbortWritesNothing(t *testing.T) {
	s := openDir(t, t.TempDir())
	defer s.Close()
	before := s.written.Load()
	w := beginFullSync(t, s, 100, 2, "a", nil)
	if !w.loading {
		t.Fatal("the first sync of an empty store does not load it")
	}
	w.Abort()
	if n := s.written.Load() - before; n > 1000 {
		t.Fatalf("an aborted first sync wrote %d bytes, want its status alone", n)
	}
	if n := countRecords(t, s); n != 0 {
		t.Fatalf("%d object records", n)
	}
	if _, err := s.db.NewTransaction(false).Get([]byte(keyGeneration)); !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("generation after an aborted first sync: %v", err)
	}
}
