package directory

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"
)

// Segments. A tree's entries hold no pointers, so that the collector skips their arrays
// instead of following two or three pointers per entry into mapped files: the strings
// an entry's meta, source and values kept whole are slices of are segments, numbered in
// one table of the process, and an entry holds a segment's number, an offset and a
// length. A segment is:
//
//   - a mapped file that outlives the trees (a base: the store's checkpoint, of which
//     sources are slices, WithSourceBases), kept for the life of the process;
//   - an image's bytes (ReadTree), or the list of sources an image was read with when
//     they are not a base's (an entry then holds its source's index in it);
//   - an arena: the metas, values kept whole and lists of them of the entries a build
//     or a batch made, up to arenaBlock bytes each, or a batch's list of sources.
//
// What keeps a segment's memory is its *segment handle: the chunks of the ID table
// (idChunk.keep) hold those of their entries, a read tree those of its image, and a
// segment's slot in the table is emptied once its handle is unreachable (a cleanup),
// that is once no version holds an entry of it. The table itself holds the strings,
// not the handles, so that a lookup is an index. An arena or a batch's list of sources
// whose entries were mostly replaced is compacted by the next batch that replaces one
// of them (batch.compact): its surviving entries are copied into the batch's, so that
// what replaced entries leave behind stays within four times what the latest version
// uses of such segments.
type segment struct {
	n uint32
	// For an arena or a batch's list of sources: the bytes (or sources) written for
	// entries, and those of them that the entries of the latest version use (a hint
	// for compaction only: versions applied to an older one share the count).
	size int64
	live atomic.Int64
	ids  []entryID // the entries written into it: those of them still there move when it is compacted
}

// segSlot is a segment's content: a string, or for a list of sources, the list.
type segSlot struct {
	s string
	l []string
}

var segs struct {
	tab  atomic.Pointer[[]segSlot] // readers index it without a lock
	mu   sync.Mutex                // for what follows and for writing tab's slots
	used int
	weak []weak.Pointer[segment]
	free []uint32
	// perm are the bases' segments, by their bytes' address and length.
	perm map[[2]uintptr]*segment
}

func init() {
	tab := make([]segSlot, 64) // slot 0 is "": the source of an entry without one
	segs.tab.Store(&tab)
	segs.used = 1
	segs.weak = make([]weak.Pointer[segment], len(tab))
	segs.perm = map[[2]uintptr]*segment{}
}

// segString returns segment n's string.
func segString(n uint32) string { return (*segs.tab.Load())[n].s }

// segSource returns source i of segment n, a list of sources.
func segSource(n, i uint32) string { return (*segs.tab.Load())[n].l[i] }

// newSegment numbers a segment holding slot.
func newSegment(slot segSlot) *segment {
	h := &segment{}
	segs.mu.Lock()
	var n uint32
	if k := len(segs.free); k > 0 {
		n, segs.free = segs.free[k-1], segs.free[:k-1]
	} else {
		tab := *segs.tab.Load()
		if segs.used == len(tab) {
			grown := make([]segSlot, 2*len(tab))
			copy(grown, tab)
			segs.tab.Store(&grown)
			segs.weak = append(segs.weak, make([]weak.Pointer[segment], len(grown)-len(segs.weak))...)
		}
		n = uint32(segs.used)
		segs.used++
	}
	(*segs.tab.Load())[n] = slot
	segs.weak[n] = weak.Make(h)
	segs.mu.Unlock()
	h.n = n
	runtime.AddCleanup(h, freeSegment, n)
	return h
}

// freeSegment empties the slot of a segment whose handle is gone: no entry of any
// version refers to it any more.
func freeSegment(n uint32) {
	segs.mu.Lock()
	(*segs.tab.Load())[n] = segSlot{}
	segs.weak[n] = weak.Pointer[segment]{}
	segs.free = append(segs.free, n)
	segs.mu.Unlock()
}

// setSegment replaces the content of segment h by slot, which holds what it held and
// maybe more (an arena or a list growing).
func setSegment(h *segment, slot segSlot) {
	segs.mu.Lock()
	(*segs.tab.Load())[h.n] = slot
	segs.mu.Unlock()
}

// handles returns the handles of the segments numbered ns, which something keeps alive.
func handles(ns []uint32) []*segment {
	out := make([]*segment, 0, len(ns))
	segs.mu.Lock()
	for _, n := range ns {
		h := segs.weak[n].Value()
		if h == nil {
			segs.mu.Unlock()
			panic("directory: an entry refers to a segment that is gone")
		}
		out = append(out, h)
	}
	segs.mu.Unlock()
	return out
}

// handle returns the handle of segment n, which something keeps alive; nil for 0.
func handle(n uint32) *segment {
	if n == 0 {
		return nil
	}
	return handles([]uint32{n})[0]
}

// baseSegment returns the segment of base, a mapping that outlives every tree: one per
// base for the life of the process.
func baseSegment(base string) uint32 {
	k := [2]uintptr{uintptr(unsafe.Pointer(unsafe.StringData(base))), uintptr(len(base))}
	segs.mu.Lock()
	h := segs.perm[k]
	segs.mu.Unlock()
	if h == nil {
		h = newSegment(segSlot{s: base})
		segs.mu.Lock()
		if p := segs.perm[k]; p != nil {
			h = p
		} else {
			segs.perm[k] = h
		}
		segs.mu.Unlock()
	}
	return h.n
}

// WithSourceBases has the tree keep the entries' Sources that are slices of one of the
// strings bases returns (mapped files that outlive the tree and its versions, such as
// the store's checkpoint) as offsets into them, which the collector does not look at;
// other Sources are kept in lists, one per build or batch. bases is called once per
// build, read and batch.
func WithSourceBases(bases func() []string) TreeOption {
	return func(t *Tree) { t.srcBases = bases }
}

