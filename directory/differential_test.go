package directory

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// The differential test: the same searches, run against a real slapd and against a Tree
// built from everything that slapd holds, must return the same entries. Seeded random
// filters cover every filter type, nested, with values taken from the data (so many of
// them match), changed in case and spacing, made up (so some match nothing) or invalid
// for their syntax, and with unknown attribute types.
//
// Excluded, on purpose:
//   - approximate matching (~=) on string attributes: slapd matches by a phonetic code
//     (digits ignored, "usr" ≈ "user"), the tree by equality. Approx on integers, DNs,
//     times, UUIDs, booleans and object classes is compared: slapd uses equality there.
//   - subschemaSubentry in filters: slapd returns it but never matches filters on it.
//   - LDAP_MATCHING_RULE_IN_CHAIN: slapd does not implement it; TestInChain checks it.
//   - quoted RDN values (uid="x") in DN assertions, which slapd accepts from LDAPv2 and
//     go-ldap's DN parser does not; and Unicode normalisation beyond simple case folding
//     (the data holds precomposed characters only).

// differentialLDIF adds entries with the shapes the generated data lacks: escaped and
// multi-valued RDNs, non-ASCII and oddly spaced values, telephone numbers, nested and
// unique-member groups, a deeper hierarchy, and varied timestamps.
const differentialLDIF = `
dn: ou=Extra Unit,dc=example,dc=org
objectClass: organizationalUnit
ou: Extra Unit
description:: ICBMZWFkaW5nIGFuZCAgIGludGVybmFsICAgc3BhY2VzICA=
createTimestamp: 20190301101500Z
modifyTimestamp: 20240615083000Z

dn: cn=Smith\2C John,ou=Extra Unit,dc=example,dc=org
objectClass: inetOrgPerson
cn: Smith, John
cn: John Smith
cn: J.  Smith
sn: Smith
givenName: John
mail: John.Smith@Example.ORG
mail: jsmith@example.org
telephoneNumber: +1 555-0100
telephoneNumber: +1 (555) 0199
employeeNumber: 00042
employeeType: Full Time
title: Senior  Engineer
l: Zürich
street: Bahnhofstrasse 1
postalCode: 8001
description: Ünïcödé Straße
description: stars * and (parens) and back\slash
memberOf: cn=extra staff,ou=groups,dc=example,dc=org
createTimestamp: 20200101120000Z
modifyTimestamp: 20231231235959Z

dn: cn=Ann+uid=ann,ou=Extra Unit,dc=example,dc=org
objectClass: inetOrgPerson
cn: Ann
uid: ann
uid: ANN2
sn: Ánn
mail: ann@example.org
employeeType: Contractor
telephoneNumber: +1 (555) 0101
preferredLanguage: en-GB
memberOf: cn=extra staff,ou=groups,dc=example,dc=org
memberOf: cn=Nested Admins,ou=groups,dc=example,dc=org
createTimestamp: 20210615000000Z
modifyTimestamp: 20220101000000Z

dn: ou=sub,ou=Extra Unit,dc=example,dc=org
objectClass: organizationalUnit
ou: sub
ou: Sub Unit
seeAlso: ou=people,dc=example,dc=org
createTimestamp: 20180101000000Z
modifyTimestamp: 20180101000001Z

dn: cn=deep,ou=sub,ou=Extra Unit,dc=example,dc=org
objectClass: organizationalRole
cn: deep
roleOccupant: uid=user0003,ou=people,dc=example,dc=org
roleOccupant: cn=Smith\2C John,ou=Extra Unit,dc=example,dc=org
telephoneNumber: 555 0100
description: deep role
createTimestamp: 20250505050505Z
modifyTimestamp: 20250505050506Z

dn: uid=deeper,cn=deep,ou=sub,ou=Extra Unit,dc=example,dc=org
objectClass: account
objectClass: posixAccount
uid: deeper
cn: Deeper Account
uidNumber: 0
gidNumber: 4294967296
homeDirectory: /home/Deeper
loginShell: /bin/sh
gecos: Deeper Account,,,
description: UPPER lower MiXeD
createTimestamp: 19991231235959Z
modifyTimestamp: 20000101000000Z

dn: cn=extra staff,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: extra staff
cn: Staff
member: cn=Smith\2C John,ou=Extra Unit,dc=example,dc=org
member: cn=Ann+uid=ann,ou=Extra Unit,dc=example,dc=org
member: cn=Nested Admins,ou=groups,dc=example,dc=org
description: extra staff group
memberOf: cn=group005,ou=groups,dc=example,dc=org
createTimestamp: 20200202020202Z
modifyTimestamp: 20200202020203Z

dn: cn=Nested Admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: Nested Admins
member: cn=Ann+uid=ann,ou=Extra Unit,dc=example,dc=org
member: uid=user0007,ou=people,dc=example,dc=org
memberOf: cn=extra staff,ou=groups,dc=example,dc=org
owner: cn=Smith\2C John,ou=Extra Unit,dc=example,dc=org
createTimestamp: 20230303030303Z
modifyTimestamp: 20230303030304Z

dn: cn=unique,ou=groups,dc=example,dc=org
objectClass: groupOfUniqueNames
cn: unique
uniqueMember: uid=user0001,ou=people,dc=example,dc=org
uniqueMember: uid=user0002,ou=people,dc=example,dc=org#'0101'B
businessCategory: Engineering
createTimestamp: 20220722101010Z
modifyTimestamp: 20220722101011Z

dn: cn=posix group,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: posix group
gidNumber: -5
memberUid: user0001
memberUid: Ann
description: a posix group
createTimestamp: 20211111111111Z
modifyTimestamp: 20211111111112Z
`

