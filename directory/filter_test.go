package directory

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// TestFilters evaluates every filter type over testEntries. The differential test
// checks the same against slapd on a larger directory; these cases are the ones worth
// reading when a change breaks them.
func TestFilters(t *testing.T) {
	tree := testTree(t)
	const people = "uid=alice uid=bob uid=carol uid=dave"
	const groups = "cn=admins cn=all cn=devs cn=loop1 cn=loop2 cn=ops"
	for _, c := range []struct{ filter, want string }{
		// Equality, with the attribute's matching rule.
		{"(uid=ALICE)", "uid=alice"},
		{"(cn=alice   liddell )", "uid=alice"},
		{"(mail=bob@example.org)", "uid=bob"},
		{"(uidNumber=1002)", "uid=bob"},
		{"(memberOf=CN=Devs, OU=Groups,DC=example,DC=org)", "cn=admins uid=alice"},
		{"(member=cn=admins,ou=groups,dc=example,dc=org)", "cn=devs"},
		{"(objectClass=person)", people},
		{"(objectClass=2.5.6.6)", people},
		{"(objectClass=organization)", "dc=example"},
		{"(entryUUID=0B5A7E4E-0000-4000-8000-000000000001)", "uid=alice"},
		{"(entryDN=UID=Alice,ou=people,dc=example,dc=org)", "uid=alice"},
		{"(hasSubordinates=TRUE)", "dc=example ou=groups ou=people"},
		{"(costcenter=r&d)", "uid=alice"}, // an attribute only the entries know: caseIgnoreMatch
		{"(description=builds things)", "uid=bob"},
		{"(cn=Karola)", "uid=carol"},
		{"(cn;lang-de=karola)", "uid=carol"},
		{"(cn;lang-de=Carol)", ""},
		{"(name=liddell)", "uid=alice"}, // a supertype matches its subtypes' values
		// Approximate matching is equality.
		{"(uid~=Alice)", "uid=alice"},
		// Substrings.
		{"(cn=*ll*)", "cn=all uid=alice"},
		{"(cn=b*r)", "uid=bob"},
		{"(cn=Bob *)", "uid=bob"},
		{"(cn=Bob*Builder)", "uid=bob"},
		{"(cn=Bob*b*r)", "uid=bob"},
		{"(cn=bob*bob)", ""},
		{"(mail=*@EXAMPLE.org)", "uid=alice uid=bob"},
		// Ordering, where the attribute has an ordering rule.
		{"(uidNumber>=1002)", "uid=bob uid=carol"},
		{"(uidNumber<=1002)", "uid=alice uid=bob"},
		{"(createTimestamp>=20200601000000Z)", "uid=bob"},
		{"(createTimestamp<=2020010101+0100)", "uid=alice"},
		{"(cn>=a)", ""}, // no ordering rule: Undefined
		// Presence.
		{"(memberOf=*)", "cn=admins cn=devs cn=ops uid=alice uid=bob uid=carol"},
		{"(entryDN=*)", people + " " + groups + " dc=example ou=groups ou=people"},
		{"(cn;lang-de=*)", "uid=carol"},
		// Boolean operators.
		{"(&(objectClass=person)(|(uid=alice)(uid=bob)))", "uid=alice uid=bob"},
		{"(&(objectClass=person)(!(memberOf=*)))", "uid=dave"},
		{"(|(uid=alice)(cn=devs))", "cn=devs uid=alice"},
		// Undefined: unknown type, bad syntax, missing rule. NOT keeps it Undefined.
		{"(!(fooBar=x))", ""},
		{"(!(uidNumber=one))", ""},
		{"(!(cn>=a))", ""},
		{"(!(uidNumber=1*))", ""},
		{"(|(fooBar=x)(uid=alice))", "uid=alice"},
		{"(!(&(fooBar=x)(uid=alice)))", people[10:] + " " + groups + " dc=example ou=groups ou=people"},
		// Extensible matches.
		{"(cn:caseExactMatch:=Carol)", "uid=carol"},
		{"(cn:caseExactMatch:=carol)", ""},
		{"(cn:2.5.13.5:=Carol)", "uid=carol"},
		{"(uid:=ALICE)", "uid=alice"},
		{"(:caseIgnoreMatch:=carol)", "uid=carol"},
		{"(ou:dn:=people)", "ou=people " + people},
		{"(:dn:caseIgnoreMatch:=groups)", "ou=groups " + groups},
		{"(userAccountControl:1.2.840.113556.1.4.803:=2)", "uid=bob"},
		{"(userAccountControl:1.2.840.113556.1.4.804:=3)", "uid=bob"},
		{"(uidNumber:integerOrderingMatch:=1002)", "uid=alice"},
		{"(memberOf:distinguishedNameMatch:=cn=ops,ou=groups,dc=example,dc=org)", "uid=bob"},
		{"(!(uidNumber:caseIgnoreMatch:=1001))", ""}, // rule not for this syntax
		{"(!(cn:fooMatch:=x))", ""},
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, c.filter, "1.1"))
		if got := rdnsOf(w.dns()); got != sortedWords(c.want) {
			t.Errorf("%s: %q, want %q", c.filter, got, sortedWords(c.want))
		}
	}
}

