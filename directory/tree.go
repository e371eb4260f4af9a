package directory

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Tree is an immutable, indexed set of entries served by cached searches. Built once per
// synced generation; safe for concurrent searches.
//
// Entries are kept in depth-first order, so that a subtree is a range of positions and a
// scope check is two comparisons. Equality indexes on the attributes clients look users
// and groups up by (uid, cn, mail, member, memberOf, objectClass, entryUUID, …) give
// each filter a list of candidates, which is usually a handful of entries.
type Tree struct {
	id      uint64 // tells this generation's paged-results cookies from others'
	schema  *schema
	entries []treeEntry
	byDN    map[string]int32 // canonical DN → position
	index   map[*attrType]map[string][]int32

	// bases remembers the search bases clients used, as they wrote them, so that most
	// searches skip parsing their base DN. Copied on write: read without a lock.
	bases   atomic.Pointer[map[string]int32]
	basesMu sync.Mutex
}

// maxCachedBases bounds the base DN cache: clients use a few bases, and a client that
// sends many distinct ones must not grow it without end.
const maxCachedBases = 256

// treeEntry is one entry of a tree.
type treeEntry struct {
	ndn    string // canonical DN (distinguishedNameMatch)
	pos    int32
	parent int32 // -1 for the entry of a naming context
	end    int32 // one past the last position of the entry's subtree
	// view is the entry as served with every attribute: user attributes first, then
	// operational ones, entryDN and hasSubordinates last. userView is the same without
	// the operational attributes: the answer to "*", shared by every search.
	view, userView Entry
	attrs          []treeAttr // parallel to view.Attributes
	norm           []string   // every attribute's values, normalised by its equality rule
	// rdn holds the attribute values of the entry's RDN, or of its whole DN for the
	// entry of a naming context: extensible matches with dnAttributes look at them.
	rdn []rdnValue
}

type treeAttr struct {
	typ    *attrType
	opts   string // attribute options, lowercased and sorted
	lo, hi int32  // the attribute's values in treeEntry.norm
}

type rdnValue struct {
	typ   *attrType
	value string
}

func (e *treeEntry) hasChildren() bool { return e.end > e.pos+1 }

// secretAttributes are never served, whatever the entries handed to NewTree hold: the
// store should not have them in the first place, and this keeps a mistake there from
// reaching clients. Lowercased.
var secretAttributes = map[string]bool{
	"userpassword": true, "authpassword": true, "unicodepwd": true, "dbcspwd": true,
	"ntpwdhistory": true, "lmpwdhistory": true, "supplementalcredentials": true,
	"sambantpassword": true, "sambalmpassword": true, "krbprincipalkey": true, "ipanthash": true,
	"pwdhistory": true,
}

func isSecret(attrName string) bool {
	typ, _ := splitDescription(attrName)
	return secretAttributes[strings.ToLower(typ)]
}

// Synthesised attributes: the tree knows them better than whoever built the entries.
var (
	valueTRUE  = []byte("TRUE")
	valueFALSE = []byte("FALSE")
)