// serve runs srv on a loopback listener until the test ends and returns its address.
func serve(t *testing.T, srv *ldapserver.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Logger = slog.New(slog.DiscardHandler)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialLDAP(t *testing.T, addr string) *ldap.Conn {
	t.Helper()
	lc, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	lc.SetTimeout(clientTimeout)
	t.Cleanup(func() { lc.Close() })
	return lc
}

// clientTimeout bounds each request of the tests' clients: a hang detector, long
// enough that a loaded machine running slapd and the tests with -race does not trip it
// (5 s did, on searches of the differential test).
const clientTimeout = 30 * time.Second

// differential is a slapd and an ldapserver.Server serving a Tree of the same entries.
type differential struct {
	srv     *slapdtest.Server
	slapd   *ldap.Conn // bound as the service account
	proxy   *ldap.Conn
	tree    *Tree
	entries []*Entry
}

func newDifferential(t *testing.T) *differential {
	t.Helper()
	srv := slapdtest.New(t, slapdtest.Options{Users: 300, Groups: 20, MemberOf: true, ExtraLDIF: differentialLDIF})
	// The service account reads everything but passwords, as the syncer does.
	svc := dialLDAP(t, strings.TrimPrefix(srv.URL, "ldap://"))
	if err := svc.Bind(srv.ServiceDN, srv.ServicePassword); err != nil {
		t.Fatal(err)
	}
	d := &differential{srv: srv, slapd: svc}
	res, err := d.slapd.Search(ldap.NewSearchRequest(srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"*", "+"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range res.Entries {
		e := ldapwire.EntryFromLDAP(le)
		// The tree computes entryDN and hasSubordinates itself.
		e.Attributes = slices.DeleteFunc(e.Attributes, func(a Attribute) bool {
			return slices.Contains([]string{"entrydn", "hassubordinates"}, strings.ToLower(a.Name))
		})
		d.entries = append(d.entries, e)
	}
	d.serve(t, nil)
	return d
}

// slapdSchema is slapd's own schema, read from its subschema subentry as the sync reads
// it.
func (d *differential) slapdSchema(t *testing.T) *Schema {
	t.Helper()
	res, err := d.slapd.Search(ldap.NewSearchRequest("cn=Subschema", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"attributeTypes", "objectClasses", "matchingRules", "ldapSyntaxes"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("read slapd's subschema: %v", err)
	}
	e := res.Entries[0]
	sch, err := ParseSchema(Descriptions{AttributeTypes: e.GetAttributeValues("attributeTypes"), ObjectClasses: e.GetAttributeValues("objectClasses"),
		MatchingRules: e.GetAttributeValues("matchingRules"), LDAPSyntaxes: e.GetAttributeValues("ldapSyntaxes")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// serve builds the tree of d's entries matched with sch (nil: the built-in schema) and
// serves it to d.proxy.
func (d *differential) serve(t *testing.T, sch *Schema) {
	t.Helper()
	var err error
	if d.tree, err = NewTreeSchema(sch, []string{d.srv.Suffix}, d.entries); err != nil {
		t.Fatal(err)
	}
	tree := d.tree
	addr := serve(t, &ldapserver.Server{Handler: ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		switch r.Op {
		case ldapserver.OpSearch:
			if res := tree.Search(r.Context(), r.Search, r.Controls, func(e *Entry) error { return w.WriteEntry(e) }); res != nil {
				w.WriteResult(res)
			}
		case ldapserver.OpCompare:
			w.WriteResult(tree.Compare(r.Compare))
		default:
			w.WriteResult(&Result{})
		}
	})})
	d.proxy = dialLDAP(t, addr)
}

// outcome is what a search returned: its entries (DN → attribute lines) and result code.
type outcome struct {
	entries map[string][]string
	code    uint16
	matched string
}

func runSearch(c *ldap.Conn, req *ldap.SearchRequest) outcome {
	res, err := c.Search(req)
	out := outcome{entries: map[string][]string{}}
	if res != nil {
		for _, e := range res.Entries {
			var lines []string
			for _, a := range e.Attributes {
				if len(a.Values) == 0 {
					lines = append(lines, a.Name)
				}
				for _, v := range a.Values {
					lines = append(lines, a.Name+": "+v)
				}
			}
			slices.Sort(lines)
			out.entries[e.DN] = lines
		}
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		out.code, out.matched = le.ResultCode, le.MatchedDN
	} else if err != nil {
		out.code = 0xffff
	}
	return out
}

func (d *differential) search(base string, scope int, filter string, attrs []string) (slapd, tree outcome) {
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	}
	return runSearch(d.slapd, req()), runSearch(d.proxy, req())
}

// diffDNs describes how two outcomes' entry sets differ; empty when they are the same.
func diffDNs(slapd, tree outcome) string {
	var onlyS, onlyT []string
	for dn := range slapd.entries {
		if _, ok := tree.entries[dn]; !ok {
			onlyS = append(onlyS, dn)
		}
	}
	for dn := range tree.entries {
		if _, ok := slapd.entries[dn]; !ok {
			onlyT = append(onlyT, dn)
		}
	}
	var b strings.Builder
	if slapd.code != tree.code {
		fmt.Fprintf(&b, "result code: slapd %d, tree %d; ", slapd.code, tree.code)
	}
	if len(onlyS)+len(onlyT) > 0 {
		fmt.Fprintf(&b, "slapd returned %d entries; %d only from slapd %s; %d only from the tree %s",
			len(slapd.entries), len(onlyS), firstFew(onlyS), len(onlyT), firstFew(onlyT))
	}
	return b.String()
}

// firstFew shows up to five DNs of a list.
func firstFew(dns []string) string {
	slices.Sort(dns)
	if len(dns) > 5 {
		return fmt.Sprintf("%q…", dns[:5])
	}
	return fmt.Sprintf("%q", dns)
}

func TestDifferentialAgainstSlapd(t *testing.T) {
	d := newDifferential(t)
	t.Logf("%d entries", len(d.entries))
	t.Run("built-in schema", func(t *testing.T) { differentialAgainstSlapd(t, d) })
	// The same with slapd's own schema, as the sync reads it: what cached mode matches with.
	d.serve(t, d.slapdSchema(t))
	if d.tree.Schema().Builtin() {
		t.Fatal("the tree does not match with slapd's schema")
	}
	t.Run("slapd's schema", func(t *testing.T) { differentialAgainstSlapd(t, d) })
}

func differentialAgainstSlapd(t *testing.T, d *differential) {
	t.Run("filters", func(t *testing.T) {
		g := newFilterGen(d.entries, 20240229)
		filters := append(slices.Clone(cornerFilters), g.filters(2000)...)
		matched, failures := 0, 0
		for _, f := range filters {
			if _, err := ldap.CompileFilter(f); err != nil {
				t.Fatalf("generated filter %s does not compile: %v", f, err)
			}
			s, tr := d.search(d.srv.Suffix, ldap.ScopeWholeSubtree, f, []string{"1.1"})
			if s.code == ldap.ErrorNetwork || tr.code == ldap.ErrorNetwork {
				// Not a difference: a client that got no answer in time; the next
				// thousands of searches would each wait as long.
				t.Fatalf("filter %s: no answer within %v (slapd %d, tree %d)", f, clientTimeout, s.code, tr.code)
			}
			if diff := diffDNs(s, tr); diff != "" {
				failures++
				if failures <= 40 {
					t.Errorf("filter %s: %s", f, diff)
				}
				continue
			}
			if len(s.entries) > 0 {
				matched++
			}
		}
		if failures > 40 {
			t.Errorf("… and %d more differences", failures-40)
		}
		t.Logf("%d filters compared, %d of them matched entries", len(filters), matched)
		if matched < len(filters)/3 {
			t.Errorf("only %d of %d filters matched anything: the generator draws too few real values", matched, len(filters))
		}
	})

	t.Run("attributes", func(t *testing.T) {
		bases := []string{d.srv.UserDN(1), d.srv.GroupDN(2), "cn=Smith\\2C John,ou=Extra Unit," + d.srv.Suffix, "ou=Extra Unit," + d.srv.Suffix, d.srv.Suffix}
		lists := [][]string{nil, {"*"}, {"+"}, {"*", "+"}, {"1.1"}, {"1.1", "cn"}, {"cn", "MAIL", "memberOf"},
			{"name"}, {"2.5.4.3", "commonName", "fooBar"}, {"entryDN", "hasSubordinates", "structuralObjectClass"},
			{"distinguishedName"}, {"*", "entryUUID"}, {"cn;lang-en"}, {"objectClass", "+"}}
		for _, base := range bases {
			for _, attrs := range lists {
				s, tr := d.search(base, ldap.ScopeBaseObject, "(objectClass=*)", attrs)
				if len(s.entries) != 1 || fmt.Sprint(s) != fmt.Sprint(tr) {
					t.Errorf("base %s, attributes %q:\nslapd %v\ntree  %v", base, attrs, s, tr)
				}
			}
		}
		typesOnly := func(c *ldap.Conn) outcome {
			return runSearch(c, ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, true,
				"(|(uid=user0001)(cn=group002))", []string{"cn", "mail", "member"}, nil))
		}
		if s, tr := typesOnly(d.slapd), typesOnly(d.proxy); fmt.Sprint(s) != fmt.Sprint(tr) || len(s.entries) != 2 {
			t.Errorf("typesOnly:\nslapd %v\ntree  %v", s, tr)
		}
	})

	t.Run("scopes and results", func(t *testing.T) {
		cases := []struct {
			base  string
			scope int
		}{
			{d.srv.Suffix, ldap.ScopeBaseObject},
			{d.srv.Suffix, ldap.ScopeSingleLevel},
			{d.srv.Suffix, ldap.ScopeChildren},
			{d.srv.PeopleDN, ldap.ScopeSingleLevel},
			{"OU=Extra  Unit , DC=Example,dc=ORG", ldap.ScopeSingleLevel},
			{"ou=extra unit,dc=example,dc=org", ldap.ScopeChildren},
			{"cn=deep,ou=sub,ou=Extra Unit,dc=example,dc=org", ldap.ScopeWholeSubtree},
			{"uid=nobody,ou=people,dc=example,dc=org", ldap.ScopeWholeSubtree},               // noSuchObject, matched ou=people
			{"cn=x,uid=nobody,ou=Extra Unit,dc=example,dc=org", ldap.ScopeBaseObject},        // matched ou=Extra Unit
			{"dc=other", ldap.ScopeWholeSubtree},                                             // outside the naming context
			{"not a dn", ldap.ScopeWholeSubtree},                                             // invalidDNSyntax
			{"commonName=Ann+UID=ANN,ou=extra unit,dc=example,dc=org", ldap.ScopeBaseObject}, // RDN order, aliases
		}
		for _, c := range cases {
			s, tr := d.search(c.base, c.scope, "(objectClass=*)", []string{"1.1"})
			if diff := diffDNs(s, tr); diff != "" || s.matched != tr.matched {
				t.Errorf("base %q scope %d: %s; matchedDN slapd %q, tree %q", c.base, c.scope, diff, s.matched, tr.matched)
			}
		}
		sizeLimited := func(c *ldap.Conn, limit int, filter string) outcome {
			return runSearch(c, ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, limit, 0, false, filter, []string{"1.1"}, nil))
		}
		for _, c := range []struct {
			limit  int
			filter string
		}{{7, "(objectClass=*)"}, {1, "(uid=user0001)"}, {2, "(uid=user0001)"}, {5, "(objectClass=groupOfNames)"}} {
			s, tr := sizeLimited(d.slapd, c.limit, c.filter), sizeLimited(d.proxy, c.limit, c.filter)
			if s.code != tr.code || len(s.entries) != len(tr.entries) {
				t.Errorf("size limit %d %s: slapd %d entries, code %d; tree %d entries, code %d", c.limit, c.filter, len(s.entries), s.code, len(tr.entries), tr.code)
			}
		}
		critical := func(c *ldap.Conn) outcome {
			return runSearch(c, ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(uid=user0001)",
				[]string{"1.1"}, []ldap.Control{&ldap.ControlString{ControlType: "1.2.3.4.5", Criticality: true}}))
		}
		if s, tr := critical(d.slapd), critical(d.proxy); s.code != ldap.LDAPResultUnavailableCriticalExtension || tr.code != s.code {
			t.Errorf("critical unknown control: slapd %d, tree %d", s.code, tr.code)
		}
	})

	t.Run("paging", func(t *testing.T) {
		for _, c := range []struct {
			filter string
			size   uint32
		}{{"(objectClass=*)", 7}, {"(objectClass=*)", 100}, {"(|(uid=user00*)(objectClass=groupOfNames))", 9}, {"(uid=user0001)", 1}, {"(cn=nothing)", 5}} {
			req := func() *ldap.SearchRequest {
				return ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, c.filter, []string{"1.1"}, nil)
			}
			sr, err := d.slapd.SearchWithPaging(req(), c.size)
			if err != nil {
				t.Fatal(err)
			}
			pages := 0
			tr := map[string]bool{}
			var cookie []byte
			for {
				p := ldap.NewControlPaging(c.size)
				p.SetCookie(cookie)
				r := req()
				r.Controls = []ldap.Control{p}
				res, err := d.proxy.Search(r)
				if err != nil {
					t.Fatalf("%s page %d: %v", c.filter, pages, err)
				}
				pages++
				if len(res.Entries) > int(c.size) {
					t.Errorf("%s: page of %d entries, size %d", c.filter, len(res.Entries), c.size)
				}
				for _, e := range res.Entries {
					if tr[e.DN] {
						t.Errorf("%s: %s on two pages", c.filter, e.DN)
					}
					tr[e.DN] = true
				}
				pc, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
				if !ok {
					t.Fatalf("%s: page without a paging control", c.filter)
				}
				if cookie = pc.Cookie; len(cookie) == 0 {
					break
				}
			}
			if len(tr) != len(sr.Entries) {
				t.Errorf("%s by %d: slapd %d entries, tree %d in %d pages", c.filter, c.size, len(sr.Entries), len(tr), pages)
			}
			for _, e := range sr.Entries {
				if !tr[e.DN] {
					t.Errorf("%s: %s missing from the tree's pages", c.filter, e.DN)
				}
			}
		}

		// The size limit counts the entries of every page, as slapd counts them.
		limited := func(c *ldap.Conn) string {
			var out []string
			var cookie []byte
			for range 5 {
				p := ldap.NewControlPaging(10)
				p.SetCookie(cookie)
				res, err := c.Search(ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 15, 0, false, "(objectClass=*)", []string{"1.1"}, []ldap.Control{p}))
				out = append(out, fmt.Sprintf("%d entries %v", len(res.Entries), ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)))
				pc, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
				if err != nil || pc == nil || len(pc.Cookie) == 0 {
					break
				}
				cookie = pc.Cookie
			}
			return strings.Join(out, ", ")
		}
		if s, tr := limited(d.slapd), limited(d.proxy); s != tr {
			t.Errorf("paged search with a size limit: slapd %s; tree %s", s, tr)
		}

		// Bad cookies: garbage is a protocol error in both; slapd calls a cookie it no
		// longer accepts "invalid or old" (unwillingToPerform), as the tree does for a
		// cookie of a tree built anew.
		badCookie := func(c *ldap.Conn, cookie []byte) uint16 {
			p := ldap.NewControlPaging(10)
			p.SetCookie(cookie)
			return runSearch(c, ldap.NewSearchRequest(d.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, []ldap.Control{p})).code
		}
		if s, tr := badCookie(d.slapd, []byte("garbage!")), badCookie(d.proxy, []byte("garbage!")); s != ldap.LDAPResultProtocolError || tr != s {
			t.Errorf("garbage cookie: slapd %d, tree %d", s, tr)
		}
		other, err := NewTree([]string{d.srv.Suffix}, d.entries)
		if err != nil {
			t.Fatal(err)
		}
		hash := searchHash(other.entry(0).canon(), &SearchRequest{Scope: ldap.ScopeWholeSubtree, Filter: mustFilter(t, "(objectClass=*)"), Attributes: []string{"1.1"}})
		if code := badCookie(d.proxy, other.makeCookie(hash, 10, 10)); code != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("cookie of a tree built anew: %d, want unwillingToPerform", code)
		}
	})

	t.Run("compare", func(t *testing.T) {
		for _, c := range []struct{ dn, attr, value string }{
			{d.srv.UserDN(1), "uid", "USER0001"}, {d.srv.UserDN(1), "uid", "x"}, {d.srv.UserDN(1), "fooBar", "x"},
			{d.srv.UserDN(1), "title", "x"}, {d.srv.UserDN(1), "uidNumber", "abc"}, {d.srv.UserDN(1), "uidNumber", "10001"},
			{d.srv.UserDN(1), "objectClass", "person"}, {d.srv.UserDN(1), "objectClass", "fooClass"},
			{d.srv.UserDN(1), "hasSubordinates", "FALSE"}, {d.srv.UserDN(1), "memberOf", "CN=Group001,ou=groups,dc=example,dc=org"},
			{d.srv.UserDN(1), "name", "user  0001"}, {d.srv.UserDN(1), "homeDirectory", "/HOME/user0001"},
			{"uid=nobody,ou=people,dc=example,dc=org", "uid", "x"}, {"bad", "uid", "x"},
		} {
			cmp := func(conn *ldap.Conn) string {
				ok, err := conn.Compare(c.dn, c.attr, c.value)
				var le *ldap.Error
				if errors.As(err, &le) {
					return fmt.Sprintf("code %d matched %q", le.ResultCode, le.MatchedDN)
				}
				return fmt.Sprint(ok, err)
			}
			if s, tr := cmp(d.slapd), cmp(d.proxy); s != tr {
				t.Errorf("compare %s %s=%s: slapd %s, tree %s", c.dn, c.attr, c.value, s, tr)
			}
		}
	})
}

