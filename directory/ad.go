package directory

import (
	"iter"
	"strings"
	"sync"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Active Directory's own filter conventions ([MS-ADTS] 3.1.1.3.1.3), for a tree that
// serves a directory read from AD: objectCategory compared with a class's short name
// (section 3.1.1.3.1.3.5) and ambiguous name resolution, the aNR pseudo-attribute
// (3.1.1.3.1.3.4). The matching rules AD exposes (integerBitAndMatch, integerBitOrMatch,
// LDAP_MATCHING_RULE_IN_CHAIN) are the tree's in every mode (filter.go).

// A TreeOption sets how a tree built by NewTree, and every version applied to it, answers.
type TreeOption func(*Tree)

// ADOptions are the settings of Active Directory's filter conventions.
type ADOptions struct {
	// SchemaNamingContext is the forest's schema naming context, as the root DSE's
	// schemaNamingContext names it ("CN=Schema,CN=Configuration,DC=example,DC=com"): the
	// parent of the category DNs that objectCategory's short names stand for. Empty: the
	// parent of the entries' own objectCategory values.
	SchemaNamingContext string
	// ANRAttributes is the ANR attribute set: the attributes whose searchFlags have fANR
	// in the forest's schema. Empty: AD's default set (adANRAttributes).
	ANRAttributes []string
}

// WithActiveDirectory makes a tree follow Active Directory's filter conventions:
// (objectCategory=person) stands for the category DN of class person, as AD reads it,
// and (anr=value) searches the ANR attribute set.
func WithActiveDirectory(o ADOptions) TreeOption {
	return func(t *Tree) {
		ad := &adConventions{schemaNC: o.SchemaNamingContext, anr: o.ANRAttributes}
		if ad.schemaNC != "" {
			ad.categories = newCategoryCache()
		}
		if len(ad.anr) == 0 {
			ad.anr = adANRAttributes
		}
		t.ad = ad
	}
}

// adANRAttributes is AD's default ANR attribute set, that of Windows Server 2008 and
// later: the attributes whose schema definition has fANR in its searchFlags.
var adANRAttributes = []string{
	"displayName", "givenName", "legacyExchangeDN", "msDS-AdditionalSamAccountName",
	"msDS-PhoneticCompanyName", "msDS-PhoneticDepartment", "msDS-PhoneticDisplayName",
	"msDS-PhoneticFirstName", "msDS-PhoneticLastName", "name", "physicalDeliveryOfficeName",
	"proxyAddresses", "sAMAccountName", "sn",
}

// adConventions is the state of the conventions: shared by the versions of a tree, and
// replaced, not changed, when a version learns the schema naming context.
type adConventions struct {
	schemaNC string // "" until known
	anr      []string
	// categories caches the canonical DN that a short name stands for (lowercased name →
	// DN), for the schemaNC it was made for: clients send the same few names with
	// every search, and parsing the DN costs more than the rest of their filter. At most
	// maxCachedCategories names.
	categories *categoryCache
}

// maxCachedCategories bounds the short names cached: a client that sends many distinct
// ones must not grow the cache without end.
const maxCachedCategories = 256

type categoryCache struct {
	mu sync.RWMutex
	m  map[string]string
}

func newCategoryCache() *categoryCache { return &categoryCache{m: map[string]string{}} }

// cached returns the canonical category DN of a short name seen before.
func (ad *adConventions) cached(name []byte) (string, bool) {
	c := ad.categories
	if c == nil {
		return "", false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	dn, ok := c.m[strings.ToLower(string(name))]
	return dn, ok
}

// remember caches the canonical category DN of a short name.
func (ad *adConventions) remember(name []byte, dn string) {
	c := ad.categories
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) < maxCachedCategories {
		c.m[strings.ToLower(string(name))] = dn
	}
}

// learn returns the conventions with the schema naming context taken from the first
// objectCategory value among entries, when it is not known yet: the category DNs are
// the children of the schema container.
func (ad *adConventions) learn(entries iter.Seq[*Entry]) *adConventions {
	if ad == nil || ad.schemaNC != "" {
		return ad
	}
	for e := range entries {
		for _, a := range e.Attributes {
			if !strings.EqualFold(a.Name, "objectCategory") || len(a.Values) == 0 {
				continue
			}
			dn, err := ldap.ParseDN(string(a.Values[0]))
			if err != nil || len(dn.RDNs) < 2 {
				continue
			}
			dn.RDNs = dn.RDNs[1:]
			return &adConventions{schemaNC: dn.String(), anr: ad.anr, categories: newCategoryCache()}
		}
	}
	return ad
}

// category returns the DN that a short name stands for as an objectCategory value:
// the defaultObjectCategory of the class of that lDAPDisplayName, or else the category
// whose CN is the name. "" when the schema naming context is not known.
func (ad *adConventions) category(name string) string {
	if ad.schemaNC == "" {
		return ""
	}
	cn, ok := adDefaultCategories[strings.ToLower(name)]
	if !ok {
		cn = name
	}
	return "CN=" + ldap.EscapeDN(cn) + "," + ad.schemaNC
}

// oidANR is the OID of the aNR attribute, which no entry has: filters name it to ask
// for ambiguous name resolution.
const oidANR = "1.2.840.113556.1.4.1208"

// compileAD compiles the filter items that Active Directory's conventions give a
// meaning of their own: any item on aNR, and equality on objectCategory. ok is false
// for every other item, which compiles as LDAP has it.
func (t *Tree) compileAD(f ldapwire.Filter) (p plan, ok bool, err error) {
	var desc []byte
	var two [2]ldapwire.Filter
	switch f.Tag() {
	case ldap.FilterPresent:
		desc = f.Bytes()
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual, ldap.FilterSubstrings:
		kids, ok := f.Children(two[:0])
		if !ok || len(kids) != 2 {
			return plan{}, false, nil // malformed: the LDAP compiler says so
		}
		desc = kids[0].Bytes()
	default:
		return plan{}, false, nil
	}
	typ, opts := splitDescription(string(desc))
	if strings.EqualFold(typ, "aNR") || typ == oidANR {
		return t.compileANRItem(f.Tag(), two[1])
	}
	if f.Tag() != ldap.FilterEqualityMatch && f.Tag() != ldap.FilterApproxMatch {
		return plan{}, false, nil
	}
	at := t.schema.attr(typ)
	if at == nil || !strings.EqualFold(at.name, "objectCategory") {
		return plan{}, false, nil
	}
	return t.compileObjectCategory(at, opts, two[1].Bytes()), true, nil
}

// compileObjectCategory compiles (objectCategory=V): V is compared as a DN, and a V
// that is not a DN stands for the category DN of the class it names (section
// 3.1.1.3.1.3.5: (objectCategory=user) is (objectCategory=CN=Person,CN=Schema,...)).
func (t *Tree) compileObjectCategory(at *attrType, opts string, value []byte) plan {
	norm, ok := t.ad.cached(value)
	if !ok {
		v := string(value)
		isName := false
		if _, isDN := parseDN(v); !isDN {
			if v = t.ad.category(v); v == "" {
				return planFalse // no entry has an objectCategory to learn the schema from
			}
			isName = true
		}
		if norm, ok = t.schema.normDN(v); !ok {
			return planFalse
		}
		if isName {
			t.ad.remember(value, norm)
		}
	}
	p := plan{match: func(e *treeEntry) tri {
		return triOf(t.anyValue(e, at, opts, normDN, func(v string) bool { return v == norm }))
	}}
	if _, indexed := t.index[at]; indexed && at.eq != nil && at.eq.norm == normDN && !at.hasSubtypes {
		p.cands, p.indexed = t.postings(at, norm), true
	}
	return p
}

// compileANRItem compiles a filter item on aNR as section 3.1.1.3.1.3.4 rewrites it:
// presence is False (no entry has the attribute), a substrings item is its initial part
// (Undefined without one), and equality, approximate and ordering items alike search
// the ANR attribute set for the value.
func (t *Tree) compileANRItem(choice ber.Tag, second ldapwire.Filter) (plan, bool, error) {
	switch choice {
	case ldap.FilterPresent:
		return planFalse, true, nil
	case ldap.FilterSubstrings:
		first, ok := second.Child(0)
		if !ok || first.Class() != ber.ClassContext || first.Tag() != 0 {
			return planUndefined, true, nil
		}
		return t.compileANR(first.Text()), true, nil
	}
	return t.compileANR(second.Text()), true, nil
}

// compileANR compiles the search of the ANR attribute set for value:
//
//	(|(A1=value*)...(An=value*)(legacyExchangeDN=value)
//	  (&(givenName=first*)(sn=rest*))(&(givenName=rest*)(sn=first*)))
//
// where the last two terms are there when value has a space, first being what comes
// before the first space and rest what comes after it. A value that starts with "="
// asks for equality instead of initial substrings throughout. Spaces around the value
// and between its two parts are not significant, as they are not in the names compared
// (caseIgnoreMatch). Each attribute is compared by its own rules, its subtypes left out
// (AD has none: its name is the RDN's value, not the supertype of cn and sn).
func (t *Tree) compileANR(value string) plan {
	value = strings.Trim(value, " ")
	exact := strings.HasPrefix(value, "=")
	if exact {
		value = strings.Trim(value[1:], " ")
	}
	if value == "" {
		return planUndefined
	}
	// The terms on one attribute each are tested in one pass over the entry's
	// attributes.
	single := map[*attrType]anrTest{}
	for _, name := range t.ad.anr {
		legacy := strings.EqualFold(name, "legacyExchangeDN")
		if at, test := t.anrTerm(name, value, exact || legacy); at != nil {
			single[at] = test
		}
	}
	var pairs [][2]func(*treeEntry) bool
	if first, rest, split := strings.Cut(value, " "); split {
		rest = strings.TrimLeft(rest, " ")
		for _, pair := range [2][2]string{{first, rest}, {rest, first}} {
			gat, given := t.anrTerm("givenName", pair[0], exact)
			sat, sn := t.anrTerm("sn", pair[1], exact)
			if gat != nil && sat != nil {
				pairs = append(pairs, [2]func(*treeEntry) bool{given.on(t, gat), sn.on(t, sat)})
			}
		}
	}
	// The types of single by the numbers the entries' heads give them: each attribute is
	// looked up in the map only when it is one of them.
	want := make([]bool, len(t.types))
	for id, typ := range t.types {
		_, want[id] = single[typ]
	}
	return plan{match: func(e *treeEntry) tri {
		var c attrCursor
		c.start(e, t.types, t.consts)
		for c.nextIn(want) {
			if test := single[c.typ]; t.attrValues(&c, test.norm, test.f) {
				return triTrue
			}
		}
		for _, p := range pairs {
			if p[0](e) && p[1](e) {
				return triTrue
			}
		}
		return triFalse
	}}
}

// anrTest is the test of one ANR term on the values of one attribute, normalised as
// norm.
type anrTest struct {
	norm normKind
	f    func(string) bool
}

// on returns the test applied to the values of at in an entry.
func (a anrTest) on(t *Tree, at *attrType) func(*treeEntry) bool {
	return func(e *treeEntry) bool {
		var c attrCursor
		c.start(e, t.types, t.consts)
		for c.nextIs(at, false) {
			if t.attrValues(&c, a.norm, a.f) {
				return true
			}
		}
		return false
	}
}

// anrTerm is one term of an ANR search: attribute name equal to value, or starting with
// it, on the values of that type only. A nil type when no entry has the attribute and
// the schema does not know it, or when its rules cannot compare the value: the term is
// then False for every entry, where LDAP would make it Undefined (AD's schema knows
// every attribute of the set).
func (t *Tree) anrTerm(name, value string, exact bool) (*attrType, anrTest) {
	at := t.schema.attr(name)
	if at == nil {
		return nil, anrTest{}
	}
	rule, pos := at.sub, posInitial
	if exact {
		rule, pos = at.eq, posValue
	}
	if rule == nil {
		return nil, anrTest{}
	}
	norm, ok := t.schema.normalize(rule.norm, []byte(value), pos)
	if !ok {
		return nil, anrTest{}
	}
	if exact {
		return at, anrTest{rule.norm, func(v string) bool { return v == norm }}
	}
	return at, anrTest{rule.norm, func(v string) bool { return strings.HasPrefix(v, norm) }}
}

// withSchemaNC returns the conventions with the schema naming context nc, which a
// tree's image recorded ("" when none was known); ok is false when the conventions
// were given another one.
func (ad *adConventions) withSchemaNC(nc string) (_ *adConventions, ok bool) {
	switch {
	case nc == "" || ad.schemaNC == nc:
		return ad, true
	case ad.schemaNC != "":
		return ad, false
	}
	return &adConventions{schemaNC: nc, anr: ad.anr, categories: newCategoryCache()}, true
}
