package directory

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// openLDAPDescriptions are descriptions as slapd publishes them (core, cosine, nis and
// a test schema), with an attribute that names no EQUALITY, as msuser.schema's do.
var openLDAPDescriptions = Descriptions{
	AttributeTypes: []string{
		"( 2.5.4.0 NAME 'objectClass' DESC 'RFC4512: object classes of the entity' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )",
		"( 2.5.4.41 NAME 'name' DESC 'RFC4519: common supertype of name attributes' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
		"( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s) for which the entity is known by' SUP name )",
		"( 2.5.4.4 NAME ( 'sn' 'surname' ) DESC 'RFC2256: last (family) name(s) for which the entity is known by' SUP name )",
		"( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) DESC 'RFC4519: user identifier' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )",
		"( 1.3.6.1.1.1.1.0 NAME 'uidNumber' DESC 'RFC2307: An integer uniquely identifying a user in an administrative domain' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
		"( 2.5.18.1 NAME 'createTimestamp' DESC 'RFC4512: time which object was created' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
		"( 1.2.840.113556.1.2.102 NAME 'memberOf' DESC 'Group that the entry belongs to' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 NO-USER-MODIFICATION USAGE dSAOperation X-ORIGIN 'iPlanet Delegated Administrator' )",
		"( 2.5.4.31 NAME 'member' DESC 'RFC2256: member of a group' SUP distinguishedName )",
		"( 2.5.4.49 NAME 'distinguishedName' DESC 'RFC4519: common supertype of DN attributes' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )",
		"( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
		"( 2.5.4.16 NAME 'postalAddress' DESC 'RFC2256: postal address' EQUALITY caseIgnoreListMatch SUBSTR caseIgnoreListSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.41 )",
		"( 2.5.4.36 NAME 'userCertificate' DESC 'RFC2256: X.509 user certificate, use ;binary' EQUALITY certificateExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.8 )",
		"( 1.3.6.1.4.1.99999.1.1 NAME 'testCaseExact' EQUALITY caseExactMatch ORDERING caseExactOrderingMatch SUBSTR caseExactSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
		"( 1.3.6.1.4.1.99999.1.2 NAME 'testOctets' EQUALITY octetStringMatch ORDERING octetStringOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )",
		"( 1.3.6.1.4.1.99999.1.3 NAME 'testNumeric' EQUALITY numericStringMatch ORDERING numericStringOrderingMatch SUBSTR numericStringSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )",
		"( 1.3.6.1.4.1.99999.1.4 NAME 'testLoopA' SUP testLoopB )",
		"( 1.3.6.1.4.1.99999.1.5 NAME 'testLoopB' SUP testLoopA )",
		"( 1.3.6.1.4.1.99999.1.6 NAME 'testQuoted' DESC 'it\\27s a \\5C test' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
		"not a description",
	},
	ObjectClasses: []string{
		"( 2.5.6.0 NAME 'top' DESC 'top of the superclass chain' ABSTRACT MUST objectClass )",
		"( 2.5.6.6 NAME 'person' DESC 'RFC2256: a person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ telephoneNumber $ seeAlso $ description ) )",
		"( 2.5.6.7 NAME 'organizationalPerson' DESC 'RFC2256: an organizational person' SUP person STRUCTURAL MAY ( title $ x121Address ) )",
		"( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' DESC 'RFC2798: Internet Organizational Person' SUP organizationalPerson STRUCTURAL MAY ( uid $ mail ) )",
		"( 1.3.6.1.1.1.2.0 NAME 'posixAccount' DESC 'Abstraction of an account with POSIX attributes' SUP top AUXILIARY MUST ( cn $ uid $ uidNumber $ gidNumber $ homeDirectory ) )",
		"( 1.3.6.1.4.1.99999.2.1 NAME 'testThing' SUP top STRUCTURAL MAY ( testCaseExact $ testOctets ) )",
	},
	MatchingRules: []string{"( 2.5.13.2 NAME 'caseIgnoreMatch' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )"},
	LDAPSyntaxes:  []string{"( 1.3.6.1.4.1.1466.115.121.1.15 DESC 'Directory String' )"},
}