// cornerFilters pin down the corners of slapd's matching that random filters hit rarely.
var cornerFilters = []string{
	"(cn=User *)", "(cn= *)", "(cn=* )", "(cn=*  *)", "(cn=User *  0001)", "(cn=User* 0001)", "(cn=*r 0*)",
	"(description=  Leading*)", "(description=*spaces  )", "(description=leading and internal spaces)",
	"(description=*\\2a*)", "(description=*\\5c*)", "(description=ünïcödé straße)", "(description=ÜNÏCÖDÉ STRASSE)",
	"(l=ZÜRICH)", "(sn=ÁNN)", "(mail=* example*)", "(!(mail=müller@x))", "(mail=JOHN.SMITH@example.org)",
	"(telephoneNumber=+15550100)", "(telephoneNumber=*5-5*)", "(!(telephoneNumber=a@b))", "(!(telephoneNumber>=1))",
	"(cn>=User 0100)", "(!(cn>=User 0100))", "(uidNumber>=10100)", "(!(uidNumber<=10100))", "(gidNumber<=-1)",
	"(gidNumber>=4294967296)", "(!(uidNumber=010001))", "(!(uidNumber=-0))", "(uidNumber<=99999999999999999999999)",
	"(!(uidNumber=1000*))", "(!(objectClass=*x*))", "(objectClass=person)", "(objectClass=2.5.6.6)", "(objectClass=top)",
	"(!(objectClass=fooClass))", "(!(objectClass=foo bar))", "(structuralObjectClass=person)", "(name=people)",
	"(distinguishedName=uid=user0001,ou=people,dc=example,dc=org)", "(hasSubordinates=TRUE)", "(!(hasSubordinates=true))",
	"(hasSubordinates=*)", "(hasSubordinates~=TRUE)", "(entryDN=UID=User0001, ou=People,dc=example,dc=org)",
	"(!(entryDN=*people*))", "(!(member=foo=bar))", "(!(member=garbage))", "(!(member=))",
	"(member=commonName=group002,ou=groups,dc=example,dc=org)", "(member=uid=user0001;ou=people;dc=example;dc=org)",
	"(member= uid = user0001 , ou=people,dc=example,dc=org)", "(member=0.9.2342.19200300.100.1.1=user0001,ou=people,dc=example,dc=org)",
	"(member=uid=ann+cn=ann,ou=Extra Unit,dc=example,dc=org)", "(!(member=uid=#04087573657230303031,ou=people,dc=example,dc=org))",
	"(!(member=uid=user0001,ou=people,dc=example,dc=org,))", "(roleOccupant=cn=smith\\5c2c john,ou=extra unit,dc=example,dc=org)",
	"(uniqueMember=uid=user0002,ou=people,dc=example,dc=org)", "(uniqueMember=uid=user0002,ou=people,dc=example,dc=org#'0101'B)",
	"(memberUid=ann)", "(memberUid=A*)", "(homeDirectory=/home/deeper)", "(!(homeDirectory=/home/*))",
	"(createTimestamp=20200101120000.0Z)", "(createTimestamp=20200101130000+0100)", "(createTimestamp>=2020010100Z)",
	"(!(createTimestamp>=20200101))", "(!(createTimestamp=20201301000000Z))", "(!(createTimestamp=2026*))",
	"(createTimestamp<=201901)", "(modifyTimestamp<=20180101000001,5Z)",
	"(createTimestamp>=99991231233000-0100)", "(!(createTimestamp>=99991231233000-0100))",
	"(createTimestamp<=00000101003000+0100)", "(!(createTimestamp<=00000101003000+0100))",
	"(createTimestamp<=00000101003000Z)", "(!(createTimestamp>=99991231223000-0100))",
	"(modifyTimestamp=19991231235960Z)", "(modifyTimestamp<=19991231235960Z)", "(modifyTimestamp>=19991231235960Z)",
	"(modifyTimestamp>=19991231235960.5Z)", "(modifyTimestamp>=20180101000001.0000000001Z)", "(!(modifyTimestamp=20180101000001.0000000001Z))",
	"(modifyTimestamp<=20180101000001.9999999999Z)", "(modifyTimestamp<=20000101005960+0100)", "(modifyTimestamp=20231231235960Z)",
	"(!(entryUUID=xyz))", "(!(entryUUID=ad2*))", "(entryUUID>=80000000-0000-0000-0000-000000000000)",
	"(!(fooBar=x))", "(!(fooBar=*))", "(!(fooBar:dn:=people))", "(!(cn:fooMatch:=x))", "(!(:fooMatch:=x))",
	"(cn:caseExactMatch:=User 0001)", "(!(cn:caseExactMatch:=user 0001))", "(cn:2.5.13.5:=User 0001)", "(cn:CASEEXACTMATCH:=User 0001)",
	"(cn:=User 0001)", "(:caseIgnoreMatch:=USER 0001)", "(!(:caseIgnoreMatch:=user0001@example.org))", "(!(:caseIgnoreMatch:=people))",
	"(:dn:caseIgnoreMatch:=people)", "(ou:dn:=people)", "(!(ou:dn:=people))", "(name:dn:=people)", "(dc:dn:=example)",
	"(o:dn:=example)", "(ou:dn:caseExactMatch:=People)", "(:dn:caseExactMatch:=Extra Unit)", "(:dn:caseExactMatch:=extra unit)",
	"(ou:dn:=extra  unit)", "(ou:dn:=Sub Unit)", "(cn:dn:=deep)", "(uid:dn:=ann2)", "(!(entryDN:dn:=people))",
	"(uidNumber:1.2.840.113556.1.4.803:=1)", "(uidNumber:1.2.840.113556.1.4.804:=3)", "(!(uidNumber:1.2.840.113556.1.4.803:=1))",
	"(uidNumber:integerBitAndMatch:=1)", "(:1.2.840.113556.1.4.803:=1)", "(!(cn:1.2.840.113556.1.4.803:=1))",
	"(!(uidNumber:caseIgnoreMatch:=10001))", "(:distinguishedNameMatch:=cn=Smith\\5c2C John,ou=Extra Unit,dc=example,dc=org)",
	"(:dn:distinguishedNameMatch:=ou=people,dc=example,dc=org)", "(:integerOrderingMatch:=10005)", "(:caseIgnoreOrderingMatch:=b)",
	"(cn:caseExactOrderingMatch:=User 0002)", "(:dn:caseIgnoreOrderingMatch:=b)", "(ou:dn:caseExactOrderingMatch:=q)",
	"(:dn:caseIgnoreIA5Match:=EXAMPLE)", "(:dn:caseIgnoreMatch:=EXAMPLE)", "(!(entryUUID:UUIDMatch:=ad281bd2-7d87-1041-9a3d-57f213f1b07b))",
	"(!(:UUIDMatch:=ad281bd2-7d87-1041-9a3d-57f213f1b07b))", "(!(hasSubordinates:booleanMatch:=TRUE))", "(!(hasSubordinates:=TRUE))",
	"(createTimestamp:generalizedTimeMatch:=20200101120000Z)", "(:generalizedTimeMatch:=20200101120000Z)",
	"(createTimestamp:generalizedTimeOrderingMatch:=20200101120000Z)", "(:uniqueMemberMatch:=uid=user0001,ou=people,dc=example,dc=org)",
	"(!(uniqueMember:distinguishedNameMatch:=uid=user0001,ou=people,dc=example,dc=org))", "(!(mail:caseIgnoreMatch:=ann@example.org))",
	"(mail:caseExactIA5Match:=ann@example.org)", "(:telephoneNumberMatch:=+15550100)", "(telephoneNumber:caseIgnoreMatch:=+1 555-0100)",
	"(!(cn:telephoneNumberMatch:=ann))", "(:caseIgnoreIA5Match:=ANN@example.org)", "(:integerMatch:=10001)",
	"(!(:objectIdentifierMatch:=inetOrgPerson))", "(objectClass:=person)", "(!(objectClass:objectIdentifierMatch:=person))",
	"(!(objectClass:dn:=people))", "(structuralObjectClass:=person)", "(entryDN:=ou=people,dc=example,dc=org)",
	"(entryDN:distinguishedNameMatch:=ou=people,dc=example,dc=org)", "(creatorsName=cn=admin,dc=example,dc=org)",
	"(!(:integerMatch:=abc))", "(!(:caseIgnoreMatch:=))", "(!(cn=))", "(!(description=))",
	"(&(objectClass=inetOrgPerson)(|(uid=user0001)(uid=user0002)(mail=ann@example.org)))",
	"(&(!(uid=*))(objectClass=*))", "(|(fooBar=x)(uid=user0003))", "(!(|(fooBar=x)(uid=user0003)))", "(!(&(fooBar=x)(uid=user0003)))",
	"(!(:2.5.13.1:= ))", "(!(member= ))", "(!(telephoneNumber=* *555-0100))", "(!(telephoneNumber= *0100))", "(!(telephoneNumber= ))",
	"(!(:telephoneNumberMatch:=))", "(!(:telephoneNumberMatch:= ))", "(!(:objectIdentifierMatch:=10000))", "(!(:objectIdentifierMatch:=person))",
	"(!(:objectIdentifierMatch:=1.02))", "(mail=* *)", "(!(mail= ))", "(!(cn= ))",
}

