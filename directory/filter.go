package directory

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Filters of cached searches are compiled once per search, straight from the request's
// BER, into a tree of closures and a candidate list taken from the tree's indexes.
// Evaluation is three-valued (RFC 4511 §4.5.1.7): an unknown attribute type, a matching
// rule the attribute does not have, or an assertion value its syntax rejects make a
// filter item Undefined, which NOT leaves Undefined, and only True entries are returned.

// tri is the value of a filter for one entry.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triUndefined
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

type matcher func(e *treeEntry) tri

// plan is a compiled filter.
type plan struct {
	// match is nil for a plain equality item (eq): its matcher is made only when it
	// is part of a larger filter (Tree.matcher), and a search of that item alone
	// tests it directly (Tree.test), without a closure made per search.
	match matcher
	// When indexed is set, cands lists in ascending order every entry the filter may be
	// True for; the search need look at no other.
	cands   []entryID
	indexed bool
	// exact is set when every entry in cands matches (an equality item on an indexed
	// type without subtypes or options, whose index keys are the values normalised as
	// the item is): the search sends them without testing each again.
	exact bool
	// eq is set (eq.at not nil) for a plain equality item (anyEqual): an OR of many of
	// them on one attribute is compiled into one set lookup.
	eq eqItem
}

// matcher returns p's matcher, made for a plain equality item.
func (t *Tree) matcher(p plan) matcher {
	if p.match != nil {
		return p.match
	}
	at, opts, norm := p.eq.at, p.eq.opts, p.eq.norm
	return func(e *treeEntry) tri { return triOf(t.anyEqual(e, at, opts, norm)) }
}

// test is p's matcher applied to e.
func (t *Tree) test(p *plan, e *treeEntry) tri {
	if p.match == nil {
		return triOf(t.anyEqual(e, p.eq.at, p.eq.opts, p.eq.norm))
	}
	return p.match(e)
}

// eqItem is a plain equality filter item: attribute type, options, normalised value.
type eqItem struct {
	at   *attrType
	opts string
	norm string
}

// invalidNorm stands for a stored value its attribute's syntax rejects: it never equals
// a normalised assertion, and ordering and substrings skip it.
const invalidNorm = "\xff"

var (
	matchFalse     matcher = func(*treeEntry) tri { return triFalse }
	matchUndefined matcher = func(*treeEntry) tri { return triUndefined }
	planFalse              = plan{match: matchFalse, indexed: true}
	planUndefined          = plan{match: matchUndefined, indexed: true}
	errBadFilter           = errors.New("malformed filter")
)

// compileFilter compiles a search filter against t. The error is for a filter whose
// structure is not RFC 4511's, answered with protocolError.
func (t *Tree) compileFilter(f ldapwire.Filter) (plan, error) {
	if !f.Valid() || f.Class() != ber.ClassContext {
		return plan{}, errBadFilter
	}
	if t.ad != nil {
		if p, ok, err := t.compileAD(f); ok {
			return p, err
		}
	}
	switch f.Tag() {
	case ldap.FilterAnd:
		return t.compileAnd(f)
	case ldap.FilterOr:
		return t.compileOr(f)
	case ldap.FilterNot:
		if f.NumChildren() != 1 {
			return plan{}, errBadFilter
		}
		c, _ := f.Child(0)
		sub, err := t.compileFilter(c)
		if err != nil {
			return plan{}, err
		}
		m := t.matcher(sub)
		return plan{match: func(e *treeEntry) tri {
			switch m(e) {
			case triTrue:
				return triFalse
			case triFalse:
				return triTrue
			}
			return triUndefined
		}}, nil
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch:
		// Approximate matching is equality: the proxy has no phonetic algorithm, and
		// slapd too falls back to equality for the syntaxes without one.
		return t.compileEquality(f)
	case ldap.FilterSubstrings:
		return t.compileSubstrings(f)
	case ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		return t.compileOrdering(f)
	case ldap.FilterPresent:
		if !f.Primitive() {
			return plan{}, errBadFilter
		}
		return t.compilePresent(f.Bytes()), nil
	case ldap.FilterExtensibleMatch:
		return t.compileExtensible(f)
	}
	return plan{}, errBadFilter
}

