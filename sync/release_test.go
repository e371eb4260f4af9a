package sync_test

import (
	"sync/atomic"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// A full read of many objects hands its garbage back to the system when it ends; a
// smaller one leaves it to the runtime. Not parallel: the setting is the package's.
func TestFullReadReleasesGarbage(t *testing.T) {
	e := newEnv(t, slapdtest.Options{})
	s := e.syncer(config(t, nil), nil)
	var released atomic.Int32
	restore := ldapsync.SetReleaseGarbage(1<<30, func() { released.Add(1) })
	defer restore()
	e.run(s)
	if n := released.Load(); n != 0 {
		t.Fatalf("a read below the bound released its garbage %d times", n)
	}
	read := 0
	for _, k := range []string{cache.KindUsers, cache.KindGroups} {
		st := e.status(k)
		read += st.Objects + st.Skipped
	}
	if read == 0 {
		t.Fatal("the sync read nothing")
	}
	ldapsync.SetReleaseGarbage(read+1, func() { released.Add(1) })
	e.run(s)
	if n := released.Load(); n != 0 {
		t.Fatalf("a read of %d objects, one below the bound, released its garbage %d times", read, n)
	}
	ldapsync.SetReleaseGarbage(read, func() { released.Add(1) })
	e.run(s)
	if n := released.Load(); n != 1 {
		t.Fatalf("a read of %d objects, at the bound, released its garbage %d times; want once", read, n)
	}
}
