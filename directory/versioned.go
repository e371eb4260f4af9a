package directory

import (
	"hash/maphash"
	"maps"
	"unsafe"

	"github.com/ldapproxy/ldapproxy/internal/slots"
)

// The structures a tree's versions share. A version is never modified once published;
// the next one (Tree.Apply) copies what a batch changes and shares the rest, so a batch
// costs what it touches, not the size of the tree:
//
//   - the entries sit in an ID table of fixed-size chunks: a batch copies the chunks it
//     writes (and the list of chunk pointers), never the entries of other chunks;
//   - the DN map and each equality index are hash maps split into shards: a batch
//     copies the shards it writes;
//   - a posting list (the IDs one index value finds) is copied the first time a batch
//     changes it, then changed in place for the rest of that batch.
//
// Plain Go maps and slices underneath keep lookups and memory as they were with one
// tree per sync.

// entryID identifies an entry across the versions of a tree: a replaced, renamed or moved
// entry keeps its ID, a new entry gets the next unused one. IDs order search results and
// paged-results cookies resume by them, as slapd's back-mdb resumes by entry ID.
type entryID = uint32

// noEntry is the parent of an entry of a naming context.
const noEntry entryID = 1<<32 - 1

const (
	chunkBits = 8
	chunkSize = 1 << chunkBits
)

// idTable maps entry IDs to entries.
type idTable struct {
	chunks []*idChunk // nil: no entry in that chunk
	next   entryID    // the first ID never used
}

type idChunk struct {
	// An entry is in arr (pos: its index there, plus one) or one of its own (e). A
	// tree read from an image has all its entries in one array, which holds no
	// pointer: its chunks hold positions, not a pointer per entry for the collector to
	// follow; the entries a batch makes are allocations of their own.
	pos  [chunkSize]uint32
	arr  []treeEntry
	e    [chunkSize]*treeEntry
	live int
	// keep holds the segments its entries refer to (segments.go): nil in the chunks
	// of a tree read from an image, whose Tree.keep holds them.
	keep []*segment
}

// at returns entry i of c, or nil.
func (c *idChunk) at(i int) *treeEntry {
	if p := c.pos[i]; p != 0 {
		return &c.arr[p-1]
	}
	return c.e[i]
}

// get returns the entry with ID id in this version, or nil.
func (t *idTable) get(id entryID) *treeEntry {
	c := int(id >> chunkBits)
	if c >= len(t.chunks) || t.chunks[c] == nil {
		return nil
	}
	return t.chunks[c].at(int(id & (chunkSize - 1)))
}

// idWriter changes a copy of an idTable for one batch.
type idWriter struct {
	t     idTable
	owned map[int]bool // chunks copied by this batch
}

func newIDWriter(t idTable) *idWriter {
	w := &idWriter{t: t, owned: map[int]bool{}}
	w.t.chunks = append([]*idChunk(nil), t.chunks...)
	return w
}

// table returns the table written, each chunk it copied holding the segments of its
// entries.
func (w *idWriter) table() idTable {
	for c := range w.owned {
		if ch := w.t.chunks[c]; ch != nil {
			ch.keep = keepOf(ch)
		}
	}
	return w.t
}

// set stores e (nil to remove) under id.
func (w *idWriter) set(id entryID, e *treeEntry) { w.put(id, e, nil, 0) }

// setIn stores entry p of arr under id: arr must be the same array for every entry
// of a chunk, and never change.
func (w *idWriter) setIn(id entryID, arr []treeEntry, p int) { w.put(id, nil, arr, p) }

func (w *idWriter) put(id entryID, e *treeEntry, arr []treeEntry, p int) {
	c := int(id >> chunkBits)
	for c >= len(w.t.chunks) {
		w.t.chunks = append(w.t.chunks, nil)
	}
	ch := w.t.chunks[c]
	if !w.owned[c] {
		n := &idChunk{}
		if ch != nil {
			*n = *ch
		}
		ch, w.t.chunks[c], w.owned[c] = n, n, true
	}
	i := id & (chunkSize - 1)
	was, is := ch.at(int(i)) != nil, e != nil || arr != nil
	switch {
	case !was && is:
		ch.live++
	case was && !is:
		ch.live--
	}
	ch.e[i], ch.pos[i] = e, 0
	if arr != nil {
		if ch.arr == nil {
			ch.arr = arr
		} else if unsafe.SliceData(ch.arr) != unsafe.SliceData(arr) {
			panic("directory: entries of two arrays in one chunk")
		}
		ch.pos[i] = uint32(p) + 1
	}
	if ch.live == 0 {
		w.t.chunks[c] = nil
		delete(w.owned, c)
	}
	if id >= w.t.next {
		w.t.next = id + 1
	}
}

// mapShards is the number of shards of a shardMap: a batch that changes one key copies
// 1/mapShards of the map.
const mapShards = 256