// genKind is how the generator treats an attribute's values.
type genKind uint8

const (
	kString genKind = iota
	kIA5
	kPhone
	kInt
	kDN
	kNameUID
	kTime
	kOC
	kUUID
	kBool
	kUnknown
)

var genAttrs = []struct {
	name string
	kind genKind
	sub  bool // has a substrings rule in slapd's schema
}{
	{"cn", kString, true}, {"sn", kString, true}, {"givenName", kString, true}, {"displayName", kString, true},
	{"uid", kString, true}, {"description", kString, true}, {"ou", kString, true}, {"o", kString, true},
	{"title", kString, true}, {"l", kString, true}, {"street", kString, true}, {"postalCode", kString, true},
	{"employeeNumber", kString, true}, {"employeeType", kString, true}, {"preferredLanguage", kString, true},
	{"businessCategory", kString, true}, {"name", kString, true}, {"commonName", kString, true}, {"userid", kString, true},
	{"mail", kIA5, true}, {"dc", kIA5, true}, {"gecos", kIA5, true}, {"homeDirectory", kIA5, false},
	{"loginShell", kIA5, false}, {"memberUid", kIA5, true},
	{"telephoneNumber", kPhone, true},
	{"uidNumber", kInt, false}, {"gidNumber", kInt, false},
	{"member", kDN, false}, {"memberOf", kDN, false}, {"owner", kDN, false}, {"roleOccupant", kDN, false},
	{"seeAlso", kDN, false}, {"distinguishedName", kDN, false}, {"entryDN", kDN, false}, {"creatorsName", kDN, false},
	{"uniqueMember", kNameUID, false},
	{"createTimestamp", kTime, false}, {"modifyTimestamp", kTime, false},
	{"objectClass", kOC, false}, {"structuralObjectClass", kOC, false},
	{"entryUUID", kUUID, false},
	{"hasSubordinates", kBool, false},
	{"fooBar", kUnknown, false}, {"x-unknown-attr", kUnknown, false},
}