// NewTree builds a tree from entries (each a full served entry: DN + attributes) under
// the naming contexts roots. Container entries (the base DN, OUs) are entries too: every
// entry's parent must be one of the entries, unless the entry is a naming context. The
// entries are not modified and must not be modified afterwards. entryDN and
// hasSubordinates are computed by the tree; structuralObjectClass too when absent.
func NewTree(roots []string, entries []*Entry) (*Tree, error) {
	t := &Tree{schema: newSchema(), byDN: make(map[string]int32, len(entries)), index: map[*attrType]map[string][]int32{}}
	var id [8]byte
	rand.Read(id[:])
	t.id = binary.BigEndian.Uint64(id[:])

	// Attribute types and object classes the schema does not know become plain strings
	// and structural classes, so that the entries' own DNs and values can be parsed.
	type node struct {
		e        *Entry
		dn       *ldap.DN
		ndn      string
		rdns     []string
		parent   int
		children []int
	}
	nodes := make([]node, len(entries))
	for i, e := range entries {
		for _, a := range e.Attributes {
			if isSecret(a.Name) {
				continue
			}
			typ, _ := splitDescription(a.Name)
			if !validAttrName(typ) {
				return nil, fmt.Errorf("entry %q: bad attribute name %q", e.DN, a.Name)
			}
			at := t.schema.addAttr(typ)
			if at == atObjectClass {
				for _, v := range a.Values {
					if !validAttrName(string(v)) {
						return nil, fmt.Errorf("entry %q: bad object class %q", e.DN, v)
					}
					t.schema.addClass(string(v))
				}
			}
		}
		dn, ok := parseDN(e.DN)
		if !ok || len(dn.RDNs) == 0 {
			return nil, fmt.Errorf("entry %q: invalid DN", e.DN)
		}
		for _, rdn := range dn.RDNs {
			for _, ava := range rdn.Attributes {
				if validAttrName(ava.Type) {
					t.schema.addAttr(ava.Type)
				}
			}
		}
		nodes[i] = node{e: e, dn: dn, parent: -1}
	}

	rootSet := make(map[string]bool, len(roots))
	for _, r := range roots {
		n, ok := t.schema.normDN(r)
		if !ok {
			return nil, fmt.Errorf("naming context %q: invalid DN", r)
		}
		rootSet[n] = true
	}

	// Canonical DNs and parents, then the depth-first order. DN-valued attributes mostly
	// name the entries as their DNs are written, so those DNs seed the cache of
	// normalised DNs.
	input := make(map[string]int, len(entries))
	dnCache := make(map[string]string, len(entries))
	for i := range nodes {
		n := &nodes[i]
		rdns, ok := t.schema.canonicalRDNs(n.dn, false)
		if !ok {
			return nil, fmt.Errorf("entry %q: invalid DN", n.e.DN)
		}
		n.rdns, n.ndn = rdns, strings.Join(rdns, ",")
		if _, dup := input[n.ndn]; dup {
			return nil, fmt.Errorf("entry %q: duplicate DN", n.e.DN)
		}
		input[n.ndn] = i
		dnCache[n.e.DN] = n.ndn
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
		if !rootSet[n.ndn] {
			return nil, fmt.Errorf("entry %q: its parent is missing and it is not a naming context", n.e.DN)
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

	t.entries = make([]treeEntry, len(order))
	posOf := make([]int32, len(nodes))
	for pos, i := range order {
		posOf[i] = int32(pos)
	}
	for pos, i := range order {
		n := &nodes[i]
		te := &t.entries[pos]
		te.ndn, te.pos, te.parent = n.ndn, int32(pos), -1
		if n.parent >= 0 {
			te.parent = posOf[n.parent]
		}
		t.byDN[n.ndn] = int32(pos)
		rdns := n.dn.RDNs
		if n.parent >= 0 {
			rdns = rdns[:1] // a naming context's entry holds the values of its whole DN
		}
		for _, rdn := range rdns {
			for _, ava := range rdn.Attributes {
				te.rdn = append(te.rdn, rdnValue{typ: t.schema.attr(ava.Type), value: ava.Value})
			}
		}
	}
	for pos := len(t.entries) - 1; pos >= 0; pos-- {
		te := &t.entries[pos]
		if te.end == 0 {
			te.end = te.pos + 1
		}
		if te.parent >= 0 {
			p := &t.entries[te.parent]
			p.end = max(p.end, te.end)
		}
	}
	for pos, i := range order {
		t.fillAttributes(&t.entries[pos], nodes[i].e, dnCache)
	}
	t.buildIndexes()
	return t, nil
}

// fillAttributes builds an entry's served views and normalised values. The user
// attributes come first, so that the view for "*" is a prefix of the full one.
func (t *Tree) fillAttributes(te *treeEntry, e *Entry, dnCache map[string]string) {
	type item struct {
		typ  *attrType
		opts string
	}
	items := make([]item, len(e.Attributes))
	nUser, nOp, nVals, hasStructural := 0, 0, 2, false
	for i, a := range e.Attributes {
		if isSecret(a.Name) {
			continue
		}
		typ, opts := splitDescription(a.Name)
		at := t.schema.attr(typ)
		items[i] = item{at, opts}
		switch {
		case at == atEntryDN || at == atHasSubordinates:
			continue // computed below
		case at.operational:
			nOp++
		default:
			nUser++
		}
		nVals += len(a.Values)
		hasStructural = hasStructural || at == atStructuralObjectClass
	}
	var structural string
	if !hasStructural {
		if structural = t.structuralClass(e); structural != "" {
			nOp, nVals = nOp+1, nVals+1
		}
	}
	n := nUser + nOp + 2
	te.view = Entry{DN: e.DN, Attributes: make([]Attribute, 0, n)}
	te.attrs = make([]treeAttr, 0, n)
	te.norm = make([]string, 0, nVals)
	add := func(a Attribute, at *attrType, opts string) {
		ta := treeAttr{typ: at, opts: opts, lo: int32(len(te.norm))}
		for _, v := range a.Values {
			te.norm = append(te.norm, t.normStored(at, v, dnCache))
		}
		ta.hi = int32(len(te.norm))
		te.view.Attributes = append(te.view.Attributes, a)
		te.attrs = append(te.attrs, ta)
	}
	for _, operational := range []bool{false, true} {
		for i, a := range e.Attributes {
			if it := items[i]; it.typ != nil && it.typ.operational == operational && it.typ != atEntryDN && it.typ != atHasSubordinates {
				add(a, it.typ, it.opts)
			}
		}
	}
	if structural != "" {
		add(Attribute{Name: "structuralObjectClass", Values: [][]byte{[]byte(structural)}}, atStructuralObjectClass, "")
	}
	sub := valueFALSE
	if te.hasChildren() {
		sub = valueTRUE
	}
	add(Attribute{Name: "entryDN", Values: [][]byte{[]byte(e.DN)}}, atEntryDN, "")
	add(Attribute{Name: "hasSubordinates", Values: [][]byte{sub}}, atHasSubordinates, "")
	te.userView = Entry{DN: e.DN, Attributes: te.view.Attributes[:nUser:nUser]}
}

// normStored normalises a stored value by its attribute's equality rule.
func (t *Tree) normStored(at *attrType, v []byte, dnCache map[string]string) string {
	if at.eq == nil {
		return string(v)
	}
	if at.eq.norm == normDN {
		if n, ok := dnCache[string(v)]; ok {
			return n
		}
	}
	n, ok := t.schema.normalize(at.eq.norm, v, posValue)
	if !ok {
		n = invalidNorm
	}
	if at.eq.norm == normDN {
		dnCache[string(v)] = n
	}
	return n
}

// structuralClass picks an entry's structural object class: the most derived of its
// structural classes, as slapd's structuralObjectClass has it.
func (t *Tree) structuralClass(e *Entry) string {
	best, depth := "", 0
	for _, a := range e.Attributes {
		typ, _ := splitDescription(a.Name)
		if t.schema.attr(typ) != atObjectClass {
			continue
		}
		for _, v := range a.Values {
			c := t.schema.class(string(v))
			if c != nil && c.kind == classStructural && len(c.ancestors) > depth {
				best, depth = c.name, len(c.ancestors)
			}
		}
	}
	return best
}

// buildIndexes builds the equality indexes: normalised value → ascending positions. An
// entry is indexed under each of its object classes and their superclasses, so that
// (objectClass=person) finds inetOrgPersons.
func (t *Tree) buildIndexes() {
	for pos := range t.entries {
		e := &t.entries[pos]
		p := int32(pos)
		for _, a := range e.attrs {
			if !a.typ.indexed {
				continue // values with options are indexed too: (cn=x) matches cn;lang-de: x
			}
			idx := t.index[a.typ]
			if idx == nil {
				idx = map[string][]int32{}
				t.index[a.typ] = idx
			}
			for _, v := range e.norm[a.lo:a.hi] {
				keys := []string{v}
				if a.typ.eq == mrObjectSubClass {
					if c := t.schema.class(v); c != nil {
						keys = c.ancestors
					}
				}
				for _, k := range keys {
					if l := idx[k]; len(l) == 0 || l[len(l)-1] != p {
						idx[k] = append(l, p)
					}
				}
			}
		}
	}
}

// locate finds the entry a request names. When there is none, the result says why:
// invalidDNSyntax, or noSuchObject with the closest entry above as matchedDN.
// Lookup returns the DN of the entry that dn names, spelled as the entry has it. dn is
// matched the way searches match base DNs: attribute types by name or OID, values by
// their matching rules (so case and insignificant spaces do not matter).
func (t *Tree) Lookup(dn string) (string, bool) {
	p, res := t.locate(dn)
	if res != nil {
		return "", false
	}
	return t.entries[p].view.DN, true
}

func (t *Tree) locate(dn string) (int32, *Result) {
	if m := t.bases.Load(); m != nil {
		if p, ok := (*m)[dn]; ok {
			return p, nil
		}
	}
	rdns, ok := t.schema.normRDNs(dn)
	if !ok {
		return 0, &Result{Code: ldap.LDAPResultInvalidDNSyntax, Diagnostic: "invalid DN"}
	}
	if p, ok := t.byDN[strings.Join(rdns, ",")]; ok {
		t.rememberBase(dn, p)
		return p, nil
	}
	res := &Result{Code: ldap.LDAPResultNoSuchObject}
	for i := 1; i < len(rdns); i++ {
		if p, ok := t.byDN[strings.Join(rdns[i:], ",")]; ok {
			res.MatchedDN = t.entries[p].view.DN
			break
		}
	}
	return 0, res
}

// rememberBase adds a base DN to the cache, until the cache is full.
func (t *Tree) rememberBase(dn string, p int32) {
	t.basesMu.Lock()
	defer t.basesMu.Unlock()
	m := map[string]int32{dn: p}
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
// tree order, and returns the result to end the search with; nil when ctx ended or send
// failed (the client is gone: nothing more is to be sent). It implements the scopes
// base, one, subtree and children, every filter type, attribute selection, typesOnly
// (which the caller applies when it encodes the entries), the size and time limits, and the paged-results control
// (1.2.840.113556.1.4.319) with opaque cookies.
func (t *Tree) Search(ctx context.Context, q *SearchRequest, controls []Control, send func(*Entry) error) *Result {
	return t.SearchWithin(ctx, q, controls, nil, send)
}

// Within is the part of a tree that an identity which may not read all of it sees: a
// set of its entries (Tree.Within). A search within it walks its scope as any search
// does and returns only those entries; a compare of any other entry finds no such
// object.
type Within struct {
	pos map[int32]bool
}

// Within returns the part of t made of the entries named by dns; DNs the tree does not
// hold are left out.
func (t *Tree) Within(dns []string) *Within {
	w := &Within{pos: make(map[int32]bool, len(dns))}
	for _, dn := range dns {
		if p, res := t.locate(dn); res == nil {
			w.pos[p] = true
		}
	}
	return w
}

// SearchWithin is Search limited to within's entries; a nil within is the whole tree.
func (t *Tree) SearchWithin(ctx context.Context, q *SearchRequest, controls []Control, within *Within, send func(*Entry) error) *Result {
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
	f, err := t.compileFilter(q.Filter)
	if err != nil {
		return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: err.Error()}
	}

	var page pageState
	if paging != nil {
		if paging.size == 0 {
			// Size 0 ends a paged search (RFC 2696 §3), or asks for none of it.
			return &Result{Controls: []Control{pagingResponse(nil)}}
		}
		page.hash = searchHash(t.entries[base].ndn, q)
		if len(paging.cookie) > 0 {
			if page.from, page.sent, err = t.readCookie(paging.cookie, page.hash); err != nil {
				return cookieError(err)
			}
		}
	}

	s := searchRun{t: t, ctx: ctx, send: send, f: f, sizeLimit: q.SizeLimit, sent: page.sent}
	if within != nil {
		s.within = within.pos
	}
	t.selection(&s.sel, q.Attributes)
	if q.TimeLimit > 0 {
		s.deadline = time.Now().Add(time.Duration(q.TimeLimit) * time.Second)
	}
	if paging != nil {
		s.pageSize = paging.size
	}
	code, next := s.run(base, q.Scope, page.from)
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
			cookie = t.makeCookie(page.hash, next, s.sent)
		}
		res.Controls = []Control{pagingResponse(cookie)}
	}
	return res
}

