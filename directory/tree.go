package directory

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/fold"
	"github.com/ldapproxy/ldapproxy/internal/parallel"
	"github.com/ldapproxy/ldapproxy/internal/secret"
)

// Tree is one version of an indexed set of entries served by cached searches. A version
// never changes: it is safe for concurrent searches, and Apply makes the next version
// from a batch of changes, sharing what the batch leaves alone (versioned.go).
//
// Every entry has an ID that it keeps across versions (renamed or moved too); results
// come in ID order, and a paged search resumes after the last ID it sent, so its cookie
// stays valid in every later version of the tree. NewTree numbers the entries in
// depth-first order; Apply gives new entries the next IDs. Equality indexes on the
// attributes clients look users and groups up by (uid, cn, mail, member, memberOf,
// objectClass, entryUUID, …) give each filter a list of candidates, which is usually a
// handful of entries.
type Tree struct {
	line    uint64 // the NewTree this version descends from: cookies are valid within it
	version uint64 // 0 for NewTree's, +1 per applied batch
	schema  *schema
	roots   map[string]bool // the naming contexts, normalised
	entries idTable
	count   int                                // entries in this version
	byDN    *shardMap[entryID]                 // canonical DN → ID
	index   map[*attrType]*shardMap[[]entryID] // normalised value → ascending IDs
	// types numbers the attribute types of the entries' meta and consts the constant
	// values it refers to: typeTable is the line's, types and consts this version's
	// snapshot of it.
	typeTable *typeTable
	types     []*attrType
	consts    []string

	// bases remembers the search bases clients used, as they wrote them, so that most
	// searches skip parsing their base DN. Copied on write: read without a lock.
	bases   atomic.Pointer[map[string]entryID]
	basesMu sync.Mutex

	// ad is set when the tree follows Active Directory's filter conventions (ad.go).
	ad *adConventions

	// srcBases returns the mappings that Sources may be slices of (WithSourceBases).
	srcBases func() []string
	// keep holds the segments of the image the line was read from (ReadTree), which
	// its index tables read for as long as any version lives.
	keep []*segment
}

// maxCachedBases bounds the base DN cache: clients use a few bases, and a client that
// sends many distinct ones must not grow it without end.
const maxCachedBases = 256

// treeEntry is one entry of a tree. Shared by every version that holds it unchanged.
//
// Its attributes are not held as the Entry it is served as but encoded in one string,
// meta (layout.go): per attribute its type's number, per value where its bytes are (an
// offset into src, the string the entry's values were slices of; a copy of a short
// value; or a value kept whole, ext) and, for the attributes whose values normalising
// changes, the normalised values. A search makes the Entry it sends from them
// (selection.entry), in buffers of its own, and filters read them through cursors
// (attrCursor), neither allocating per entry.
//
// It holds no pointer (segments.go): meta, src and the references to the values kept
// whole are places in segments, so that the collector never looks into the entries'
// arrays.
type treeEntry struct {
	// meta is segment metaSeg's [metaOff, metaOff+metaLen).
	metaSeg, metaOff, metaLen uint32
	// The Source most values are slices of (none when srcSeg is 0): segment srcSeg's
	// [srcAt, srcAt+srcLen), or its source number srcAt when entrySrcListed.
	srcSeg, srcAt, srcLen uint32
	// The references to the values kept whole (outside src, longer than inlineMax), at
	// extOff in segment extSeg, extRefSize bytes each: as many as extLen says
	// (extList), followed by the DN when it is not a slice of src (entryDNOwn), then by
	// the canonical DN when that is not the DN (entryNDNOwn).
	extSeg, extOff uint32
	// The DN as served is src[dnOff:dnOff+dnLen], unless entryDNOwn.
	dnOff  uint32
	dnLen  uint16
	depth  uint16 // RDNs below its naming context, at most maxDepth
	id     entryID
	parent entryID // noEntry for the entry of a naming context
	nchild int32   // children in this version
	// extFlags holds the number of values kept whole in its low bits and the entry*
	// flags above them: 56 bytes an entry, where strings and fields of their own took 88.
	extFlags uint32
}

// The flags of treeEntry.extFlags.
const (
	// entryStructural is set when the tree computed structuralObjectClass (the entry
	// did not have it).
	entryStructural = 1 << (31 - iota)
	entryDNOwn      // the DN is kept whole, not a slice of src
	entryNDNOwn     // the canonical DN is kept whole: it is not the DN
	entrySrcListed  // the source is number srcAt of segment srcSeg, a list of sources
	extLenMask      = 1<<28 - 1
)

// maxDepth is the deepest an entry may be below its naming context.
const maxDepth = 1<<16 - 1

func (e *treeEntry) meta() string { return segString(e.metaSeg)[e.metaOff : e.metaOff+e.metaLen] }

// src returns the Source most of e's values are slices of; "" when none is.
func (e *treeEntry) src() string {
	if e.extFlags&entrySrcListed != 0 {
		return segSource(e.srcSeg, e.srcAt)
	}
	return segString(e.srcSeg)[e.srcAt : e.srcAt+e.srcLen]
}

func (e *treeEntry) extLen() int { return int(e.extFlags & extLenMask) }

// extRefs returns the references to e's values kept whole, its DN and canonical DN
// among them when they are.
func (e *treeEntry) extRefs() string {
	n := e.extLen()
	if e.extFlags&entryDNOwn != 0 {
		n++
	}
	if e.extFlags&entryNDNOwn != 0 {
		n++
	}
	if n == 0 {
		return ""
	}
	return segString(e.extSeg)[e.extOff : e.extOff+uint32(n*extRefSize)]
}