// sourcePlacer finds the base a source is a slice of.
type sourcePlacer struct {
	bases []string
	segs  []uint32
}

func (t *Tree) placer() *sourcePlacer {
	p := &sourcePlacer{}
	if t.srcBases != nil {
		for _, b := range t.srcBases() {
			if len(b) > 0 {
				p.bases, p.segs = append(p.bases, b), append(p.segs, baseSegment(b))
			}
		}
	}
	return p
}

// place returns the segment and offset of src when it is a slice of a base.
func (p *sourcePlacer) place(src string) (seg, off uint32, ok bool) {
	if p == nil {
		return 0, 0, false
	}
	for i, b := range p.bases {
		if o, in := within(src, b); in && o <= 1<<32-1-len(src) {
			return p.segs[i], uint32(o), true
		}
	}
	return 0, 0, false
}

// A reference to a value kept whole (extRef), as an arena holds it: its segment, the
// index of its source in it (extString when the segment is a string), its offset and
// its length, 4 bytes each.
const (
	extRefSize = 16
	extString  = 1<<32 - 1
)

// extRef returns the value a reference at ref[0:extRefSize] refers to.
func extRef(ref string) string {
	_ = ref[extRefSize-1]
	seg, i, off, l := le32(ref, 0), le32(ref, 4), le32(ref, 8), le32(ref, 12)
	var s string
	if i == extString {
		s = segString(seg)
	} else {
		s = segSource(seg, i)
	}
	return s[off : off+l]
}

// le32 reads a little-endian uint32 at s[i:].
func le32(s string, i int) uint32 {
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}

func appendExtRef(b []byte, seg, i, off, l uint32) []byte {
	b = binary.LittleEndian.AppendUint32(b, seg)
	b = binary.LittleEndian.AppendUint32(b, i)
	b = binary.LittleEndian.AppendUint32(b, off)
	return binary.LittleEndian.AppendUint32(b, l)
}

// arenaBlock is the size of an arena's segments: a larger one is made for an entry
// that needs more.
const arenaBlock = 64 << 10

// arena writes the metas and values kept whole of entries into segments of its own.
// The current block is a segment over a buffer that grows as it is written (the
// bytes written are never changed: entries refer to them at once); a full block is
// sealed into a string of its exact length.
type arena struct {
	h     *segment
	buf   []byte
	made  []*segment        // every segment it made: kept until the entries are in a table
	dedup map[string]uint32 // the values kept whole in the current block, by content
	// compactable says that its blocks are compacted once mostly unused (a build's and
	// a batch's; not a read tree's, whose entries its index tables read even once
	// replaced).
	compactable bool
}

// reserve makes room for n more bytes in the current block, starting a new block when
// they do not fit, and returns the block.
func (a *arena) reserve(n int) *segment {
	if a.h != nil && len(a.buf)+n <= cap(a.buf) {
		return a.h
	}
	a.seal()
	a.buf = make([]byte, 0, max(arenaBlock, n))
	a.h = newSegment(segSlot{s: unsafe.String(unsafe.SliceData(a.buf[:cap(a.buf)]), cap(a.buf))})
	a.made = append(a.made, a.h)
	clear(a.dedup)
	return a.h
}

// seal replaces the current block by a copy of what was written to it.
func (a *arena) seal() {
	if a.h != nil {
		setSegment(a.h, segSlot{s: string(a.buf)})
		a.h, a.buf = nil, nil
	}
}

// write appends b to the current block (reserve made room) and returns its offset.
func (a *arena) write(b []byte) uint32 {
	off := len(a.buf)
	a.buf = append(a.buf, b...)
	return uint32(off)
}

func (a *arena) writeString(s string) uint32 {
	off := len(a.buf)
	a.buf = append(a.buf, s...)
	return uint32(off)
}

// charge counts n bytes written for entry id into block h.
func (h *segment) charge(id entryID, n int64) {
	h.size += n
	h.live.Add(n)
	h.ids = append(h.ids, id)
}

// sourceList is a build's or a batch's list of the sources that no base holds: a
// segment that grows as sources are added.
type sourceList struct {
	h *segment
	l []string
}

// add appends src for entry id and returns the list's segment and src's index in it.
func (s *sourceList) add(id entryID, src string) (seg, i uint32) {
	s.l = append(s.l, src)
	if s.h == nil {
		s.h = newSegment(segSlot{l: s.l})
	} else {
		setSegment(s.h, segSlot{l: s.l})
	}
	s.h.charge(id, 1)
	return s.h.n, uint32(len(s.l) - 1)
}

// keepOf returns the handles of the segments the entries of c refer to.
func keepOf(c *idChunk) []*segment {
	ns := make([]uint32, 0, 8)
	var seen map[uint32]bool // once there are many: a build's sources kept in lists
	add := func(n uint32) {
		switch {
		case n == 0:
		case seen != nil:
			if !seen[n] {
				seen[n] = true
				ns = append(ns, n)
			}
		default:
			for _, m := range ns {
				if m == n {
					return
				}
			}
			if ns = append(ns, n); len(ns) > 16 {
				seen = make(map[uint32]bool, 2*len(ns))
				for _, m := range ns {
					seen[m] = true
				}
			}
		}
	}
	for i := range chunkSize {
		e := c.at(i)
		if e == nil {
			continue
		}
		add(e.metaSeg)
		add(e.srcSeg)
		if refs := e.extRefs(); refs != "" {
			add(e.extSeg)
			for i := 0; i < len(refs); i += extRefSize {
				add(le32(refs, i))
			}
		}
	}
	return handles(ns)
}
