package directory

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// A Schema is what a tree matches with: attribute types (names, OID, supertype,
// equality, ordering and substrings rules, syntax, usage) and object classes
// (superclasses, kind). BuiltinSchema is the proxy's own (schema.go's tables);
// ParseSchema builds one from the descriptions an upstream publishes in its subschema
// subentry (RFC 4512 §4.1), so that the served tree matches every attribute as the
// upstream does: integers as integers, case-exact where the upstream is, octet strings
// byte for byte. A Schema never changes once built; any number of trees may share it.
type Schema struct {
	attrs map[string]*attrType // by lowercased name and by OID
	// spelled holds the types whose names are not in lower case by their names as
	// written (sAMAccountName, objectGUID): entries and filters spell them so, and find
	// them with one lookup instead of a miss and a lowercased copy.
	spelled map[string]*attrType
	classes map[string]*objectClass // the same
	// types are the attribute types as described, in the upstream's order, for the
	// subschema subentry; nil for the built-in Schema.
	types   []*attrDesc
	classDs []string // the objectClasses values, as the upstream has them
	syntaxD []string // the ldapSyntaxes values
	entry   func() *Entry
	log     *slog.Logger
	// logged holds the names of attribute types that the entries use and the Schema
	// does not describe, each logged once.
	logged sync.Map
	// fp is the hash of the types and classes, for images (fingerprint).
	fpOnce sync.Once
	fp     uint64
}

// Descriptions are a directory's schema as its subschema subentry publishes it: the
// values of attributeTypes, objectClasses, matchingRules and ldapSyntaxes.
type Descriptions struct {
	AttributeTypes []string
	ObjectClasses  []string
	MatchingRules  []string
	LDAPSyntaxes   []string
}

var builtinSchema = sync.OnceValue(func() *Schema {
	s := &Schema{attrs: staticAttributeTypes, classes: staticObjectClasses}
	s.spelled = map[string]*attrType{}
	for _, t := range staticAttributeTypes {
		s.spell(t.name, strings.ToLower(t.name))
	}
	s.entry = sync.OnceValue(func() *Entry {
		return newSubschemaEntry(ldapSyntaxDescriptions(), attributeTypeDescriptions(), objectClassDescriptions())
	})
	return s
})

// BuiltinSchema returns the schema the proxy knows by itself: the attribute types,
// object classes and matching rules of OpenLDAP's core, cosine, inetorgperson and nis
// schemas plus the Active Directory and FreeIPA attributes the sync presets serve. It
// is the schema while no upstream schema has been read.
func BuiltinSchema() *Schema { return builtinSchema() }

// Builtin reports whether s is the built-in schema.
func (s *Schema) Builtin() bool { return s.types == nil }

// logger is where s reports what it cannot follow.
func (s *Schema) logger() *slog.Logger {
	if s.log == nil {
		return slog.Default()
	}
	return s.log
}

// undescribed logs, once per name, that the entries use an attribute type the schema
// does not describe: it is matched as a case-insensitive string.
func (s *Schema) undescribed(name string) {
	key := strings.ToLower(name)
	if _, seen := s.logged.Load(key); seen {
		return
	}
	// A copy: name may be a slice of bytes that go before the Schema does (a tree's
	// image that ReadTree refused, which its caller unmaps).
	if _, seen := s.logged.LoadOrStore(strings.Clone(key), true); seen {
		return
	}
	what := "the upstream's schema"
	if s.Builtin() {
		what = "the built-in schema"
	}
	s.logger().Info("attribute type not in "+what+"; it is matched as a case-insensitive string", "attribute", name)
}

// attrDesc is one parsed attribute type description (RFC 4512 §4.1.2).
type attrDesc struct {
	raw                                  string
	oid                                  string
	names                                []string
	keys                                 []string // the OID and the names, lowercased
	desc, sup, eq, ord, sub, syntax      string
	usage                                string
	obsolete, single, collective, noMods bool
	// derived is set when a rule the description names is unknown or absent and the
	// tree matches by the syntax instead: the subentry then describes the rules used.
	derived bool
	typ     *attrType
}

// classDesc is one parsed object class description (RFC 4512 §4.1.1).
type classDesc struct {
	oid   string
	names []string
	keys  []string // the OID and the names, lowercased
	sups  []string
	kind  classKind
}