// searchRun is the state of one search while it walks the tree.
type searchRun struct {
	t         *Tree
	ctx       context.Context
	send      func(*Entry) error
	f         plan
	sel       selection
	sizeLimit int
	pageSize  int // 0 without paging
	sent      int // entries returned so far, earlier pages included
	inPage    int
	deadline  time.Time
	steps     int
	within    map[int32]bool // nil: every entry may be returned
}

type runCode uint8

const (
	runDone runCode = iota
	runPageFull
	runSizeLimit
	runTimeLimit
	runGone
)

// run visits the entries in scope from position from on, in ascending order, and
// returns how the walk ended; for a full page, the position to resume at.
func (s *searchRun) run(base int32, scope int, from int32) (runCode, int32) {
	t := s.t
	b := &t.entries[base]
	lo, hi := base, b.end // the positions the scope may include
	switch scope {
	case ScopeBase:
		hi = base + 1
	case ScopeOne, ScopeChildren:
		lo = base + 1
	}
	lo = max(lo, from)
	if lo >= hi {
		return runDone, 0
	}
	if s.f.indexed {
		c := s.f.cands
		i, _ := slices.BinarySearch(c, lo)
		for ; i < len(c) && c[i] < hi; i++ {
			if scope == ScopeOne && t.entries[c[i]].parent != base {
				continue
			}
			if code := s.visit(c[i]); code != runDone {
				return code, c[i]
			}
		}
		return runDone, 0
	}
	if scope == ScopeOne {
		// Children only: skip each child's subtree.
		p := base + 1
		for p < lo {
			p = t.entries[p].end
		}
		for ; p < hi; p = t.entries[p].end {
			if code := s.visit(p); code != runDone {
				return code, p
			}
		}
		return runDone, 0
	}
	for p := lo; p < hi; p++ {
		if code := s.visit(p); code != runDone {
			return code, p
		}
	}
	return runDone, 0
}

