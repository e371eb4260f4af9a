package cache

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/directory"
)

// Sizes of the figures in issue 3: a directory of 100,000 users and 2,000
// groups.
const (
	benchUsers  = 100_000
	benchGroups = 2_000
)

// BenchmarkFirstSync writes a first sync of 100,000 users and 2,000 groups to
// a store on disk, the users made one at a time as the syncer streams them.
// It reports the peak RSS of the process (run it alone: -bench FirstSync
// -benchtime 1x) and the time a restart takes to load the result.
func BenchmarkFirstSync(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		s := openDir(b, dir)
		b.StartTimer()
		writeSync(b, s, benchUsers, benchGroups, "1", nil)
		b.StopTimer()
		b.ReportMetric(peakRSS(b), "peak-RSS-MiB")
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		// A start from the checkpoint Close wrote, then one reading Badger.
		for _, from := range []string{"checkpoint", "badger"} {
			if from == "badger" {
				if err := os.Remove(filepath.Join(dir, checkpointName)); err != nil {
					b.Fatal(err)
				}
			}
			start := time.Now()
			s = openDir(b, dir)
			b.ReportMetric(time.Since(start).Seconds(), "open-"+from+"-s")
			if s.fromCheckpoint != (from == "checkpoint") {
				b.Fatalf("opened from the checkpoint: %v", s.fromCheckpoint)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-"+from+"-MiB")
			s.Close()
		}
		b.StartTimer()
	}
}

// BenchmarkUnchangedSync repeats a sync of 100,000 users and 2,000 groups in
// which nothing changed, and reports the bytes it handed to Badger.
func BenchmarkUnchangedSync(b *testing.B) {
	s := openDir(b, b.TempDir())
	defer s.Close()
	writeSync(b, s, benchUsers, benchGroups, "1", nil)
	before := s.written.Load()
	n := 0
	for b.Loop() {
		writeSync(b, s, benchUsers, benchGroups, "1", nil)
		n++
	}
	b.ReportMetric(float64(s.written.Load()-before)/float64(n), "written-B/op")
	b.ReportMetric(peakRSS(b), "peak-RSS-MiB")
}

// BenchmarkSnapshotIndexes builds the in-memory indexes of 100,000 users and 2,000
// groups, as a first sync's commit and a start do.
func BenchmarkSnapshotIndexes(b *testing.B) {
	users := make(map[string]*userRec, benchUsers)
	a := newArena(nil)
	for i := range benchUsers {
		u := testUser(i, benchGroups, "")
		if err := prepareUser(u); err != nil {
			b.Fatal(err)
		}
		r, err := a.put(u.ID, string(appendUser(nil, u)), 1, directory.NormalizeDN)
		if err != nil {
			b.Fatal(err)
		}
		users[u.ID] = r
	}
	groups := make(map[string]*groupRec, benchGroups)
	for i := range benchGroups {
		g := &Group{ID: groupID(i), DN: fmt.Sprintf("cn=group%04d,ou=groups,dc=example,dc=org", i), Name: fmt.Sprintf("group%04d", i)}
		r, err := newGroupRec(g.ID, string(appendGroup(nil, g)), 1, directory.NormalizeDN)
		if err != nil {
			b.Fatal(err)
		}
		groups[g.ID] = r
	}
	for _, c := range []struct {
		name     string
		parallel int
	}{{"one-goroutine", math.MaxInt}, {"two-goroutines", parallelIndexing}} {
		b.Run(c.name, func(b *testing.B) {
			defer func(p int) { parallelIndexing = p }(parallelIndexing)
			parallelIndexing = c.parallel
			for b.Loop() {
				newSnapshot(1, users, a.rs, groups, directory.NormalizeDN)
			}
		})
	}
}

// BenchmarkOpen opens a store of 100,000 users and 2,000 groups from its checkpoint:
// the start of a proxy whose store is on disk.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s := openDir(b, dir)
	writeSync(b, s, benchUsers, benchGroups, "1", nil)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s := openDir(b, dir)
		if !s.fromCheckpoint {
			b.Fatal("not opened from the checkpoint")
		}
		s.Close()
	}
}