// filterKids is room on the stack for the elements of an and, an or or a substrings
// assertion: most have few.
type filterKids [8]ldapwire.Filter

func (t *Tree) compileAnd(f ldapwire.Filter) (plan, error) {
	var room filterKids
	kids, ok := f.Children(room[:0])
	if !ok {
		return plan{}, errBadFilter
	}
	subs := make([]matcher, len(kids))
	var best *plan
	for i, c := range kids {
		p, err := t.compileFilter(c)
		if err != nil {
			return plan{}, err
		}
		subs[i] = t.matcher(p)
		if p.indexed && (best == nil || len(p.cands) < len(best.cands)) {
			best = &p
		}
	}
	out := plan{match: func(e *treeEntry) tri {
		r := triTrue
		for _, m := range subs {
			switch m(e) {
			case triFalse:
				return triFalse
			case triUndefined:
				r = triUndefined
			}
		}
		return r
	}}
	if len(subs) == 1 {
		out.match = subs[0]
	}
	if best != nil {
		out.cands, out.indexed = best.cands, true
	}
	return out, nil
}

// eqSetMin is how many equality items on one attribute an OR needs before they are
// tested as one set lookup instead of one by one.
const eqSetMin = 8

func (t *Tree) compileOr(f ldapwire.Filter) (plan, error) {
	var room filterKids
	kids, ok := f.Children(room[:0])
	if !ok {
		return plan{}, errBadFilter
	}
	subs := make([]matcher, 0, len(kids))
	indexed := true
	var lists [][]entryID
	// Equality items on one attribute (uid=a)(uid=b)... gathered for a set lookup.
	type eqKey struct {
		at   *attrType
		opts string
	}
	var sets map[eqKey][]string
	var setOrder []eqKey
	for _, c := range kids {
		p, err := t.compileFilter(c)
		if err != nil {
			return plan{}, err
		}
		if p.eq.at != nil {
			if sets == nil {
				sets = make(map[eqKey][]string)
			}
			k := eqKey{p.eq.at, p.eq.opts}
			if _, seen := sets[k]; !seen {
				setOrder = append(setOrder, k)
			}
			sets[k] = append(sets[k], p.eq.norm)
		} else {
			subs = append(subs, t.matcher(p))
		}
		if !p.indexed {
			indexed = false
		} else if len(p.cands) > 0 {
			lists = append(lists, p.cands)
		}
	}
	for _, k := range setOrder {
		norms := sets[k]
		if len(norms) < eqSetMin {
			for _, norm := range norms {
				subs = append(subs, func(e *treeEntry) tri { return triOf(t.anyEqual(e, k.at, k.opts, norm)) })
			}
			continue
		}
		set := make(map[string]struct{}, len(norms))
		for _, n := range norms {
			set[n] = struct{}{}
		}
		subs = append(subs, func(e *treeEntry) tri { return triOf(t.anyEqualSet(e, k.at, k.opts, set)) })
	}
	out := plan{match: func(e *treeEntry) tri {
		r := triFalse
		for _, m := range subs {
			switch m(e) {
			case triTrue:
				return triTrue
			case triUndefined:
				r = triUndefined
			}
		}
		return r
	}}
	if len(subs) == 1 {
		out.match = subs[0]
	}
	if indexed {
		out.cands, out.indexed = union(lists), true
	}
	return out, nil
}

// union merges ascending lists into one without duplicates.
func union(lists [][]entryID) []entryID {
	switch len(lists) {
	case 0:
		return nil
	case 1:
		return lists[0]
	}
	out := slices.Concat(lists...)
	slices.Sort(out)
	return slices.Compact(out)
}