// ext returns e's i-th value kept whole (extLen of them, then the DNs kept whole).
func (e *treeEntry) ext(i int) string {
	off := e.extOff + uint32(i*extRefSize)
	return extRef(segString(e.extSeg)[off : off+extRefSize])
}

func (e *treeEntry) structural() bool { return e.extFlags&entryStructural != 0 }

// dn returns e's DN as served.
func (e *treeEntry) dn() string {
	if e.extFlags&entryDNOwn != 0 {
		return e.ext(e.extLen())
	}
	return e.src()[e.dnOff : e.dnOff+uint32(e.dnLen)]
}

// canon returns e's canonical DN (distinguishedNameMatch).
func (e *treeEntry) canon() string {
	if e.extFlags&entryNDNOwn != 0 {
		n := e.extLen()
		if e.extFlags&entryDNOwn != 0 {
			n++
		}
		return e.ext(n)
	}
	return e.dn()
}

// extList returns e's values kept whole.
func (e *treeEntry) extList() []string {
	n := e.extLen()
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = e.ext(i)
	}
	return l
}

// dnOwn reports whether an entry whose DN is dn and whose source is src keeps its DN
// whole: when it is not a slice of src that dnOff and dnLen can say.
func dnOwn(dn, src string) bool {
	_, ok := within(dn, src)
	return !ok || dn == "" || len(dn) > 1<<16-1
}

// setPlaces sets e's meta, its source (listed: number at of segment seg, a list of
// sources), the place of its DN in the source (when not dnOwn) and its values kept
// whole (n of them, then the DNs that flags say are kept whole, at extOff in segment
// extSeg).
func (e *treeEntry) setPlaces(metaSeg, metaOff uint32, meta string, srcSeg, srcAt uint32, listed bool, src, dn string, extSeg, extOff uint32, n int, flags uint32) {
	e.metaSeg, e.metaOff, e.metaLen = metaSeg, metaOff, uint32(len(meta))
	e.srcSeg, e.srcAt, e.srcLen = srcSeg, srcAt, uint32(len(src))
	if listed {
		flags |= entrySrcListed
	}
	e.dnOff, e.dnLen = 0, 0
	if flags&entryDNOwn == 0 {
		off, _ := within(dn, src)
		e.dnOff, e.dnLen = uint32(off), uint16(len(dn))
	}
	e.extSeg, e.extOff = extSeg, extOff
	e.extFlags = uint32(n) | flags
}

type rdnValue struct {
	typ   *attrType
	value string
}

func (e *treeEntry) hasChildren() bool { return e.nchild > 0 }

// NewTree builds a tree from entries (each a full served entry: DN + attributes) under
// the naming contexts roots. Container entries (the base DN, OUs) are entries too: every
// entry's parent must be one of the entries, unless the entry is a naming context. The
// entries are not modified and must not be modified afterwards. entryDN and
// hasSubordinates are computed by the tree; structuralObjectClass too when absent.
// opts apply to the tree and to every version applied to it.
func NewTree(roots []string, entries []*Entry, opts ...TreeOption) (*Tree, error) {
	return NewTreeSchema(nil, roots, entries, opts...)
}

// NewTreeSchema is NewTree matching with the schema sch; nil is the built-in one. Every
// version Apply makes from the tree keeps it.
func NewTreeSchema(sch *Schema, roots []string, entries []*Entry, opts ...TreeOption) (*Tree, error) {
	return NewTreeFrom(sch, roots, len(entries), func(i int) *Entry { return entries[i] }, opts...)
}

