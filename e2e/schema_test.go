package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/sambatest"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// upstreamTestSchema gives slapd attribute types whose matching the proxy's built-in
// schema does not know.
const upstreamTestSchema = `
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'testCaseExact' EQUALITY caseExactMatch ORDERING caseExactOrderingMatch SUBSTR caseExactSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'testInteger' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'testOctets' EQUALITY octetStringMatch ORDERING octetStringOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'testOrdered' EQUALITY caseIgnoreMatch ORDERING caseIgnoreOrderingMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.9 NAME 'testNoEquality' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'testThing' SUP top AUXILIARY
  MAY ( testCaseExact $ testInteger $ testOctets $ testOrdered $ testNoEquality ) )
`

// upstreamTestUsers are users with values of the test types.
const upstreamTestUsers = `
dn: uid=thing1,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: testThing
uid: thing1
cn: Thing One
sn: One
testCaseExact: Alpha Beta
testInteger: 9
testInteger: -3
testOctets:: EqsA/0E=
testOrdered: Mango
testNoEquality: same

dn: uid=thing2,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: testThing
uid: thing2
cn: Thing Two
sn: Two
testCaseExact: alpha beta
testInteger: 10
testOctets:: EqsA/2E=
testOrdered: apple
testNoEquality: same

dn: uid=thing3,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: testThing
uid: thing3
cn: Thing Three
sn: Three
testCaseExact: ALPHA BETA GAMMA
testInteger: 100
testOctets:: QUI=
testOrdered: Zebra
`

// TestUpstreamSchemaThroughProxy: the proxy in cached mode reads slapd's schema with its
// sync and matches by it, so that the same filters on attributes the built-in schema
// does not know (case-exact, integer, octet-string, ordered, without equality) return
// the same entries and values from the proxy as from slapd; and its cn=Subschema
// describes them.
func TestUpstreamSchemaThroughProxy(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5, Groups: 2, ExtraSchema: upstreamTestSchema, ExtraLDIF: upstreamTestUsers})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": syncOn}))
	waitSynced(t, p, up)
	direct, proxied := asService(t, up, up.URL), asService(t, up, p.URL)
	attrs := []string{"testCaseExact", "testInteger", "testOctets", "testOrdered", "testNoEquality"}
	matched := 0
	for _, filter := range []string{
		"(testCaseExact=alpha beta)",
		"(testCaseExact=Alpha*)",
		"(testCaseExact>=B)",
		"(testCaseExact<=alpha)",
		"(testInteger>=10)",
		"(testInteger<=9)",
		"(!(testInteger=09))",
		`(testOctets=\12\ab\00\ff\41)`,
		`(testOctets=\12\AB\00\FF\61)`,
		"(testOctets=ab)",
		`(testOctets>=\12)`,
		"(testOrdered>=b)",
		"(testOrdered<=MANGO)",
		"(testOrdered=man*)",
		"(testNoEquality=same)",
		"(!(testNoEquality=same))",
		"(testNoEquality=*)",
		"(&(objectClass=testThing)(testInteger>=0))",
	} {
		req := ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
		if len(sameAnswer(t, "upstream schema", direct, proxied, req, 0).entries) > 0 {
			matched++
		}
	}
	if matched < 10 {
		t.Errorf("only %d filters matched anything", matched)
	}

	res, err := proxied.Search(ldap.NewSearchRequest("cn=Subschema", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=subschema)",
		[]string{"attributeTypes", "objectClasses"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("subschema: %v, %v", res, err)
	}
	described := strings.Join(res.Entries[0].GetAttributeValues("attributeTypes"), "\n")
	for _, want := range []string{"NAME 'testOctets' EQUALITY octetStringMatch", "NAME 'testInteger' EQUALITY integerMatch"} {
		if !strings.Contains(described, want) {
			t.Errorf("the served subschema lacks %s", want)
		}
	}
	if upstreamClass(res.Entries[0].GetAttributeValues("objectClasses")) == "" {
		t.Error("the served subschema lacks the testThing class")
	}
}

