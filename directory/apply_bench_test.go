package directory

import (
	"fmt"
	"runtime"
	"testing"
)

// bigTree is the served directory of 100,000 users in 50 groups that the apply
// benchmarks change, built once.
var bigTree = struct {
	entries []*Entry
	tree    *Tree
}{}

func bigTreeOnce(b *testing.B) ([]*Entry, *Tree) {
	if bigTree.tree == nil {
		bigTree.entries = benchEntries(100000)
		t, err := NewTree([]string{testBase}, bigTree.entries)
		if err != nil {
			b.Fatal(err)
		}
		bigTree.tree = t
	}
	return bigTree.entries, bigTree.tree
}

// syncBatch is what a sync of n changes hands the tree: a quarter each of users added,
// deleted, modified (mail and group) and renamed.
func syncBatch(entries []*Entry, n, round int) []Change {
	var out []Change
	user := func(name string, i int) *Entry {
		return entry("uid="+name+",ou=people,"+testBase, "objectClass: top", "objectClass: person",
			"objectClass: organizationalPerson", "objectClass: inetOrgPerson", "uid: "+name, "cn: User "+name,
			"sn: "+name, fmt.Sprintf("mail: %s.%d@example.org", name, round),
			fmt.Sprintf("memberOf: cn=group%02d,ou=groups,%s", (i+round)%50, testBase))
	}
	for i := range n {
		u := entries[3+(i*997+round*31)%(len(entries)-53)] // a user
		switch i % 4 {
		case 0:
			out = append(out, Change{Entry: user(fmt.Sprintf("new%d-%d", round, i), i)})
		case 1:
			out = append(out, Change{DN: u.DN})
		case 2:
			out = append(out, Change{DN: u.DN, Entry: user(firstValue(u, "uid"), i)})
		default:
			out = append(out, Change{DN: u.DN, Entry: user(fmt.Sprintf("renamed%d-%d", round, i), i)})
		}
	}
	return out
}

func firstValue(e *Entry, attr string) string {
	for _, a := range e.Attributes {
		if a.Name == attr {
			return string(a.Values[0])
		}
	}
	return ""
}

// BenchmarkApply applies a batch of 1 and of 100 changes to the tree of 100,000 users:
// what a sync that changed that much costs the served directory.
func BenchmarkApply(b *testing.B) {
	entries, tree := bigTreeOnce(b)
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			batches := make([][]Change, 16)
			for i := range batches {
				batches[i] = syncBatch(entries, n, i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := tree.Apply(batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNewTree100k builds the tree of 100,000 users: what every sync cost before
// Apply. Run with -benchtime 3x.
func BenchmarkNewTree100k(b *testing.B) {
	entries, _ := bigTreeOnce(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewTree([]string{testBase}, entries); err != nil {
			b.Fatal(err)
		}
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTreeMemory reports the live heap of the tree of 100,000 users (entries
// included: the tree keeps their values) as NewTree builds it, and after 200 batches of
// 10 changes have been applied one after the other, the earlier versions dropped.
// Run with -benchtime 1x. Per entry: what the entries handed to NewTree weigh
// (entries-B/entry) and what the tree with the values it keeps of them weighs
// (tree-B/entry).
func BenchmarkTreeMemory(b *testing.B) {
	for b.Loop() {
		before := liveHeap()
		entries := benchEntries(100000)
		n := float64(len(entries))
		given := liveHeap()
		tree, err := NewTree([]string{testBase}, entries)
		if err != nil {
			b.Fatal(err)
		}
		entries = nil
		built := liveHeap()
		for round := range 200 {
			var live []*Entry
			tree.Search(b.Context(), searchRequest(b, "ou=people,"+testBase, ScopeOne, "(uid=user*)").Search, nil, func(e *Entry) error {
				if len(live) < 20000 {
					live = append(live, cloneEntry(e))
				}
				return nil
			})
			if tree, err = tree.Apply(syncBatch(live, 10, round)); err != nil {
				b.Fatal(err)
			}
		}
		applied := liveHeap()
		b.ReportMetric(float64(given-before)/n, "entries-B/entry")
		b.ReportMetric(float64(built-before)/n, "tree-B/entry")
		b.ReportMetric(float64(built-before)/(1<<20), "built-MiB")
		b.ReportMetric(float64(applied-before)/(1<<20), "applied-MiB")
		runtime.KeepAlive(tree)
	}
}