// filterGen makes random filters from the values of a set of entries.
type filterGen struct {
	rng  *rand.Rand
	vals map[string][]string // lowercased attribute name → values in the data
	rdns []string            // RDN values of the entries' DNs
}

func newFilterGen(entries []*Entry, seed uint64) *filterGen {
	g := &filterGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), vals: map[string][]string{}}
	supers := map[string][]string{
		"cn": {"name", "commonname"}, "sn": {"name"}, "givenname": {"name"}, "ou": {"name"}, "o": {"name"},
		"title": {"name"}, "l": {"name"}, "uid": {"userid"},
		"member": {"distinguishedname"}, "owner": {"distinguishedname"}, "roleoccupant": {"distinguishedname"}, "seealso": {"distinguishedname"},
	}
	for _, e := range entries {
		g.vals["entrydn"] = append(g.vals["entrydn"], e.DN)
		for _, a := range e.Attributes {
			n := strings.ToLower(a.Name)
			for _, v := range a.Values {
				for _, k := range append([]string{n}, supers[n]...) {
					g.vals[k] = append(g.vals[k], string(v))
				}
			}
		}
		if dn, err := ldap.ParseDN(e.DN); err == nil {
			for _, ava := range dn.RDNs[0].Attributes {
				g.rdns = append(g.rdns, ava.Value)
			}
		}
	}
	g.vals["objectclass"] = append(g.vals["objectclass"], "person", "top", "organizationalPerson", "2.5.6.6", "PERSON", "groupofnames")
	g.vals["hassubordinates"] = []string{"TRUE", "FALSE"}
	return g
}