// assertion is an attribute value assertion's attribute description and value.
func assertion(f ldapwire.Filter) (desc, value []byte, err error) {
	var room [2]ldapwire.Filter
	kids, ok := f.Children(room[:0])
	if !ok || len(kids) != 2 {
		return nil, nil, errBadFilter
	}
	return kids[0].Bytes(), kids[1].Bytes(), nil
}

// resolve looks up a filter's attribute description: nil for an unknown type.
func (t *Tree) resolve(desc []byte) (*attrType, string) {
	if i := strings.IndexByte(string(desc), ';'); i >= 0 {
		typ, opts := splitDescription(string(desc))
		return t.schema.attr(typ), opts
	}
	return t.schema.attrBytes(desc), ""
}

// anyValue reports whether f is true of a value of attribute type at (or a subtype of
// it) with the options opts in e, the values normalised as k.
func (t *Tree) anyValue(e *treeEntry, at *attrType, opts string, k normKind, f func(string) bool) bool {
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.nextOf(at) {
		if opts != "" && !hasOptions(c.opts(), opts) {
			continue
		}
		if t.attrValues(&c, k, f) {
			return true
		}
	}
	return false
}

// anyEqual is anyValue for an equality test, the commonest filter, without the call
// per value.
func (t *Tree) anyEqual(e *treeEntry, at *attrType, opts string, norm string) bool {
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.nextOf(at) {
		if opts != "" && !hasOptions(c.opts(), opts) {
			continue
		}
		if c.typ.eq != at.eq {
			if t.attrValues(&c, at.eq.norm, func(v string) bool { return v == norm }) {
				return true
			}
			continue
		}
		if c.hasNorm(norm) {
			return true
		}
	}
	return false
}

// anyEqualSet is anyEqual for a set of normalised values: true when a value of the
// attribute is in set.
func (t *Tree) anyEqualSet(e *treeEntry, at *attrType, opts string, set map[string]struct{}) bool {
	in := func(v string) bool { _, ok := set[v]; return ok }
	var c attrCursor
	c.start(e, t.types, t.consts)
	for c.nextOf(at) {
		if opts != "" && !hasOptions(c.opts(), opts) {
			continue
		}
		if c.typ.eq != at.eq {
			if t.attrValues(&c, at.eq.norm, in) {
				return true
			}
			continue
		}
		if c.anyNorm(in) {
			return true
		}
	}
	return false
}

// attrValues calls f on the values of the attribute at c normalised as k, until f
// returns true. Values that k rejects are skipped.
func (t *Tree) attrValues(c *attrCursor, k normKind, f func(string) bool) bool {
	if c.typ.eq != nil && c.typ.eq.norm == k {
		return c.anyNorm(f)
	}
	var v valueCursor
	v.start(c)
	for v.next() {
		if n, ok := t.schema.normalize(k, bytesOf(v.val), posValue); ok && f(n) {
			return true
		}
	}
	return false
}

// Attribute types that filters treat specially.
var (
	atObjectClass           = staticAttributeTypes["objectclass"]
	atStructuralObjectClass = staticAttributeTypes["structuralobjectclass"]
	atEntryDN               = staticAttributeTypes["entrydn"]
	atHasSubordinates       = staticAttributeTypes["hassubordinates"]
)