// ParseSchema builds a Schema from an upstream's descriptions. Each attribute type
// inherits its rules and syntax from its SUP chain. A description without EQUALITY
// is matched as the upstream matches it: not at all where the upstream names rules
// (OpenLDAP, 389-DS: a filter on it is Undefined, as there), by its syntax where no
// attribute type names one, which is how Active Directory's aggregate schema describes
// its types (INTEGER → integerMatch, DN → distinguishedNameMatch, octet strings byte for
// byte, Unicode strings case-insensitively, its case-sensitive string syntax
// case-exactly, …). A rule the proxy does not implement is replaced by its syntax's,
// and logged. Descriptions that do not parse are skipped and logged; none that parses
// is an error. The attribute types the proxy computes for every entry
// (structuralObjectClass, entryDN, hasSubordinates, subschemaSubentry) and objectClass
// keep the built-in definitions, and so does memberOf when the upstream lacks it: the
// proxy serves it from the synced memberships.
func ParseSchema(d Descriptions, log *slog.Logger) (*Schema, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Schema{attrs: make(map[string]*attrType, 2*len(d.AttributeTypes)+16), classes: make(map[string]*objectClass, 2*len(d.ObjectClasses)+1),
		log: log, classDs: d.ObjectClasses, syntaxD: d.LDAPSyntaxes, types: make([]*attrDesc, 0, len(d.AttributeTypes))}
	var bad []string
	deriveAll := true
	for _, v := range d.AttributeTypes {
		a, err := parseAttrDesc(v)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if a.eq != "" {
			deriveAll = false
		}
		s.types = append(s.types, a)
	}
	if len(s.types) == 0 {
		return nil, errors.New("schema: no attribute type description parses")
	}
	byName := make(map[string]*attrDesc, 2*len(s.types))
	for _, a := range s.types {
		for _, k := range a.keys {
			if _, dup := byName[k]; !dup {
				byName[k] = a
			}
		}
	}
	unknownRules := map[string][]string{}
	for _, a := range s.types {
		s.resolveAttr(a, byName, deriveAll, unknownRules, 0)
	}
	// The computed types are the tree's own, whatever the upstream says of them.
	computed := []string{"objectclass", "structuralobjectclass", "entrydn", "hassubordinates", "subschemasubentry"}
	for _, name := range computed {
		st := staticAttributeTypes[name]
		for key, t := range staticAttributeTypes {
			if t == st {
				s.attrs[key] = st
			}
		}
		if a := byName[name]; a != nil {
			for _, k := range a.keys {
				s.attrs[k] = st
			}
		}
	}
	// memberOf is served from the synced memberships whether the upstream has it or not
	// (OpenLDAP without the memberof overlay): a DN, as the built-in schema has it.
	if s.attrs["memberof"] == nil {
		s.attrs["memberof"], s.attrs[oidMemberOf] = atMemberOf, atMemberOf
	}
	for _, a := range s.types {
		if a.typ.sup != nil {
			a.typ.sup.hasSubtypes = true
		}
	}
	for rule, attrs := range unknownRules {
		log.Info("the upstream's schema names a matching rule the proxy does not implement; its attributes match by their syntax",
			"rule", rule, "attributes", firstNames(attrs))
	}

	classes := make([]*classDesc, 0, len(d.ObjectClasses))
	for _, v := range d.ObjectClasses {
		c, err := parseClassDesc(v)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		classes = append(classes, c)
	}
	s.buildClasses(classes)
	s.spelled = make(map[string]*attrType, len(s.types))
	for _, a := range s.types {
		for i, n := range a.names {
			s.spell(n, a.keys[1+i])
		}
	}
	for _, name := range append(computed, "memberof") {
		s.spell(staticAttributeTypes[name].name, name)
	}
	if len(bad) > 0 {
		log.Warn("descriptions in the upstream's schema that do not parse are left out", "count", len(bad), "first", bad[0])
	}
	s.entry = sync.OnceValue(s.subschemaEntry)
	return s, nil
}

// spell makes name, whose lowercased form is key, find what s.attrs has under key.
func (s *Schema) spell(name, key string) {
	if t := s.attrs[key]; t != nil && name != key {
		s.spelled[name] = t
	}
}

// firstNames shortens a list for a log line.
func firstNames(names []string) string {
	slices.Sort(names)
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}