// shardSeed is the hash seed of every shardMap of this process.
var shardSeed = maphash.MakeSeed()

// shardMap is a map from strings split into shards, shared between versions.
type shardMap[V any] struct {
	shards []map[string]V // nil: nothing but base
	// base, when set, holds the keys of a tree read from its image: an index's keys and
	// posting lists (baseTable, V []entryID), read in place in the image's pages, or
	// the canonical DNs of its entries (dnTable, V entryID). The shards hold only what
	// versions changed since; tombstone(V) there is a key removed from base.
	base baseMap[V]
}

// baseMap is the read-only base of a shardMap.
type baseMap[V any] interface {
	get(k string) (V, bool)
	each(fn func(k string, v V))
}

func shardOf(k string) int { return int(maphash.String(shardSeed, k) % mapShards) }

func (m *shardMap[V]) get(k string) (V, bool) {
	var zero V
	if m == nil {
		return zero, false
	}
	if m.shards != nil {
		if v, ok := m.shards[shardOf(k)][k]; ok {
			if m.base != nil && removed(v) {
				return zero, false
			}
			return v, true
		}
	}
	if m.base != nil {
		if v, ok := m.base.get(k); ok {
			return v, true
		}
	}
	return zero, false
}

// removed reports whether v marks a key of base as removed: tombstone(V).
func removed[V any](v V) bool {
	switch x := any(v).(type) {
	case []entryID:
		return x == nil
	case entryID:
		return x == noEntry
	}
	return false
}

// tombstone is the value that marks a key of base as removed: a nil posting list, or
// noEntry.
func tombstone[V any]() V {
	var v V
	if p, ok := any(&v).(*entryID); ok {
		*p = noEntry
	}
	return v
}

// each calls fn with every key and value of the map, in no order.
func (m *shardMap[V]) each(fn func(k string, v V)) {
	if m == nil {
		return
	}
	for _, sh := range m.shards {
		for k, v := range sh {
			if m.base == nil || !removed(v) {
				fn(k, v)
			}
		}
	}
	if m.base != nil {
		m.base.each(func(k string, v V) {
			if m.shards != nil {
				if _, changed := m.shards[shardOf(k)][k]; changed {
					return
				}
			}
			fn(k, v)
		})
	}
}

// shardWriter changes a copy of a shardMap for one batch.
type shardWriter[V any] struct {
	m     shardMap[V]
	owned [mapShards]bool
}

func newShardWriter[V any](m *shardMap[V]) *shardWriter[V] {
	w := &shardWriter[V]{}
	w.m.shards = make([]map[string]V, mapShards)
	if m != nil {
		if m.shards != nil {
			copy(w.m.shards, m.shards)
		}
		w.m.base = m.base
	}
	return w
}

func (w *shardWriter[V]) get(k string) (V, bool) { return w.m.get(k) }

// shard returns the writable shard of k.
func (w *shardWriter[V]) shard(k string) map[string]V {
	i := shardOf(k)
	if !w.owned[i] {
		n := maps.Clone(w.m.shards[i])
		if n == nil {
			n = map[string]V{}
		}
		w.m.shards[i], w.owned[i] = n, true
	}
	return w.m.shards[i]
}

func (w *shardWriter[V]) set(k string, v V) { w.shard(k)[k] = v }

func (w *shardWriter[V]) delete(k string) {
	if _, ok := w.get(k); !ok {
		return
	}
	if w.m.base != nil {
		if _, inBase := w.m.base.get(k); inBase {
			w.shard(k)[k] = tombstone[V]()
			return
		}
	}
	delete(w.shard(k), k)
}

// done returns the map the batch made.
func (w *shardWriter[V]) done() *shardMap[V] { return &w.m }

// baseTable is an index of a tree read from its image, laid out in the image's bytes
// (image.go): records (the key or its place in a source, uvarint number of IDs, padding
// to a multiple of 4, the IDs as little-endian uint32s; or, for a list of one entry,
// listKeyEntry or listOne and the entry's position, whose ID is the list) read in place, found through an
// open-addressing hash table of slots, each 0 (empty) or 1 + the offset of a record.
// ReadTree checks every record and places it in the slots, by this process's seeded
// hash (that of the shards): a directory's values cannot be chosen to collide.
type baseTable struct {
	data    string      // the image
	entries []treeEntry // the image's entries, whose sources hold most keys
	live    []entryID   // the IDs of the image's entries, in order (listRun); nil when none
	// slots holds, per key, 1 + the offset of its record in the low posBits bits and
	// bits of its hash above (slots.Tag); two thirds of them full at most.
	slots   []uint32
	posBits uint
	n       int // keys
}

// newBaseTable makes the table of keys records of an image of size bytes.
func newBaseTable(data string, entries []treeEntry, live []entryID, keys int) *baseTable {
	return &baseTable{data: data, entries: entries, live: live, slots: make([]uint32, slots.ForTagged(keys)),
		posBits: slots.PosBits(len(data)), n: keys}
}