// visit tests one entry and sends it if it matches. A code other than runDone stops the
// walk, with this entry not sent.
func (s *searchRun) visit(p int32) runCode {
	s.steps++
	if s.steps&255 == 0 {
		if s.ctx.Err() != nil {
			return runGone
		}
		if !s.deadline.IsZero() && time.Now().After(s.deadline) {
			return runTimeLimit
		}
	}
	if s.within != nil && !s.within[p] {
		return runDone
	}
	e := &s.t.entries[p]
	if s.f.match(e) != triTrue {
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
	if err := s.send(s.sel.entry(e)); err != nil {
		return runGone
	}
	s.sent++
	s.inPage++
	return runDone
}

// selection is a search's attribute list, resolved.
type selection struct {
	allUser, allOperational bool
	named                   []selected
	buf                     [4]selected // backs named for short lists
}

type selected struct {
	typ  *attrType
	opts string
}

// selection resolves the attributes a search asks for (RFC 4511 §4.5.1.8): none means
// all user attributes, "*" all user attributes, "+" all operational ones, "1.1" none;
// names are case-insensitive, may be OIDs, and include their subtypes (name → cn, sn, …).
// Unknown names are ignored.
func (t *Tree) selection(s *selection, attrs []string) {
	s.named = s.buf[:0]
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
				s.named = append(s.named, selected{at, opts})
			}
		}
	}
	if s.allUser {
		// Named user attributes add nothing to "*".
		s.named = slices.DeleteFunc(s.named, func(n selected) bool { return !n.typ.operational })
	}
}

