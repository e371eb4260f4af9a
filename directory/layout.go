package directory

import (
	"sync"
	"unsafe"

	"github.com/ldapproxy/ldapproxy/internal/view"
)

// The attributes of a tree entry are one string, treeEntry.meta, with no pointer in it:
// the collector follows the entry's few strings, not one pointer per value, and the
// tree's own cost per value is a few bytes. It holds, in the entry's order of
// attributes:
//
//	uvarint  length of the heads
//	uvarint  base: the offset in the entry's Source that refSource offsets start from
//	         (the first of its values there: most offsets then take a byte)
//	heads    per attribute: uvarint type ID << 3 | flags (the tree's typeTable),
//	         uvarint length of its record << 1 | 1 when it has one value (flagOne)
//	records  per attribute:
//	           uvarint  number of values, unless flagOne
//	           [flagName] uvarint length, the name as the entry spells it
//	           [flagOpts] uvarint length, the options, lowercased and sorted
//	           per value: a value reference, then with flagNorm one to its normalised form
//
// The heads come first, apart from the records, so that looking for an attribute type
// (what every filter does, on every entry it tests) reads two bytes per attribute and
// finds the record of the one it looks for without reading the others.
//
// A value reference is a uvarint whose two low bits say where the bytes are:
//
//	refSource  len << 2, then uvarint offset: src[base+offset:][:len], the bytes of the
//	           entry's Source (a store record): a value's bytes exist once in the process
//	refInline  len << 2, then the bytes: short values from elsewhere and normalised values
//	refExt     index << 2: ext[index], a string from elsewhere kept whole (a group's DN
//	           in many memberOf values is one string, not a copy per entry)
//	refSpecial code << 2: specSame (a normalised value equal to its value), specDN (the
//	           entry's DN), specNDN (its canonical DN), specHasSubordinates (TRUE or
//	           FALSE by the entry's children in its version), specBack followed by
//	           uvarint d: the bytes of the refInline reference d bytes before this one
//	           (a value copied once for all the entry's attributes that have it: the
//	           normalised cn that gecos repeats), or specConst+i: the
//	           tree's constant i (Tree.consts), a value from the schema's vocabulary
//	           that thousands of entries hold and no Source does (the normalised
//	           objectClass values, a computed structuralObjectClass and its normalised
//	           form), kept once for the whole tree instead of copied into each meta
//
// Without flagNorm, the attribute's values are their own normalised forms (uid, mail,
// numbers, timestamps, DNs already canonical, binary values).
const (
	flagName = 1 << iota // spelled otherwise than its type's primary name
	flagOpts             // has options
	flagNorm             // normalising changes a value
	flagBits = 3
	// flagOne, in a head's record length (its low bit) and in attrCursor.flags: the
	// attribute has one value, and its record no count.
	flagOne = 1 << flagBits
)

const (
	refSource = iota
	refInline
	refExt
	refSpecial
)

const (
	specSame = iota
	specDN
	specNDN
	specHasSubordinates
	specBack
	specConst
)

// minBackRef is the shortest copied value that a later one of the same entry refers
// back to (specBack) instead of copying again.
const minBackRef = 4

// maxConsts bounds a tree's constants: they are the schema's class names, a few hundred
// at most; values past the bound are copied into meta as before.
const maxConsts = 1 << 12

// inlineMax is the longest value from outside the entry's Source that is copied into
// meta rather than kept as a string of its own: up to that, the copy costs no more than
// the string header that would point at it.
const inlineMax = 16

// uvar reads a uvarint from s at i and returns it with the position after it.
func uvar(s string, i int) (int, int) {
	if b := s[i]; b < 0x80 {
		return int(b), i + 1
	}
	return uvarLong(s, i)
}

func uvarLong(s string, i int) (int, int) {
	x, shift := 0, 0
	for {
		b := s[i]
		i++
		x |= int(b&0x7f) << shift
		if b < 0x80 {
			return x, i
		}
		shift += 7
	}
}

func appendUvar(b []byte, x int) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