func (g *filterGen) filters(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = g.filter(0)
	}
	return out
}

func (g *filterGen) pick(s []string) string { return s[g.rng.IntN(len(s))] }
func (g *filterGen) chance(p float64) bool  { return g.rng.Float64() < p }

func (g *filterGen) filter(depth int) string {
	if depth < 4 && g.chance(0.3) {
		switch g.rng.IntN(3) {
		case 0, 1:
			var b strings.Builder
			b.WriteString([]string{"(&", "(|"}[g.rng.IntN(2)])
			for range 1 + g.rng.IntN(3) {
				b.WriteString(g.filter(depth + 1))
			}
			b.WriteString(")")
			return b.String()
		default:
			return "(!" + g.filter(depth+1) + ")"
		}
	}
	a := genAttrs[g.rng.IntN(len(genAttrs))]
	switch r := g.rng.IntN(100); {
	case r < 28:
		return "(" + a.name + "=" + ldap.EscapeFilter(g.value(a.name, a.kind)) + ")"
	case r < 45:
		if !a.sub && g.chance(0.7) {
			a = genAttrs[g.rng.IntN(19)] // mostly attributes with a substrings rule
		}
		return "(" + a.name + "=" + g.substrings(a.name) + ")"
	case r < 55:
		op := []string{">=", "<="}[g.rng.IntN(2)]
		return "(" + a.name + op + ldap.EscapeFilter(g.value(a.name, a.kind)) + ")"
	case r < 65:
		return "(" + a.name + "=*)"
	case r < 70:
		if a.kind == kString || a.kind == kIA5 || a.kind == kPhone {
			return "(" + a.name + "=*)" // slapd's approx is phonetic for strings: see above
		}
		return "(" + a.name + "~=" + ldap.EscapeFilter(g.value(a.name, a.kind)) + ")"
	default:
		return g.extensible(a.name, a.kind)
	}
}