// entry returns e as the selection shows it. The shared views serve "*" and "*"+"+";
// other selections get a new attribute list.
func (s *selection) entry(e *treeEntry) *Entry {
	switch {
	case s.allUser && s.allOperational:
		return &e.view
	case s.allUser && len(s.named) == 0:
		return &e.userView
	case !s.allUser && !s.allOperational && len(s.named) == 0:
		return &Entry{DN: e.view.DN}
	}
	out := &Entry{DN: e.view.DN}
	for i, a := range e.attrs {
		if s.wants(a) {
			if out.Attributes == nil {
				out.Attributes = make([]Attribute, 0, len(e.attrs)-i)
			}
			out.Attributes = append(out.Attributes, e.view.Attributes[i])
		}
	}
	return out
}

func (s *selection) wants(a treeAttr) bool {
	if a.typ.operational && s.allOperational || !a.typ.operational && s.allUser {
		return true
	}
	for _, n := range s.named {
		if a.typ.isA(n.typ) && hasOptions(a.opts, n.opts) {
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
	if q == nil {
		return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "not a compare request"}
	}
	pos, res := t.locate(q.DN)
	if res != nil {
		return res
	}
	if within != nil && !within.pos[pos] {
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
	e := &t.entries[pos]
	present := false
	for i := range e.attrs {
		a := &e.attrs[i]
		if !a.typ.isA(at) || !hasOptions(a.opts, opts) {
			continue
		}
		present = true
		eq := func(v string) bool { return v == norm }
		if at.eq == mrObjectSubClass {
			eq = func(v string) bool { return t.subclassOf(v, norm) }
		}
		if t.attrValues(e, i, at.eq.norm, eq) {
			return &Result{Code: ldap.LDAPResultCompareTrue}
		}
	}
	if !present {
		return &Result{Code: ldap.LDAPResultNoSuchAttribute}
	}
	return &Result{Code: ldap.LDAPResultCompareFalse}
}