// place puts the record at off, whose key is k, in the table; false when a record of
// the same key is there.
func (b *baseTable) place(k string, off int) bool {
	size, h := len(b.slots), imageHash(k)
	tag, mask := slots.Tag(h, b.posBits), uint32(1)<<b.posBits-1
	i := slots.Home(h, size)
	for s := b.slots[i]; s != 0; s = b.slots[i] {
		if s&^mask == tag {
			if old, _ := b.record(int(s&mask - 1)); old == k {
				return false
			}
		}
		i = slots.Next(i, size)
	}
	b.slots[i] = tag | uint32(off+1)
	return true
}

// imageHash is the hash that places keys in a baseTable's slots.
func imageHash(k string) uint64 { return maphash.String(shardSeed, k) }

func (b *baseTable) get(k string) ([]entryID, bool) {
	size, h := len(b.slots), imageHash(k)
	tag, mask := slots.Tag(h, b.posBits), uint32(1)<<b.posBits-1
	for i := slots.Home(h, size); ; i = slots.Next(i, size) {
		s := b.slots[i]
		if s == 0 {
			return nil, false
		}
		if s&^mask != tag {
			continue
		}
		if key, l := b.record(int(s&mask - 1)); key == k {
			return l, true
		}
	}
}

func (b *baseTable) each(fn func(k string, l []entryID)) {
	mask := uint32(1)<<b.posBits - 1
	for _, s := range b.slots {
		if s != 0 {
			fn(b.record(int(s&mask - 1)))
		}
	}
}

// record reads the record at off, checked by ReadTree: the list is a view of the image,
// its capacity its length (a batch copies a list before it changes it).
func (b *baseTable) record(off int) (string, []entryID) {
	x, p := uvar(b.data, off)
	var key string
	e := -1
	switch x & 3 {
	case keyBytes:
		key, p = b.data[p:p+x>>2], p+x>>2
	default: // keySource
		var i int
		e, p = uvar(b.data, p)
		i, p = uvar(b.data, p)
		key = b.entries[e].src()[i : i+x>>2]
	}
	c, p := uvar(b.data, p)
	switch c {
	case listOne:
		e, _ = uvar(b.data, p)
		fallthrough
	case listKeyEntry:
		// The entry's own ID is the list: its struct is the read tree's, never changed.
		return key, unsafe.Slice(&b.entries[e].id, 1)
	case listRun:
		from, q := uvar(b.data, p)
		n, _ := uvar(b.data, q)
		return key, b.live[from : from+n : from+n]
	}
	c -= listIDs - 2
	p = (p + 3) &^ 3
	return key, unsafe.Slice((*entryID)(unsafe.Pointer(unsafe.StringData(b.data[p:]))), c)
}

// dnTable maps the canonical DNs of a tree read from its image to their entries: an
// open-addressing hash table of slots (package slots), each 0 (empty) or 1 + a
// position in entries, whose ndn is the key (a slice of the image), in the low posBits
// bits, with bits of the key's hash above (slots.Tag). 4 bytes a slot, three for every
// two entries: 6 bytes per entry, where a map held a string header and an ID per entry.
type dnTable struct {
	entries []treeEntry // the read tree's, never changed: versions copy what they change
	slots   []uint32
	posBits uint
}

// newDNTable places entries in a dnTable; false when two have the same canonical DN.
func newDNTable(entries []treeEntry) (*dnTable, bool) {
	size := slots.ForTagged(len(entries))
	d := &dnTable{entries: entries, slots: make([]uint32, size), posBits: slots.PosBits(len(entries))}
	mask := uint32(1)<<d.posBits - 1
	for pos := range entries {
		k := entries[pos].canon()
		h := imageHash(k)
		tag := slots.Tag(h, d.posBits)
		i := slots.Home(h, size)
		for s := d.slots[i]; s != 0; s = d.slots[i] {
			if s&^mask == tag && entries[s&mask-1].canon() == k {
				return nil, false
			}
			i = slots.Next(i, size)
		}
		d.slots[i] = tag | uint32(pos+1)
	}
	return d, true
}

func (d *dnTable) get(k string) (entryID, bool) {
	size, h := len(d.slots), imageHash(k)
	tag, mask := slots.Tag(h, d.posBits), uint32(1)<<d.posBits-1
	for i := slots.Home(h, size); ; i = slots.Next(i, size) {
		s := d.slots[i]
		if s == 0 {
			return noEntry, false
		}
		if s&^mask != tag {
			continue
		}
		if e := &d.entries[s&mask-1]; e.canon() == k {
			return e.id, true
		}
	}
}

func (d *dnTable) each(fn func(k string, id entryID)) {
	for i := range d.entries {
		fn(d.entries[i].canon(), d.entries[i].id)
	}
}