// typeTable numbers the attribute types the entries of a tree use, and the constant
// values they refer to, for treeEntry.meta. It is shared by every version of the tree
// and only grows: an ID, once given, names the same type or value for good, so a
// version reads its snapshot of the lists (Tree.types, Tree.consts) without a lock,
// also while a later version is being made.
type typeTable struct {
	mu       sync.Mutex
	ids      map[*attrType]int
	list     []*attrType
	constIDs map[string]int
	consts   []string
}

func newTypeTable() *typeTable {
	return &typeTable{ids: map[*attrType]int{}, constIDs: map[string]int{}}
}

// id returns at's ID, giving it the next one the first time.
func (tt *typeTable) id(at *attrType) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	id, ok := tt.ids[at]
	if !ok {
		id = len(tt.list)
		tt.ids[at] = id
		tt.list = append(tt.list, at) // beyond the length of every snapshot taken
	}
	return id
}

// constID returns v's ID among the constants, giving it the next one the first time;
// false when the table is full.
func (tt *typeTable) constID(v string) (int, bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	id, ok := tt.constIDs[v]
	if !ok {
		if len(tt.consts) >= maxConsts {
			return 0, false
		}
		id = len(tt.consts)
		tt.constIDs[v] = id
		tt.consts = append(tt.consts, v) // beyond the length of every snapshot taken
	}
	return id, true
}

// snapshot returns the types and the constants numbered so far, indexed by ID.
func (tt *typeTable) snapshot() ([]*attrType, []string) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.list, tt.consts
}

// attrCursor walks the attributes of an entry in order:
//
//	var c attrCursor
//	c.start(e, t.types, t.consts)
//	for c.next() { ... c.typ ... }
type attrCursor struct {
	e      *treeEntry
	m      string // its meta
	types  []*attrType
	consts []string
	head   int    // the next attribute's head
	heads  int    // where the heads end and the records begin
	next0  int    // where the next attribute's record is
	src    string // the entry's source from meta's base on: values' offsets are into it
	// The current attribute.
	typ   *attrType
	flags int
	rec   int // where its record is
}

// start puts c before the first attribute of e, whose types are numbered in types and
// constants in consts (its tree's Tree.types and Tree.consts). Cursors are made in
// place, not returned: a returned cursor is copied, and read back wider than it was
// written, at every entry a filter tests.
func (c *attrCursor) start(e *treeEntry, types []*attrType, consts []string) {
	m := e.meta() // never empty: every entry has entryDN and hasSubordinates
	c.e, c.m, c.types, c.consts = e, m, types, consts
	n, p := int(m[0]), 1
	if n >= 0x80 {
		n, p = uvar(m, 0)
	}
	base := int(m[p])
	if p++; base >= 0x80 {
		base, p = uvar(m, p-1)
	}
	c.src = e.src()[base:]
	c.head, c.heads, c.next0 = p, p+n, p+n
}

// next moves to the next attribute; false after the last.
func (c *attrCursor) next() bool {
	m, p := c.m, c.head
	if p >= c.heads {
		return false
	}
	head, l := int(m[p]), int(m[p+1])
	if p += 2; head|l >= 0x80 {
		head, p = uvar(m, p-2)
		l, p = uvar(m, p)
	}
	c.head, c.typ, c.flags = p, c.types[head>>flagBits], head&(1<<flagBits-1)|(l&1)<<flagBits
	c.rec, c.next0 = c.next0, c.next0+l>>1
	return true
}

// nextOf moves to the next attribute of type at or of a subtype of it; false when there
// is none.
func (c *attrCursor) nextOf(at *attrType) bool { return c.nextIs(at, at.hasSubtypes) }

// nextIs moves to the next attribute of type at, or with subtypes of a subtype of it;
// false when there is none. The filters' loop: it reads the heads, two bytes per
// attribute mostly, and keeps what it reads in registers until it finds one.
func (c *attrCursor) nextIs(at *attrType, subtypes bool) bool {
	m, types, p, rec := c.m, c.types, c.head, c.next0
	for p < c.heads {
		head, l := int(m[p]), int(m[p+1])
		if p += 2; head|l >= 0x80 {
			head, p = uvar(m, p-2)
			l, p = uvar(m, p)
		}
		if typ := types[head>>flagBits]; typ == at || subtypes && typ.isA(at) {
			c.head, c.typ, c.flags, c.rec, c.next0 = p, typ, head&(1<<flagBits-1)|(l&1)<<flagBits, rec, rec+l>>1
			return true
		}
		rec += l >> 1
	}
	c.head, c.next0 = p, rec
	return false
}