// resolveAttr makes a's attribute type, after its supertype's.
func (s *Schema) resolveAttr(a *attrDesc, byName map[string]*attrDesc, deriveAll bool, unknown map[string][]string, depth int) *attrType {
	if a.typ != nil {
		return a.typ
	}
	name := a.oid
	if len(a.names) > 0 {
		name = a.names[0]
	}
	t := &attrType{name: name}
	a.typ = t // before the supertype: a SUP cycle ends here
	var eq, ord, sub *matchingRule
	syntax := a.syntax
	if sa := byName[strings.ToLower(a.sup)]; a.sup != "" && sa != nil && sa != a && depth < 32 {
		t.sup = s.resolveAttr(sa, byName, deriveAll, unknown, depth+1)
		eq, ord, sub = t.sup.eq, t.sup.ord, t.sup.sub
		if syntax == "" {
			syntax = sa.effectiveSyntax(byName)
		}
	}
	known := func(rule string, kind ruleKind) (*matchingRule, bool) {
		if rule == "" {
			return nil, true
		}
		r := ruleByName[strings.ToLower(rule)]
		if r == nil || r.kind != kind && !(kind == ruleEquality && r == mrObjectSubClass) {
			unknown[rule] = append(unknown[rule], name)
			return nil, false
		}
		return r, true
	}
	dEq, dOrd, dSub := rulesForSyntax(syntax)
	if r, ok := known(a.eq, ruleEquality); !ok {
		eq, a.derived = dEq, true
	} else if r != nil {
		eq = r
	}
	if r, ok := known(a.ord, ruleOrdering); !ok {
		ord, a.derived = dOrd, true
	} else if r != nil {
		ord = r
	}
	if r, ok := known(a.sub, ruleSubstrings); !ok {
		sub, a.derived = dSub, true
	} else if r != nil {
		sub = r
	}
	if deriveAll && t.sup == nil {
		eq, ord, sub = dEq, dOrd, dSub
		a.derived = eq != nil
	}
	t.eq, t.ord, t.sub = eq, ord, sub
	t.synt = syntaxClassOf(syntax)
	t.operational = a.usage != "" && a.usage != "userApplications"
	if st := staticAttributeTypes[a.oid]; st != nil {
		t.indexed = st.indexed
	}
	for _, k := range a.keys {
		if _, dup := s.attrs[k]; !dup {
			s.attrs[k] = t
		}
	}
	return t
}

// effectiveSyntax is a's syntax, or the one it inherits.
func (a *attrDesc) effectiveSyntax(byName map[string]*attrDesc) string {
	for i := 0; a != nil && i < 32; i++ {
		if a.syntax != "" {
			return a.syntax
		}
		a = byName[strings.ToLower(a.sup)]
	}
	return ""
}

// oidMemberOf is memberOf's OID, which OpenLDAP's memberof overlay shares with AD.
const oidMemberOf = "1.2.840.113556.1.2.102"

var atMemberOf = staticAttributeTypes[oidMemberOf]

// Syntax OIDs that only Active Directory uses.
const (
	oidADCaseString   = "1.2.840.113556.1.4.1362" // String(Case): case-sensitive
	oidADLargeInteger = "1.2.840.113556.1.4.906"  // 64-bit integers (pwdLastSet, accountExpires)
	oidADSecurityDesc = "1.2.840.113556.1.4.907"  // nTSecurityDescriptor
	oidUTCTime        = syntaxPrefix + "53"
	oidNumericString  = syntaxPrefix + "36"
	oidPostalAddress  = syntaxPrefix + "41"
)

// syntaxClassOf groups a syntax OID for extensible matches.
func syntaxClassOf(oid string) syntaxClass {
	switch oid {
	case oidPrintableString, oidTelephoneNumber:
		return synPrintable
	case oidIA5String:
		return synIA5
	case oidInteger, oidADLargeInteger:
		return synInteger
	case oidDN:
		return synDN
	case oidNameAndOptionalUID:
		return synNameUID
	case oidGeneralizedTime, oidUTCTime:
		return synTime
	case oidBoolean:
		return synBoolean
	case oidOID:
		return synOID
	case oidUUID:
		return synUUID
	case oidCSN:
		return synCSN
	case oidNumericString:
		return synNumeric
	case oidPostalAddress:
		return synPostal
	case oidOctetString, oidADSecurityDesc, syntaxPrefix + "5", syntaxPrefix + "8", syntaxPrefix + "9", syntaxPrefix + "10", syntaxPrefix + "28":
		return synOctet
	}
	return synDirectoryString
}

