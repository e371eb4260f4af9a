package directory

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/secret"
)

// Change is one change of a batch (Tree.Apply).
type Change struct {
	// DN names the entry that the change replaces or deletes, as the tree holds it (any
	// spelling); "" for an entry added.
	DN string
	// Entry is the entry after the change: added, or replacing DN's entry, at DN or at
	// another DN (a rename or move: the entry keeps its ID, and with it its place in
	// the paged searches under way). nil deletes DN's entry.
	Entry *Entry
}

// Apply returns the next version of t: t with a batch of changes applied, as one step.
// t itself does not change, so searches running on it finish on it; the caller
// publishes the new version to the searches that start next. The rules of NewTree
// hold for the result (every entry's parent is an entry, DNs are unique), checked once
// the whole batch is applied: a batch may move two entries onto each other's DNs, or
// add an OU with the users in it. An entry that still has children cannot be deleted
// or renamed. On an error, t is unchanged and nothing else is either.
//
// A change whose entry equals the one the tree holds is no change: a batch of only
// such changes returns t itself. Each entry may be named by one change of a batch.
// The entries are not modified and must not be modified afterwards.
func (t *Tree) Apply(changes []Change) (*Tree, error) {
	b := t.begin()
	type put struct {
		id  entryID // noEntry for an entry added
		e   *Entry
		dn  *ldap.DN
		ndn string
		// parent is the canonical DN of the parent, "" for a DN of one RDN.
		parent string
		// depth is the number of RDNs: parents are linked before their children.
		depth int
	}
	var puts []put
	var deleted []entryID

	// The entries the batch replaces or deletes leave the DN map first, so that the
	// batch can move entries onto DNs that other changes free.
	for _, c := range changes {
		id := noEntry
		if c.DN != "" {
			old, err := b.unlink(c.DN, c.Entry)
			if err != nil {
				return nil, err
			}
			if old == nil {
				continue // unchanged
			}
			id = old.id
		} else if c.Entry == nil {
			return nil, errors.New("a change with neither a DN nor an entry")
		}
		if c.Entry == nil {
			deleted = append(deleted, id)
			continue
		}
		puts = append(puts, put{id: id, e: c.Entry})
	}
	if len(puts) == 0 && len(deleted) == 0 {
		return t, nil
	}

	for i := range puts {
		p := &puts[i]
		dn, err := b.schema().learn(p.e)
		if err != nil {
			return nil, err
		}
		rdns, ok := b.t.schema.canonicalRDNs(dn, false)
		if !ok {
			return nil, fmt.Errorf("entry %q: invalid DN", p.e.DN)
		}
		p.dn, p.ndn, p.depth = dn, strings.Join(rdns, ","), len(rdns)
		if len(rdns) > 1 {
			p.parent = strings.Join(rdns[1:], ",")
		}
	}
	slices.SortStableFunc(puts, func(x, y put) int { return cmp.Compare(x.depth, y.depth) })
	b.t.ad = b.t.ad.learn(func(yield func(*Entry) bool) {
		for _, p := range puts {
			if !yield(p.e) {
				return
			}
		}
	})
	for _, p := range puts {
		if err := b.link(p.id, p.e, p.dn, p.ndn, p.parent); err != nil {
			return nil, err
		}
	}
	for _, id := range deleted {
		if err := b.remove(id); err != nil {
			return nil, err
		}
	}
	nt := b.done()
	runtime.KeepAlive(t) // and with it the segments of the entries the batch read
	return nt, nil
}

// batch is a version of a tree being made by Apply.
type batch struct {
	t     *Tree // the new version
	ids   *idWriter
	byDN  *shardWriter[entryID]
	index map[*attrType]*shardWriter[[]entryID]
	// own holds the entries this batch made or copied, which it may change in place;
	// ownPostings the posting lists.
	own         map[entryID]bool
	ownPostings map[postingKey]bool
	// old are the entries the batch unlinked, as the previous version has them.
	old       map[entryID]*treeEntry
	oldKeys   map[entryID]map[postingKey]bool // their index keys
	dnCache   dnCache
	enc       *encoder
	ownSchema bool // the schema is the batch's copy
}