// nextIn moves to the next attribute whose type ID is set in want; false when there is
// none.
func (c *attrCursor) nextIn(want []bool) bool {
	m, p, rec := c.m, c.head, c.next0
	for p < c.heads {
		head, l := int(m[p]), int(m[p+1])
		if p += 2; head|l >= 0x80 {
			head, p = uvar(m, p-2)
			l, p = uvar(m, p)
		}
		if id := head >> flagBits; id < len(want) && want[id] {
			c.head, c.typ, c.flags, c.rec, c.next0 = p, c.types[id], head&(1<<flagBits-1)|(l&1)<<flagBits, rec, rec+l>>1
			return true
		}
		rec += l >> 1
	}
	c.head, c.next0 = p, rec
	return false
}

// header returns the name (empty: the type's primary name), the options, the number of
// values and the position of the first value of the current attribute.
func (c *attrCursor) header() (name, opts string, n, vals int) {
	m := c.m
	n, p := 1, c.rec
	if c.flags&flagOne == 0 {
		n, p = uvar(m, c.rec)
	}
	if c.flags&flagName != 0 {
		l, q := uvar(m, p)
		name, p = m[q:q+l], q+l
	}
	if c.flags&flagOpts != 0 {
		l, q := uvar(m, p)
		opts, p = m[q:q+l], q+l
	}
	return name, opts, n, p
}

// name returns the current attribute's name as the entry spells it.
func (c *attrCursor) name() string {
	if c.flags&flagName == 0 {
		return c.typ.name
	}
	name, _, _, _ := c.header()
	return name
}

// opts returns the current attribute's options, lowercased and sorted.
func (c *attrCursor) opts() string {
	if c.flags&flagOpts == 0 {
		return ""
	}
	_, opts, _, _ := c.header()
	return opts
}

// valuesAt returns the number of values of the current attribute and the position of
// the first.
func (c *attrCursor) valuesAt() (n, p int) {
	if c.flags&(flagName|flagOpts) == 0 {
		if c.flags&flagOne != 0 {
			return 1, c.rec
		}
		if m := c.m; m[c.rec] < 0x80 {
			return int(m[c.rec]), c.rec + 1
		}
	}
	_, _, n, p = c.header()
	return n, p
}

// anyNorm reports whether f is true of one of the current attribute's normalised
// values; values its equality rule rejects (invalidNorm) are skipped.
func (c *attrCursor) anyNorm(f func(string) bool) bool {
	n, p := c.valuesAt()
	e, norm := c.e, c.flags&flagNorm != 0
	for ; n > 0; n-- {
		var v string
		if v, p = e.normNext(c.m, p, norm, c.consts, c.src); v != invalidNorm && f(v) {
			return true
		}
	}
	return false
}

// hasNorm reports whether the current attribute has the normalised value want.
func (c *attrCursor) hasNorm(want string) bool {
	n, p := c.valuesAt()
	e, norm := c.e, c.flags&flagNorm != 0
	for ; n > 0; n-- {
		var v string
		if v, p = e.normNext(c.m, p, norm, c.consts, c.src); v == want {
			return true
		}
	}
	return false
}

// normNext is normAt reading in line the commonest references: a normalised value
// copied into meta, after a short reference to its value.
func (e *treeEntry) normNext(m string, pos int, norm bool, consts []string, src string) (string, int) {
	x, p := int(m[pos]), pos
	if norm {
		if x >= 0x80 {
			return e.normAt(m, pos, true, consts, src)
		}
		p++ // past the value's reference
		switch x & 3 {
		case refInline:
			p += x >> 2
		case refSource:
			for m[p] >= 0x80 {
				p++
			}
			p++
		case refSpecial:
			return e.normAt(m, pos, true, consts, src)
		}
		if x = int(m[p]); x == specSame<<2|refSpecial {
			v, _ := e.ref(m, pos, "", consts, src)
			return v, p + 1
		}
	}
	if x < 0x80 && x&3 == refInline {
		l := x >> 2
		return m[p+1 : p+1+l], p + 1 + l
	}
	return e.ref(m, p, "", consts, src)
}

