package cache

import (
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/view"
)

// TestRecordMappings checks that once the records moved to the checkpoint, and after a
// start from it, every source the snapshot hands out is a slice of one of
// RecordMappings; and that a store in memory has none.
func TestRecordMappings(t *testing.T) {
	if m := openMem(t).RecordMappings(); m != nil {
		t.Errorf("in memory: %d mappings", len(m))
	}
	inMappings := func(s *Store) {
		t.Helper()
		sources := s.Snapshot().Sources()
		if len(sources) == 0 {
			t.Fatal("no sources")
		}
		for _, src := range sources {
			found := false
			for _, m := range s.RecordMappings() {
				if _, ok := view.Offset(src, m); ok {
					found = true
				}
			}
			if !found {
				t.Fatalf("a source in no mapping (%d mappings)", len(s.RecordMappings()))
			}
		}
	}
	dir := t.TempDir()
	s := openDir(t, dir)
	if m := s.RecordMappings(); m != nil {
		t.Errorf("before the first checkpoint: %d mappings", len(m))
	}
	writeSync(t, s, 10, 2, "a", nil)
	select {
	case <-s.RecordsSettled():
	case <-time.After(10 * time.Second):
		t.Fatal("not settled after the first commit")
	}
	inMappings(s)
	s.Close()

	s = openDir(t, dir)
	defer s.Close()
	inMappings(s)
}
