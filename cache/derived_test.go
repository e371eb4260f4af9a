package cache

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// derivedOf registers a derived file whose contents name the generation it was written
// for, and counts its writes; notReady makes a write refuse.
func derivedOf(s *Store, used bool, writes *atomic.Int32, notReady *atomic.Bool, refused *atomic.Int32) {
	s.AddDerived(DerivedFile{Name: "test.derived", Write: func(w io.Writer, sn *Snapshot) error {
		if notReady != nil && notReady.Load() {
			if refused != nil {
				refused.Add(1)
			}
			return ErrDerivedNotReady
		}
		writes.Add(1)
		_, err := fmt.Fprintf(w, "made of generation %d", sn.Generation())
		return err
	}}, used)
}

// notReadyStore opens a store in a directory of the test's with a derived file that is
// not ready until the test says so (refused counts the writes it refused); the store
// closes with the test.
func notReadyStore(t *testing.T) (s *Store, writes *atomic.Int32, notReady *atomic.Bool, refused *atomic.Int32) {
	s = openDir(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	writes, notReady, refused = new(atomic.Int32), new(atomic.Bool), new(atomic.Int32)
	notReady.Store(true)
	derivedOf(s, false, writes, notReady, refused)
	return s, writes, notReady, refused
}

// readDerived reads the derived file for sn as a string, "" when there is none.
func readDerived(s *Store, sn *Snapshot) string {
	data, _ := s.ReadDerived("test.derived", sn)
	return string(data)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDerivedFile checks that a derived file is written after a commit, read back for
// that very commit only, written again for the last generation at Close, not written
// again by a start that found it current, and written at once by one that did not.
func TestDerivedFile(t *testing.T) {
	setCheckpointInterval(t, time.Hour)
	dir := t.TempDir()
	s := openDir(t, dir)
	var writes atomic.Int32
	derivedOf(s, false, &writes, nil, nil)
	if got := readDerived(s, s.Snapshot()); got != "" {
		t.Fatalf("a derived file before any commit: %q", got)
	}
	writeSync(t, s, 10, 2, "a", nil)
	// Written, then renamed into place.
	waitFor(t, "the first write", func() bool { return readDerived(s, s.Snapshot()) == "made of generation 1" })
	writeSync(t, s, 10, 2, "b", nil)
	time.Sleep(100 * time.Millisecond)
	if writes.Load() != 1 {
		t.Fatal("a second write within the interval")
	}
	if got := readDerived(s, s.Snapshot()); got != "" {
		t.Fatalf("the file of generation 1 read for generation 2: %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if writes.Load() != 2 {
		t.Fatalf("%d writes after Close, want 2", writes.Load())
	}

	// A start on generation 2 reads it and does not write it again.
	s = openDir(t, dir)
	if got := readDerived(s, s.Snapshot()); got != "made of generation 2" {
		t.Fatalf("after a restart, read %q", got)
	}
	var again atomic.Int32
	derivedOf(s, true, &again, nil, nil)
	time.Sleep(100 * time.Millisecond)
	s.Close()
	if again.Load() != 0 {
		t.Fatalf("a current file written %d times again", again.Load())
	}

	// A start that read the file but could not use it writes it again at once.
	s = openDir(t, dir)
	if readDerived(s, s.Snapshot()) == "" {
		t.Fatal("not read")
	}
	var unused atomic.Int32
	derivedOf(s, false, &unused, nil, nil)
	waitFor(t, "a write of a file not used", func() bool { return unused.Load() == 1 })
	s.Close()

	// A file of another commit with the same generation is not read, and a start that
	// found none writes one at once.
	other := openDir(t, t.TempDir())
	writeSync(t, other, 10, 2, "a", nil)
	writeSync(t, other, 10, 2, "b", nil)
	if got := readDerivedOf(t, dir, other.Snapshot()); got != "" {
		t.Fatalf("another store's file read: %q", got)
	}
	other.Close()
	s = openDir(t, dir)
	defer s.Close()
	var fresh atomic.Int32
	if err := removeFile(dir, "test.derived"); err != nil {
		t.Fatal(err)
	}
	derivedOf(s, false, &fresh, nil, nil)
	waitFor(t, "a write at start", func() bool { return fresh.Load() == 1 })
}

// readDerivedOf reads the derived file of the store in dir for sn, a snapshot of
// another store.
func readDerivedOf(t *testing.T, dir string, sn *Snapshot) string {
	t.Helper()
	return readDerived(&Store{dir: dir, derivedGen: map[string]uint64{}, log: testLogger(t)}, sn)
}

// TestDerivedNotReady checks that a write that is not ready writes nothing and is tried
// again with the next commit.
func TestDerivedNotReady(t *testing.T) {
	setCheckpointInterval(t, 0)
	s, writes, notReady, refused := notReadyStore(t)
	writeSync(t, s, 10, 2, "a", nil)
	// Until the commit's write has been tried: a write tried after notReady changes
	// below would be of generation 1 (and a second one).
	waitFor(t, "the write of the first commit", func() bool { return refused.Load() > 0 })
	if readDerived(s, s.Snapshot()) != "" || writes.Load() != 0 {
		t.Fatal("written while not ready")
	}
	notReady.Store(false)
	writeSync(t, s, 10, 2, "b", nil)
	waitFor(t, "the write of the next commit", func() bool { return readDerived(s, s.Snapshot()) == "made of generation 2" })
	if writes.Load() != 1 {
		t.Fatalf("%d writes", writes.Load())
	}
}

// TestDerivedReady checks that DerivedReady has a derived file that was not ready
// written at once, also while the checkpointer holds back the checkpoint of a commit
// that came soon after the last one.
func TestDerivedReady(t *testing.T) {
	s, writes, notReady, _ := notReadyStore(t)
	writeSync(t, s, 10, 2, "a", nil)
	writeSync(t, s, 10, 2, "b", nil) // its checkpoint waits checkpointInterval
	time.Sleep(100 * time.Millisecond)
	if writes.Load() != 0 {
		t.Fatal("written while not ready")
	}
	notReady.Store(false)
	s.DerivedReady()
	waitFor(t, "the write DerivedReady asked for", func() bool { return readDerived(s, s.Snapshot()) == "made of generation 2" })
}

// TestRecordsSettled checks that RecordsSettled is closed at once in memory and after a
// start from the checkpoint, and otherwise once the first commit's records have moved
// to the checkpoint: the snapshot then is not the one the commit made.
func TestRecordsSettled(t *testing.T) {
	settled := func(s *Store) bool {
		select {
		case <-s.RecordsSettled():
			return true
		default:
			return false
		}
	}
	if !settled(openMem(t)) {
		t.Error("in memory: not settled")
	}

	dir := t.TempDir()
	s := openDir(t, dir)
	if settled(s) {
		t.Fatal("an empty store settled before its first commit")
	}
	var committed *Snapshot
	s.OnCommit(func(sn *Snapshot) { committed = sn })
	writeSync(t, s, 10, 2, "a", nil)
	select {
	case <-s.RecordsSettled():
	case <-time.After(10 * time.Second):
		t.Fatal("not settled after the first commit")
	}
	if s.Snapshot() == committed || !s.recordsMapped.Load() {
		t.Error("settled before the records moved to the checkpoint")
	}
	s.Close()

	s = openDir(t, dir)
	defer s.Close()
	if !settled(s) {
		t.Error("a start from the checkpoint: not settled")
	}
}

// TestDerivedWritten checks that Written hears of each file written, once it is in
// place.
func TestDerivedWritten(t *testing.T) {
	s := openDir(t, t.TempDir())
	defer s.Close()
	heard := make(chan string, 10)
	s.AddDerived(DerivedFile{
		Name:    "test.derived",
		Write:   func(w io.Writer, sn *Snapshot) error { _, err := fmt.Fprint(w, "g", sn.Generation()); return err },
		Written: func(sn *Snapshot) { heard <- readDerived(s, sn) },
	}, false)
	writeSync(t, s, 10, 2, "a", nil)
	select {
	case got := <-heard:
		if got != "g1" {
			t.Fatalf("read %q when told of the write", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not told of the write")
	}
}

func removeFile(dir, name string) error { return os.Remove(filepath.Join(dir, name)) }

// TestDerivedAfterClose checks that a derived file registered with a closed store is
// not written: nothing is written beside a store after Close.
func TestDerivedAfterClose(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 10, 2, "a", nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int32
	derivedOf(s, false, &writes, nil, nil)
	time.Sleep(100 * time.Millisecond)
	if writes.Load() != 0 {
		t.Fatal("written after Close")
	}
	if _, err := os.Stat(filepath.Join(dir, "test.derived")); !os.IsNotExist(err) {
		t.Fatalf("a file after Close: %v", err)
	}
}