// NewTreeFrom is NewTreeSchema over n entries that at makes on demand, so that they are
// never all in memory at once: a start of a large directory holds the tree it builds
// and a few entries, not every entry besides. at(i) is called at least twice for each
// i, once for the DNs and the schema and once for the attributes, from several
// goroutines at once, and must make the same entry every time; the tree keeps nothing
// of an Entry but its Source and the strings its values are slices of.
func NewTreeFrom(sch *Schema, roots []string, count int, at func(i int) *Entry, opts ...TreeOption) (*Tree, error) {
	if sch == nil {
		sch = BuiltinSchema()
	}
	t := &Tree{schema: newSchemaOn(sch), roots: make(map[string]bool, len(roots)), typeTable: newTypeTable()}
	for _, o := range opts {
		o(t)
	}
	t.ad = t.ad.learn(func(yield func(*Entry) bool) {
		for i := range count {
			if !yield(at(i)) {
				return
			}
		}
	})
	var id [8]byte
	rand.Read(id[:])
	t.line = binary.BigEndian.Uint64(id[:])

	// Attribute types and object classes the schema does not know become plain strings
	// and structural classes, so that the entries' own DNs and values can be parsed.
	// The entries are checked and their DNs parsed on every core; those with types or
	// classes the schema lacks are learnt from one after another.
	type node struct {
		name     string   // the DN as the entry has it
		dn       *ldap.DN // until its canonical RDNs are known
		ndn      string
		rdns     []string
		parent   int
		children []int
		err      error
		learn    bool
	}
	nodes := make([]node, count)
	parallel.Ranges(count, parallelChunk, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			e := at(i)
			dn, known, err := t.schema.check(e)
			nodes[i] = node{name: e.DN, dn: dn, parent: -1, err: err, learn: !known}
		}
	})
	for i := range nodes {
		n := &nodes[i]
		if n.err != nil {
			return nil, n.err
		}
		if n.learn {
			t.schema.learnChecked(at(i), n.dn)
		}
	}

	for _, r := range roots {
		n, ok := t.schema.normDN(r)
		if !ok {
			return nil, fmt.Errorf("naming context %q: invalid DN", r)
		}
		t.roots[n] = true
	}

	// Canonical DNs and parents, then the depth-first order. DN-valued attributes mostly
	// name the entries as their DNs are written, so those DNs seed the cache of
	// normalised DNs.
	input := make(map[string]int, count)
	dnSeed := make(map[string]string, count)
	parallel.Ranges(len(nodes), parallelChunk, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			n := &nodes[i]
			rdns, ok := t.schema.canonicalRDNs(n.dn, false)
			if !ok {
				n.err = fmt.Errorf("entry %q: invalid DN", n.name)
				continue
			}
			n.rdns, n.ndn, n.dn = rdns, strings.Join(rdns, ","), nil
		}
	})
	for i := range nodes {
		n := &nodes[i]
		if n.err != nil {
			return nil, n.err
		}
		if _, dup := input[n.ndn]; dup {
			return nil, fmt.Errorf("entry %q: duplicate DN", n.name)
		}
		input[n.ndn] = i
		dnSeed[n.name] = n.ndn
	}
	var top []int
	for i := range nodes {
		n := &nodes[i]
		parent := strings.Join(n.rdns[1:], ",")
		if p, ok := input[parent]; ok && len(n.rdns) > 1 {
			n.parent = p
			nodes[p].children = append(nodes[p].children, i)
			continue
		}
		if !t.roots[n.ndn] {
			return nil, fmt.Errorf("entry %q: its parent is missing and it is not a naming context", n.name)
		}
		top = append(top, i)
	}
	order := make([]int, 0, len(nodes))
	var walk func(i int)
	walk = func(i int) {
		order = append(order, i)
		for _, c := range nodes[i].children {
			walk(c)
		}
	}
	for _, i := range top {
		walk(i)
	}

	ids := newIDWriter(idTable{})
	byDN := newShardWriter[entryID](nil)
	posOf := make([]entryID, len(nodes))
	for pos, i := range order {
		posOf[i] = entryID(pos)
	}
	// One array of the entries, which holds no pointer (a replaced entry keeps 56
	// bytes alive with it, its attributes being in segments): the ID table's chunks
	// hold their positions in it.
	arr := make([]treeEntry, len(order))
	tes := make([]*treeEntry, len(order))
	for pos, i := range order {
		n := &nodes[i]
		te := &arr[pos]
		*te = treeEntry{id: entryID(pos), parent: noEntry, nchild: int32(len(n.children))}
		if n.parent >= 0 {
			p := tes[posOf[n.parent]] // before it: the order is depth-first
			if p.depth == maxDepth {
				return nil, fmt.Errorf("entry %q: more than %d levels below its naming context", n.name, maxDepth)
			}
			te.parent, te.depth = p.id, p.depth+1
		}
		tes[pos] = te
	}
	// The attributes of the entries, on every core: the schema is only read from here on.
	// The encoders, whose arenas hold the entries' segments until the ID table does.
	encs := make([]*encoder, (len(tes)+parallelChunk-1)/parallelChunk)
	placer := t.placer()
	parallel.Ranges(len(tes), parallelChunk, func(lo, hi int) {
		cache := dnCache{seed: dnSeed, own: map[string]string{}}
		enc := newEncoder(t.typeTable).into(placer)
		for pos := lo; pos < hi; pos++ {
			t.fillAttributes(tes[pos], at(order[pos]), nodes[order[pos]].ndn, enc, cache)
		}
		enc.arena.seal()
		encs[lo/parallelChunk] = enc
	})
	t.types, t.consts = t.typeTable.snapshot()
	for pos, te := range tes {
		ids.setIn(te.id, arr, pos)
		byDN.set(te.canon(), te.id)
	}
	t.entries, t.byDN, t.count = ids.table(), byDN.done(), len(order)
	runtime.KeepAlive(encs)
	t.buildIndexes()
	return t, nil
}

// check checks the names in e and parses its DN, without changing s; known is false when
// e has a type or class that s does not know (learnChecked makes them known).
func (s *schema) check(e *Entry) (dn *ldap.DN, known bool, err error) {
	known = true
	for _, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		typ, _ := splitDescription(a.Name)
		if !validAttrName(typ) {
			return nil, false, fmt.Errorf("entry %q: bad attribute name %q", e.DN, a.Name)
		}
		at := s.attr(typ)
		known = known && at != nil
		if at == atObjectClass {
			for _, v := range a.Values {
				if !validAttrName(string(v)) {
					return nil, false, fmt.Errorf("entry %q: bad object class %q", e.DN, v)
				}
				known = known && s.class(string(v)) != nil
			}
		}
	}
	dn, ok := parseDN(e.DN)
	if !ok || len(dn.RDNs) == 0 {
		return nil, false, fmt.Errorf("entry %q: invalid DN", e.DN)
	}
	for _, rdn := range dn.RDNs {
		for _, ava := range rdn.Attributes {
			known = known && (!validAttrName(ava.Type) || s.attr(ava.Type) != nil)
		}
	}
	// Types and classes that only entries make known are counted per entry: one that s
	// knows from another entry needs counting too.
	return dn, known && len(s.attrs) == 0 && len(s.classes) == 0, nil
}

// learnChecked makes the types and classes of e, which check accepted, known to s.
func (s *schema) learnChecked(e *Entry, dn *ldap.DN) {
	for _, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		typ, _ := splitDescription(a.Name)
		if s.addAttr(typ) == atObjectClass {
			for _, v := range a.Values {
				s.addClass(string(v))
			}
		}
	}
	for _, rdn := range dn.RDNs {
		for _, ava := range rdn.Attributes {
			if validAttrName(ava.Type) {
				s.addAttr(ava.Type)
			}
		}
	}
	s.count(e, dn, 1)
}

