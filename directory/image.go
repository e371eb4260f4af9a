package directory

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// A tree's image is the tree in a file: what NewTree computes from the entries (canonical
// DNs, the entries' meta, the learnt schema, the equality indexes), so that a process
// that starts on the directory it served before loads it instead of building it again.
// ReadTree makes a tree whose strings are slices of the image's bytes (mapped from the
// file: outside the Go heap) and whose sources are the caller's again: it allocates the
// entries' small structs, the DN map and the indexes' maps, and does not look at a
// single value.
//
// The image is only as good as its key, which the caller chooses (the proxy's: the store
// commit the entries came from and the options that made them) and ReadTree compares; a
// CRC-32C over the whole image guards against a damaged file, and a fingerprint of the
// schema (every attribute type's syntax, matching rules and flags, every class's
// superclasses) against a program whose schema or matching differs from the one that
// wrote it. imageFormat numbers the layout of images and of meta (layout.go), and the
// normalised forms meta holds (format 7: timestamps as normGeneralizedTime has them
// since; format 8: a leap second and a fraction past nanoseconds as slapd has them, and
// no year past 9999 or before 0000; format 12: a copied value that the entry repeats
// referred back to; format 13: source offsets from a base; format 14: no count for an
// attribute of one value): a change to any must change it.
//
//	magic      "LPXTREE" imageFormat
//	key        uvarint length, bytes
//	schema     8 bytes: the fingerprint
//	line       8 bytes, then uvarint version: the tree's, so that paged-results cookies
//	           stay valid in the tree read
//	roots      uvarint n, n strings (canonical)
//	ad         uvarint 0 or 1, then the schema naming context learnt from the entries
//	learnt     uvarint n, n attribute type names; uvarint n, n class names; uvarint n,
//	           n (key, uses)
//	types      uvarint n, n attribute type names: the typeTable, in ID order
//	consts     uvarint n, n strings: the tree's constants (Tree.consts), in ID order
//	entries    uvarint next ID, uvarint n, n entries (see imageWriter.entry)
//	IDs        uvarint 0, or 1, zeros to a multiple of 4 from the image's start and the
//	           entries' IDs in order as little-endian uint32s (the runs of listRun)
//	indexes    uvarint n, per index its type's name, uvarint keys, per key the key and
//	           its posting list: listKeyEntry; listOne and uvarint position; listRun,
//	           uvarint position and uvarint n; or uvarint n+listIDs-2, zeros to a
//	           multiple of 4 from the image's start and n IDs as little-endian uint32s,
//	           read in place
//	crc        4 bytes: CRC-32C of everything before
//
// Strings are a uvarint length and the bytes. An index's key is a uvarint x, then by
// x&3 (keyBytes, keySource) either its x>>2 bytes, or two uvarints, an entry's place
// among the image's entries and an offset: the key is the x>>2 bytes of that entry's
// source at the offset. Most keys are so: a user's uid, uidNumber, mail or entryUUID in
// its own record, its DN (a group's member value) in the record of the user it names.
const imageFormat = 14

var imageMagic = []byte("LPXTREE" + string(rune('0'+imageFormat)))

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrImageStale is ReadTree's error for an image made for another key or another schema,
// or of a tree that has since lost most of its entries: the caller builds the tree anew.
var ErrImageStale = errors.New("tree image is not for this directory")

