package cache

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/ldapproxy/ldapproxy/directory"
)

// badgerResident is the resident memory, in bytes, of the files of Badger mapped from dir.
func badgerResident(t *testing.T, dir string) int64 {
	t.Helper()
	return residentOf(t, func(path string) bool {
		ext := filepath.Ext(path)
		return filepath.Dir(path) == dir && (ext == ".sst" || ext == ".vlog" || ext == ".mem")
	})
}

// residentOf is the resident memory, in bytes, of the mapped files whose paths match.
func residentOf(t *testing.T, match func(path string) bool) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if head, path, ok := mapsLine(sc.Text()); ok && strings.Contains(head[0], "-") && !strings.HasSuffix(head[0], ":") {
			in = match(path)
			continue
		}
		fields := strings.Fields(sc.Text())
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// TestBadgerPagesReleased: what a sync wrote through Badger's mappings stops counting
// in the process's resident memory once released, and the store reads the same after.
func TestBadgerPagesReleased(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	defer s.Close()
	releasedAfterSync(t, s, dir, s.releasePages)
	// The store goes on: another sync commits and reads back.
	writeSync(t, s, 5000, 20, "b", nil)
	u, ok := s.Snapshot().UserByID(userID(4999))
	if !ok || u.Attributes["tag"] != "b" {
		t.Fatalf("user after the second sync: %+v", u)
	}
}

// TestBadgerPagesReleasedSpacedDir: the pages of a store whose directory's name holds
// runs of spaces are released too (the mapping list names its files as they are).
func TestBadgerPagesReleasedSpacedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store  with\tgaps")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openDir(t, dir)
	defer s.Close()
	releasedAfterSync(t, s, dir, func() {
		if n := releaseBadgerPages(mappingDir(dir)); n == 0 {
			t.Fatal("no mapping of the store's files released")
		}
	})
}

// releasedAfterSync syncs users into s (at dir) and checks that release takes the
// resident pages of Badger's mappings down to a quarter at most. 10,000 users: with
// memtables of 2 MB, 5,000 left less than the 1 MiB resident that the check needs.
func releasedAfterSync(t *testing.T, s *Store, dir string, release func()) {
	t.Helper()
	writeSync(t, s, 10000, 20, "a", nil)
	mdir := mappingDir(dir)
	before := badgerResident(t, mdir)
	if before < 1<<20 {
		t.Fatalf("Badger's mappings hold %d bytes after the sync; the test needs more to mean anything", before)
	}
	release()
	after := badgerResident(t, mdir)
	t.Logf("Badger's resident pages: %d KiB before, %d KiB after", before>>10, after>>10)
	if after > before/4 {
		t.Fatalf("%d bytes still resident after the release, of %d", after, before)
	}
}

// TestCheckpointPagesDropped: a store opened from its checkpoint keeps none of the pages
// its check and indexes read resident; the records it serves come back as read.
func TestCheckpointPagesDropped(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 5000, 20, "a", nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if !s.fromCheckpoint {
		t.Fatal("not opened from the checkpoint")
	}
	path := filepath.Join(mappingDir(dir), checkpointName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := func() int64 { return residentOf(t, func(p string) bool { return p == path }) }
	after := ckpt()
	sn := s.Snapshot()
	for i := range 5000 {
		if _, ok := sn.UserByID(userID(i)); !ok {
			t.Fatalf("user %d missing", i)
		}
	}
	read := ckpt()
	t.Logf("checkpoint of %d KiB: %d KiB resident after Open, %d KiB after every user was read", fi.Size()>>10, after>>10, read>>10)
	if after > fi.Size()/4 {
		t.Fatalf("%d bytes of the checkpoint resident after Open, of %d", after, fi.Size())
	}
	if read < fi.Size()/2 {
		t.Fatalf("%d bytes resident after reading every user, of %d: the measure sees nothing", read, fi.Size())
	}
}

// mappingsOf is the number of the process's mappings of the file at path.
func mappingsOf(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps:", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if _, p, ok := mapsLine(sc.Text()); ok && p == path {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCheckpointUnmappedWhenOpenFails: an Open that maps the checkpoint and then fails
// (here on a sync status it cannot read) leaves no mapping of it behind: a process that
// retries Open must not gather one per try.
func TestCheckpointUnmappedWhenOpenFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(mappingDir(dir), checkpointName)
	s := openDir(t, dir)
	writeSync(t, s, 50, 5, "a", nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The measure sees the mapping of a start from the checkpoint.
	before := mappingsOf(t, path)
	s = openDir(t, dir)
	if !s.fromCheckpoint {
		t.Fatal("not opened from the checkpoint")
	}
	if n := mappingsOf(t, path); n != before+1 {
		t.Fatalf("%d mappings of the checkpoint after a start from it, %d before", n, before)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(prefixStatus+KindUsers), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	before = mappingsOf(t, path)
	for range 3 {
		if s, err := Open(Config{Path: dir}, testLogger(t), directory.NormalizeDN); err == nil {
			s.Close()
			t.Fatal("Open read a store whose sync status is not JSON")
		} else if !strings.Contains(err.Error(), "sync status") {
			t.Fatalf("Open: %v, want the sync status's error", err)
		}
	}
	if n := mappingsOf(t, path); n != before {
		t.Fatalf("%d mappings of the checkpoint after three failed starts, %d before", n, before)
	}
}