// learn makes the attribute types and object classes of e known to s and returns e's
// parsed DN. A refused entry changes nothing.
func (s *schema) learn(e *Entry) (*ldap.DN, error) {
	dn, _, err := s.check(e)
	if err != nil {
		return nil, err
	}
	s.learnChecked(e, dn)
	return dn, nil
}

// count adds delta to the uses of the types and classes of the entry e (whose DN is dn)
// that only entries make known; one that no entry uses any more is forgotten.
func (s *schema) count(e *Entry, dn *ldap.DN, delta int) {
	var seen map[string]bool
	use := func(kind, name string) {
		if kind == "a:" && fold.Get(s.attrs, name) == nil || kind == "c:" && fold.Get(s.classes, name) == nil {
			return // static
		}
		key := strings.ToLower(name)
		if seen[kind+key] {
			return // counted
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[kind+key] = true
		if s.uses[kind+key] += delta; s.uses[kind+key] > 0 {
			return
		}
		delete(s.uses, kind+key)
		if kind == "a:" {
			delete(s.attrs, key)
		} else {
			delete(s.classes, key)
		}
	}
	for _, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		typ, _ := splitDescription(a.Name)
		use("a:", typ)
		if s.attr(typ) == atObjectClass {
			for _, v := range a.Values {
				use("c:", string(v))
			}
		}
	}
	for _, rdn := range dn.RDNs {
		for _, ava := range rdn.Attributes {
			use("a:", ava.Type)
		}
	}
}

// rdnValues returns the values extensible matches with dnAttributes see of an entry: its
// RDN's, or its whole DN's for the entry of a naming context. A type the schema does not
// know is left out: the tree learnt every type of the DNs it was built from, but a DN
// that a damaged image holds (ReadTree does not parse them) may name another.
func (t *Tree) rdnValues(dn *ldap.DN, root bool) []rdnValue {
	rdns := dn.RDNs
	if !root {
		rdns = rdns[:min(1, len(rdns))] // the empty DN of a damaged image's entry has none
	}
	var out []rdnValue
	for _, rdn := range rdns {
		for _, ava := range rdn.Attributes {
			if at := t.schema.attr(ava.Type); at != nil {
				out = append(out, rdnValue{typ: at, value: ava.Value})
			}
		}
	}
	return out
}

// entry returns the entry with ID id in this version, or nil.
func (t *Tree) entry(id entryID) *treeEntry { return t.entries.get(id) }

// fillAttributes encodes an entry's attributes, values and normalised values into te
// (layout.go). The user attributes come first, so that the attributes for "*" are a
// prefix of them all.
func (t *Tree) fillAttributes(te *treeEntry, e *Entry, ndn string, enc *encoder, dnCache dnCache) {
	type item struct {
		typ  *attrType
		opts string
	}
	items := make([]item, len(e.Attributes))
	hasStructural := false
	for i, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		typ, opts := splitDescription(a.Name)
		at := t.schema.attr(typ)
		items[i] = item{at, opts}
		hasStructural = hasStructural || at == atStructuralObjectClass
	}
	var structural *objectClass
	if !hasStructural {
		structural = t.structuralClass(e)
	}
	// The values' offsets in the source count from the first of them there.
	base := len(e.Source)
	for _, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		for _, v := range a.Values {
			if off, ok := within(stringOf(v), e.Source); ok && off < base {
				base = off
			}
		}
	}
	enc.begin(e.Source, base)
	add := func(name string, vals [][]byte, at *attrType, opts string) {
		norms := enc.norms[:0]
		same := true
		for _, v := range vals {
			s := stringOf(v)
			n := t.normStored(at, s, dnCache)
			norms = append(norms, n)
			same = same && n == s
		}
		enc.norms = norms
		if name == at.name {
			name = ""
		}
		enc.attribute(at, name, opts, len(vals), !same)
		// A class name is the schema's: a value no Source holds (a computed
		// structuralObjectClass) and a normalised one are the tree's constants.
		classes := at.eq != nil && at.eq.norm == normObjectClass
		for i, v := range vals {
			s := stringOf(v)
			if _, inSource := within(s, enc.src); classes && !inSource {
				enc.constant(s)
			} else {
				enc.value(s, false)
			}
			switch n := norms[i]; {
			case same: // the values are their own normalised forms
			case n == s:
				enc.special(specSame)
			case classes && n != invalidNorm:
				enc.constant(n)
			default:
				// A normalised DN comes from dnCache, shared with the entries that
				// name the same one; other normalised values are this entry's own.
				enc.value(n, at.eq.norm != normDN)
			}
		}
		enc.end()
	}
	for _, operational := range []bool{false, true} {
		for i, a := range e.Attributes {
			if it := items[i]; it.typ != nil && it.typ.operational == operational && it.typ != atEntryDN && it.typ != atHasSubordinates {
				add(a.Name, a.Values, it.typ, it.opts)
			}
		}
	}
	if structural != nil {
		add("structuralObjectClass", structural.values, atStructuralObjectClass, "")
	}
	// entryDN is the entry's DN, hasSubordinates follows its children in each version.
	norm := t.normStored(atEntryDN, e.DN, dnCache)
	enc.attribute(atEntryDN, "", "", 1, norm != e.DN)
	enc.special(specDN)
	switch {
	case norm == e.DN:
	case norm == ndn:
		enc.special(specNDN)
	default:
		enc.value(norm, false)
	}
	enc.end()
	enc.attribute(atHasSubordinates, "", "", 1, false) // TRUE and FALSE are normalised
	enc.special(specHasSubordinates)
	enc.end()
	enc.done(te, e.DN, ndn, structural != nil)
}

// stringOf returns v's bytes as a string without copying them: entries given to the tree
// are never modified (NewTree).
func stringOf(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(&v[0], len(v))
}