// normAt returns the normalised form of the value whose reference is at pos, and the
// position of the next value's; norm says that the normalised forms follow the values.
func (e *treeEntry) normAt(m string, pos int, norm bool, consts []string, src string) (string, int) {
	if !norm {
		return e.ref(m, pos, "", consts, src)
	}
	p := e.skipRef(m, pos)
	if m[p] == specSame<<2|refSpecial {
		v, _ := e.ref(m, pos, "", consts, src)
		return v, p + 1
	}
	return e.ref(m, p, "", consts, src)
}

// valueCursor walks the values of one attribute with their normalised forms:
//
//	var v valueCursor
//	v.start(&c)
//	for v.next() { ... v.val, v.nval ... }
type valueCursor struct {
	e         *treeEntry
	m         string // the entry's meta
	consts    []string
	src       string // attrCursor.src
	pos, n    int
	norm      bool // normalised forms follow the values
	val, nval string
}

// start puts v before the first value of the attribute at c.
func (v *valueCursor) start(c *attrCursor) {
	v.e, v.m, v.consts, v.src, v.norm = c.e, c.m, c.consts, c.src, c.flags&flagNorm != 0
	v.n, v.pos = c.valuesAt()
}

// next moves to the next value; false after the last. v.val is the value as served,
// v.nval its normalised form (invalidNorm for one the equality rule rejects).
func (v *valueCursor) next() bool {
	if v.n == 0 {
		return false
	}
	v.n--
	v.val, v.pos = v.e.ref(v.m, v.pos, "", v.consts, v.src)
	v.nval = v.val
	if v.norm {
		v.nval, v.pos = v.e.ref(v.m, v.pos, v.val, v.consts, v.src)
	}
	return true
}

// nextVal is next for a reader of the values as served: v.nval is not set.
func (v *valueCursor) nextVal() bool {
	if v.n == 0 {
		return false
	}
	v.n--
	if v.val, v.pos = v.e.ref(v.m, v.pos, "", v.consts, v.src); v.norm {
		v.pos = v.e.skipRef(v.m, v.pos)
	}
	return true
}

// count returns the number of values left.
func (v *valueCursor) count() int { return v.n }

// ref reads the value reference at pos in e.meta and returns the value with the
// position after the reference; same is the value specSame stands for, consts the
// tree's constants.
func (e *treeEntry) ref(m string, pos int, same string, consts []string, src string) (string, int) {
	x, p := int(m[pos]), pos+1
	if x >= 0x80 {
		x, p = uvarLong(m, pos)
	}
	l := x >> 2
	switch x & 3 {
	case refInline:
		return m[p : p+l], p + l
	case refSource:
		off, q := uvar(m, p)
		return src[off : off+l], q
	case refExt:
		return e.ext(l), p
	}
	switch l {
	case specDN:
		return e.dn(), p
	case specNDN:
		return e.canon(), p
	case specHasSubordinates:
		if e.hasChildren() {
			return "TRUE", p
		}
		return "FALSE", p
	case specSame:
		return same, p
	case specBack:
		return e.back(m, pos, p)
	}
	return consts[l-specConst], p
}

// back reads the distance of a specBack reference at pos, whose distance is at p, and
// returns the bytes it refers to with the position after it. Only a refInline
// reference before pos is referred to: a walk back ends at once.
func (e *treeEntry) back(m string, pos, p int) (string, int) {
	d, q := uvar(m, p)
	if d <= 0 || d > pos {
		return "", q
	}
	x, r := uvar(m, pos-d)
	if x&3 != refInline {
		return "", q
	}
	return m[r : r+x>>2], q
}