// value draws an assertion value for an attribute: one from the data, possibly changed
// in case or spacing, or one that matches nothing, or one its syntax rejects.
func (g *filterGen) value(attr string, kind genKind) string {
	pool := g.vals[strings.ToLower(attr)]
	if len(pool) == 0 || g.chance(0.12) {
		return g.madeUp(kind)
	}
	v := g.pick(pool)
	switch kind {
	case kInt:
		if g.chance(0.4) {
			n, _ := strconv.ParseInt(v, 10, 64)
			return strconv.FormatInt(n+int64(g.rng.IntN(21))-10, 10)
		}
	case kTime:
		if g.chance(0.5) {
			return g.timeValue(v)
		}
	case kDN, kNameUID:
		if g.chance(0.5) {
			return g.respellDN(v)
		}
	case kUUID, kBool:
	case kOC:
		if g.chance(0.3) {
			return swapCase(v)
		}
	default:
		return g.respell(v)
	}
	return v
}

func (g *filterGen) madeUp(kind genKind) string {
	switch kind {
	case kInt:
		return g.pick([]string{"10150", "-1", "0", "4294967296", "abc", "007", "-0", "+5", "99999999999999999999"})
	case kDN, kNameUID:
		return g.pick([]string{"uid=nobody,ou=people,dc=example,dc=org", "", "not a dn", "foo=bar,dc=x", "uid=x,", "ou=people,dc=example,dc=org"})
	case kTime:
		return g.pick([]string{"20200101000000Z", "2020", "20201301000000Z", "202001010000Z", "2021061500Z", "20210615000000+0200", "19700101000000.123Z"})
	case kUUID:
		return g.pick([]string{"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "xyz", "80000000-0000-0000-0000-000000000000"})
	case kBool:
		return g.pick([]string{"true", "yes", "TRUE", "FALSE"})
	case kOC:
		return g.pick([]string{"fooClass", "foo bar", "posixGroup", "organizationalUnit", "1.3.6.1.1.1.2.0", "domain"})
	case kIA5:
		return g.pick([]string{"nobody@example.org", "müller@x", "EXAMPLE", " /bin/bash "})
	case kPhone:
		return g.pick([]string{"5550100", "+1 555 0199", "a@b", "+1 (555) 0101"})
	}
	return g.pick([]string{"nothing", "User 9999", "", " ", "zz top", "SMITH,  JOHN"})
}

// respell changes a string's case and insignificant spacing, or leaves it.
func (g *filterGen) respell(v string) string {
	switch g.rng.IntN(6) {
	case 0:
		return strings.ToUpper(v)
	case 1:
		return swapCase(v)
	case 2:
		return "  " + strings.ReplaceAll(v, " ", "   ") + " "
	}
	return v
}

func swapCase(v string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsUpper(r) {
			return unicode.ToLower(r)
		}
		return unicode.ToUpper(r)
	}, v)
}