// bytesOf returns s's bytes without copying them, for an Entry being sent: nothing
// modifies an entry's values.
func bytesOf(s string) []byte {
	if s == "" {
		return emptyValue
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

var emptyValue = []byte{}

// normStored normalises a stored value by its attribute's equality rule. A value that
// normalising leaves unchanged is its own normalised form: no copy.
func (t *Tree) normStored(at *attrType, v string, dnCache dnCache) string {
	if at.eq == nil {
		return v
	}
	if at.eq.norm == normDN {
		if n, ok := dnCache.get(v); ok {
			return n
		}
	}
	n, ok := t.schema.normalize(at.eq.norm, unsafe.Slice(unsafe.StringData(v), len(v)), posValue)
	switch {
	case !ok:
		n = invalidNorm
	case n == v:
		n = v
	}
	if at.eq.norm == normDN {
		dnCache.own[v] = n
	}
	return n
}

// dnCache remembers DNs normalised: DN-valued attributes mostly name the same entries
// again and again. seed is shared and only read (nil: none); own takes what is learnt.
type dnCache struct{ seed, own map[string]string }

func (c dnCache) get(v string) (string, bool) {
	if n, ok := c.own[v]; ok {
		return n, true
	}
	n, ok := c.seed[v]
	return n, ok
}

// structuralClass picks an entry's structural object class: the most derived of its
// structural classes, as slapd's structuralObjectClass has it.
func (t *Tree) structuralClass(e *Entry) *objectClass {
	var best *objectClass
	depth := 0
	for _, a := range e.Attributes {
		typ, _ := splitDescription(a.Name)
		if t.schema.attr(typ) != atObjectClass {
			continue
		}
		for _, v := range a.Values {
			c := t.schema.class(string(v))
			if c != nil && c.kind == classStructural && len(c.ancestors) > depth {
				best, depth = c, len(c.ancestors)
			}
		}
	}
	return best
}

// buildIndexes builds the equality indexes: normalised value → ascending IDs.
// Each core builds the shards whose number falls to it, of every index.
func (t *Tree) buildIndexes() {
	workers := 1
	if int(t.entries.next) >= 2*parallelChunk {
		workers = runtime.GOMAXPROCS(0)
	}
	built := make([]map[*attrType]*shardWriter[[]entryID], workers)
	parallel.Ranges(workers, 1, func(lo, hi int) {
		for w := lo; w < hi; w++ {
			built[w] = t.buildIndexShards(w, workers)
		}
	})
	t.index = map[*attrType]*shardMap[[]entryID]{}
	for w, ws := range built {
		for at, sw := range ws {
			m := t.index[at]
			if m == nil {
				m = &shardMap[[]entryID]{shards: make([]map[string][]entryID, mapShards)}
				t.index[at] = m
			}
			for i := w; i < mapShards; i += workers {
				m.shards[i] = sw.m.shards[i]
			}
		}
	}
}

// buildIndexShards builds the shards i with i%of == part of every index.
func (t *Tree) buildIndexShards(part, of int) map[*attrType]*shardWriter[[]entryID] {
	ws := map[*attrType]*shardWriter[[]entryID]{}
	for id := range t.entries.next {
		e := t.entry(id)
		if e == nil {
			continue
		}
		t.indexKeys(e, func(at *attrType, k string) {
			if of > 1 && shardOf(k)%of != part {
				return
			}
			w := ws[at]
			if w == nil {
				w = newShardWriter[[]entryID](nil)
				ws[at] = w
			}
			sh := w.shard(k)
			if l := sh[k]; len(l) == 0 || l[len(l)-1] != id {
				sh[k] = append(l, id)
			}
		})
	}
	return ws
}

// parallelChunk is the least number of entries worth a goroutine of its own.
const parallelChunk = 2048

// indexKeys calls fn with each index key of e, possibly more than once. An entry is
// indexed under each of its object classes and their superclasses, so that
// (objectClass=person) finds inetOrgPersons.
func (t *Tree) indexKeys(e *treeEntry, fn func(at *attrType, k string)) {
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.next() {
		if !c.typ.indexed {
			continue // values with options are indexed too: (cn=x) matches cn;lang-de: x
		}
		var v valueCursor
		v.start(&c)
		for v.next() {
			if c.typ.eq == mrObjectSubClass {
				if cl := t.schema.class(v.nval); cl != nil {
					for _, k := range cl.ancestors {
						fn(c.typ, k)
					}
					continue
				}
			}
			fn(c.typ, v.nval)
		}
	}
}

// postings returns the IDs of the entries indexed under at and k, ascending.
func (t *Tree) postings(at *attrType, k string) []entryID {
	l, _ := t.index[at].get(k)
	return l
}

// Lookup returns the DN of the entry that dn names, spelled as the entry has it. dn is
// matched the way searches match base DNs: attribute types by name or OID, values by
// their matching rules (so case and insignificant spaces do not matter).
func (t *Tree) Lookup(dn string) (string, bool) {
	defer runtime.KeepAlive(t) // and with it the segments its entries are read from (segments.go)
	e, res := t.locate(dn)
	if res != nil {
		return "", false
	}
	return e.dn(), true
}

// Schema returns the schema the tree matches with.
func (t *Tree) Schema() *Schema { return t.schema.base }

// Len returns the number of entries of this version.
func (t *Tree) Len() int { return t.count }

// Version numbers the versions of a tree: 0 for NewTree's, one more for each batch
// applied since.
func (t *Tree) Version() uint64 { return t.version }

// locate finds the entry a request names. When there is none, the result says why:
// invalidDNSyntax, or noSuchObject with the closest entry above as matchedDN.
func (t *Tree) locate(dn string) (*treeEntry, *Result) {
	if m := t.bases.Load(); m != nil {
		if id, ok := (*m)[dn]; ok {
			return t.entry(id), nil
		}
	}
	rdns, ok := t.schema.normRDNs(dn)
	if !ok {
		return nil, &Result{Code: ldap.LDAPResultInvalidDNSyntax, Diagnostic: "invalid DN"}
	}
	if id, ok := t.byDN.get(strings.Join(rdns, ",")); ok {
		t.rememberBase(dn, id)
		return t.entry(id), nil
	}
	res := &Result{Code: ldap.LDAPResultNoSuchObject}
	for i := 1; i < len(rdns); i++ {
		if id, ok := t.byDN.get(strings.Join(rdns[i:], ",")); ok {
			res.MatchedDN = t.entry(id).dn()
			break
		}
	}
	return nil, res
}

// rememberBase adds a base DN to the cache, until the cache is full.
func (t *Tree) rememberBase(dn string, id entryID) {
	t.basesMu.Lock()
	defer t.basesMu.Unlock()
	m := map[string]entryID{dn: id}
	if old := t.bases.Load(); old != nil {
		if len(*old) >= maxCachedBases {
			return
		}
		maps.Copy(m, *old)
	}
	t.bases.Store(&m)
}

// ldapControlManageDsaIT is accepted and has nothing to do: the tree holds no referrals.
const ldapControlManageDsaIT = "2.16.840.1.113730.3.4.2"

// Search evaluates a search request against the tree: it hands each entry to send, in
// ID order, and returns the result to end the search with; nil when ctx ended or send
// failed (the client is gone: nothing more is to be sent). It implements the scopes
// base, one, subtree and children, every filter type, attribute selection, typesOnly
// (which the caller applies when it encodes the entries), the size and time limits, and the paged-results control
// (1.2.840.113556.1.4.319) with opaque cookies, valid in every later version of the tree.
//
// The entry send is handed, and its attribute and value slices, are valid until send
// returns: the search makes each entry in the same buffers. Its values are the tree's
// own and must never be modified; send encodes the entry, or copies what it keeps.
func (t *Tree) Search(ctx context.Context, q *SearchRequest, controls []Control, send func(*Entry) error) *Result {
	return t.SearchWithin(ctx, q, controls, nil, send)
}

// Within is the part of a tree that an identity which may not read all of it sees: a
// set of its entries (Tree.Within). A search within it walks its scope as any search
// does and returns only those entries; a compare of any other entry finds no such
// object.
type Within struct {
	ids map[entryID]bool
}

// Within returns the part of t made of the entries named by dns; DNs the tree does not
// hold are left out.
func (t *Tree) Within(dns []string) *Within {
	defer runtime.KeepAlive(t)
	w := &Within{ids: make(map[entryID]bool, len(dns))}
	for _, dn := range dns {
		if e, res := t.locate(dn); res == nil {
			w.ids[e.id] = true
		}
	}
	return w
}

// SearchWithin is Search limited to within's entries; a nil within is the whole tree.
func (t *Tree) SearchWithin(ctx context.Context, q *SearchRequest, controls []Control, within *Within, send func(*Entry) error) *Result {
	return t.SearchWithinLong(ctx, q, controls, within, send, nil)
}

// quickCandidates is the most entries a search looks at without calling its long
// function (SearchWithinLong).
const quickCandidates = 64

// SearchWithinLong is SearchWithin calling long (unless nil), once, before the search
// looks at more than quickCandidates entries: before it walks its scope entry by entry
// (a filter no index answers), or goes through more candidates than that from an index.
// A search that does not call it is answered at once, from memory; the server lets the
// connection read on while one that calls it goes on (ldapserver.Detach).
func (t *Tree) SearchWithinLong(ctx context.Context, q *SearchRequest, controls []Control, within *Within, send func(*Entry) error, long func()) *Result {
	// The version, and with it the segments its entries are read from (segments.go),
	// stays reachable until the search is over.
	defer runtime.KeepAlive(t)
	if q == nil {
		return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "not a search request"}
	}
	var paging *pagingRequest
	for _, c := range controls {
		switch c.Type {
		case ldap.ControlTypePaging:
			p, err := parsePaging(c)
			if err != nil {
				return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: err.Error()}
			}
			paging = &p
		case ldapControlManageDsaIT:
		default:
			if c.Critical {
				return &Result{Code: ldap.LDAPResultUnavailableCriticalExtension, Diagnostic: "critical extension is not recognized: " + c.Type}
			}
		}
	}

	base, res := t.locate(q.BaseDN)
	if res != nil {
		return res
	}
	fe, _ := q.FilterElement() // none: the zero Filter, which compileFilter refuses
	f, err := t.compileFilter(fe)
	if err != nil {
		return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: err.Error()}
	}

	var page pageState
	if paging != nil {
		if paging.size == 0 {
			// Size 0 ends a paged search (RFC 2696 §3), or asks for none of it.
			return &Result{Controls: []Control{pagingResponse(nil)}}
		}
		page.hash = searchHash(base.canon(), q)
		if len(paging.cookie) > 0 {
			if page.from, page.sent, err = t.readCookie(paging.cookie, page.hash); err != nil {
				return cookieError(err)
			}
		}
	}

	s := searchRun{t: t, f: f, sizeLimit: q.SizeLimit, sent: page.sent}
	if within != nil {
		s.within = within.ids
	}
	eb := entryBufs.Get().(*entryBuf)
	defer eb.release()
	s.sel.eb = eb
	t.selection(&s.sel, q.Attributes)
	if q.TimeLimit > 0 {
		s.deadline = time.Now().Add(time.Duration(q.TimeLimit) * time.Second)
	}
	if paging != nil {
		s.pageSize = paging.size
	}
	code := s.run(ctx, send, base, q.Scope, page.from, long)
	switch code {
	case runGone:
		return nil
	case runSizeLimit:
		return &Result{Code: ldap.LDAPResultSizeLimitExceeded}
	case runTimeLimit:
		return &Result{Code: ldap.LDAPResultTimeLimitExceeded}
	}
	res = &Result{}
	if paging != nil {
		var cookie []byte
		if code == runPageFull {
			// The next page starts after the last entry sent, whatever the tree holds
			// by then.
			cookie = t.makeCookie(page.hash, s.last+1, s.sent)
		}
		res.Controls = []Control{pagingResponse(cookie)}
	}
	return res
}