// skipRef returns the position after the value reference at pos.
func (e *treeEntry) skipRef(m string, pos int) int {
	x, p := uvar(m, pos)
	switch x & 3 {
	case refInline:
		return p + x>>2
	case refSource:
		_, p = uvar(m, p)
	case refSpecial:
		if x>>2 == specBack {
			_, p = uvar(m, p)
		}
	}
	return p
}

// encoder makes the meta of entries, reusing its buffers from one to the next.
type encoder struct {
	types  *typeTable
	ids    map[*attrType]int // the IDs asked for so far, to take the table's lock once each
	consts map[string]int    // the constants' IDs asked for so far, likewise
	heads  []byte
	meta   []byte // the records
	out    []byte // the meta made of them
	attr   []byte // the current attribute's record
	head   int    // and its head
	one    bool   // and whether it has one value (flagOne)
	ext    []string
	norms  []string // the current attribute's normalised values
	src    string
	base   int // where in src the values' offsets start from
	// usedSrc is set once a value refers to src: an entry keeps its source only then.
	usedSrc bool
	// inlineAt holds where among the records the values copied so far are (specBack).
	inlineAt map[string]int

	// Where the entries' metas and values kept whole go (segments.go), and their
	// sources when no base holds them.
	arena  arena
	srcs   sourceList
	placer *sourcePlacer
	refs   []byte
}

func newEncoder(types *typeTable) *encoder {
	return &encoder{types: types, ids: map[*attrType]int{}, consts: map[string]int{}, inlineAt: map[string]int{}}
}

// into has enc write the entries it makes into an arena of its own, their sources
// placed by p: a build's or a batch's, compacted once mostly unused.
func (enc *encoder) into(p *sourcePlacer) *encoder {
	enc.placer = p
	enc.arena = arena{dedup: map[string]uint32{}, compactable: true}
	return enc
}

// begin starts the meta of an entry whose values may be slices of src, from base on
// (the offset of the first of them).
func (enc *encoder) begin(src string, base int) {
	enc.heads, enc.meta, enc.ext, enc.src, enc.usedSrc = enc.heads[:0], enc.meta[:0], enc.ext[:0], src, false
	enc.base = base
	clear(enc.inlineAt)
}

// attribute starts an attribute of type at with n values; name is "" when the entry
// spells it as the type's primary name.
func (enc *encoder) attribute(at *attrType, name, opts string, n int, norm bool) {
	id, ok := enc.ids[at]
	if !ok {
		id = enc.types.id(at)
		enc.ids[at] = id
	}
	flags := 0
	if name != "" {
		flags |= flagName
	}
	if opts != "" {
		flags |= flagOpts
	}
	if norm {
		flags |= flagNorm
	}
	enc.head, enc.one = id<<flagBits|flags, n == 1
	b := enc.attr[:0]
	if !enc.one {
		b = appendUvar(b, n)
	}
	if name != "" {
		b = append(appendUvar(b, len(name)), name...)
	}
	if opts != "" {
		b = append(appendUvar(b, len(opts)), opts...)
	}
	enc.attr = b
}

// value adds a reference to v: by offset when v lies within the source, else a copy of
// a short value or v itself kept whole. own says that v is the tree's alone (a
// normalised value made for this entry), so a copy of any length is no duplicate.
func (enc *encoder) value(v string, own bool) {
	if off, ok := within(v, enc.src); ok && off >= enc.base {
		enc.attr = appendUvar(appendUvar(enc.attr, len(v)<<2|refSource), off-enc.base)
		enc.usedSrc = true
		return
	}
	if own || len(v) <= inlineMax {
		if len(v) >= minBackRef {
			// Where the reference goes among the records: its distance to an earlier
			// one is the same in meta.
			pos := len(enc.meta) + len(enc.attr)
			if at, ok := enc.inlineAt[v]; ok {
				enc.attr = appendUvar(appendUvar(enc.attr, specBack<<2|refSpecial), pos-at)
				return
			}
			enc.inlineAt[v] = pos
		}
		enc.attr = append(appendUvar(enc.attr, len(v)<<2|refInline), v...)
		return
	}
	enc.attr = appendUvar(enc.attr, len(enc.ext)<<2|refExt)
	enc.ext = append(enc.ext, v)
}