type postingKey struct {
	at *attrType
	k  string
}

func (t *Tree) begin() *batch {
	nt := &Tree{line: t.line, version: t.version + 1, schema: t.schema, roots: t.roots, count: t.count, index: t.index, ad: t.ad,
		typeTable: t.typeTable, types: t.types, consts: t.consts, srcBases: t.srcBases, keep: t.keep}
	return &batch{
		t:           nt,
		ids:         newIDWriter(t.entries),
		byDN:        newShardWriter(t.byDN),
		index:       map[*attrType]*shardWriter[[]entryID]{},
		own:         map[entryID]bool{},
		ownPostings: map[postingKey]bool{},
		old:         map[entryID]*treeEntry{},
		oldKeys:     map[entryID]map[postingKey]bool{},
		dnCache:     dnCache{own: map[string]string{}},
		enc:         newEncoder(t.typeTable).into(t.placer()),
	}
}

// schema returns the schema of the new version, copied from the previous one the first
// time the batch changes it.
func (b *batch) schema() *schema {
	if !b.ownSchema {
		b.t.schema, b.ownSchema = b.t.schema.clone(), true
	}
	return b.t.schema
}

// unlink takes the entry dn names out of the DN map and out of its parent's children,
// unless it equals next (then it returns nil: nothing to change).
func (b *batch) unlink(dn string, next *Entry) (*treeEntry, error) {
	ndn, ok := b.t.schema.normDN(dn)
	if !ok {
		return nil, fmt.Errorf("change of %q: invalid DN", dn)
	}
	id, ok := b.byDN.get(ndn)
	if !ok {
		return nil, fmt.Errorf("change of %q: no such entry, or changed twice in one batch", dn)
	}
	old := b.ids.t.get(id)
	if next != nil && b.t.sameEntry(old, next) {
		return nil, nil
	}
	b.old[id] = old
	// Its index keys are taken now: a class it alone used is forgotten just below, and
	// with it the superclasses the entry was indexed under.
	b.oldKeys[id] = b.t.keySet(old)
	b.byDN.delete(ndn)
	if parsed, ok := parseDN(old.dn()); ok {
		b.schema().count(b.t.fullEntry(old), parsed, -1)
	}
	if old.parent != noEntry {
		b.mutable(old.parent).nchild--
	}
	return old, nil
}

// link puts entry e, with ID id (noEntry: a new one), at the DN ndn, under the entry
// whose DN is parent.
func (b *batch) link(id entryID, e *Entry, dn *ldap.DN, ndn, parent string) error {
	if _, dup := b.byDN.get(ndn); dup {
		return fmt.Errorf("entry %q: duplicate DN", e.DN)
	}
	te := &treeEntry{parent: noEntry}
	if parent != "" {
		if pid, ok := b.byDN.get(parent); ok {
			p := b.mutable(pid)
			if p.depth == maxDepth {
				return fmt.Errorf("entry %q: more than %d levels below its naming context", e.DN, maxDepth)
			}
			p.nchild++
			te.parent, te.depth = pid, p.depth+1
		}
	}
	if te.parent == noEntry && !b.t.roots[ndn] {
		return fmt.Errorf("entry %q: its parent is missing and it is not a naming context", e.DN)
	}
	var old *treeEntry
	if id == noEntry {
		id = b.ids.t.next
		if id == noEntry {
			return errors.New("the tree has used every entry ID: build it anew")
		}
		b.t.count++
	} else {
		old = b.old[id]
		cur := b.ids.t.get(id)
		if cur.nchild > 0 && old.canon() != ndn {
			return fmt.Errorf("entry %q: cannot rename or move an entry that has children", old.dn())
		}
		te.nchild = cur.nchild
	}
	te.id = id
	if old != nil {
		b.t.seedDNs(old, b.dnCache.own)
	}
	b.t.fillAttributes(te, e, ndn, b.enc, b.dnCache)
	b.t.types, b.t.consts = b.t.typeTable.snapshot() // with the types and constants te may have numbered
	b.ids.set(id, te)
	b.own[id] = true
	b.byDN.set(ndn, id)

	// Index keys: only those that differ from the old entry's change a posting list.
	keys := b.t.keySet(te)
	if old != nil {
		for k := range b.oldKeys[id] {
			if !keys[k] {
				b.removePosting(k, id)
			}
		}
		for k := range keys {
			if !b.hasPosting(k, id) {
				b.addPosting(k, id)
			}
		}
		return nil
	}
	for k := range keys {
		b.addPosting(k, id)
	}
	return nil
}