func (t *Tree) compileEquality(f ldapwire.Filter) (plan, error) {
	desc, val, err := assertion(f)
	if err != nil {
		return plan{}, err
	}
	at, opts := t.resolve(desc)
	if at == nil || at.eq == nil {
		return planUndefined, nil
	}
	norm, ok := t.schema.normalize(at.eq.norm, val, posValue)
	if !ok {
		return planUndefined, nil
	}
	if opts != "" && at.computed {
		return planFalse, nil
	}
	switch at {
	case atHasSubordinates:
		want := norm == "TRUE"
		return plan{match: func(e *treeEntry) tri { return triOf(e.hasChildren() == want) }}, nil
	case atEntryDN:
		id, ok := t.byDN.get(norm)
		if !ok {
			return planFalse, nil
		}
		return plan{match: func(e *treeEntry) tri { return triOf(e.canon() == norm) }, cands: []entryID{id}, indexed: true}, nil
	}
	var p plan
	if at.eq == mrObjectSubClass {
		eq := func(v string) bool { return t.subclassOf(v, norm) }
		p.match = func(e *treeEntry) tri { return triOf(t.anyValue(e, at, opts, at.eq.norm, eq)) }
	} else {
		p.eq = eqItem{at: at, opts: opts, norm: norm}
	}
	if _, ok := t.index[at]; ok && !at.hasSubtypes {
		p.cands, p.indexed = t.postings(at, norm), true
		p.exact = p.eq.at != nil && opts == ""
	}
	return p, nil
}

// subclassOf reports whether the class named by key v is the class want or a subclass.
func (t *Tree) subclassOf(v, want string) bool {
	if v == want {
		return true
	}
	c := t.schema.class(v)
	return c != nil && slices.Contains(c.ancestors, want)
}

func (t *Tree) compileOrdering(f ldapwire.Filter) (plan, error) {
	desc, val, err := assertion(f)
	if err != nil {
		return plan{}, err
	}
	at, opts := t.resolve(desc)
	if at == nil || at.ord == nil {
		return planUndefined, nil
	}
	rule := at.ord
	norm, ok := t.schema.normalize(rule.norm, val, posValue)
	if !ok {
		return planUndefined, nil
	}
	var test func(string) bool
	if f.Tag() == ldap.FilterGreaterOrEqual {
		test = func(v string) bool { return rule.cmp(v, norm) >= 0 }
	} else {
		test = func(v string) bool { return rule.cmp(v, norm) <= 0 }
	}
	return plan{match: func(e *treeEntry) tri { return triOf(t.anyValue(e, at, opts, rule.norm, test)) }}, nil
}

func (t *Tree) compileSubstrings(f ldapwire.Filter) (plan, error) {
	var two [2]ldapwire.Filter
	kids, ok := f.Children(two[:0])
	if !ok || len(kids) != 2 {
		return plan{}, errBadFilter
	}
	at, opts := t.resolve(kids[0].Bytes())
	var room filterKids
	parts, ok := kids[1].Children(room[:0])
	if !ok || len(parts) == 0 {
		return plan{}, errBadFilter
	}
	var sub substrings
	for i, p := range parts {
		if p.Class() != ber.ClassContext || p.Tag() > 2 ||
			p.Tag() == 0 && i != 0 || p.Tag() == 2 && i != len(parts)-1 {
			return plan{}, errBadFilter
		}
	}
	if at == nil || at.sub == nil {
		return planUndefined, nil
	}
	rule := at.sub
	for _, p := range parts {
		pos := [...]normPos{posInitial, posAny, posFinal}[p.Tag()]
		v, ok := t.schema.normalize(rule.norm, p.Bytes(), pos)
		if !ok {
			return planUndefined, nil
		}
		if v == "" && rule.norm == normTelephone {
			// slapd finds nothing for a part that is all spaces and hyphens.
			return planFalse, nil
		}
		switch p.Tag() {
		case 0:
			sub.initial = v
		case 1:
			sub.any = append(sub.any, v)
		case 2:
			sub.final = v
		}
	}
	return plan{match: func(e *treeEntry) tri { return triOf(t.anyValue(e, at, opts, rule.norm, sub.match)) }}, nil
}

// substrings is a normalised substrings assertion.
type substrings struct {
	initial string
	any     []string
	final   string
}

func (s *substrings) match(v string) bool {
	if len(v) < len(s.initial)+len(s.final) || !strings.HasPrefix(v, s.initial) || !strings.HasSuffix(v, s.final) {
		return false
	}
	v = v[len(s.initial) : len(v)-len(s.final)]
	for _, a := range s.any {
		i := strings.Index(v, a)
		if i < 0 {
			return false
		}
		v = v[i+len(a):]
	}
	return true
}

