package directory

import (
	"fmt"
	"testing"
)

// TestDNTableVersions: the DN table of a read tree answers through the versions made
// from it: a DN removed is gone (and not listed), one added or moved back is found.
func TestDNTableVersions(t *testing.T) {
	tes := make([]treeEntry, 1000)
	for i := range tes {
		dn := fmt.Sprintf("uid=u%d,dc=x", i)
		tes[i] = treeEntry{id: entryID(i * 2)}
		setEntry(&tes[i], "x", dn, dn)
	}
	base, ok := newDNTable(tes)
	if !ok {
		t.Fatal("newDNTable refused distinct DNs")
	}
	m := &shardMap[entryID]{base: base}
	for i := range tes {
		if id, ok := m.get(tes[i].canon()); !ok || id != tes[i].id {
			t.Fatalf("%s: %d %v", tes[i].canon(), id, ok)
		}
	}
	if _, ok := m.get("uid=nobody,dc=x"); ok {
		t.Fatal("found a DN never placed")
	}
	w := newShardWriter(m)
	w.delete("uid=u7,dc=x")
	w.set("uid=new,dc=x", 5000)
	v1 := w.done()
	if _, ok := v1.get("uid=u7,dc=x"); ok {
		t.Fatal("a removed DN is still found")
	}
	if id, ok := v1.get("uid=new,dc=x"); !ok || id != 5000 {
		t.Fatalf("added DN: %d %v", id, ok)
	}
	if id, ok := m.get("uid=u7,dc=x"); !ok || id != 14 {
		t.Fatalf("the version before lost the DN: %d %v", id, ok)
	}
	n := 0
	v1.each(func(k string, id entryID) {
		n++
		if k == "uid=u7,dc=x" || id == noEntry {
			t.Fatalf("each lists %q %d", k, id)
		}
	})
	if n != 1000 {
		t.Fatalf("each lists %d keys, want 1000", n)
	}
	w2 := newShardWriter(v1)
	w2.set("uid=u7,dc=x", 14)
	if id, ok := w2.done().get("uid=u7,dc=x"); !ok || id != 14 {
		t.Fatalf("DN placed again: %d %v", id, ok)
	}
	setEntry(&tes[3], "x", tes[2].dn(), tes[2].canon())
	if _, ok := newDNTable(tes); ok {
		t.Fatal("newDNTable took two entries with one DN")
	}
}