// seedDNs adds the DN values of e, as given and normalised, to dnCache: an entry that
// replaces e (a group whose member list changed by one) mostly repeats them, and parsing
// a DN is the dearest part of making an entry.
func (t *Tree) seedDNs(e *treeEntry, dnCache map[string]string) {
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.next() {
		if c.typ.eq == nil || c.typ.eq.norm != normDN {
			continue
		}
		var v valueCursor
		v.start(&c)
		for v.next() {
			dnCache[v.val] = v.nval
		}
	}
}

// remove deletes the entry id, which unlink took out of the DN map.
func (b *batch) remove(id entryID) error {
	e := b.ids.t.get(id)
	if e.nchild > 0 {
		return fmt.Errorf("entry %q: cannot delete an entry that has children", e.dn())
	}
	for k := range b.oldKeys[id] {
		b.removePosting(k, id)
	}
	b.ids.set(id, nil)
	delete(b.own, id)
	b.t.count--
	return nil
}

// mutable returns entry id as this batch may change it: a copy, made once.
func (b *batch) mutable(id entryID) *treeEntry {
	e := b.ids.t.get(id)
	if b.own[id] {
		return e
	}
	c := *e
	b.ids.set(id, &c)
	b.own[id] = true
	return &c
}

// done completes the new version with the maps the batch wrote. The entries whose
// children came or went need nothing more: their hasSubordinates is read from their
// number of children.
func (b *batch) done() *Tree {
	b.compact()
	b.enc.arena.seal()
	nt := b.t
	nt.entries, nt.byDN = b.ids.table(), b.byDN.done()
	if len(b.index) > 0 {
		nt.index = maps.Clone(nt.index)
		if nt.index == nil {
			nt.index = map[*attrType]*shardMap[[]entryID]{}
		}
		for at, w := range b.index {
			nt.index[at] = w.done()
		}
	}
	return nt
}

// compact releases what the entries the batch replaced or deleted held in the arenas
// and lists of sources of earlier builds and batches (segments.go), and copies the
// entries that remain in one of them that this leaves mostly unused into the batch's,
// so that the new version no longer refers to it.
func (b *batch) compact() {
	var sparse []*segment
	drop := func(h *segment, n int64) {
		if h != nil && h.size > 0 && h.live.Add(-n)*4 < h.size && !slices.Contains(sparse, h) {
			sparse = append(sparse, h)
		}
	}
	for _, e := range b.old {
		drop(handle(e.metaSeg), int64(e.metaLen)+int64(len(e.extRefs())))
		if e.extFlags&entrySrcListed != 0 {
			drop(handle(e.srcSeg), 1)
		}
	}
	for _, h := range sparse {
		for _, id := range h.ids {
			e := b.ids.t.get(id)
			if e == nil || e.metaSeg != h.n && (e.extFlags&entrySrcListed == 0 || e.srcSeg != h.n) {
				continue
			}
			e = b.mutable(id)
			if e.metaSeg == h.n {
				refs := e.extRefs()
				ext := make([]string, len(refs)/extRefSize)
				for i := range ext {
					ext[i] = e.ext(i)
				}
				h.live.Add(-int64(e.metaLen) - int64(len(refs)))
				seg, metaOff, extOff := b.enc.write(id, e.meta(), ext)
				e.metaSeg, e.metaOff, e.extSeg, e.extOff = seg, metaOff, seg, extOff
			}
			if e.extFlags&entrySrcListed != 0 && e.srcSeg == h.n {
				h.live.Add(-1)
				e.srcSeg, e.srcAt = b.enc.srcs.add(id, e.src())
			}
		}
	}
}