// constant adds a reference to v, a value of the schema's vocabulary that many entries
// hold, as one of the tree's constants; when the table is full, as value does.
func (enc *encoder) constant(v string) {
	id, ok := enc.consts[v]
	if !ok {
		if id, ok = enc.types.constID(v); !ok {
			enc.value(v, false)
			return
		}
		enc.consts[v] = id
	}
	enc.special(specConst + id)
}

// special adds a reference to a value the entry computes.
func (enc *encoder) special(code int) {
	enc.attr = appendUvar(enc.attr, code<<2|refSpecial)
}

// end completes the current attribute.
func (enc *encoder) end() {
	l := len(enc.attr) << 1
	if enc.one {
		l |= 1
	}
	enc.heads = appendUvar(appendUvar(enc.heads, enc.head), l)
	enc.meta = append(enc.meta, enc.attr...)
}

// done stores the entry's meta, source, DN (dn), canonical DN (ndn) and values kept
// whole in e, whose ID is set: meta and the values kept whole are copied into enc's
// arena, the source placed in a base or added to enc's list of sources. structural
// says that the tree computed structuralObjectClass.
func (enc *encoder) done(e *treeEntry, dn, ndn string, structural bool) {
	src, base := "", 0 // an entry that keeps no source has no base in it
	if _, dnInSrc := within(dn, enc.src); enc.usedSrc || dnInSrc {
		src, base = enc.src, enc.base
	}
	enc.out = append(append(appendUvar(appendUvar(enc.out[:0], len(enc.heads)), base), enc.heads...), enc.meta...)
	var flags uint32
	if structural {
		flags |= entryStructural
	}
	ext := enc.ext
	if dnOwn(dn, src) {
		ext = append(ext, dn)
		flags |= entryDNOwn
	}
	if ndn != dn {
		ext = append(ext, ndn)
		flags |= entryNDNOwn
	}
	enc.ext = ext[:len(enc.ext)]
	var srcSeg, srcAt uint32
	listed := false
	if src != "" {
		var ok bool
		if srcSeg, srcAt, ok = enc.placer.place(src); !ok {
			srcSeg, srcAt = enc.srcs.add(e.id, src)
			listed = true
		}
	}
	metaSeg, metaOff, extOff := enc.write(e.id, bytesString(enc.out), ext)
	e.setPlaces(metaSeg, metaOff, bytesString(enc.out), srcSeg, srcAt, listed, src, dn, metaSeg, extOff, len(enc.ext), flags)
}

// write copies meta, the values of ext that no base holds and the references to all
// of them into one block of enc's arena, charged to entry id, and returns the block
// with the offsets of meta and of the references.
func (enc *encoder) write(id entryID, meta string, ext []string) (seg, metaOff, extOff uint32) {
	a := &enc.arena
	need := len(meta) + len(ext)*extRefSize
	for _, v := range ext {
		if _, _, ok := enc.placer.place(v); !ok {
			need += len(v)
		}
	}
	h := a.reserve(need)
	metaOff = a.writeString(meta)
	refs := enc.refs[:0]
	for _, v := range ext {
		if s, off, ok := enc.placer.place(v); ok {
			refs = appendExtRef(refs, s, extString, off, uint32(len(v)))
			continue
		}
		if v == "" {
			refs = appendExtRef(refs, 0, extString, 0, 0)
			continue
		}
		off, ok := a.dedup[v]
		if !ok {
			off = a.writeString(v)
			a.dedup[unsafe.String(&a.buf[off], len(v))] = off // the block's bytes: v is not kept
		}
		refs = appendExtRef(refs, h.n, extString, off, uint32(len(v)))
	}
	extOff = a.write(refs)
	enc.refs = refs
	h.charge(id, int64(len(meta)+len(ext)*extRefSize))
	return h.n, metaOff, extOff
}

// bytesString returns b as a string that must not outlive b's next change.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// within returns the offset of v in src when v's bytes are part of src's, which the
// caller vouches for by handing src as the entry's Source (view.Offset).
func within(v, src string) (int, bool) { return view.Offset(v, src) }

