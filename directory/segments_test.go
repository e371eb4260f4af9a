package directory

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// TestEntryHoldsNoPointer: a treeEntry is numbers only, so that the collector never
// looks into the arrays of entries.
func TestEntryHoldsNoPointer(t *testing.T) {
	typ := reflect.TypeFor[treeEntry]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.Uint16, reflect.Uint32, reflect.Int32:
		default:
			t.Errorf("treeEntry.%s is a %s", f.Name, f.Type)
		}
	}
}

// liveSegments returns the number of segment slots in use.
func liveSegments() int {
	segs.mu.Lock()
	defer segs.mu.Unlock()
	return segs.used - len(segs.free)
}

// TestSegmentsReleased: the segments of a tree built and changed in memory are
// released once no version refers to them, and batches that replace most of the
// entries of a build or an earlier batch leave about four times what the latest
// version uses in arenas at most (compaction), however many batches ran.
func TestSegmentsReleased(t *testing.T) {
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The segments of earlier tests' trees are released by cleanups that run after a
	// collection, on their own goroutine: count once that has settled, or their
	// release during the build hides the build's own.
	before := -1
	waitFor("segments still being released after 10 s", func() bool {
		n := liveSegments()
		settled := n == before
		before = n
		return settled
	})

	const users = 3000
	entries := benchEntries(users)
	for i, e := range entries {
		entries[i] = withSource(e)
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	if built := liveSegments(); built <= before {
		t.Fatalf("a tree built took no segments (%d before, %d after)", before, built)
	}
	// Every user but one in twenty is replaced, twice over, in batches of 100: the
	// build's arenas keep a twentieth of what they were written for, the first
	// round's nothing.
	for round := range 2 {
		var changes []Change
		for i := range users {
			if i%20 == 0 {
				continue
			}
			e := entries[3+i] // the users come after the three containers
			changes = append(changes, Change{DN: e.DN, Entry: withSource(entry(e.DN, "objectClass: inetOrgPerson",
				fmt.Sprintf("uid: user%04d", i), "cn: changed", "sn: x", fmt.Sprintf("description: round %d", round)))})
			if len(changes) == 100 {
				tree = apply(t, tree, changes...)
				changes = nil
			}
		}
		tree = apply(t, tree, changes...)
	}
	// Each arena and list of sources the latest version keeps is used by its entries
	// for a quarter of what was written into it at least.
	used := map[*segment]int64{}
	for _, c := range tree.entries.chunks {
		if c == nil {
			continue
		}
		for i := range chunkSize {
			e := c.at(i)
			if e == nil {
				continue
			}
			if h := handle(e.metaSeg); h.size > 0 {
				used[h] += int64(e.metaLen) + int64(len(e.extRefs()))
			}
			if e.extFlags&entrySrcListed != 0 {
				used[handle(e.srcSeg)]++ // a list of sources counts sources
			}
		}
		for _, h := range c.keep {
			if h.size > 0 {
				used[h] += 0 // kept for nothing: an error below
			}
		}
	}
	for h, n := range used {
		if n*4 < h.size {
			t.Errorf("an arena of %d bytes is kept for %d", h.size, n)
		}
	}
	runtime.KeepAlive(tree)
	tree = nil
	waitFor(fmt.Sprintf("segments of a tree no longer referred to kept: %d in use, %d before it", liveSegments(), before),
		func() bool { return liveSegments() <= before })
}