// keySet returns the index keys of e.
func (t *Tree) keySet(e *treeEntry) map[postingKey]bool {
	keys := map[postingKey]bool{}
	t.indexKeys(e, func(at *attrType, k string) { keys[postingKey{at, k}] = true })
	return keys
}

// indexWriter returns the batch's writer of the index of at.
func (b *batch) indexWriter(at *attrType) *shardWriter[[]entryID] {
	w := b.index[at]
	if w == nil {
		w = newShardWriter(b.t.index[at])
		b.index[at] = w
	}
	return w
}

func (b *batch) hasPosting(k postingKey, id entryID) bool {
	l, _ := b.indexWriter(k.at).get(k.k)
	_, found := slices.BinarySearch(l, id)
	return found
}

// addPosting adds id to the posting list of k: in place when the batch made the list,
// else in a copy with room for more.
func (b *batch) addPosting(k postingKey, id entryID) {
	w := b.indexWriter(k.at)
	l, _ := w.get(k.k)
	i, found := slices.BinarySearch(l, id)
	if found {
		return
	}
	if b.ownPostings[k] {
		w.set(k.k, slices.Insert(l, i, id))
		return
	}
	n := make([]entryID, len(l)+1, len(l)+1+len(l)/8)
	copy(n, l[:i])
	n[i] = id
	copy(n[i+1:], l[i:])
	w.set(k.k, n)
	b.ownPostings[k] = true
}

// removePosting removes id from the posting list of k; an empty list goes.
func (b *batch) removePosting(k postingKey, id entryID) {
	w := b.indexWriter(k.at)
	l, _ := w.get(k.k)
	i, found := slices.BinarySearch(l, id)
	switch {
	case !found:
		return
	case len(l) == 1:
		w.delete(k.k)
		delete(b.ownPostings, k)
	case b.ownPostings[k]:
		w.set(k.k, slices.Delete(l, i, i+1))
	default:
		n := make([]entryID, 0, len(l)-1)
		n = append(append(n, l[:i]...), l[i+1:]...)
		w.set(k.k, n)
		b.ownPostings[k] = true
	}
}

// sameEntry reports whether e, as given to NewTree or Apply, is what te was made from:
// the same DN, spelled alike, the same attributes with the same values in the same
// order, and, when te keeps its source, the same source bytes: a record that changed
// only where the entry does not show it (a field that is not served) is the entry's
// source from then on, as the sources of the snapshot it now belongs to, which an image
// is written with, hold it and not the one before.
func (t *Tree) sameEntry(te *treeEntry, e *Entry) bool {
	if e.DN != te.dn() || te.srcLen != 0 && e.Source != te.src() {
		return false
	}
	// The entry's user attributes are te's first (teUser), its operational ones the next.
	var user, op attrCursor
	teUser := 0
	for user.start(te, t.types, t.consts); user.next() && !user.typ.operational; {
		teUser++
	}
	user.start(te, t.types, t.consts)
	op.start(te, t.types, t.consts)
	for range teUser {
		op.next()
	}
	nUser, nOp := 0, 0
	for _, a := range e.Attributes {
		if secret.Attribute(a.Name) {
			continue
		}
		typ, _ := splitDescription(a.Name)
		at := t.schema.attr(typ)
		switch {
		case at == nil:
			return false
		case at == atEntryDN || at == atHasSubordinates:
			continue
		}
		c, k := &user, &nUser
		if at.operational {
			c, k = &op, &nOp
		}
		if *k++; c == &user && nUser > teUser || !c.next() || !sameAttribute(c, a) {
			return false
		}
	}
	if nUser != teUser {
		return false
	}
	computed := 2 // entryDN, hasSubordinates
	if te.structural() {
		computed++
	}
	for op.next() {
		computed--
	}
	return computed == 0
}

// sameAttribute reports whether the attribute at c is a, name and values.
func sameAttribute(c *attrCursor, a Attribute) bool {
	if c.name() != a.Name {
		return false
	}
	var v valueCursor
	v.start(c)
	if v.count() != len(a.Values) {
		return false
	}
	for _, w := range a.Values {
		if v.nextVal(); v.val != string(w) {
			return false
		}
	}
	return true
}