func (t *Tree) compilePresent(desc []byte) plan {
	at, opts := t.resolve(desc)
	switch {
	case at == nil:
		return planUndefined
	case opts != "" && at.computed:
		return planFalse
	case at == atObjectClass && opts == "":
		return plan{match: func(*treeEntry) tri { return triTrue }}
	}
	return plan{match: func(e *treeEntry) tri {
		var c attrCursor
		c.start(e, t.types, t.consts)
		for c.nextOf(at) {
			if opts == "" || hasOptions(c.opts(), opts) {
				return triTrue
			}
		}
		return triFalse
	}}
}

// compileExtensible compiles an extensible match (RFC 4511 §4.5.1.7.7): the rule by name
// or OID, applied to one attribute type, to every attribute the rule applies to, and,
// with dnAttributes, to the values of the entry's DN as well.
func (t *Tree) compileExtensible(f ldapwire.Filter) (plan, error) {
	var ruleName, desc, value []byte
	var dnAttrs, haveRule, haveDesc, haveValue bool
	var room filterKids
	kids, ok := f.Children(room[:0])
	if !ok {
		return plan{}, errBadFilter
	}
	for _, c := range kids {
		if c.Class() != ber.ClassContext {
			return plan{}, errBadFilter
		}
		switch c.Tag() {
		case ldap.MatchingRuleAssertionMatchingRule:
			ruleName, haveRule = c.Bytes(), true
		case ldap.MatchingRuleAssertionType:
			desc, haveDesc = c.Bytes(), true
		case ldap.MatchingRuleAssertionMatchValue:
			value, haveValue = c.Bytes(), true
		case ldap.MatchingRuleAssertionDNAttributes:
			b := c.Bytes()
			dnAttrs = len(b) == 1 && b[0] != 0
		default:
			return plan{}, errBadFilter
		}
	}
	if !haveValue {
		return plan{}, errBadFilter
	}
	var rule *matchingRule
	if haveRule {
		if rule = ruleByName[strings.ToLower(string(ruleName))]; rule == nil {
			return planUndefined, nil
		}
	}
	var at *attrType
	var opts string
	if haveDesc {
		if at, opts = t.resolve(desc); at == nil {
			return planUndefined, nil
		}
	}
	switch {
	case rule == nil && at == nil:
		return planUndefined, nil
	case rule == nil:
		if rule = at.eq; rule == nil {
			return planUndefined, nil
		}
	case rule == mrInChain:
		return t.compileInChain(at, opts, value), nil
	}
	if rule.kind == ruleSubstrings || at != nil && (rule.ext == extNoAttribute || !rule.usableWith(at)) {
		return planUndefined, nil
	}
	norm, ok := t.schema.normalize(rule.norm, value, posValue)
	if !ok {
		return planUndefined, nil
	}
	if at == nil && rule.ext == extNoAttribute || at == atHasSubordinates && !dnAttrs {
		// hasSubordinates is not stored with entries, and slapd's extensible matches
		// only see stored attributes (entryDN is the exception it makes).
		return planFalse, nil
	}
	test := t.ruleTest(rule, norm)
	return plan{match: func(e *treeEntry) tri {
		switch {
		case at == nil:
			var c attrCursor
			c.start(e, t.types, t.consts)
			for c.next() {
				if a := c.typ; !a.computed && rule.usableWith(a) && t.attrValues(&c, rule.norm, test) {
					return triTrue
				}
			}
		case at != atHasSubordinates && t.anyValue(e, at, opts, rule.norm, test):
			return triTrue
		}
		if dnAttrs && t.dnValues(e, at, rule, test) {
			return triTrue
		}
		return triFalse
	}}, nil
}

