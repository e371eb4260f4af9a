package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A store that will be closed after its sync (CloseSoon) writes no checkpoint at the
// commit, so that the records are not read back from one while the sync's are still
// live; Close writes it, and the next start reads the sync from it.
func TestCloseSoonLeavesTheCheckpointToClose(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	s.CloseSoon()
	writeSync(t, s, 40, 4, "a", nil)
	want := s.Snapshot()
	time.Sleep(200 * time.Millisecond) // a checkpoint started at the commit would be written by now
	if _, err := os.Stat(filepath.Join(dir, checkpointName)); !os.IsNotExist(err) {
		t.Fatalf("a checkpoint written before Close: %v", err)
	}
	if s.Snapshot() != want {
		t.Fatal("the snapshot was replaced (records moved to a checkpoint)")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if !s.fromCheckpoint {
		t.Fatal("the store was read from Badger, not from the checkpoint Close wrote")
	}
	if got := s.Snapshot(); got.Generation() != want.Generation() {
		t.Fatalf("generation %d, want %d", got.Generation(), want.Generation())
	}
	u, ok := s.Snapshot().UserByID(userID(7))
	if !ok || u.DN != testUser(7, 4, "a").DN {
		t.Fatalf("user 7: %+v", u)
	}
}