// checkMeta reports whether m is a meta that the cursors above read within its bounds
// and those of what it refers to: the entry's source (srcLen bytes), its values kept
// whole (ext of them), the tree's types (ntypes) and constants (nconsts). The cursors
// trust meta, as the encoder made it; an image's meta was written by another process,
// and ReadTree checks each with this before a search reads it, so that a damaged or
// tampered image is refused when read instead of panicking a search later. It walks
// meta as the cursors do: the heads up to their end, each record to its end (the count
// of values, the name and options, every value's reference and with flagNorm its
// normalised form's), every number a uvarint of at most 5 bytes within its part.
func checkMeta(m string, srcLen, ext, ntypes, nconsts int) bool {
	c := metaCheck{m: m}
	n := c.uvar(len(m))
	base := c.uvar(len(m))
	if c.bad || base > srcLen || n > len(m)-c.p {
		return false
	}
	c.src = srcLen - base
	c.ext, c.nconsts = ext, nconsts
	heads, rec := c.p+n, c.p+n
	for c.p < heads {
		head, l := c.uvar(heads), c.uvar(heads)
		if c.bad || head>>flagBits >= ntypes || l>>1 > len(m)-rec {
			return false
		}
		at := c.p
		c.p = rec
		rec += l >> 1
		if !c.record(rec, head&(1<<flagBits-1)|(l&1)<<flagBits) {
			return false
		}
		c.p = at
	}
	return rec == len(m)
}

// metaCheck is checkMeta's walk through a meta.
type metaCheck struct {
	m                 string
	p                 int
	bad               bool
	src, ext, nconsts int // the bounds of refSource offsets, refExt indexes and constants
}

// uvar reads a uvarint that ends before end.
func (c *metaCheck) uvar(end int) int {
	if c.p < end && c.m[c.p] < 0x80 {
		c.p++
		return int(c.m[c.p-1])
	}
	return c.uvarLong(end)
}

func (c *metaCheck) uvarLong(end int) int {
	x := 0
	for shift := 0; shift < 35 && c.p < end; shift += 7 {
		b := c.m[c.p]
		c.p++
		x |= int(b&0x7f) << shift
		if b < 0x80 {
			return x
		}
	}
	c.bad = true
	return 0
}

// record checks the record at c.p, which ends at end, of an attribute with flags.
func (c *metaCheck) record(end, flags int) bool {
	n := 1
	if flags&flagOne == 0 {
		n = c.uvar(end)
	}
	if flags&flagName != 0 {
		c.skip(end)
	}
	if flags&flagOpts != 0 {
		c.skip(end)
	}
	for ; n > 0 && !c.bad; n-- {
		c.ref(end)
		if flags&flagNorm != 0 {
			c.ref(end)
		}
	}
	return !c.bad && c.p == end
}

// skip passes a uvarint length and that many bytes, which end before end.
func (c *metaCheck) skip(end int) {
	if l := c.uvar(end); l > end-c.p {
		c.bad = true
	} else {
		c.p += l
	}
}

// ref checks the value reference at c.p, in a record that ends at end.
func (c *metaCheck) ref(end int) {
	pos := c.p
	x := c.uvar(end)
	l := x >> 2
	switch x & 3 {
	case refInline:
		if l > end-c.p {
			c.bad = true
			return
		}
		c.p += l
	case refSource:
		if off := c.uvar(end); off > c.src || l > c.src-off {
			c.bad = true
		}
	case refExt:
		if l >= c.ext {
			c.bad = true
		}
	default:
		switch {
		case l == specBack:
			// The bytes of a refInline reference before this one (treeEntry.back).
			d := c.uvar(end)
			if c.bad || d <= 0 || d > pos {
				c.bad = true
				return
			}
			at := metaCheck{m: c.m, p: pos - d}
			if y := at.uvar(len(c.m)); at.bad || y&3 != refInline || y>>2 > len(c.m)-at.p {
				c.bad = true
			}
		case l >= specConst && l-specConst >= c.nconsts:
			c.bad = true
		}
	}
}
