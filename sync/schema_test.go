package sync_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// testSchema gives slapd attribute types whose matching the built-in schema does not
// know: a case-exact string (and a subtype of it), an integer, an octet string, strings
// with ordering rules, a time, a numeric string, a boolean, a case-exact IA5 string and
// a string without an equality rule.
const testSchema = `
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'testCaseExact' EQUALITY caseExactMatch ORDERING caseExactOrderingMatch SUBSTR caseExactSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'testInteger' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'testOctets' EQUALITY octetStringMatch ORDERING octetStringOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'testOrdered' EQUALITY caseIgnoreMatch ORDERING caseIgnoreOrderingMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'testTime' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 )
attributetype ( 1.3.6.1.4.1.99999.1.6 NAME 'testNumeric' EQUALITY numericStringMatch ORDERING numericStringOrderingMatch SUBSTR numericStringSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.36 )
attributetype ( 1.3.6.1.4.1.99999.1.7 NAME 'testBoolean' EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 )
attributetype ( 1.3.6.1.4.1.99999.1.8 NAME 'testIA5Exact' EQUALITY caseExactIA5Match SUBSTR caseExactIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.99999.1.9 NAME 'testNoEquality' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.10 NAME 'testSubExact' SUP testCaseExact )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'testThing' SUP top AUXILIARY
  MAY ( testCaseExact $ testInteger $ testOctets $ testOrdered $ testTime $ testNumeric $ testBoolean $ testIA5Exact $ testNoEquality $ testSubExact ) )
`

// testSchemaLDIF puts values of every test type on a few users.
const testSchemaLDIF = `
dn: ou=things,dc=example,dc=org
objectClass: organizationalUnit
ou: things

dn: cn=alpha,ou=things,dc=example,dc=org
objectClass: device
objectClass: testThing
cn: alpha
testCaseExact: Alpha Beta
testSubExact: Sub Value
testInteger: 9
testInteger: -3
testOctets:: EqsA/0E=
testOrdered: Mango
testTime: 20240101120000Z
testNumeric: 123 456
testBoolean: TRUE
testIA5Exact: /Home/Alpha
testNoEquality: same

dn: cn=beta,ou=things,dc=example,dc=org
objectClass: device
objectClass: testThing
cn: beta
testCaseExact: alpha beta
testSubExact: sub value
testInteger: 10
testOctets:: EqsA/2E=
testOrdered: apple
testTime: 20250601000000+0200
testNumeric: 99
testBoolean: FALSE
testIA5Exact: /home/alpha
testNoEquality: same

dn: cn=gamma,ou=things,dc=example,dc=org
objectClass: device
objectClass: testThing
cn: gamma
testCaseExact: ALPHA BETA GAMMA
testInteger: 100
testOctets:: QUI=
testOrdered: Zebra
testTime: 19991231235959Z
testNumeric: 1000
`

// schemaFilters are searched against slapd and the tree; the second field is set when
// the built-in schema answers differently, which the test requires so that it fails
// when the upstream's schema is ignored.
var schemaFilters = []struct {
	filter         string
	builtinDiffers bool
}{
	{"(testCaseExact=alpha beta)", true},
	{"(testCaseExact=Alpha Beta)", true},
	{"(testCaseExact=Alpha*)", true},
	{"(testCaseExact=*beta*)", true},
	{"(testCaseExact>=B)", true},
	{"(testCaseExact<=alpha)", true},
	{"(testSubExact=sub value)", true},
	{"(testCaseExact=sub value)", true}, // a supertype matches its subtype's values
	{"(testInteger=9)", false},
	{"(testInteger=09)", false}, // not an integer: Undefined
	{"(!(testInteger=09))", true},
	{"(testInteger>=10)", true},
	{"(testInteger<=9)", true},
	{"(!(testInteger<=9))", true},
	{`(testOctets=\12\ab\00\ff\41)`, true},
	{`(testOctets=\12\AB\00\FF\61)`, true},
	{`(testOctets=\12\ab\00\ff)`, false},
	{"(testOctets=AB)", false},
	{"(testOctets=ab)", true},
	{`(testOctets>=\12)`, true},
	{"(testOrdered>=b)", true},
	{"(testOrdered<=MANGO)", true},
	{"(testOrdered=man*)", false},
	{"(testTime>=20250101000000Z)", true},
	{"(testTime<=2000010100Z)", true},
	{"(testTime<=2000)", false}, // not a GeneralizedTime: Undefined
	{"(testTime=20250531220000Z)", true},
	{"(testNumeric=123456)", true},
	{"(testNumeric=1 000)", true},
	{"(testNumeric>=5)", true},
	{"(testNumeric=*34*)", true},
	{"(testBoolean=TRUE)", false},
	{"(testBoolean=true)", true},
	{"(testIA5Exact=/home/alpha)", true},
	{"(testIA5Exact=/Home*)", true},
	{"(testNoEquality=same)", true},
	{"(!(testNoEquality=same))", true}, // Undefined for every entry
	{"(testNoEquality=*)", false},
	{"(testOctets=*)", false},
	{"(&(objectClass=testThing)(testInteger>=0))", true},
	{"(|(testCaseExact=ALPHA BETA GAMMA)(uid=user0001))", false},
	{"(uidNumber>=10003)", false},
	{"(cn=ALPHA)", false},
}