// adDescriptions are attributeTypes values as Active Directory's aggregate schema
// (CN=Aggregate,CN=Schema,CN=Configuration,…) returns them: quoted syntaxes, no
// matching rules. The last is a made-up type of AD's case-sensitive string syntax.
var adDescriptions = Descriptions{
	AttributeTypes: []string{
		"( 2.5.4.0 NAME 'objectClass' SYNTAX '1.3.6.1.4.1.1466.115.121.1.38' NO-USER-MODIFICATION )",
		"( 2.5.4.3 NAME 'cn' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.2 NAME 'objectGUID' SYNTAX '1.3.6.1.4.1.1466.115.121.1.40' SINGLE-VALUE NO-USER-MODIFICATION )",
		"( 1.2.840.113556.1.4.146 NAME 'objectSid' SYNTAX '1.3.6.1.4.1.1466.115.121.1.40' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.8 NAME 'userAccountControl' SYNTAX '1.3.6.1.4.1.1466.115.121.1.27' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.96 NAME 'pwdLastSet' SYNTAX '1.2.840.113556.1.4.906' SINGLE-VALUE )",
		"( 1.2.840.113556.1.2.2 NAME 'whenCreated' SYNTAX '1.3.6.1.4.1.1466.115.121.1.24' SINGLE-VALUE NO-USER-MODIFICATION )",
		"( 1.2.840.113556.1.4.868 NAME 'isCriticalSystemObject' SYNTAX '1.3.6.1.4.1.1466.115.121.1.7' SINGLE-VALUE )",
		"( 2.5.4.31 NAME 'member' SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' )",
		"( 1.2.840.113556.1.2.102 NAME 'memberOf' SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' NO-USER-MODIFICATION )",
		"( 1.2.840.113556.1.4.782 NAME 'objectCategory' SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.99999 NAME 'testCaseSensitive' SYNTAX '1.2.840.113556.1.4.1362' )",
		"( 1.2.840.113556.1.4.99998 NAME 'testUTCTime' SYNTAX '1.3.6.1.4.1.1466.115.121.1.53' SINGLE-VALUE )",
	},
	ObjectClasses: []string{
		"( 2.5.6.0 NAME 'top' ABSTRACT MUST (objectClass ) MAY (cn $ objectGUID $ objectCategory ) )",
		"( 2.5.6.6 NAME 'person' SUP top STRUCTURAL MAY (cn ) )",
		"( 2.5.6.7 NAME 'organizationalPerson' SUP person STRUCTURAL )",
		"( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL MAY (sAMAccountName $ userAccountControl ) )",
		"( 1.2.840.113556.1.5.8 NAME 'group' SUP top STRUCTURAL MAY (member ) )",
	},
}

// logRecorder keeps the messages logged through it.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.msgs = append(l.msgs, line)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