// rulesForSyntax are the rules an attribute type of a syntax is matched by when its
// description names none (Active Directory) or one the proxy does not implement. An
// unknown syntax is a directory string.
func rulesForSyntax(oid string) (eq, ord, sub *matchingRule) {
	switch oid {
	case oidInteger, oidADLargeInteger:
		return mrInteger, mrIntegerOrder, nil
	case oidDN:
		return mrDN, nil, nil
	case oidNameAndOptionalUID:
		return mrUniqueMember, nil, nil
	case oidOctetString, oidADSecurityDesc, syntaxPrefix + "5", syntaxPrefix + "8", syntaxPrefix + "9", syntaxPrefix + "10", syntaxPrefix + "28":
		return mrOctet, mrOctetOrder, nil
	case oidGeneralizedTime:
		return mrTime, mrTimeOrder, nil
	case oidUTCTime:
		return mrUTCTime, mrUTCTimeOrder, nil
	case oidBoolean:
		return mrBoolean, nil, nil
	case oidADCaseString, oidPrintableString:
		// Active Directory compares String(Case) and String(Printable) case-sensitively.
		return mrCaseExact, mrCaseExactOrder, mrCaseExactSubstr
	case oidIA5String:
		// So is its String(IA5).
		return mrCaseExactIA5, nil, mrCaseExactIA5Sub
	case oidNumericString:
		return mrNumeric, mrNumericOrder, mrNumericSubstr
	case oidTelephoneNumber:
		return mrTelephone, nil, mrTelephoneSubstr
	case oidOID:
		return mrOID, nil, nil
	case oidUUID:
		return mrUUID, mrUUIDOrder, nil
	case oidPostalAddress:
		return mrCaseIgnoreList, nil, mrCaseIgnoreListSb
	}
	return mrCaseIgnore, mrCaseIgnoreOrder, mrCaseIgnoreSubstr
}

// buildClasses makes the object classes, after their superclasses. A class without
// SUP is under top, as RFC 4512 has it.
func (s *Schema) buildClasses(descs []*classDesc) {
	byName := make(map[string]*classDesc, 2*len(descs))
	for _, c := range descs {
		for _, k := range c.keys {
			if _, dup := byName[k]; !dup {
				byName[k] = c
			}
		}
	}
	made := make(map[*classDesc]*objectClass, len(descs))
	var build func(c *classDesc, depth int) *objectClass
	build = func(c *classDesc, depth int) *objectClass {
		if oc := made[c]; oc != nil {
			return oc
		}
		name := c.oid
		if len(c.names) > 0 {
			name = c.names[0]
		}
		oc := &objectClass{name: name, kind: c.kind, key: c.keys[min(1, len(c.names))]}
		made[c] = oc
		for _, sup := range c.sups {
			sc := byName[strings.ToLower(sup)]
			if sc == nil || sc == c || depth >= 32 {
				continue
			}
			oc.sup = append(oc.sup, build(sc, depth+1))
		}
		oc.ancestors = classAncestors(oc)
		oc.values = [][]byte{[]byte(oc.name)}
		for _, k := range c.keys {
			if _, dup := s.classes[k]; !dup {
				s.classes[k] = oc
			}
		}
		return oc
	}
	for _, c := range descs {
		build(c, 0)
	}
	if s.classes["top"] == nil {
		s.classes["top"] = staticObjectClasses["top"]
	}
}

// descTokens splits a description into "(", ")", "$", quoted strings (with their
// quotes) and words.
func descTokens(v string) ([]string, error) {
	toks := make([]string, 0, 8+len(v)/8)
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || c == '$':
			toks = append(toks, string(c))
			i++
		case c == '\'':
			end := strings.IndexByte(v[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", v)
			}
			toks = append(toks, v[i:i+end+2])
			i += end + 2
		default:
			end := i + 1
			for end < len(v) && !descDelimiter(v[end]) {
				end++
			}
			toks = append(toks, v[i:end])
			i = end
		}
	}
	return toks, nil
}

// descDelimiter reports whether c ends a word of a description.
func descDelimiter(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '(', ')', '$', '\'':
		return true
	}
	return false
}