// WriteImage writes t as an image under key. sources lists the strings that entries'
// values are slices of (the Entry.Source given to NewTree and Apply): an entry's source
// is written as its index in the list, and ReadTree must be given the same strings in
// the same order. An entry's source is found in the list as the same string or, failing
// that, as a string of the same bytes (a copy of it: the proxy's store may hold its
// records elsewhere than when the entry was made). An entry whose source is not in the
// list is an error.
func (t *Tree) WriteImage(w io.Writer, key []byte, sources []string) error {
	defer runtime.KeepAlive(t)
	srcIndex := sourceIndex{byAddr: make(map[*byte]int, len(sources)), sources: sources}
	for i, s := range sources {
		if s != "" {
			srcIndex.byAddr[unsafe.StringData(s)] = i
		}
	}
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<16)
	iw := imageWriter{w: bw}
	iw.raw(imageMagic)
	iw.bytes(key)
	iw.raw(binary.LittleEndian.AppendUint64(nil, t.schema.fingerprint(t.types)))
	iw.raw(binary.LittleEndian.AppendUint64(nil, t.line))
	iw.uvar(int(t.version))

	roots := make([]string, 0, len(t.roots))
	for r := range t.roots {
		roots = append(roots, r)
	}
	slices.Sort(roots)
	iw.strings(roots)
	if t.ad != nil {
		iw.uvar(1)
		iw.str(t.ad.schemaNC)
	} else {
		iw.uvar(0)
	}
	iw.strings(sortedNames(t.schema.attrs, func(a *attrType) string { return a.name }))
	iw.strings(sortedNames(t.schema.classes, func(c *objectClass) string { return c.name }))
	uses := sortedNames(t.schema.uses, func(int) string { return "" })
	iw.uvar(len(uses))
	for _, k := range uses {
		iw.str(k)
		iw.uvar(t.schema.uses[k])
	}
	iw.uvar(len(t.types))
	for _, at := range t.types {
		iw.str(at.name)
	}
	iw.strings(t.consts)

	iw.inSource = func(v string) (int, int, bool) {
		id, ok := t.byDN.get(v)
		if !ok {
			return 0, 0, false
		}
		e := t.entry(id)
		if e == nil || e.srcLen == 0 || e.dn() != v {
			return 0, 0, false
		}
		off, ok := within(e.dn(), e.src())
		if !ok {
			return 0, 0, false
		}
		src, ok := srcIndex.find(e.src())
		return src, off, ok
	}
	iw.uvar(int(t.entries.next))
	iw.uvar(t.count)
	posOf := make([]int32, t.entries.next) // an entry's place among those written
	pos := int32(0)
	prev := imageEntryState{src: -1}
	for id := range t.entries.next {
		if e := t.entry(id); e != nil {
			if err := iw.entry(e, &prev, &srcIndex); err != nil {
				return err
			}
			posOf[id] = pos
			pos++
		}
	}
	// keyRef finds k in an entry: in the source of the one k names, else in the source
	// of the first one indexed under it. A key of a single entry is looked for in that
	// entry's source even when short: its list then costs nothing (listKeyEntry). A key
	// found in neither (a normalised value) stays in the record, where a lookup reads
	// it without reading an entry.
	keyRef := func(k string, l []entryID) (kind, p, i int) {
		if len(k) < minKeyRef && (len(l) != 1 || len(k) < minKeyRefOne) {
			return keyBytes, 0, 0
		}
		if len(k) >= minKeyRef {
			if id, ok := t.byDN.get(k); ok {
				if e := t.entry(id); e != nil && e.srcLen != 0 {
					if i := strings.Index(e.src(), k); i >= 0 {
						return keySource, int(posOf[id]), i
					}
				}
			}
		}
		if len(l) > 0 {
			if e := t.entry(l[0]); e != nil {
				if i := strings.Index(e.src(), k); i >= 0 {
					return keySource, int(posOf[l[0]]), i
				}
			}
		}
		return keyBytes, 0, 0
	}

	// A posting list that is a run of the entries in ID order (the users of one OU:
	// objectClass=posixAccount) is a slice of one array of the entries' IDs, written
	// when the lists it spares outweigh it.
	isRun := func(l []entryID) bool { return int(posOf[l[len(l)-1]])-int(posOf[l[0]]) == len(l)-1 }
	spared := 0
	for _, m := range t.index {
		m.each(func(_ string, l []entryID) {
			if len(l) >= 2 && isRun(l) {
				spared += len(l)
			}
		})
	}
	runs := spared > t.count
	if runs {
		iw.uvar(1)
		iw.raw(make([]byte, (4-iw.n%4)%4))
		var ids []byte
		for id := range t.entries.next {
			if t.entry(id) != nil {
				ids = binary.LittleEndian.AppendUint32(ids, id)
			}
		}
		iw.raw(ids)
	} else {
		iw.uvar(0)
	}

	types := make([]*attrType, 0, len(t.index))
	for at := range t.index {
		types = append(types, at)
	}
	slices.SortFunc(types, func(a, b *attrType) int { return strings.Compare(a.name, b.name) })
	iw.uvar(len(types))
	var ids []byte
	for _, at := range types {
		iw.str(at.name)
		m := t.index[at]
		n := 0
		m.each(func(string, []entryID) { n++ })
		iw.uvar(n)
		m.each(func(k string, l []entryID) {
			kind, p, i := keyRef(k, l)
			iw.uvar(len(k)<<2 | kind)
			if kind == keyBytes {
				iw.rawStr(k)
			} else {
				iw.uvar(p)
				iw.uvar(i)
			}
			switch {
			case len(l) == 1 && kind != keyBytes && p == int(posOf[l[0]]):
				iw.uvar(listKeyEntry)
				return
			case len(l) == 1:
				iw.uvar(listOne)
				iw.uvar(int(posOf[l[0]]))
				return
			}
			if runs && isRun(l) {
				iw.uvar(listRun)
				iw.uvar(int(posOf[l[0]]))
				iw.uvar(len(l))
				return
			}
			iw.uvar(len(l) + listIDs - 2)
			iw.raw(make([]byte, (4-iw.n%4)%4))
			ids = ids[:0]
			for _, id := range l {
				ids = binary.LittleEndian.AppendUint32(ids, id)
			}
			iw.raw(ids)
		})
	}
	if iw.err != nil {
		return iw.err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// sourceIndex finds an entry's source among the sources given to WriteImage.
type sourceIndex struct {
	byAddr  map[*byte]int
	sources []string
	byValue map[string]int // made at the first source not found by its address
}

func (x *sourceIndex) find(src string) (int, bool) {
	if i, ok := x.byAddr[unsafe.StringData(src)]; ok && len(x.sources[i]) == len(src) {
		return i, true
	}
	if x.byValue == nil {
		x.byValue = make(map[string]int, len(x.sources))
		for i, s := range x.sources {
			if _, dup := x.byValue[s]; !dup {
				x.byValue[s] = i
			}
		}
	}
	i, ok := x.byValue[src]
	return i, ok
}

// sortedNames returns the values of name over m (its keys when name returns ""), sorted.
func sortedNames[V any](m map[string]V, name func(V) string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if n := name(v); n != "" {
			k = n
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

type imageWriter struct {
	w   *bufio.Writer
	n   int // bytes written: posting lists start at multiples of 4
	buf [binary.MaxVarintLen64]byte
	err error
	// seen holds the offsets of the outside values written so far (ext).
	seen map[string]int
	// inSource finds an outside value as the DN of an entry, in that entry's source.
	inSource func(v string) (src, off int, ok bool)
}

// The kinds of an outside value in an image (imageWriter.ext).
const (
	extBytes = iota
	extEarlier
	extSource
)

// What follows an index key in an image: a posting list of one entry, a run of the
// entries' IDs, or the number of IDs (at least 2) + listIDs - 2, then the IDs.
const (
	listKeyEntry = iota // the entry whose source or meta holds the key
	listOne             // the entry at the position that follows
	listRun             // uvarint position, uvarint n: n IDs of the array of every entry's
	listIDs
)

func (iw *imageWriter) raw(b []byte) {
	if iw.err == nil {
		_, iw.err = iw.w.Write(b)
		iw.n += len(b)
	}
}

func (iw *imageWriter) uvar(x int) {
	iw.raw(iw.buf[:binary.PutUvarint(iw.buf[:], uint64(x))])
}

func (iw *imageWriter) bytes(b []byte) {
	iw.uvar(len(b))
	iw.raw(b)
}

func (iw *imageWriter) str(s string) {
	iw.uvar(len(s))
	iw.rawStr(s)
}

func (iw *imageWriter) rawStr(s string) {
	if iw.err == nil {
		_, iw.err = iw.w.WriteString(s)
		iw.n += len(s)
	}
}

// ext writes an entry's outside values: uvarint n, then per value one of
//
//	uvarint length<<2|extBytes, the bytes
//	uvarint offset<<2|extEarlier, uvarint length: a value the image already holds (a
//	        group's DN in the memberOf of each of its members), read in place
//	uvarint length<<2|extSource, uvarint source index, uvarint offset: a value that is
//	        the DN of another entry, in that entry's source (a user's DN among a group's
//	        member values)
func (iw *imageWriter) ext(l []string) {
	iw.uvar(len(l))
	for _, s := range l {
		if off, ok := iw.seen[s]; ok {
			iw.uvar(off<<2 | extEarlier)
			iw.uvar(len(s))
			continue
		}
		if iw.inSource != nil {
			if src, off, ok := iw.inSource(s); ok {
				iw.uvar(len(s)<<2 | extSource)
				iw.uvar(src)
				iw.uvar(off)
				continue
			}
		}
		iw.uvar(len(s)<<2 | extBytes)
		if iw.seen == nil {
			iw.seen = map[string]int{}
		}
		iw.seen[s] = iw.n
		iw.rawStr(s)
	}
}

func (iw *imageWriter) strings(l []string) {
	iw.uvar(len(l))
	for _, s := range l {
		iw.str(s)
	}
}

// entry writes one entry, after prev (the entry written before it, if any):
//
//	uvarint its ID less the one after prev's (0 for the first entry)
//	uvarint 0: an entry of a naming context; 1: prev's parent; else parent+2
//	uvarint depth<<1, +1 if structuralObjectClass is computed; uvarint children
//	uvarint 0: no source; 1: the source after prev's; else source index+2; then,
//	        with a source, its length
//	the DN: uvarint 2*offset+1 and its length when it is a slice of the source, else
//	        uvarint 2*length and its bytes
//	the canonical DN: uvarint 0 when it is the DN, else length+1 and its bytes
//	meta
//	ext: see imageWriter.ext
//
// Entries are written in ID order, most of them beside a sibling and after the entry of
// the source before theirs: most of these numbers take a byte.
func (iw *imageWriter) entry(e *treeEntry, prev *imageEntryState, srcIndex *sourceIndex) error {
	iw.uvar(int(e.id - prev.nextID))
	switch {
	case e.parent == noEntry:
		iw.uvar(0)
	case prev.written && e.parent == prev.parent:
		iw.uvar(1)
	default:
		iw.uvar(int(e.parent) + 2)
	}
	depth := int(e.depth) << 1
	if e.structural() {
		depth |= 1
	}
	iw.uvar(depth)
	iw.uvar(int(e.nchild))
	src, dn := e.src(), e.dn()
	if src == "" {
		iw.uvar(0)
	} else {
		i, ok := srcIndex.find(src)
		if !ok {
			return fmt.Errorf("entry %q: its source is not among the sources given", dn)
		}
		if i == prev.src+1 {
			iw.uvar(1)
		} else {
			iw.uvar(i + 2)
		}
		iw.uvar(len(src))
		prev.src = i
	}
	prev.nextID, prev.parent, prev.written = e.id+1, e.parent, true
	if off, ok := within(dn, src); ok {
		iw.uvar(2*off + 1)
		iw.uvar(len(dn))
	} else {
		iw.uvar(2 * len(dn))
		iw.rawStr(dn)
	}
	if ndn := e.canon(); ndn == dn {
		iw.uvar(0)
	} else {
		iw.uvar(len(ndn) + 1)
		iw.rawStr(ndn)
	}
	iw.str(e.meta())
	iw.ext(e.extList())
	return nil
}

// imageEntryState is what an image's entry is written and read relative to: the
// entry's before it.
type imageEntryState struct {
	nextID  entryID
	parent  entryID
	src     int // the index of the last source written, -1 before any
	written bool
}

// ReadTree makes the tree that WriteImage wrote in data (the same entries with the same
// IDs, in the same line of versions: a paged search goes on in it), matching with the schema sch
// (nil: the built-in one) under the naming contexts roots, with the options opts. The
// tree's strings are slices of data, which must stay unchanged for as long as the tree
// or any version applied to it is in use (a read-only mapping of the file, never
// unmapped, is what the proxy gives). sources are the strings WriteImage was given, as
// the caller holds them now. An image written under another key, for other roots or
// for another schema, or of a tree that has since lost most of its entries, is
// ErrImageStale; a damaged one is an error of its own.
func ReadTree(sch *Schema, roots []string, data, key []byte, sources []string, opts ...TreeOption) (*Tree, error) {
	if len(data) < len(imageMagic)+4 || string(data[:len(imageMagic)]) != string(imageMagic) {
		return nil, fmt.Errorf("%w: not an image of this format", ErrImageStale)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		// The posting lists are read in place as little-endian IDs.
		return nil, fmt.Errorf("%w: images are read on little-endian machines only", ErrImageStale)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%4 != 0 {
		aligned := make([]uint32, (len(data)+3)/4)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(aligned))), len(data))
		copy(b, data)
		data = b
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(body):]) {
		return nil, errors.New("tree image: checksum mismatch")
	}
	if len(body) > 1<<32-1 {
		return nil, errDamaged // offsets into it are 32-bit
	}
	r := imageReader{data: body, off: len(imageMagic)}
	if string(r.bytes()) != string(key) {
		return nil, ErrImageStale
	}
	fingerprint, line, version := r.fixed64(), r.fixed64(), r.uvar()

	if sch == nil {
		sch = BuiltinSchema()
	}
	t := &Tree{schema: newSchemaOn(sch), roots: make(map[string]bool, len(roots)), typeTable: newTypeTable()}
	for _, o := range opts {
		o(t)
	}
	t.line, t.version = line, uint64(version)
	// The segments the entries' places are in: the image, the sources (a base's, or
	// else their list) and the references to values kept whole (segments.go).
	img := newSegment(segSlot{s: unsafe.String(unsafe.SliceData(body), len(body))})
	r.img, r.placer, r.sources = img.n, t.placer(), sources
	defer func() {
		r.ext.seal()
		t.keep = append(t.keep, img)
		if r.list != nil {
			t.keep = append(t.keep, r.list)
		}
		t.keep = append(t.keep, r.ext.made...)
	}()
	for _, root := range roots {
		n, ok := t.schema.normDN(root)
		if !ok {
			return nil, fmt.Errorf("naming context %q: invalid DN", root)
		}
		t.roots[n] = true
	}
	saved := r.strings()
	if len(saved) != len(t.roots) {
		return nil, ErrImageStale
	}
	for _, root := range saved {
		if !t.roots[root] {
			return nil, ErrImageStale
		}
	}
	if hasAD, nc := r.uvar(), ""; hasAD == 1 {
		nc = r.str()
		if t.ad == nil {
			return nil, ErrImageStale
		}
		var ok bool
		if t.ad, ok = t.ad.withSchemaNC(nc); !ok {
			return nil, ErrImageStale
		}
	} else if t.ad != nil {
		return nil, ErrImageStale
	}

	for _, name := range r.strings() {
		t.schema.addAttr(name)
	}
	for _, name := range r.strings() {
		t.schema.addClass(name)
	}
	for n := r.uvar(); n > 0 && r.err == nil; n-- {
		k := r.str()
		t.schema.uses[k] = r.uvar()
	}
	types := make([]*attrType, r.count())
	for i := range types {
		name := r.str()
		at := t.schema.attr(name)
		if at == nil {
			// A learnt type that the last entry using it took away: the schema forgot
			// it, the type table (which only grows) still numbers it. The fingerprint
			// below tells it from a type of another schema.
			at = learntAttr(name)
		}
		types[i] = at
		t.typeTable.ids[at] = i
	}
	t.typeTable.list, t.types = types, types
	consts := r.strings()
	if len(consts) > maxConsts {
		return nil, errDamaged
	}
	for i, c := range consts {
		if _, dup := t.typeTable.constIDs[c]; dup {
			return nil, errDamaged
		}
		t.typeTable.constIDs[c] = i
	}
	t.typeTable.consts, t.consts = consts, consts
	r.ntypes, r.nconsts = len(types), len(consts)
	if r.err == nil && t.schema.fingerprint(types) != fingerprint {
		return nil, ErrImageStale
	}

	next, count := r.uvar(), r.count()
	if r.err != nil || next < count || next > int(noEntry) || count > (len(r.data)-r.off)/minEntryBytes {
		return nil, errDamaged
	}
	// IDs are not reused, so a tree that lost entries has IDs to spare, but not without
	// bound: the ID table made for them is a pointer per 256 IDs (maxSpareIDs). Past it
	// the image is not damaged but the tree is better built anew (a caller that reports
	// ErrImageStale as routine does so for this too).
	if next > maxSpareIDs*count+spareIDs {
		return nil, fmt.Errorf("%w: its tree has lost most of its entries", ErrImageStale)
	}
	// One allocation for the entries: a replaced entry keeps only its struct alive with
	// the array, as its strings are the image's.
	tes := make([]treeEntry, count)
	prev := imageEntryState{src: -1}
	for i := range tes {
		te := &tes[i]
		if err := r.entry(te, &prev, sources); err != nil {
			return nil, err
		}
		if int(te.id) >= next || te.parent != noEntry && int(te.parent) >= next {
			return nil, errDamaged
		}
	}
	ids := newIDWriter(idTable{})
	for i := range tes {
		if ids.t.get(tes[i].id) != nil {
			return nil, errDamaged // two entries with one ID
		}
		ids.setIn(tes[i].id, tes, i)
	}
	ids.t.next = entryID(next)
	// Every parent is there and one level up, and only the naming contexts have none:
	// walks up the tree end, whatever the image says.
	for i := range tes {
		te := &tes[i]
		if te.parent == noEntry {
			if te.depth != 0 || !t.roots[te.canon()] {
				return nil, errDamaged
			}
			continue
		}
		if p := ids.t.get(te.parent); p == nil || int(p.depth)+1 != int(te.depth) { // in int: in uint16, maxDepth+1 is 0
			return nil, errDamaged
		}
	}
	t.entries, t.count = ids.t, count

	// The DN table, and the indexes as the image has them.
	byDN, ok := newDNTable(tes)
	if !ok {
		return nil, errDamaged // two entries with one DN
	}
	t.byDN = &shardMap[entryID]{base: byDN}
	var live []entryID
	if r.uvar() == 1 {
		r.off = (r.off + 3) &^ 3
		if r.err != nil || len(tes) > (len(r.data)-r.off)/4 {
			return nil, errDamaged
		}
		live = unsafe.Slice((*entryID)(unsafe.Pointer(&r.data[r.off])), len(tes))
		for i := range tes {
			if live[i] != tes[i].id {
				return nil, errDamaged
			}
		}
		r.off += 4 * len(tes)
	}
	if err := r.indexes(t, tes, live); err != nil {
		return nil, err
	}
	if r.err != nil || r.off != len(r.data) {
		return nil, errDamaged
	}
	return t, nil
}