func sortedWords(s string) string {
	w := strings.Fields(s)
	slices.Sort(w)
	return strings.Join(w, " ")
}

// TestInChain checks LDAP_MATCHING_RULE_IN_CHAIN against hand-computed nesting: all ⊃
// {devs, ops}, devs ⊃ {alice, admins}, admins ⊃ {carol}, ops ⊃ {bob, dave}; dave lacks
// memberOf, and loop1 and loop2 contain each other.
func TestInChain(t *testing.T) {
	tree := testTree(t)
	for _, c := range []struct{ filter, want string }{
		{"(memberOf:" + OIDInChain + ":=cn=all,ou=groups,dc=example,dc=org)", "cn=admins cn=devs cn=ops uid=alice uid=bob uid=carol uid=dave"},
		{"(memberOf:" + OIDInChain + ":=CN=Devs,OU=Groups,DC=Example,DC=Org)", "cn=admins uid=alice uid=carol"},
		{"(&(objectClass=person)(memberOf:" + OIDInChain + ":=cn=all,ou=groups,dc=example,dc=org))", "uid=alice uid=bob uid=carol uid=dave"},
		{"(memberOf:" + OIDInChain + ":=cn=ops,ou=groups,dc=example,dc=org)", "uid=bob uid=dave"},
		{"(member:" + OIDInChain + ":=uid=carol,ou=people,dc=example,dc=org)", "cn=admins cn=all cn=devs"},
		{"(member:" + OIDInChain + ":=uid=dave,ou=people,dc=example,dc=org)", "cn=all cn=ops"},
		{"(member:" + OIDInChain + ":=cn=loop1,ou=groups,dc=example,dc=org)", "cn=loop1 cn=loop2"},
		{"(memberOf:" + OIDInChain + ":=cn=nothing,ou=groups,dc=example,dc=org)", ""},
		{"(!(cn:" + OIDInChain + ":=x))", ""},          // not a DN attribute: Undefined
		{"(!(memberOf:" + OIDInChain + ":=junk))", ""}, // not a DN: Undefined
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, c.filter, "1.1"))
		if got := rdnsOf(w.dns()); got != c.want {
			t.Errorf("%s: %q, want %q", c.filter, got, c.want)
		}
	}
}