func TestParseSchemaOpenLDAP(t *testing.T) {
	rec := &logRecorder{}
	s, err := ParseSchema(openLDAPDescriptions, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	if s.Builtin() {
		t.Error("a parsed schema says it is the built-in one")
	}
	for _, c := range []struct {
		name         string
		primary      string
		eq, ord, sub *matchingRule
		synt         syntaxClass
		operational  bool
	}{
		{"CN", "cn", mrCaseIgnore, nil, mrCaseIgnoreSubstr, synDirectoryString, false}, // inherited from name
		{"commonName", "cn", mrCaseIgnore, nil, mrCaseIgnoreSubstr, synDirectoryString, false},
		{"2.5.4.3", "cn", mrCaseIgnore, nil, mrCaseIgnoreSubstr, synDirectoryString, false},
		{"uidnumber", "uidNumber", mrInteger, mrIntegerOrder, nil, synInteger, false},
		{"createTimestamp", "createTimestamp", mrTime, mrTimeOrder, nil, synTime, true},
		{"memberOf", "memberOf", mrDN, nil, nil, synDN, true},
		{"member", "member", mrDN, nil, nil, synDN, false},
		{"sAMAccountName", "sAMAccountName", nil, nil, nil, synDirectoryString, false}, // no EQUALITY, as slapd has it
		{"postalAddress", "postalAddress", mrCaseIgnoreList, nil, mrCaseIgnoreListSb, synPostal, false},
		{"userCertificate", "userCertificate", mrOctet, nil, nil, synOctet, false}, // certificateExactMatch: by its syntax
		{"testCaseExact", "testCaseExact", mrCaseExact, mrCaseExactOrder, mrCaseExactSubstr, synDirectoryString, false},
		{"testOctets", "testOctets", mrOctet, mrOctetOrder, nil, synOctet, false},
		{"testNumeric", "testNumeric", mrNumeric, mrNumericOrder, mrNumericSubstr, synNumeric, false},
		{"testQuoted", "testQuoted", mrCaseIgnoreIA5, nil, nil, synIA5, false},
	} {
		at := s.attrs[strings.ToLower(c.name)]
		if at == nil {
			t.Errorf("%s: not described", c.name)
			continue
		}
		if at.name != c.primary || at.eq != c.eq || at.ord != c.ord || at.sub != c.sub || at.synt != c.synt || at.operational != c.operational {
			t.Errorf("%s: %+v", c.name, *at)
		}
	}
	if cn, name := s.attrs["cn"], s.attrs["name"]; cn.sup != name || !name.hasSubtypes || !cn.isA(name) {
		t.Error("cn is not a subtype of name")
	}
	if !s.attrs["uid"].indexed || !s.attrs["member"].indexed || s.attrs["sn"].indexed {
		t.Error("the indexed types are not the built-in schema's")
	}
	for _, name := range []string{"objectClass", "entryDN", "hasSubordinates", "structuralObjectClass", "subschemaSubentry"} {
		if s.attrs[strings.ToLower(name)] != staticAttributeTypes[strings.ToLower(name)] {
			t.Errorf("%s is not the tree's own", name)
		}
	}
	if a, b := s.attrs["testloopa"], s.attrs["testloopb"]; a == nil || b == nil {
		t.Error("types in a SUP cycle are left out")
	}
	if rec.count("do not parse") != 1 || rec.count("certificateExactMatch") != 1 {
		t.Errorf("log: %q", rec.msgs)
	}

	inet := s.classes["inetorgperson"]
	if inet == nil || inet.kind != classStructural || !slices.Equal(inet.ancestors, []string{"inetorgperson", "organizationalperson", "person", "top"}) {
		t.Errorf("inetOrgPerson: %+v", inet)
	}
	if s.classes["2.16.840.1.113730.3.2.2"] != inet {
		t.Error("a class by its OID")
	}
	if c := s.classes["posixaccount"]; c == nil || c.kind != classAuxiliary {
		t.Errorf("posixAccount: %+v", c)
	}
	if c := s.classes["top"]; c == nil || c.kind != classAbstract {
		t.Errorf("top: %+v", c)
	}
}

func TestParseSchemaActiveDirectory(t *testing.T) {
	s, err := ParseSchema(adDescriptions, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		eq, ord, sub *matchingRule
	}{
		{"cn", mrCaseIgnore, mrCaseIgnoreOrder, mrCaseIgnoreSubstr},
		{"sAMAccountName", mrCaseIgnore, mrCaseIgnoreOrder, mrCaseIgnoreSubstr},
		{"objectGUID", mrOctet, mrOctetOrder, nil},
		{"userAccountControl", mrInteger, mrIntegerOrder, nil},
		{"pwdLastSet", mrInteger, mrIntegerOrder, nil},
		{"whenCreated", mrTime, mrTimeOrder, nil},
		{"isCriticalSystemObject", mrBoolean, nil, nil},
		{"member", mrDN, nil, nil},
		{"objectCategory", mrDN, nil, nil},
		{"testCaseSensitive", mrCaseExact, mrCaseExactOrder, mrCaseExactSubstr},
		{"testUTCTime", mrUTCTime, mrUTCTimeOrder, nil},
	} {
		at := s.attrs[strings.ToLower(c.name)]
		if at == nil || at.eq != c.eq || at.ord != c.ord || at.sub != c.sub {
			t.Errorf("%s: %+v", c.name, at)
		}
	}
	if s.attrs["memberof"].operational {
		t.Error("AD's memberOf is a user attribute")
	}
	if c := s.classes["user"]; c == nil || !slices.Equal(c.ancestors, []string{"user", "organizationalperson", "person", "top"}) {
		t.Errorf("user: %+v", c)
	}

	// The subentry describes the rules the tree matches by.
	e := s.entry()
	types := attrValues(e, "attributeTypes")
	for _, want := range []string{
		"( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch ORDERING octetStringOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE NO-USER-MODIFICATION )",
		"( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
		// AD has no entryDN; the tree serves it.
		"( 1.3.6.1.1.20 NAME 'entryDN' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
	} {
		if !slices.Contains(types, want) {
			t.Errorf("attributeTypes lack\n%s\nhave %q", want, types)
		}
	}
	if classes := attrValues(e, "objectClasses"); !slices.Equal(classes, adDescriptions.ObjectClasses) {
		t.Errorf("objectClasses: %q", classes)
	}
	for _, v := range append(types, attrValues(e, "ldapSyntaxes")...) {
		if _, err := parseSchemaDescription(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

func attrValues(e *Entry, name string) []string {
	var out []string
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, name) {
			for _, v := range a.Values {
				out = append(out, string(v))
			}
		}
	}
	return out
}

func TestParseSchemaRejects(t *testing.T) {
	if _, err := ParseSchema(Descriptions{AttributeTypes: []string{"( 1.2.3 NAME )", "nothing"}}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a schema with no attribute type that parses")
	}
	for _, v := range []string{"( 1.2.3 NAME 'x' )", "( 1.2.3 NAME 'x y' SYNTAX 1.2 )", "( 1.2.3 NAME ( 'x' SYNTAX 1.2 )", "( NAME 'x' SYNTAX 1.2 )"} {
		if _, err := parseAttrDesc(v); err == nil {
			t.Errorf("%q parsed", v)
		}
	}
	a, err := parseAttrDesc("( 1.2.3 NAME 'x' DESC 'it\\27s' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15{64}' X-ORIGIN ( 'a' 'b' ) SINGLE-VALUE )")
	if err != nil || a.desc != "it's" || a.syntax != oidDirectoryString || !a.single {
		t.Errorf("%+v %v", a, err)
	}
}

// adTree is a tree of AD-shaped entries matched with AD's schema.
func adTree(t *testing.T, sch *Schema) *Tree {
	t.Helper()
	guid := func(b ...byte) string { return string(b) }
	tree, err := NewTreeSchema(sch, []string{"DC=ad,DC=example"}, []*Entry{
		entry("DC=ad,DC=example", "objectClass: top", "objectClass: domain", "dc: ad"),
		entry("CN=Alice,DC=ad,DC=example", "objectClass: top", "objectClass: person", "objectClass: organizationalPerson", "objectClass: user",
			"cn: Alice", "sAMAccountName: alice", "userAccountControl: 512", "pwdLastSet: 133000000000000000",
			"objectGUID: "+guid(0x12, 0xab, 0x00, 0xff, 'A'), "whenCreated: 20240101000000.0Z", "testCaseSensitive: Alpha",
			"isCriticalSystemObject: FALSE", "testUTCTime: 991231235959Z"),
		entry("CN=Bob,DC=ad,DC=example", "objectClass: top", "objectClass: person", "objectClass: organizationalPerson", "objectClass: user",
			"cn: Bob", "sAMAccountName: bob", "userAccountControl: 66050", "pwdLastSet: 0",
			"objectGUID: "+guid(0x12, 0xab, 0x00, 0xff, 'a'), "whenCreated: 20250101000000.0Z", "testCaseSensitive: alpha",
			"favouriteColour: Blue", "testUTCTime: 250101000000Z"),
		entry("CN=Staff,DC=ad,DC=example", "objectClass: top", "objectClass: group", "cn: Staff",
			"member: cn=alice,dc=AD,dc=example"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func searchDNs(t *testing.T, tree *Tree, base, filter string) string {
	t.Helper()
	w := &collectWriter{}
	searchInto(tree, w, searchRequest(t, base, ScopeSubtree, filter))
	if w.result == nil || w.result.Code != 0 {
		t.Fatalf("%s: %+v", filter, w.result)
	}
	return rdnsOf(w.dns())
}

func TestMatchingWithADSchema(t *testing.T) {
	rec := &logRecorder{}
	sch, err := ParseSchema(adDescriptions, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	tree := adTree(t, sch)
	builtin := adTree(t, nil)
	const base = "DC=ad,DC=example"
	for _, c := range []struct{ filter, want, builtin string }{
		// Byte for byte: ...\41 is not ...\61. The built-in schema knows objectGUID as
		// AD has it.
		{`(objectGUID=\12\ab\00\ff\41)`, "CN=Alice", "CN=Alice"},
		{`(objectGUID=\12\AB\00\FF\61)`, "CN=Bob", "CN=Bob"},
		{`(objectGUID>=\12\ab\00\ff\50)`, "CN=Bob", "CN=Bob"},
		{"(userAccountControl>=1000)", "CN=Bob", "CN=Bob"},
		{"(pwdLastSet>=1000)", "CN=Alice", "CN=Alice"}, // AD's Large Integer syntax
		{"(pwdLastSet<=99)", "CN=Bob", "CN=Bob"},
		{"(testCaseSensitive=alpha)", "CN=Bob", "CN=Alice CN=Bob"},
		{"(testCaseSensitive=Alp*)", "CN=Alice", "CN=Alice CN=Bob"},
		{"(whenCreated>=20241231000000Z)", "CN=Bob", "CN=Bob"},
		{"(isCriticalSystemObject=FALSE)", "CN=Alice", "CN=Alice"},
		{"(testUTCTime>=000101000000Z)", "CN=Bob", ""}, // 2000 on; 1999 before
		{"(testUTCTime<=20000101000000Z)", "CN=Alice", ""},
		{"(testUTCTime=991231235959Z)", "CN=Alice", "CN=Alice"},
		{"(testUTCTime=991231225959-0100)", "CN=Alice", ""},
		{"(isCriticalSystemObject=false)", "", "CN=Alice"}, // Undefined: not a Boolean
		{"(member=CN=ALICE,DC=ad,DC=example)", "CN=Staff", "CN=Staff"},
		{"(sAMAccountName=ALICE)", "CN=Alice", "CN=Alice"},
		{"(favouriteColour=blue)", "CN=Bob", "CN=Bob"}, // not described: a case-insensitive string
		{"(objectClass=person)", "CN=Alice CN=Bob", "CN=Alice CN=Bob"},
		{"(memberOf:1.2.840.113556.1.4.1941:=CN=Staff,DC=ad,DC=example)", "CN=Alice", "CN=Alice"},
	} {
		if got := searchDNs(t, tree, base, c.filter); got != c.want {
			t.Errorf("%s: %q, want %q", c.filter, got, c.want)
		}
		if got := searchDNs(t, builtin, base, c.filter); got != c.builtin {
			t.Errorf("built-in schema: %s: %q, want %q", c.filter, got, c.builtin)
		}
	}
	if n := rec.count("favouriteColour"); n != 1 {
		t.Errorf("the undescribed attribute logged %d times, want once: %q", n, rec.msgs)
	}
	adTree(t, sch)
	if n := rec.count("favouriteColour"); n != 1 {
		t.Errorf("logged again for a second tree: %q", rec.msgs)
	}
	if tree.Schema() != sch || builtin.Schema() != BuiltinSchema() {
		t.Error("Tree.Schema")
	}
	next, err := tree.Apply([]Change{{DN: "CN=Bob,DC=ad,DC=example"}})
	if err != nil || next.Schema() != sch || searchDNs(t, next, base, "(pwdLastSet>=1000)") != "CN=Alice" {
		t.Errorf("a version keeps its tree's schema: %v", err)
	}
}

func TestMatchingWithOpenLDAPSchema(t *testing.T) {
	sch, err := ParseSchema(openLDAPDescriptions, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	entries := []*Entry{
		entry(testBase, "objectClass: organization", "o: example"),
		entry("cn=one,"+testBase, "objectClass: testThing", "cn: one", "testCaseExact: Mixed Case", "testOctets: AB",
			"testNumeric: 123 456", "sAMAccountName: one", "postalAddress: 1 Main St $ Springfield"),
		entry("cn=two,"+testBase, "objectClass: testThing", "cn: two", "testCaseExact: mixed case", "testOctets: ab",
			"testNumeric: 99", "sAMAccountName: two"),
	}
	tree, err := NewTreeSchema(sch, []string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ filter, want string }{
		{"(testCaseExact=mixed case)", "cn=two"},
		{"(testCaseExact=Mixed  Case )", "cn=one"},
		{"(testCaseExact>=a)", "cn=two"}, // "M" sorts before "a"
		{"(testCaseExact=*Case)", "cn=one"},
		{"(testOctets=AB)", "cn=one"},
		{"(testOctets<=B)", "cn=one"},
		{"(testNumeric=123456)", "cn=one"},
		{"(testNumeric=12 34 56)", "cn=one"},
		{"(testNumeric=x)", ""},
		{"(testNumeric=*45*)", "cn=one"},
		{"(testNumeric>=5)", "cn=two"},
		{"(sAMAccountName=one)", ""}, // no EQUALITY: Undefined, as in slapd
		{"(!(sAMAccountName=one))", ""},
		{"(sAMAccountName=*)", "cn=one cn=two"},
		{"(postalAddress=1 MAIN ST$springfield)", "cn=one"},
		{"(objectClass=testThing)", "cn=one cn=two"},
	} {
		if got := searchDNs(t, tree, testBase, c.filter); got != c.want {
			t.Errorf("%s: %q, want %q", c.filter, got, c.want)
		}
	}
}

func TestSubschemaOfParsedSchema(t *testing.T) {
	sch, err := ParseSchema(openLDAPDescriptions, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var got *Entry
	req := searchRequest(t, SubschemaDN, ScopeBase, "(objectClass=*)", "+")
	if res := sch.SearchSubschema(req.Search, func(e *Entry) error { got = e; return nil }); res == nil || res.Code != 0 || got == nil {
		t.Fatalf("%+v", res)
	}
	types := attrValues(got, "attributeTypes")
	// As the upstream describes them, except where the tree matches by the syntax.
	for _, want := range []string{openLDAPDescriptions.AttributeTypes[2], openLDAPDescriptions.AttributeTypes[13],
		"( 2.5.4.36 NAME 'userCertificate' DESC 'RFC2256: X.509 user certificate, use ;binary' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.8 )"} {
		if !slices.Contains(types, want) {
			t.Errorf("attributeTypes lack %s", want)
		}
	}
	if slices.ContainsFunc(types, func(v string) bool { return strings.Contains(v, "'mail'") }) {
		t.Error("a type of the built-in schema the upstream does not have is described")
	}
	if !slices.Equal(attrValues(got, "objectClasses"), openLDAPDescriptions.ObjectClasses) {
		t.Error("objectClasses are not the upstream's")
	}
	if s := attrValues(got, "ldapSyntaxes"); s[0] != openLDAPDescriptions.LDAPSyntaxes[0] || !slices.ContainsFunc(s, func(v string) bool { return strings.Contains(v, oidOctetString+" ") }) {
		t.Errorf("ldapSyntaxes: %q", s)
	}
	var builtin bytes.Buffer
	for _, v := range attrValues(subschemaEntry(), "attributeTypes") {
		builtin.WriteString(v)
	}
	if !strings.Contains(builtin.String(), "'mail'") {
		t.Error("the built-in subentry lost its types")
	}
}

func TestNewRuleNormalisation(t *testing.T) {
	s := newSchema()
	for _, c := range []struct {
		k    normKind
		in   string
		want string
		ok   bool
	}{
		{normNumeric, " 12 3 ", "123", true},
		{normNumeric, "12a", "", false},
		{normNumeric, "", "", false},
		{normCaseIgnoreList, "1  Main St $ SPRINGFIELD ", "1 main st$springfield", true},
		{normIntegerFirst, "( 42 NAME 'x' )", "42", true},
		{normIntegerFirst, "42", "42", true},
		{normIntegerFirst, "( x )", "", false},
		{normOctet, "\x00\xff", "\x00\xff", true},
		{normUTCTime, "991231235959Z", "19991231235959Z", true},
		{normUTCTime, "4901010000+0100", "20481231230000Z", true},
		{normUTCTime, "20240101000000.0Z", "20240101000000Z", true}, // GeneralizedTime form
		{normUTCTime, "991231235959", "", false},
		{normUTCTime, "99123123Z", "", false},
		{normUTCTime, "991231235960Z", "", false}, // a UTCTime has no leap second (slapd)
		{normUTCTime, "19991231235960Z", "19991231235960Z", true},
	} {
		got, ok := s.normalize(c.k, []byte(c.in), posValue)
		if got != c.want || ok != c.ok {
			t.Errorf("%d %q: %q %v, want %q %v", c.k, c.in, got, ok, c.want, c.ok)
		}
	}
}

// An upstream without memberOf (OpenLDAP without the memberof overlay) still gets the
// memberOf the proxy serves from the synced memberships: a DN, described.
func TestParseSchemaWithoutMemberOf(t *testing.T) {
	s, err := ParseSchema(Descriptions{AttributeTypes: []string{
		"( 0.9.2342.19200300.100.1.1 NAME 'uid' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if at := s.attrs["memberof"]; at == nil || at.eq != mrDN || s.attrs[oidMemberOf] != at {
		t.Errorf("memberOf: %+v", at)
	}
	if !slices.ContainsFunc(attrValues(s.entry(), "attributeTypes"), func(v string) bool { return strings.Contains(v, "NAME 'memberOf'") }) {
		t.Error("memberOf is not described")
	}
}

// TestSambaSchemaNames: every name and OID of a Samba DC's schema finds the same type
// however it is spelled (as described, lowercased, in capitals), and the computed types
// stay the tree's own.
func TestSambaSchemaNames(t *testing.T) {
	ad := loadSambaAD(t)
	sch, err := ParseSchema(ad.descriptions(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := newSchemaOn(sch)
	for _, a := range sch.types {
		for _, n := range append([]string{a.oid}, a.names...) {
			want := ts.attr(strings.ToLower(n))
			if want == nil {
				t.Fatalf("%s: unknown", n)
			}
			if got := ts.attr(n); got != want {
				t.Errorf("%s: %s, lowercased %s", n, got.name, want.name)
			}
			if got := ts.attr(strings.ToUpper(n)); got != want {
				t.Errorf("%s in capitals: %s, lowercased %s", n, got.name, want.name)
			}
		}
	}
	for _, n := range []string{"objectClass", "structuralObjectClass", "entryDN", "hasSubordinates", "subschemaSubentry"} {
		if got, want := ts.attr(n), staticAttributeTypes[strings.ToLower(n)]; got != want {
			t.Errorf("%s: not the built-in type", n)
		}
	}
	if ts.attr("sAMAccountName").eq != mrCaseIgnore || ts.attr("objectSid").eq != mrOctet {
		t.Error("sAMAccountName or objectSid: not matched by its syntax")
	}
}