// respellDN writes a DN differently but equivalently: case, spaces around separators,
// attribute type aliases and OIDs.
func (g *filterGen) respellDN(v string) string {
	dn, err := ldap.ParseDN(v)
	if err != nil {
		return v
	}
	alias := map[string][]string{"uid": {"userid", "UID", "0.9.2342.19200300.100.1.1"}, "cn": {"commonName", "CN", "2.5.4.3"},
		"ou": {"organizationalUnitName", "OU"}, "dc": {"domainComponent", "DC"}}
	var rdns []string
	for _, rdn := range dn.RDNs {
		var avas []string
		for _, ava := range rdn.Attributes {
			typ := ava.Type
			if a := alias[strings.ToLower(typ)]; a != nil && g.chance(0.5) {
				typ = g.pick(a)
			}
			val := ava.Value
			if g.chance(0.5) {
				val = swapCase(val)
			}
			avas = append(avas, typ+g.pick([]string{"=", " = ", "="})+ldap.EscapeDN(val))
		}
		if g.chance(0.5) {
			slices.Reverse(avas)
		}
		rdns = append(rdns, strings.Join(avas, "+"))
	}
	return strings.Join(rdns, g.pick([]string{",", ", ", " , "}))
}

// timeValue writes a generalized time near v in one of the forms the syntax allows.
func (g *filterGen) timeValue(v string) string {
	t, err := time.Parse("20060102150405Z", v)
	if err != nil {
		return v
	}
	t = t.Add(time.Duration(g.rng.IntN(7)-3) * time.Second)
	switch g.rng.IntN(5) {
	case 0:
		return t.In(time.FixedZone("", 2*3600)).Format("20060102150405-0700")
	case 1:
		return t.Format("20060102150405.000Z")
	case 2:
		return t.Format("200601021504Z")
	case 3:
		return t.Format("2006010215Z")
	}
	return t.Format("20060102150405Z")
}

// substrings makes a substrings assertion from a value of the attribute: pieces of it
// (cut on character boundaries), respelled, sometimes with spaces around them.
func (g *filterGen) substrings(attr string) string {
	pool := g.vals[strings.ToLower(attr)]
	v := []rune("something")
	if len(pool) > 0 && !g.chance(0.1) {
		v = []rune(g.pick(pool))
	}
	piece := func(from, to int) string {
		s := string(v[from:to])
		switch g.rng.IntN(5) {
		case 0:
			s = swapCase(s)
		case 1:
			s = " " + s + " "
		}
		return ldap.EscapeFilter(s)
	}
	cut := func(lo, hi int) int {
		if hi <= lo {
			return lo
		}
		return lo + g.rng.IntN(hi-lo+1)
	}
	n := len(v)
	a := cut(0, n/2)
	b := cut(a, n)
	var parts []string
	if g.chance(0.6) {
		parts = append(parts, piece(0, a))
	} else {
		parts = append(parts, "")
	}
	for range g.rng.IntN(3) {
		c := cut(a, b)
		e := cut(c, b)
		if e > c {
			parts = append(parts, piece(c, e))
			a = e
		}
	}
	if g.chance(0.6) {
		parts = append(parts, piece(b, n))
	} else {
		parts = append(parts, "")
	}
	if len(parts) == 2 && parts[0] == "" && parts[1] == "" {
		parts[0] = piece(0, min(1, n))
		if parts[0] == "" {
			parts[0] = "x"
		}
	}
	return strings.Join(parts, "*")
}

var genRules = []string{"caseIgnoreMatch", "caseExactMatch", "2.5.13.2", "2.5.13.5", "distinguishedNameMatch", "2.5.13.1",
	"1.2.840.113556.1.4.803", "1.2.840.113556.1.4.804", "caseIgnoreIA5Match", "caseExactIA5Match", "telephoneNumberMatch",
	"integerMatch", "integerOrderingMatch", "caseIgnoreOrderingMatch", "caseExactOrderingMatch", "generalizedTimeMatch",
	"generalizedTimeOrderingMatch", "uniqueMemberMatch", "booleanMatch", "UUIDMatch", "objectIdentifierMatch", "fooMatch"}

// extensible makes an extensible match: with a type or without, with a rule or without,
// with dnAttributes or without.
func (g *filterGen) extensible(attr string, kind genKind) string {
	rule := ""
	if g.chance(0.7) {
		rule = g.pick(genRules)
	}
	typed := rule == "" || g.chance(0.6)
	dn := g.chance(0.35)
	var b strings.Builder
	b.WriteString("(")
	if typed {
		b.WriteString(attr)
	}
	if dn {
		b.WriteString(":dn")
	}
	if rule != "" {
		b.WriteString(":" + rule)
	}
	var v string
	switch {
	case dn && g.chance(0.6):
		v = g.respell(g.pick(g.rdns))
	case typed:
		v = g.value(attr, kind)
	default:
		other := genAttrs[g.rng.IntN(len(genAttrs))]
		v = g.value(other.name, other.kind)
	}
	b.WriteString(":=" + ldap.EscapeFilter(v) + ")")
	return b.String()
}