// TestFilterCandidates checks that indexed filters look at their candidates only.
func TestFilterCandidates(t *testing.T) {
	tree := benchTree(t, 2000)
	for _, c := range []struct {
		filter string
		max    int // candidates at most; -1: no index
	}{
		{"(uid=user0042)", 1},
		{"(UID=USER0042)", 1},
		{"(&(objectClass=person)(uid=user0042))", 1},
		{"(|(uid=user0042)(mail=user0043@example.org)(cn=nobody))", 2},
		{"(memberOf=cn=group07,ou=groups,dc=example,dc=org)", 40},
		{"(&(memberOf=cn=group07,ou=groups,dc=example,dc=org)(!(uid=user0007)))", 40},
		{"(objectClass=inetOrgPerson)", 2000},
		{"(fooBar=x)", 0},
		{"(cn=*x*)", -1},
		{"(|(uid=a)(cn=*x*))", -1},
		{"(!(uid=a))", -1},
	} {
		p, err := tree.compileFilter(mustFilterElement(t, c.filter))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c.max < 0 && p.indexed:
			t.Errorf("%s: %d candidates, want none from an index", c.filter, len(p.cands))
		case c.max >= 0 && (!p.indexed || len(p.cands) > c.max):
			t.Errorf("%s: indexed %v, %d candidates, want at most %d", c.filter, p.indexed, len(p.cands), c.max)
		}
	}
}

func TestMalformedFilters(t *testing.T) {
	tree := testTree(t)
	eq := func(children ...*ber.Packet) *ber.Packet {
		p := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterEqualityMatch, nil, "")
		for _, c := range children {
			p.AppendChild(c)
		}
		return p
	}
	str := func(s string) *ber.Packet {
		return ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, s, "")
	}
	not := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterNot, nil, "")
	substr := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterSubstrings, nil, "")
	substr.AppendChild(str("cn"))
	parts := ber.NewSequence("")
	parts.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 2, "final", ""))
	parts.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "initial", ""))
	substr.AppendChild(parts)
	for i, f := range []*ber.Packet{
		eq(str("cn")),
		not,
		substr,
		ber.Encode(ber.ClassContext, ber.TypePrimitive, 12, nil, ""),
		ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""),
	} {
		w := &collectWriter{}
		searchInto(tree, w, &Request{Op: OpSearch, Search: &SearchRequest{BaseDN: testBase, Scope: ScopeSubtree, Filter: f}})
		if w.result.Code != ldap.LDAPResultProtocolError {
			t.Errorf("malformed filter %d: code %d", i, w.result.Code)
		}
	}

	// (&) is true and (|) false (RFC 4526).
	for _, c := range []struct {
		tag  ber.Tag
		want int
	}{{ldap.FilterAnd, 13}, {ldap.FilterOr, 0}} {
		w := &collectWriter{}
		f := ber.Encode(ber.ClassContext, ber.TypeConstructed, c.tag, nil, "")
		searchInto(tree, w, &Request{Op: OpSearch, Search: &SearchRequest{BaseDN: testBase, Scope: ScopeSubtree, Filter: f}})
		if len(w.entries) != c.want || w.result.Code != 0 {
			t.Errorf("empty filter set %d: %d entries, code %d", c.tag, len(w.entries), w.result.Code)
		}
	}
}

func ExampleTree_Search() {
	tree, err := NewTree([]string{"dc=example,dc=org"}, []*Entry{
		{DN: "dc=example,dc=org", Attributes: []Attribute{{Name: "objectClass", Values: [][]byte{[]byte("domain")}}}},
		{DN: "uid=jo,dc=example,dc=org", Attributes: []Attribute{
			{Name: "objectClass", Values: [][]byte{[]byte("inetOrgPerson")}},
			{Name: "uid", Values: [][]byte{[]byte("jo")}},
			{Name: "cn", Values: [][]byte{[]byte("Jo Smith")}},
		}},
	})
	if err != nil {
		panic(err)
	}
	filter, _ := ldap.CompileFilter("(&(objectClass=person)(cn=jo*))")
	w := &collectWriter{}
	searchInto(tree, w, &Request{Op: OpSearch, Search: &SearchRequest{BaseDN: "dc=example,dc=org", Scope: ScopeSubtree, Filter: filter}})
	for _, e := range w.entries {
		fmt.Println(e.DN)
	}
	fmt.Println("result", w.result.Code)
	// Output:
	// uid=jo,dc=example,dc=org
	// result 0
}