// searchRun is the state of one search while it walks the tree.
type searchRun struct {
	t         *Tree
	f         plan
	sel       selection
	sizeLimit int
	pageSize  int // 0 without paging
	sent      int // entries returned so far, earlier pages included
	inPage    int
	last      entryID // the last entry sent
	deadline  time.Time
	steps     int
	within    map[entryID]bool // nil: every entry may be returned
}

type runCode uint8

const (
	runDone runCode = iota
	runPageFull
	runSizeLimit
	runTimeLimit
	runGone
)

// run visits the entries in scope with an ID from from on, in ascending order, and
// returns how the walk ended.
// ctx and send are the search's, parameters rather than fields: a field would be moved
// to the heap with the others, since the filter's strings leave the search's state.
func (s *searchRun) run(ctx context.Context, send func(*Entry) error, base *treeEntry, scope int, from entryID, long func()) runCode {
	t := s.t
	if scope == ScopeBase {
		if base.id < from {
			return runDone
		}
		return s.visit(ctx, send, base, false)
	}
	if s.f.indexed {
		c := s.f.cands
		i, _ := slices.BinarySearch(c, from)
		if len(c)-i > quickCandidates && long != nil {
			long()
		}
		for ; i < len(c); i++ {
			if e := t.entry(c[i]); e != nil && t.inScope(e, base, scope) {
				if code := s.visit(ctx, send, e, s.f.exact); code != runDone {
					return code
				}
			}
		}
		return runDone
	}
	if long != nil {
		long()
	}
	for c := int(from >> chunkBits); c < len(t.entries.chunks); c++ {
		ch := t.entries.chunks[c]
		if ch == nil {
			continue
		}
		lo := 0
		if c == int(from>>chunkBits) {
			lo = int(from & (chunkSize - 1))
		}
		for i := lo; i < chunkSize; i++ {
			if e := ch.at(i); e != nil && t.inScope(e, base, scope) {
				if code := s.visit(ctx, send, e, false); code != runDone {
					return code
				}
			}
		}
	}
	return runDone
}