// description is a parsed description: its OID, each keyword's values (a list
// flattened, quotes removed and qdstrings unescaped) and the keywords without one.
type description struct {
	oid    string
	fields []descField // in the order written; a keyword written twice has its last values
}

// descField is a keyword of a description and its values.
type descField struct {
	key  string
	vals []string
}

// descFlags are the keywords that take no value.
var descFlags = map[string]bool{"OBSOLETE": true, "SINGLE-VALUE": true, "COLLECTIVE": true,
	"NO-USER-MODIFICATION": true, "ABSTRACT": true, "STRUCTURAL": true, "AUXILIARY": true}

// parseDescription parses an RFC 4512 §4.1 description. It takes what servers write
// beyond the ABNF: quoted OIDs (Active Directory quotes SYNTAX), lengths after a
// syntax ({64}), keywords in any order.
func parseDescription(v string) (*description, error) {
	toks, err := descTokens(v)
	if err != nil {
		return nil, err
	}
	if len(toks) < 3 || toks[0] != "(" || toks[len(toks)-1] != ")" {
		return nil, fmt.Errorf("not a description in parentheses: %q", v)
	}
	toks = toks[1 : len(toks)-1]
	d := &description{oid: unquote(toks[0]), fields: make([]descField, 0, 8)}
	if !validNumericOID(d.oid) && !validAttrName(d.oid) {
		return nil, fmt.Errorf("%q: no OID", v)
	}
	for i := 1; i < len(toks); {
		key := toks[i]
		i++
		if descFlags[key] {
			d.fields = append(d.fields, descField{key: key})
			continue
		}
		if i == len(toks) || toks[i] == ")" || toks[i] == "$" {
			return nil, fmt.Errorf("%q: %s without a value", v, key)
		}
		var vals []string
		if toks[i] == "(" {
			for i++; i < len(toks) && toks[i] != ")"; i++ {
				if toks[i] != "$" {
					vals = append(vals, unquote(toks[i]))
				}
			}
			if i == len(toks) {
				return nil, fmt.Errorf("%q: unclosed list after %s", v, key)
			}
			i++
		} else {
			vals = []string{unquote(toks[i])}
			i++
		}
		d.fields = append(d.fields, descField{key: key, vals: vals})
	}
	return d, nil
}