// upstreamClass finds the test class among object class descriptions; "" if absent.
func upstreamClass(classes []string) string {
	for _, c := range classes {
		if strings.Contains(c, "'testThing'") {
			return c
		}
	}
	return ""
}

// TestSambaSchemaMatching: in front of a Samba AD domain controller, whose aggregate
// schema names no matching rules, the proxy matches by the syntaxes it gives: objectGUID
// and objectSid byte for byte from escaped filter bytes, userAccountControl, pwdLastSet
// and whenCreated in order, Unicode strings without regard to case; as Samba does.
func TestSambaSchemaMatching(t *testing.T) {
	dc := sambatest.New(t, sambatest.Options{})
	p := startProxy(t, sambaConfig(dc, "cached", ""))
	waitADSynced(t, p)
	up := boundConn(t, dc.LDAPSURL, dc.ServiceDN, dc.ServicePassword, ldap.DialWithTLSConfig(dc.TLSConfig()))
	px := boundConn(t, p.URL, dc.ServiceDN, dc.ServicePassword)

	res, err := up.Search(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(sAMAccountName=alice)", []string{"objectGUID", "objectSid"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("alice: %v", err)
	}
	escaped := func(b []byte, upper bool) string {
		var s strings.Builder
		for _, c := range b {
			f := `\%02x`
			if upper {
				f = `\%02X`
			}
			fmt.Fprintf(&s, f, c)
		}
		return s.String()
	}
	guid := res.Entries[0].GetRawAttributeValue("objectGUID")
	sid := res.Entries[0].GetRawAttributeValue("objectSid")
	if len(guid) != 16 || len(sid) < 12 {
		t.Fatalf("alice's objectGUID %x, objectSid %x", guid, sid)
	}
	flipped := append([]byte{}, guid...)
	flipped[15] ^= 0x20 // a letter's case, were the byte a letter: never the same GUID
	matched := 0
	for _, filter := range []string{
		"(objectGUID=" + escaped(guid, false) + ")",
		"(objectGUID=" + escaped(guid, true) + ")",
		"(objectGUID=" + escaped(flipped, false) + ")",
		"(objectSid=" + escaped(sid, false) + ")",
		"(&(objectCategory=person)(objectClass=user)(userAccountControl>=66000))",
		"(&(objectCategory=person)(objectClass=user)(userAccountControl<=512))",
		"(&(objectCategory=person)(objectClass=user)(pwdLastSet>=1))",
		"(&(objectCategory=person)(objectClass=user)(whenCreated>=20000101000000.0Z))",
		"(sAMAccountName=ALICE)",
		"(&(objectCategory=person)(objectClass=user)(displayName=*SMITH*))",
		"(&(objectCategory=person)(objectClass=user)(sAMAccountName=a*))",
	} {
		d := diffSearch(up, px, dc.BaseDN, filter, adCompared)
		if !d.Equal() {
			t.Errorf("differs: %s", d.Summary())
		}
		if d.Upstream > 0 {
			matched++
		}
	}
	if matched < 8 {
		t.Errorf("only %d filters matched anything", matched)
	}

	// The served subschema is Samba's, with the rules the proxy derived from the syntaxes.
	sub, err := px.Search(ldap.NewSearchRequest("cn=Subschema", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=subschema)",
		[]string{"attributeTypes"}, nil))
	if err != nil || len(sub.Entries) != 1 {
		t.Fatalf("subschema: %v", err)
	}
	types := sub.Entries[0].GetAttributeValues("attributeTypes")
	if len(types) < 1000 || !slices.ContainsFunc(types, func(v string) bool {
		return strings.Contains(v, "NAME 'objectGUID' EQUALITY octetStringMatch")
	}) {
		t.Errorf("the served subschema is not Samba's: %d attribute types", len(types))
	}
}