// inScope reports whether e is within a one-level, subtree or children search of base.
func (t *Tree) inScope(e, base *treeEntry, scope int) bool {
	switch scope {
	case ScopeOne:
		return e.parent == base.id
	case ScopeSubtree:
		if e == base {
			return true
		}
	}
	if e.depth <= base.depth {
		return false
	}
	if base.parent == noEntry && len(t.roots) == 1 {
		return true // the whole tree is under its one naming context
	}
	for e.depth > base.depth+1 {
		e = t.entry(e.parent)
	}
	return e.parent == base.id
}

// visit tests one entry and sends it if it matches; matched says the filter is known to
// match it (an exact index's candidate), without a test. A code other than runDone stops
// the walk, with this entry not sent.
func (s *searchRun) visit(ctx context.Context, send func(*Entry) error, e *treeEntry, matched bool) runCode {
	s.steps++
	if s.steps&255 == 0 {
		if ctx.Err() != nil {
			return runGone
		}
		if !s.deadline.IsZero() && time.Now().After(s.deadline) {
			return runTimeLimit
		}
	}
	if s.within != nil && !s.within[e.id] {
		return runDone
	}
	if !matched && s.t.test(&s.f, e) != triTrue {
		return runDone
	}
	if s.pageSize > 0 && s.inPage == s.pageSize {
		return runPageFull
	}
	if s.sizeLimit > 0 && s.sent >= s.sizeLimit {
		return runSizeLimit
	}
	if !s.deadline.IsZero() && time.Now().After(s.deadline) {
		return runTimeLimit
	}
	if err := send(s.sel.entry(e)); err != nil {
		return runGone
	}
	s.sent++
	s.inPage++
	s.last = e.id
	return runDone
}

// selection is a search's attribute list, resolved, with the buffers the entries it
// sends are made in.
type selection struct {
	allUser, allOperational bool
	named                   []selected  // in eb's buffer
	types                   []*attrType // the tree's (Tree.types)
	consts                  []string    // the tree's (Tree.consts)
	eb                      *entryBuf   // where entries are made to be sent
}

// entryBuf holds an entry being sent. Searches take one from entryBufs and put it back
// when they end, so that sending an entry costs no allocation, also for a group of
// thousands of members.
type entryBuf struct {
	out   Entry
	attrs []Attribute
	vals  [][]byte
	ends  []int      // where each attribute's values end in vals
	named []selected // the selection's named attributes
}

var entryBufs = sync.Pool{New: func() any { return new(entryBuf) }}

// release puts b back into entryBufs, holding no value of a tree: a buffer in the pool
// must not keep an old version alive.
func (b *entryBuf) release() {
	clear(b.vals[:cap(b.vals)])
	clear(b.attrs[:cap(b.attrs)])
	clear(b.named[:cap(b.named)])
	b.out = Entry{}
	entryBufs.Put(b)
}

type selected struct {
	typ  *attrType
	opts string
}