// TestSchemaDifferential reads a test schema from slapd with a full sync and requires
// that a tree of slapd's entries, matched with the schema the store kept, answers the
// same filters with the same entries as slapd; and that the built-in schema would
// not have, so that the test fails when the upstream's schema is ignored.
func TestSchemaDifferential(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 5, Groups: 2, ExtraSchema: testSchema, ExtraLDIF: testSchemaLDIF})
	sn := e.sync(config(t, nil))
	stored := sn.Schema()
	if stored == nil || !strings.EqualFold(stored.DN, "cn=Subschema") || len(stored.MatchingRules) == 0 || len(stored.LDAPSyntaxes) == 0 {
		t.Fatalf("stored schema: %+v", stored)
	}
	if !slices.ContainsFunc(stored.AttributeTypes, func(v string) bool { return strings.Contains(v, "'testOctets'") }) {
		t.Fatal("the test schema's types are not in the stored schema")
	}
	sch, err := directory.ParseSchema(descriptionsOf(stored), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	conn := e.srv.Conn(t)
	res, err := conn.Search(ldap.NewSearchRequest(e.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"*"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var entries []*directory.Entry
	for _, le := range res.Entries {
		de := &directory.Entry{DN: le.DN}
		for _, a := range le.Attributes {
			de.Attributes = append(de.Attributes, directory.Attribute{Name: a.Name, Values: a.ByteValues})
		}
		entries = append(entries, de)
	}
	tree, err := directory.NewTreeSchema(sch, []string{e.srv.Suffix}, entries)
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := directory.NewTree([]string{e.srv.Suffix}, entries)
	if err != nil {
		t.Fatal(err)
	}

	matchedSomething := 0
	for _, c := range schemaFilters {
		want := slapdDNs(t, conn, e.srv.Suffix, c.filter)
		got := treeDNs(t, tree, e.srv.Suffix, c.filter)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the tree found %q, slapd %q", c.filter, got, want)
		}
		if len(want) > 0 {
			matchedSomething++
		}
		if differs := !slices.Equal(treeDNs(t, builtin, e.srv.Suffix, c.filter), want); differs != c.builtinDiffers {
			t.Errorf("%s: the built-in schema answers differently: %v, want %v", c.filter, differs, c.builtinDiffers)
		}
	}
	if matchedSomething < len(schemaFilters)/2 {
		t.Errorf("only %d of %d filters match anything", matchedSomething, len(schemaFilters))
	}
}

func descriptionsOf(s *cache.Schema) directory.Descriptions {
	return directory.Descriptions{AttributeTypes: s.AttributeTypes, ObjectClasses: s.ObjectClasses,
		MatchingRules: s.MatchingRules, LDAPSyntaxes: s.LDAPSyntaxes}
}

// slapdDNs searches slapd and returns the lower-cased DNs found, sorted.
func slapdDNs(t *testing.T, conn *ldap.Conn, base, filter string) []string {
	t.Helper()
	res, err := conn.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, []string{"1.1"}, nil))
	if err != nil {
		t.Fatalf("slapd: %s: %v", filter, err)
	}
	var out []string
	for _, e := range res.Entries {
		out = append(out, strings.ToLower(e.DN))
	}
	slices.Sort(out)
	return out
}

// treeDNs searches a tree the same way.
func treeDNs(t *testing.T, tree *directory.Tree, base, filter string) []string {
	t.Helper()
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := tree.Search(ctx, &directory.SearchRequest{BaseDN: base, Scope: directory.ScopeSubtree, Filter: f, Attributes: []string{"1.1"}}, nil,
		func(e *directory.Entry) error { out = append(out, strings.ToLower(e.DN)); return nil })
	if res == nil || res.Code != 0 {
		t.Fatalf("tree: %s: %+v", filter, res)
	}
	slices.Sort(out)
	return out
}

// TestSchemaActiveDirectory reads AD's aggregate schema, which returns its descriptions
// only when they are asked for by name, and keeps it when a later sync cannot read it.
func TestSchemaActiveDirectory(t *testing.T) {
	t.Parallel()
	types := []string{
		"( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
		"( 1.2.840.113556.1.4.2 NAME 'objectGUID' SYNTAX '1.3.6.1.4.1.1466.115.121.1.40' SINGLE-VALUE NO-USER-MODIFICATION )",
	}
	f := &fakeAD{users: 3, rangeSize: 1500, schema: types}
	e := serveFake(t, f)
	cfg := config(t, func(c *ldapsync.Config) { c.Preset = "active-directory" })
	sn := e.sync(cfg)
	if got := sn.Schema(); got == nil || got.DN != fakeAggregate || !slices.Equal(got.AttributeTypes, types) {
		t.Fatalf("stored schema: %+v", got)
	}
	read := sn.Schema()

	// A sync that cannot read it keeps the one read before, and still succeeds.
	f.mu.Lock()
	f.failSchema = true
	f.mu.Unlock()
	if got := e.sync(cfg).Schema(); got != read {
		t.Fatalf("after a failed read: %+v", got)
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultSuccess {
		t.Fatalf("a failed read of the schema failed the sync: %+v", st)
	}

	// A directory that names no subschema subentry leaves the store without one.
	f2 := &fakeAD{users: 1, rangeSize: 1500}
	if got := serveFake(t, f2).sync(cfg).Schema(); got != nil {
		t.Fatalf("a schema stored from a directory without one: %+v", got)
	}
}