var errDamaged = errors.New("tree image: damaged")

// minKeyRef is the shortest index key an image writes as a place in a source: a
// place takes up to 5 bytes at 100,000 entries. minKeyRefOne is that of a key whose
// list is one entry, which holds it: its list then takes a byte instead of 4.
const (
	minKeyRef    = 8
	minKeyRefOne = 3
)

// The kinds of an index key in an image: its bytes, or a place in the source of an
// entry.
const (
	keyBytes = iota
	keySource
)

// maxSpareIDs bounds an image's next ID by its entries: a tree that has since lost most
// of its entries is built anew (new IDs, the same entries) instead of read, and a
// crafted image cannot have ReadTree allocate an ID table for billions of IDs.
const maxSpareIDs = 64

// spareIDs are the IDs an image may have to spare whatever its entries (a variable for
// the tests).
var spareIDs = 1 << 16

// minEntryBytes is the least an entry takes in an image: a byte for each of its
// numbers, strings and lists, two for its meta (never empty). An image that claims
// more entries than its bytes can hold is refused before they are allocated.
const minEntryBytes = 10

type imageReader struct {
	data []byte
	off  int
	err  error

	// The segments of the entries' places (segments.go): the image (data), the list
	// of the sources when a source is no base's, and the references to values kept
	// whole, written into blocks shared by many entries.
	img     uint32
	placer  *sourcePlacer
	sources []string
	list    *segment
	ext     arena
	refs    []byte
	// The tree's types and constants, which the entries' meta refer to by number.
	ntypes, nconsts int
}

