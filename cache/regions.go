package cache

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// region is a block of memory that users' records are in: the checkpoint's mapped file,
// or a chunk of heap that a writer (a sync, a batch, a start that reads Badger) put the
// records it made in (arena). A record names its region by number (userRec.seg) and its
// place there by an offset, so that the snapshot's list holds no pointer: a collection
// would otherwise follow one per user, into the mapped file (where each costs the
// collector a lookup that finds no object of its own) or into the heap.
type region struct {
	data string // its bytes: the mapped file's, or a chunk's whole capacity
	// keys are the userKeys of its records that have some (userRec.more): fields not
	// kept as offsets, a generation beyond 32 bits, a path, UPNs. Set by the writer
	// before any snapshot holds the region, never changed after.
	keys []userKeys
	id   uint32
}

// regionIDs hands out region numbers: the lowest ones no live region has, so that the
// tables indexed by them stay as short as the number of regions alive at once. A number
// comes back when its region is garbage (runtime.AddCleanup): whatever holds a record of
// it holds the region too (a snapshot its regions, a writer its arena and its base).
var regionIDs struct {
	sync.Mutex
	free []uint32
	next uint32
}

// newRegion returns a region of data, with a number of its own.
func newRegion(data string) *region {
	regionIDs.Lock()
	var id uint32
	if n := len(regionIDs.free); n > 0 {
		id = regionIDs.free[n-1]
		regionIDs.free = regionIDs.free[:n-1]
	} else {
		id = regionIDs.next
		regionIDs.next++
	}
	regionIDs.Unlock()
	r := &region{data: data, id: id}
	runtime.AddCleanup(r, freeRegionID, id)
	return r
}

func freeRegionID(id uint32) {
	regionIDs.Lock()
	defer regionIDs.Unlock()
	regionIDs.free = append(regionIDs.free, id)
}

// regions are the regions of a set of records (a snapshot's, a writer's), by number; nil
// where the set has none of that number. Every method of a record that reads its bytes
// takes the regions of the snapshot or writer that holds it: a record is only read while
// they are alive, which keeps its bytes alive.
type regions []*region

// with returns rs with r in it, sharing nothing with rs.
func (rs regions) with(r *region) regions {
	out := make(regions, max(len(rs), int(r.id)+1))
	copy(out, rs)
	out[r.id] = r
	return out
}

// merged returns the regions of rs and of more, sharing nothing with either (both hold
// a region of a number, when they do, as the same one).
func (rs regions) merged(more regions) regions {
	out := make(regions, max(len(rs), len(more)))
	copy(out, rs)
	for i, r := range more {
		if r != nil {
			out[i] = r
		}
	}
	return out
}

// of returns the regions of from that the records of list are in, and no other: a
// region none of whose records a snapshot holds any more (all replaced or deleted) is
// not kept by it, and goes with the last snapshot that holds it.
func (rs regions) of(list []userRec) regions {
	used := make([]bool, len(rs))
	n := 0
	for i := range list {
		if s := list[i].seg; !used[s] {
			used[s] = true
			n = max(n, int(s)+1)
		}
	}
	out := make(regions, n)
	for i := range out {
		if used[i] {
			out[i] = rs[i]
		}
	}
	return out
}

// arena is where a writer puts the records it makes: chunks of heap, each a region,
// filled in turn. A chunk is at most arenaChunk bytes (a record longer has one of its
// own), and the first ones of a writer are smaller (what it wrote so far, from
// minChunk), so that a chunk that still holds one record that a later snapshot kept
// holds little else: a chunk is kept whole while any snapshot holds a record of it, and
// a batch of one user takes a chunk of 1 KiB, not of 16. Records are not moved
// to chunks of their own when others around them go: the served tree keeps the bytes
// of the records it was made of (directory's Entry.Source) and keeps its entries of
// records that only moved, so a move would add a copy, not drop one.
type arena struct {
	// rs are the regions of the writer's records: its base's and the chunks. The
	// arena's own copy once it has a chunk (own), which it adds the next ones to.
	rs      regions
	own     bool
	cur     *region // the chunk being filled; nil before the first
	buf     []byte  // cur's bytes, as far as written
	written int     // bytes put in all its chunks
}

// The largest and smallest size of an arena's chunks: about 40 users of the attributes
// SSSD reads, and 2.
const (
	arenaChunk = 16 << 10
	minChunk   = 1 << 10
)

// newArena returns an arena whose writer's records are base's and its own.
func newArena(base regions) *arena { return &arena{rs: base} }

// add puts a new chunk in a.rs, in place once the arena has a copy of its own.
func (a *arena) add(r *region) {
	if !a.own {
		a.rs, a.own = a.rs.with(r), true
		return
	}
	if int(r.id) >= len(a.rs) {
		a.rs = append(a.rs, make(regions, int(r.id)+1-len(a.rs))...)
	}
	a.rs[r.id] = r
}

// errRecordTooLong says that a record does not fit the 32 bits that give its length.
var errRecordTooLong = errors.New("record longer than 4 GiB")

// put copies val, then id when val does not hold it, into a chunk, and returns the
// record of the user id encoded there, written by generation gen, its keys set
// (userRec.index). The record is the caller's, to put in a snapshot with a.rs.
func (a *arena) put(id, val string, gen uint64, norm func(string) string) (*userRec, error) {
	i := strings.Index(val, id)
	size := len(val)
	if i < 0 {
		i, size = len(val), len(val)+len(id)
	}
	if size > math.MaxUint32 {
		return nil, errRecordTooLong
	}
	if a.cur == nil || cap(a.buf)-len(a.buf) < size {
		a.buf = make([]byte, 0, max(size, min(arenaChunk, max(minChunk, a.written))))
		// The chunk's bytes as a string, up to its capacity: those past what is written
		// are written before any record there is read, and never after.
		a.cur = newRegion(unsafe.String(unsafe.SliceData(a.buf), cap(a.buf)))
		a.add(a.cur)
	}
	a.written += size
	off := len(a.buf)
	a.buf = append(append(a.buf, val...), id[:size-len(val)]...)
	both := a.cur.data[off : off+size]
	r := &userRec{}
	var more userKeys
	r.start(a.cur, off, len(val), gen, &more)
	r.setField(fieldID, both[i:i+len(id)], both, false, &more)
	if err := r.index(both[:len(val)], norm, &more); err != nil {
		return nil, err
	}
	r.keep(a.cur, &more)
	return r, nil
}