// ruleTest returns the test of an extensible match's rule against its normalised
// assertion. An ordering rule is true for values that sort before the assertion.
func (t *Tree) ruleTest(rule *matchingRule, norm string) func(string) bool {
	switch rule.kind {
	case ruleOrdering:
		return func(v string) bool { return rule.cmp(v, norm) < 0 }
	case ruleBitAnd, ruleBitOr:
		// Flags (userAccountControl, groupType) are 32-bit; values beyond 64 bits match
		// nothing, which also keeps a huge assertion from costing time per entry.
		want, err := strconv.ParseInt(norm, 10, 64)
		if err != nil {
			return func(string) bool { return false }
		}
		return func(v string) bool {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return false
			}
			if rule.kind == ruleBitAnd {
				return n&want == want
			}
			return n&want != 0
		}
	}
	if rule == mrObjectSubClass {
		return func(v string) bool { return t.subclassOf(v, norm) }
	}
	return func(v string) bool { return v == norm }
}

// dnValues applies an extensible match with dnAttributes to the attribute values of the
// entry's DN: its own RDN and those of its ancestors, each as the ancestor spells it.
// The DNs are parsed here, per entry: such filters are rare, and an entry keeps no
// parsed form of its DN.
func (t *Tree) dnValues(e *treeEntry, at *attrType, rule *matchingRule, test func(string) bool) bool {
	for {
		dn, ok := parseDN(e.dn())
		if !ok {
			return false
		}
		for _, ava := range t.rdnValues(dn, e.parent == noEntry) {
			if at != nil && !ava.typ.isA(at) || at == nil && !rule.usableWith(ava.typ) {
				continue
			}
			if v, ok := t.schema.normalize(rule.norm, []byte(ava.value), posValue); ok && test(v) {
				return true
			}
		}
		if e.parent == noEntry {
			return false
		}
		e = t.entry(e.parent)
	}
}

// compileInChain compiles LDAP_MATCHING_RULE_IN_CHAIN: true for the entries whose value
// of at leads to the asserted DN directly or through a chain of entries, as Active
// Directory evaluates (memberOf:1.2.840.113556.1.4.1941:=<group>) for every member of
// the group and of the groups nested in it. The whole set is computed here, once.
func (t *Tree) compileInChain(at *attrType, opts string, value []byte) plan {
	if at == nil || at.synt != synDN || opts != "" {
		return planUndefined
	}
	target, ok := t.schema.normDN(string(value))
	if !ok {
		return planUndefined
	}
	in := make(map[entryID]bool)
	queue := []string{target}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, i := range t.referrers(at, cur) {
			if !in[i] {
				in[i] = true
				queue = append(queue, t.entry(i).canon())
			}
		}
	}
	cands := make([]entryID, 0, len(in))
	for i := range in {
		cands = append(cands, i)
	}
	slices.Sort(cands)
	return plan{match: func(e *treeEntry) tri { return triOf(in[e.id]) }, cands: cands, indexed: true}
}

// referrers lists the entries whose value of at is the DN ndn. member and memberOf are
// two views of one relation, so each also follows the other: a user is in a group's
// chain if the group lists it as a member even when the user lacks memberOf.
func (t *Tree) referrers(at *attrType, ndn string) []entryID {
	var out []entryID
	if _, ok := t.index[at]; ok && !at.hasSubtypes {
		out = append(out, t.postings(at, ndn)...)
	} else {
		for id := range t.entries.next {
			if e := t.entry(id); e != nil && t.anyValue(e, at, "", normDN, func(v string) bool { return v == ndn }) {
				out = append(out, id)
			}
		}
	}
	var dual *attrType
	switch at {
	case t.schema.attr("memberOf"):
		dual = t.schema.attr("member")
	case t.schema.attr("member"):
		dual = t.schema.attr("memberOf")
	}
	if id, ok := t.byDN.get(ndn); ok && dual != nil {
		t.anyValue(t.entry(id), dual, "", normDN, func(v string) bool {
			if j, ok := t.byDN.get(v); ok {
				out = append(out, j)
			}
			return false
		})
	}
	return out
}