// at returns the offset of s, a slice of the image, in it.
func (r *imageReader) at(s string) uint32 {
	if s == "" {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(r.data))))
}

// source returns the segment of source i and its place there: an offset into a base,
// or its number in the list of sources (listed).
func (r *imageReader) source(i int) (seg, at uint32, listed bool) {
	if seg, off, ok := r.placer.place(r.sources[i]); ok {
		return seg, off, false
	}
	if r.list == nil {
		r.list = newSegment(segSlot{l: r.sources})
	}
	return r.list.n, uint32(i), true
}

func (r *imageReader) uvar() int {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.data[r.off:])
	if n <= 0 || x > 1<<40 {
		r.err = errDamaged
		return 0
	}
	r.off += n
	return int(x)
}

// count reads a number of items that each take at least a byte.
func (r *imageReader) count() int {
	n := r.uvar()
	if n > len(r.data)-r.off {
		r.err = errDamaged
		return 0
	}
	return n
}

func (r *imageReader) fixed64() uint64 {
	if r.err != nil || len(r.data)-r.off < 8 {
		r.err = errDamaged
		return 0
	}
	x := binary.LittleEndian.Uint64(r.data[r.off:])
	r.off += 8
	return x
}

func (r *imageReader) bytes() []byte {
	n := r.count()
	if r.err != nil {
		return nil
	}
	b := r.data[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// str returns the next string, a slice of the image's bytes.
func (r *imageReader) str() string { return r.strN(r.count()) }

// strN returns the next n bytes as a string, a slice of the image's bytes.
func (r *imageReader) strN(n int) string {
	if r.err != nil || n > len(r.data)-r.off {
		r.err = errDamaged
		return ""
	}
	if n == 0 {
		return ""
	}
	s := unsafe.String(&r.data[r.off], n)
	r.off += n
	return s
}

func (r *imageReader) strings() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

func (r *imageReader) entry(te *treeEntry, prev *imageEntryState, sources []string) error {
	id := int(prev.nextID) + r.uvar()
	parent := noEntry
	switch p := r.uvar(); {
	case p == 1 && prev.written:
		parent = prev.parent
	case p == 1 || p-2 >= int(noEntry):
		return errDamaged
	case p > 1:
		parent = entryID(p - 2)
	}
	depth, nchild := r.uvar(), r.uvar()
	if id >= int(noEntry) || depth>>1 > maxDepth || nchild > 1<<31-1 {
		return errDamaged
	}
	te.id, te.parent, te.depth, te.nchild = entryID(id), parent, uint16(depth>>1), int32(nchild)
	prev.nextID, prev.parent, prev.written = te.id+1, parent, true
	var src string
	srcI := -1
	if i := r.uvar(); i > 0 {
		if i == 1 {
			i = prev.src + 1
		} else {
			i -= 2
		}
		if srcLen := r.uvar(); i >= len(sources) || len(sources[i]) != srcLen {
			return fmt.Errorf("%w: the sources differ from the image's", ErrImageStale)
		}
		src, prev.src, srcI = sources[i], i, i
	}
	var dn string
	dnInSrc := false
	if x := r.uvar(); x&1 == 1 {
		off, n := x>>1, r.uvar()
		if off > len(src) || n > len(src)-off {
			return errDamaged
		}
		dn, dnInSrc = src[off:off+n], true
	} else {
		dn = r.strN(x >> 1)
	}
	ndn := dn
	if n := r.uvar(); n > 0 {
		ndn = r.strN(n - 1)
	}
	meta := r.str()
	n := r.count()
	var flags uint32
	if depth&1 == 1 {
		flags |= entryStructural
	}
	if dnOwn(dn, src) {
		flags |= entryDNOwn
	}
	if ndn != dn {
		flags |= entryNDNOwn
	}
	refs := r.refs[:0]
	for range n {
		x := r.uvar()
		switch x & 3 {
		case extBytes:
			v := r.strN(x >> 2)
			refs = appendExtRef(refs, r.img, extString, r.at(v), uint32(len(v)))
		case extEarlier: // bytes the image holds before this point
			off, l := x>>2, r.uvar()
			if r.err != nil || off > r.off || l > r.off-off {
				return errDamaged
			}
			refs = appendExtRef(refs, r.img, extString, uint32(off), uint32(l))
		case extSource:
			l, src, off := x>>2, r.uvar(), r.uvar()
			if r.err != nil || src >= len(sources) || off > len(sources[src]) || l > len(sources[src])-off {
				return errDamaged
			}
			seg, at, listed := r.source(src)
			if listed {
				refs = appendExtRef(refs, seg, at, uint32(off), uint32(l))
			} else {
				refs = appendExtRef(refs, seg, extString, at+uint32(off), uint32(l))
			}
		default:
			return errDamaged
		}
	}
	if r.err != nil || n > extLenMask || !checkMeta(meta, len(src), n, r.ntypes, r.nconsts) {
		return errDamaged
	}
	if flags&entryDNOwn != 0 {
		// A slice of the source too long for dnLen; an entry without a source (a damaged
		// image that places its DN there) has an empty DN, which the image holds as well.
		if dnInSrc && srcI >= 0 {
			seg, at, listed := r.source(srcI)
			off, _ := within(dn, src)
			if listed {
				refs = appendExtRef(refs, seg, at, uint32(off), uint32(len(dn)))
			} else {
				refs = appendExtRef(refs, seg, extString, at+uint32(off), uint32(len(dn)))
			}
		} else {
			refs = appendExtRef(refs, r.img, extString, r.at(dn), uint32(len(dn)))
		}
	}
	if flags&entryNDNOwn != 0 {
		refs = appendExtRef(refs, r.img, extString, r.at(ndn), uint32(len(ndn)))
	}
	r.refs = refs
	var extSeg, extOff uint32
	if len(refs) > 0 {
		extSeg = r.ext.reserve(len(refs)).n
		extOff = r.ext.write(refs)
	}
	var srcSeg, srcAt uint32
	listed := false
	if srcI >= 0 {
		srcSeg, srcAt, listed = r.source(srcI)
	}
	te.setPlaces(r.img, r.at(meta), meta, srcSeg, srcAt, listed, src, dn, extSeg, extOff, n, flags)
	return nil
}

// indexes reads the equality indexes into t: each a baseTable over the image's records,
// every record checked (its bounds, its IDs ascending and each an entry's)
// and placed in the table's slots, which are all the heap it takes: 6 bytes per key.
func (r *imageReader) indexes(t *Tree, tes []treeEntry, live []entryID) error {
	n := r.count()
	t.index = map[*attrType]*shardMap[[]entryID]{} // n is the image's word: no room made for it
	all := unsafe.String(unsafe.SliceData(r.data), len(r.data))
	for range n {
		at := t.schema.attr(r.str())
		keys := r.count()
		if r.err != nil || at == nil || t.index[at] != nil {
			return errDamaged // an image lists each index once
		}
		b := newBaseTable(all, tes, live, keys)
		for range keys {
			off := r.off
			var k string
			x := r.uvar()
			keyed := x&3 != keyBytes
			switch x & 3 {
			case keyBytes:
				k = r.strN(x >> 2)
			case keySource:
				p, i, n := r.uvar(), r.uvar(), x>>2
				if r.err != nil || p >= len(tes) {
					return errDamaged
				}
				in := tes[p].src()
				if i > len(in) || n > len(in)-i {
					return errDamaged
				}
				k = in[i : i+n]
			default:
				return errDamaged
			}
			if off >= 1<<32-1 {
				return errDamaged
			}
			switch l := r.count(); l {
			case listKeyEntry:
				if !keyed {
					return errDamaged
				}
			case listOne:
				if p := r.uvar(); p >= len(tes) {
					return errDamaged
				}
			case listRun:
				if p, n := r.uvar(), r.uvar(); n < 2 || p > len(live) || n > len(live)-p {
					return errDamaged
				}
			default:
				l -= listIDs - 2
				r.off = (r.off + 3) &^ 3
				if r.err != nil || l > (len(r.data)-r.off)/4 {
					return errDamaged
				}
				prev := -1
				for j := range l {
					// An ID of no entry would have a search that follows the list
					// (an in-chain match) read an entry that is not there.
					id := int(binary.LittleEndian.Uint32(r.data[r.off+4*j:]))
					if id <= prev || id >= int(t.entries.next) || t.entries.get(entryID(id)) == nil {
						return errDamaged
					}
					prev = id
				}
				r.off += 4 * l
			}
			if r.err != nil {
				return errDamaged
			}
			if !b.place(k, off) {
				return errDamaged // a key twice
			}
		}
		t.index[at] = &shardMap[[]entryID]{base: b}
	}
	return r.err
}

// fingerprint hashes what matching and indexing depend on: every attribute type the
// schema knows and those of types (the tree's typeTable), with their syntaxes, rules
// and flags, and every object class with its superclasses. Two programs that agree on
// it normalise and index the same values alike. The Schema's own part (an upstream's:
// some 1,500 types) is hashed once per Schema; per tree, only what its entries made
// known and its type table.
func (s *schema) fingerprint(types []*attrType) uint64 {
	b := binary.LittleEndian.AppendUint64(nil, s.base.fingerprint())
	b = appendFingerprint(b, s.attrs, s.classes)
	for _, at := range types {
		b = at.appendFingerprint(b)
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// fingerprint is the hash of the Schema's attribute types and object classes, made once.
func (s *Schema) fingerprint() uint64 {
	s.fpOnce.Do(func() {
		h := fnv.New64a()
		h.Write(appendFingerprint(nil, s.attrs, s.classes))
		s.fp = h.Sum64()
	})
	return s.fp
}

// appendFingerprint appends a line per attribute type of attrs and per class of classes
// (each once, however many names it has), sorted.
func appendFingerprint(b []byte, attrs map[string]*attrType, classes map[string]*objectClass) []byte {
	lines := make([]string, 0, len(attrs)/2+len(classes)/2)
	seenA := make(map[*attrType]bool, len(attrs)/2)
	for _, at := range attrs {
		if !seenA[at] {
			seenA[at] = true
			lines = append(lines, string(at.appendFingerprint(nil)))
		}
	}
	seenC := make(map[*objectClass]bool, len(classes)/2)
	for _, c := range classes {
		if !seenC[c] {
			seenC[c] = true
			lines = append(lines, "c "+c.key+" "+strconv.Itoa(int(c.kind))+" "+strings.Join(c.ancestors, " ")+"\n")
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		b = append(b, l...)
	}
	return b
}

// appendFingerprint appends t's line of a fingerprint: its name, supertype, syntax,
// rules and flags.
func (t *attrType) appendFingerprint(b []byte) []byte {
	rule := func(b []byte, m *matchingRule) []byte {
		if m == nil {
			return append(b, " -"...)
		}
		return append(append(b, ' '), m.name...)
	}
	b = append(append(b, "a "...), t.name...)
	if t.sup != nil {
		b = append(append(b, ' '), t.sup.name...)
	} else {
		b = append(b, " -"...)
	}
	b = strconv.AppendInt(append(b, ' '), int64(t.synt), 10)
	b = rule(rule(rule(b, t.eq), t.ord), t.sub)
	for _, f := range []bool{t.operational, t.indexed, t.computed, t.hasSubtypes} {
		b = strconv.AppendBool(append(b, ' '), f)
	}
	return append(b, '\n')
}
