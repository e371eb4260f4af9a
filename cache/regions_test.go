package cache

import (
	"reflect"
	"runtime"
	"testing"
	"weak"
)

// TestUserRecHoldsNoPointer: a snapshot's list of records is nothing the collector looks
// into, which it is only while a record holds no pointer.
func TestUserRecHoldsNoPointer(t *testing.T) {
	typ := reflect.TypeFor[userRec]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch k := f.Type.Kind(); {
		case k == reflect.Array && f.Type.Elem().Kind() <= reflect.Complex128:
		case k > reflect.Bool && k <= reflect.Complex128:
		default:
			t.Errorf("userRec.%s is a %s", f.Name, f.Type)
		}
	}
}

// TestRegionsOfReplacedRecordsGo: a sync's records are in chunks of the heap; a snapshot
// keeps only the chunks that hold records of its own, so that a chunk whose records
// later syncs all replaced goes with the last snapshot that held it, and one that still
// holds a record stays.
func TestRegionsOfReplacedRecordsGo(t *testing.T) {
	s := openMem(t)
	const users, groups = 400, 3
	sync := func(tag func(i int) string) *Snapshot {
		t.Helper()
		w, err := s.BeginSync(KindUsers, KindGroups)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for i := range groups {
			if err := w.PutGroup(testGroup(i, "")); err != nil {
				t.Fatal(err)
			}
		}
		for i := range users {
			if err := w.PutUser(testUser(i, groups, tag(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		return s.Snapshot()
	}
	first := sync(func(int) string { return "1" })
	kept := first.regions[first.userRec(userID(0)).seg]
	var gone []weak.Pointer[region]
	for _, r := range first.regions {
		if r != nil && r != kept {
			gone = append(gone, weak.Make(r))
		}
	}
	if len(gone) < 2 {
		t.Fatalf("%d users in %d chunks", users, len(gone)+1)
	}
	// Every user but the first changes.
	next := sync(func(i int) string { return map[bool]string{true: "1", false: "2"}[i == 0] })
	for i, r := range next.regions {
		switch {
		case r == nil:
		case r == kept:
		case first.regions.holds(r):
			t.Fatalf("region %d of the first snapshot kept, not holding user 0", i)
		}
	}
	if next.regions[next.userRec(userID(0)).seg] != kept {
		t.Fatal("user 0's record not kept where it was")
	}
	for i := range next.userList {
		if r := &next.userList[i]; r.id(next.regions) != userID(i) || r.user(next.regions).Username == "" {
			t.Fatalf("user %d reads as %q", i, r.id(next.regions))
		}
	}
	first = nil
	runtime.GC()
	runtime.GC()
	for i, w := range gone {
		if w.Value() != nil {
			t.Fatalf("chunk %d of %d, whose records were all replaced, is still alive", i, len(gone))
		}
	}
	runtime.KeepAlive(next)
}

// holds tells whether r is one of rs.
func (rs regions) holds(r *region) bool {
	return int(r.id) < len(rs) && rs[r.id] == r
}