// sssdUser is user i as a sync limited to the attributes SSSD reads stores it: its
// upstream attributes hold most of its fields, not its ID (entryUUID).
func sssdUser(i, numGroups int) *User {
	u := testUser(i, numGroups, "")
	u.Attributes = map[string]any{"given_name": "Given" + u.Username, "surname": "Surname" + u.Username}
	u.Upstream = []Attribute{
		{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
		{Name: "uid", Values: []string{u.Username}},
		{Name: "cn", Values: []string{u.Name}},
		{Name: "uidNumber", Values: []string{fmt.Sprint(10000 + i)}},
		{Name: "gidNumber", Values: []string{fmt.Sprint(20000 + i%numGroups)}},
		{Name: "homeDirectory", Values: []string{"/home/" + u.Username}},
		{Name: "loginShell", Values: []string{"/bin/bash"}},
		{Name: "gecos", Values: []string{u.Name}},
		{Name: "mail", Values: []string{u.Email}},
		{Name: "modifyTimestamp", Values: []string{"20240101000000Z"}},
	}
	return u
}

// BenchmarkSnapshotHeap reports the live heap that a snapshot of 100,000 users (their
// upstream attributes limited to the ones SSSD reads) and 2,000 groups holds once read
// from its checkpoint, as a start does: the records' index entries, the indexes and the
// member lists (the records themselves are the file's pages).
func BenchmarkSnapshotHeap(b *testing.B) {
	s, gen, commit := sssdCheckpoint(b)
	var before, after runtime.MemStats
	var keep *Snapshot
	for b.Loop() {
		keep = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		recs, err := s.readCheckpoint(gen, commit)
		if err != nil {
			b.Fatal(err)
		}
		keep = newSnapshotSorted(gen, nil, recs.userList, recs.regions, recs.groups, s.normDN)
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	live := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ReportMetric(live/benchUsers, "heap-B/user")
	b.ReportMetric(live/(1<<20), "heap-MiB")
	runtime.KeepAlive(keep)
}

// sssdCheckpoint writes a store of 100,000 users (sssdUser) and 2,000 groups to a
// directory of its own and closes it, which writes its checkpoint. It returns a Store
// that only reads that checkpoint (no Badger open, so that nothing but what the caller
// reads comes or goes) and the generation and commit ID of the checkpoint.
func sssdCheckpoint(b *testing.B) (*Store, uint64, [16]byte) {
	dir := b.TempDir()
	s := openDir(b, dir)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchGroups {
		if err := w.PutGroup(testGroup(i, "")); err != nil {
			b.Fatal(err)
		}
	}
	for i := range benchUsers {
		if err := w.PutUser(sssdUser(i, benchGroups)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	sn := s.Snapshot()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return &Store{dir: dir, normDN: directory.NormalizeDN}, sn.gen, sn.commit
}

// BenchmarkSnapshotGC reports what a garbage collection costs with a snapshot of 100,000
// users (sssdUser) and 2,000 groups live: read from its checkpoint, as a start makes it
// (checkpoint), and with its records on the heap, as a sync makes them before they move
// to the checkpoint (heap); none is the test process without one. Each op is one forced
// collection; gc-CPU-ms is the median CPU time of the collector's (runtime/metrics'
// /cpu/classes/gc/total, which counts the idle cores' mark workers too), wall-ms the
// median time runtime.GC took.
func BenchmarkSnapshotGC(b *testing.B) {
	s, gen, commit := sssdCheckpoint(b)
	fromCheckpoint := func() *Snapshot {
		recs, err := s.readCheckpoint(gen, commit)
		if err != nil {
			b.Fatal(err)
		}
		return newSnapshotSorted(gen, nil, recs.userList, recs.regions, recs.groups, s.normDN)
	}
	run := func(b *testing.B, keep *Snapshot) {
		sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
		var cpu, wall []float64
		runtime.GC()
		for b.Loop() {
			metrics.Read(sample)
			before, start := sample[0].Value.Float64(), time.Now()
			runtime.GC()
			wall = append(wall, float64(time.Since(start))/1e6)
			metrics.Read(sample)
			cpu = append(cpu, (sample[0].Value.Float64()-before)*1e3)
		}
		slices.Sort(cpu)
		slices.Sort(wall)
		b.ReportMetric(cpu[len(cpu)/2], "gc-CPU-ms")
		b.ReportMetric(wall[len(wall)/2], "wall-ms")
		runtime.KeepAlive(keep)
	}
	b.Run("none", func(b *testing.B) { run(b, nil) })
	b.Run("checkpoint", func(b *testing.B) { run(b, fromCheckpoint()) })
	b.Run("heap", func(b *testing.B) {
		mem := openMem(b)
		w, err := mem.BeginSync(KindUsers, KindGroups)
		if err != nil {
			b.Fatal(err)
		}
		sn := fromCheckpoint()
		sn.Groups(func(g *Group) bool { return w.PutGroup(g) == nil })
		sn.Users(func(u *User) bool { return w.PutUser(u) == nil })
		if err := w.Commit(); err != nil {
			b.Fatal(err)
		}
		sn = nil // its records are the checkpoint's: only the heap's copies stay
		keep := mem.Snapshot()
		if err := mem.Close(); err != nil {
			b.Fatal(err)
		}
		run(b, keep)
	})
}

// BenchmarkSnapshotLookups finds users of a snapshot of 100,000 users as a bind does (by
// login name, by DN) and by ID, without decoding them, and lists a group's members.
func BenchmarkSnapshotLookups(b *testing.B) {
	users := make(map[string]*userRec, benchUsers)
	a := newArena(nil)
	for i := range benchUsers {
		u := sssdUser(i, benchGroups)
		if err := prepareUser(u); err != nil {
			b.Fatal(err)
		}
		r, err := a.put(u.ID, string(appendUser(nil, u)), 1, directory.NormalizeDN)
		if err != nil {
			b.Fatal(err)
		}
		users[u.ID] = r
	}
	groups := make(map[string]*groupRec, benchGroups)
	for i := range benchGroups {
		g := testGroup(i, "")
		r, err := newGroupRec(g.ID, string(appendGroup(nil, g)), 1, directory.NormalizeDN)
		if err != nil {
			b.Fatal(err)
		}
		groups[g.ID] = r
	}
	sn := newSnapshot(1, users, a.rs, groups, directory.NormalizeDN)
	b.Run("login-name", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if sn.byLoginName(fmt.Sprintf("user%06d", i%benchUsers)) == nil {
				b.Fatal("not found")
			}
			i += 7919
		}
	})
	b.Run("bind-dn", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if sn.byBindDN(fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=org", i%benchUsers)) == nil {
				b.Fatal("not found")
			}
			i += 7919
		}
	})
	b.Run("id", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if sn.userRec(userID(i%benchUsers)) == nil {
				b.Fatal("not found")
			}
			i += 7919
		}
	})
	b.Run("members", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if u, _ := sn.Members(groupID(i % benchGroups)); len(u) == 0 {
				b.Fatal("no members")
			}
			i += 7
		}
	})
}