// unquote removes a qdstring's quotes and undoes its \27 and \5C escapes.
func unquote(tok string) string {
	if len(tok) >= 2 && tok[0] == '\'' && tok[len(tok)-1] == '\'' {
		tok = tok[1 : len(tok)-1]
		if strings.Contains(tok, `\`) {
			tok = dstringUnquoter.Replace(tok)
		}
	}
	return tok
}

// dstringUnquoter undoes quoteDString's escapes.
var dstringUnquoter = strings.NewReplacer(`\27`, `'`, `\5C`, `\`, `\5c`, `\`)

// get returns the values of key, and whether the description has it.
func (d *description) get(key string) ([]string, bool) {
	for i := len(d.fields) - 1; i >= 0; i-- {
		if d.fields[i].key == key {
			return d.fields[i].vals, true
		}
	}
	return nil, false
}

func (d *description) all(key string) []string {
	v, _ := d.get(key)
	return v
}

func (d *description) one(key string) string {
	if v := d.all(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (d *description) has(key string) bool {
	_, ok := d.get(key)
	return ok
}

// parseAttrDesc parses an attribute type description.
func parseAttrDesc(v string) (*attrDesc, error) {
	d, err := parseDescription(v)
	if err != nil {
		return nil, err
	}
	a := &attrDesc{raw: v, oid: d.oid, names: d.all("NAME"), desc: d.one("DESC"), sup: d.one("SUP"),
		eq: d.one("EQUALITY"), ord: d.one("ORDERING"), sub: d.one("SUBSTR"), usage: d.one("USAGE"),
		obsolete: d.has("OBSOLETE"), single: d.has("SINGLE-VALUE"), collective: d.has("COLLECTIVE"), noMods: d.has("NO-USER-MODIFICATION")}
	a.syntax, _, _ = strings.Cut(d.one("SYNTAX"), "{")
	for _, n := range a.names {
		if !validAttrName(n) {
			return nil, fmt.Errorf("%q: bad NAME %q", v, n)
		}
	}
	a.keys = lowerKeys(a.oid, a.names)
	if a.syntax == "" && a.sup == "" {
		return nil, fmt.Errorf("%q: neither SYNTAX nor SUP", v)
	}
	return a, nil
}

// parseClassDesc parses an object class description.
func parseClassDesc(v string) (*classDesc, error) {
	d, err := parseDescription(v)
	if err != nil {
		return nil, err
	}
	c := &classDesc{oid: d.oid, names: d.all("NAME"), sups: d.all("SUP")}
	switch {
	case d.has("ABSTRACT"):
		c.kind = classAbstract
	case d.has("AUXILIARY"):
		c.kind = classAuxiliary
	}
	for _, n := range c.names {
		if !validAttrName(n) {
			return nil, fmt.Errorf("%q: bad NAME %q", v, n)
		}
	}
	c.keys = lowerKeys(c.oid, c.names)
	return c, nil
}

// lowerKeys are a description's OID and names, lowercased: its keys in a schema's maps.
func lowerKeys(oid string, names []string) []string {
	keys := make([]string, 0, 1+len(names))
	keys = append(keys, strings.ToLower(oid))
	for _, n := range names {
		keys = append(keys, strings.ToLower(n))
	}
	return keys
}

// render describes a in RFC 4512 form with the rules the tree matches it by.
func (a *attrDesc) render() string {
	var b strings.Builder
	b.WriteString("( " + a.oid)
	if len(a.names) > 0 {
		b.WriteString(" NAME " + quoteDescrs(a.names))
	}
	if a.desc != "" {
		b.WriteString(" DESC " + quoteDString(a.desc))
	}
	if a.obsolete {
		b.WriteString(" OBSOLETE")
	}
	if a.sup != "" {
		b.WriteString(" SUP " + a.sup)
	}
	t := a.typ
	inherited := func(r *matchingRule, of func(*attrType) *matchingRule) bool {
		return t.sup != nil && of(t.sup) == r
	}
	for _, r := range []struct {
		key  string
		rule *matchingRule
		of   func(*attrType) *matchingRule
	}{
		{"EQUALITY", t.eq, func(x *attrType) *matchingRule { return x.eq }},
		{"ORDERING", t.ord, func(x *attrType) *matchingRule { return x.ord }},
		{"SUBSTR", t.sub, func(x *attrType) *matchingRule { return x.sub }},
	} {
		if r.rule != nil && !inherited(r.rule, r.of) {
			b.WriteString(" " + r.key + " " + r.rule.name)
		}
	}
	if a.syntax != "" {
		b.WriteString(" SYNTAX " + a.syntax)
	}
	if a.single {
		b.WriteString(" SINGLE-VALUE")
	}
	if a.collective {
		b.WriteString(" COLLECTIVE")
	}
	if a.noMods {
		b.WriteString(" NO-USER-MODIFICATION")
	}
	if a.usage != "" && a.usage != "userApplications" {
		b.WriteString(" USAGE " + a.usage)
	}
	b.WriteString(" )")
	return b.String()
}

// subschemaEntry is the subentry of an upstream's schema: its attribute types (with
// the rules the tree uses where it derived them), its object classes, the matching
// rules the proxy implements, and its syntaxes; plus the attribute types the tree
// computes for every entry when the upstream does not describe them.
func (s *Schema) subschemaEntry() *Entry {
	var types []string
	seen := map[string]bool{}
	for _, a := range s.types {
		seen[a.oid] = true
		if a.derived {
			types = append(types, a.render())
		} else {
			types = append(types, a.raw)
		}
	}
	builtin := attributeTypeDescriptions()
	for i, d := range attributeDefs {
		if d.flags&fComputed != 0 || d.oid == "2.5.21.9" || d.oid == oidMemberOf {
			if !seen[d.oid] {
				types = append(types, builtin[i])
			}
		}
	}
	syntaxes := slices.Clone(s.syntaxD)
	have := map[string]bool{}
	for _, v := range syntaxes {
		if d, err := parseDescription(v); err == nil {
			have[d.oid] = true
		}
	}
	for _, syn := range ldapSyntaxes {
		if !have[syn.oid] {
			syntaxes = append(syntaxes, "( "+syn.oid+" DESC "+quoteDString(syn.desc)+" )")
		}
	}
	return newSubschemaEntry(syntaxes, types, s.classDs)
}