// selection resolves the attributes a search asks for (RFC 4511 §4.5.1.8): none means
// all user attributes, "*" all user attributes, "+" all operational ones, "1.1" none;
// names are case-insensitive, may be OIDs, and include their subtypes (name → cn, sn, …).
// Unknown names are ignored. The list is made in s.eb (a selection held in the search's
// own variables, not one that points into itself: that would move the search's state
// to the heap).
func (t *Tree) selection(s *selection, attrs []string) {
	named := s.eb.named[:0]
	s.types, s.consts = t.types, t.consts
	if len(attrs) == 0 {
		s.allUser = true
	}
	for _, a := range attrs {
		switch a {
		case "*":
			s.allUser = true
		case "+":
			s.allOperational = true
		case "1.1":
		default:
			typ, opts := splitDescription(a)
			if at := t.schema.attr(typ); at != nil {
				named = append(named, selected{at, opts})
			}
		}
	}
	if s.allUser {
		// Named user attributes add nothing to "*".
		named = slices.DeleteFunc(named, func(n selected) bool { return !n.typ.operational })
	}
	s.named, s.eb.named = named, named // eb keeps it as grown, for the next search
}

// entry returns e as the selection shows it, in the selection's entryBuf: valid until
// the next call.
func (s *selection) entry(e *treeEntry) *Entry {
	b := s.eb
	b.out = Entry{DN: e.dn()}
	if !s.allUser && !s.allOperational && len(s.named) == 0 {
		return &b.out
	}
	b.attrs, b.vals, b.ends = b.attrs[:0], b.vals[:0], b.ends[:0]
	var c attrCursor
	c.start(e, s.types, s.consts)
	if one := s.named; len(one) == 1 && !s.allUser && !s.allOperational {
		// One attribute asked for, the commonest list: only its type is looked at.
		for c.nextOf(one[0].typ) {
			if hasOptions(c.opts(), one[0].opts) {
				b.add(&c)
			}
		}
	} else {
		for c.next() {
			if s.wants(&c) {
				b.add(&c)
			}
		}
	}
	// The values are in place once every attribute's are: vals may have grown.
	lo := 0
	for i, hi := range b.ends {
		b.attrs[i].Values = b.vals[lo:hi:hi]
		lo = hi
	}
	if len(b.attrs) > 0 {
		b.out.Attributes = b.attrs
	}
	return &b.out
}

// add adds the attribute at c, its values in b.vals.
func (b *entryBuf) add(c *attrCursor) {
	var v valueCursor
	v.start(c)
	for v.nextVal() {
		b.vals = append(b.vals, bytesOf(v.val))
	}
	b.attrs = append(b.attrs, Attribute{Name: c.name()})
	b.ends = append(b.ends, len(b.vals))
}

// fullEntry returns e with every attribute, as served to "*" and "+", in an Entry of its
// own.
func (t *Tree) fullEntry(e *treeEntry) *Entry {
	out := &Entry{DN: e.dn()}
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.next() {
		var v valueCursor
		v.start(&c)
		vals := make([][]byte, 0, v.count())
		for v.nextVal() {
			vals = append(vals, bytesOf(v.val))
		}
		out.Attributes = append(out.Attributes, Attribute{Name: c.name(), Values: vals})
	}
	return out
}

func (s *selection) wants(c *attrCursor) bool {
	if c.typ.operational && s.allOperational || !c.typ.operational && s.allUser {
		return true
	}
	for _, n := range s.named {
		if c.typ.isA(n.typ) && hasOptions(c.opts(), n.opts) {
			return true
		}
	}
	return false
}

// Compare answers a compare request (RFC 4511 §4.10) from the tree, with slapd's result
// codes: compareTrue or compareFalse, noSuchObject (with the closest existing entry),
// undefinedAttributeType, noSuchAttribute when the entry lacks the attribute,
// inappropriateMatching, and invalidAttributeSyntax for a value the syntax rejects.
func (t *Tree) Compare(q *CompareRequest) *Result {
	return t.CompareWithin(q, nil)
}

// CompareWithin is Compare limited to within's entries; a nil within is the whole tree.
func (t *Tree) CompareWithin(q *CompareRequest, within *Within) *Result {
	defer runtime.KeepAlive(t)
	if q == nil {
		return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "not a compare request"}
	}
	e, res := t.locate(q.DN)
	if res != nil {
		return res
	}
	if within != nil && !within.ids[e.id] {
		return &Result{Code: ldap.LDAPResultNoSuchObject}
	}
	typ, opts := splitDescription(q.Attribute)
	at := t.schema.attr(typ)
	switch {
	case at == nil:
		return &Result{Code: ldap.LDAPResultUndefinedAttributeType, Diagnostic: "undefined attribute type " + q.Attribute}
	case at.eq == nil:
		return &Result{Code: ldap.LDAPResultInappropriateMatching, Diagnostic: q.Attribute + " has no equality matching rule"}
	}
	norm, ok := t.schema.normalize(at.eq.norm, q.Value, posValue)
	if !ok {
		return &Result{Code: ldap.LDAPResultInvalidAttributeSyntax, Diagnostic: "value does not conform to assertion syntax"}
	}
	present := false
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.nextOf(at) {
		if !hasOptions(c.opts(), opts) {
			continue
		}
		present = true
		eq := func(v string) bool { return v == norm }
		if at.eq == mrObjectSubClass {
			eq = func(v string) bool { return t.subclassOf(v, norm) }
		}
		if t.attrValues(&c, at.eq.norm, eq) {
			return &Result{Code: ldap.LDAPResultCompareTrue}
		}
	}
	if !present {
		return &Result{Code: ldap.LDAPResultNoSuchAttribute}
	}
	return &Result{Code: ldap.LDAPResultCompareFalse}
}
