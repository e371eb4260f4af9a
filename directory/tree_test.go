package directory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// collectWriter is a ResponseWriter that keeps what a handler writes.
type collectWriter struct {
	entries []*Entry
	result  *Result
	delay   time.Duration // per entry, to run into time limits
	fail    bool          // WriteEntry fails, as for an abandoned operation
}

func (w *collectWriter) WriteEntry(e *Entry) error {
	if w.result != nil {
		return errors.New("entry after the result")
	}
	if w.fail {
		return errAbandoned
	}
	w.entries = append(w.entries, cloneEntry(e))
	time.Sleep(w.delay)
	return nil
}

func (w *collectWriter) WriteReference([]string) error {
	return errors.New("no references")
}

func (w *collectWriter) WriteResult(r *Result) error {
	if w.result != nil {
		return errors.New("second result")
	}
	w.result = r
	return nil
}

func (w *collectWriter) dns() []string {
	out := make([]string, len(w.entries))
	for i, e := range w.entries {
		out[i] = e.DN
	}
	slices.Sort(out)
	return out
}

func mustFilter(t testing.TB, s string) *ber.Packet {
	t.Helper()
	p, err := ldap.CompileFilter(s)
	if err != nil {
		t.Fatalf("filter %s: %v", s, err)
	}
	return p
}

// mustFilterElement is filter s read in place, as a search's filter is compiled.
func mustFilterElement(t testing.TB, s string) ldapwire.Filter {
	t.Helper()
	q := &SearchRequest{Filter: mustFilter(t, s)}
	f, ok := q.FilterElement()
	if !ok {
		t.Fatalf("filter %s: not one element", s)
	}
	return f
}

// searchRequest is a search as the server hands it on: its filter known by its encoding.
func searchRequest(t testing.TB, base string, scope int, filter string, attrs ...string) *Request {
	q := &SearchRequest{BaseDN: base, Scope: scope, Attributes: attrs}
	q.SetFilterEncoding(string(mustFilter(t, filter).Bytes()))
	return &Request{Op: OpSearch, Search: q}
}

func entry(dn string, attrs ...string) *Entry {
	e := &Entry{DN: dn}
	for _, kv := range attrs {
		name, value, _ := strings.Cut(kv, ": ")
		i := slices.IndexFunc(e.Attributes, func(a Attribute) bool { return a.Name == name })
		if i < 0 {
			e.Attributes = append(e.Attributes, Attribute{Name: name})
			i = len(e.Attributes) - 1
		}
		e.Attributes[i].Values = append(e.Attributes[i].Values, []byte(value))
	}
	return e
}

const testBase = "dc=example,dc=org"

// testEntries is a small directory: people, nested groups, a custom attribute that only
// the entries know (costCenter), and values with odd case and spacing.
func testEntries() []*Entry {
	return []*Entry{
		entry(testBase, "objectClass: dcObject", "objectClass: organization", "dc: example", "o: Example"),
		entry("ou=people,"+testBase, "objectClass: organizationalUnit", "ou: people"),
		entry("uid=alice,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: alice", "cn: Alice Liddell", "sn: Liddell",
			"mail: alice@example.org", "uidNumber: 1001", "memberOf: cn=devs,ou=groups,dc=example,dc=org",
			"entryUUID: 0b5a7e4e-0000-4000-8000-000000000001", "userAccountControl: 512", "costCenter: R&D",
			"createTimestamp: 20200101000000Z"),
		entry("uid=bob,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: bob", "cn: Bob Builder", "sn: Builder",
			"mail: Bob@Example.ORG", "uidNumber: 1002", "memberOf: cn=ops,ou=groups,dc=example,dc=org",
			"userAccountControl: 514", "description:   Builds   things ", "createTimestamp: 20210101000000Z"),
		entry("uid=carol,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: carol", "cn: Carol", "cn;lang-de: Karola",
			"sn: C", "uidNumber: 1003", "memberOf: cn=admins,ou=groups,dc=example,dc=org"),
		// dave has no memberOf: only the group lists him.
		entry("uid=dave,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: dave", "cn: Dave", "sn: D"),
		entry("ou=groups,"+testBase, "objectClass: organizationalUnit", "ou: groups"),
		entry("cn=devs,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: devs",
			"member: uid=alice,ou=people,dc=example,dc=org", "member: CN=Admins, OU=Groups, DC=Example, DC=Org",
			"memberOf: cn=all,ou=groups,dc=example,dc=org"),
		entry("cn=admins,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: admins",
			"member: uid=carol,ou=people,dc=example,dc=org", "memberOf: cn=devs,ou=groups,dc=example,dc=org"),
		entry("cn=ops,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: ops",
			"member: uid=bob,ou=people,dc=example,dc=org", "member: uid=dave,ou=people,dc=example,dc=org",
			"memberOf: cn=all,ou=groups,dc=example,dc=org"),
		entry("cn=all,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: all",
			"member: cn=devs,ou=groups,dc=example,dc=org", "member: cn=ops,ou=groups,dc=example,dc=org"),
		entry("cn=loop1,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: loop1", "member: cn=loop2,ou=groups,dc=example,dc=org"),
		entry("cn=loop2,ou=groups,"+testBase, "objectClass: groupOfNames", "cn: loop2", "member: cn=loop1,ou=groups,dc=example,dc=org"),
	}
}

func testTree(t testing.TB) *Tree {
	t.Helper()
	tree, err := NewTree([]string{testBase}, testEntries())
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// rdnsOf abbreviates DNs to their first RDN for compact expectations.
func rdnsOf(dns []string) string {
	out := make([]string, len(dns))
	for i, dn := range dns {
		out[i], _, _ = strings.Cut(dn, ",")
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// TestNewTreeRejects checks the entries NewTree refuses, and what it drops: secrets.
func TestNewTreeRejects(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []*Entry
		want    string
	}{
		{"missing parent", []*Entry{entry(testBase), entry("uid=x,ou=nowhere," + testBase)}, "parent is missing"},
		{"outside the naming context", []*Entry{entry("dc=other")}, "not a naming context"},
		{"duplicate", []*Entry{entry(testBase), entry("OU=a, " + testBase), entry("ou=A," + testBase)}, "duplicate DN"},
		{"bad DN", []*Entry{entry(testBase), entry("foo")}, "invalid DN"},
		{"bad attribute name", []*Entry{entry(testBase, "bad name: x")}, "bad attribute name"},
	} {
		if _, err := NewTree([]string{testBase}, c.entries); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	tree, err := NewTree([]string{testBase}, []*Entry{entry(testBase, "objectClass: domain", "userPassword: {SSHA}secret",
		"unicodePwd;binary: x", "dc: example")})
	if err != nil {
		t.Fatal(err)
	}
	w := &collectWriter{}
	searchInto(tree, w, searchRequest(t, testBase, ScopeBase, "(|(objectClass=*)(userPassword=*))", "*", "+", "userPassword", "unicodePwd"))
	if len(w.entries) != 1 || strings.Contains(fmt.Sprint(w.entries[0]), "ecret") || strings.Contains(strings.ToLower(fmt.Sprint(w.entries[0])), "pwd") {
		t.Errorf("secrets served: %+v", w.entries)
	}
	w = &collectWriter{}
	searchInto(tree, w, searchRequest(t, testBase, ScopeBase, "(userPassword=*)"))
	if len(w.entries) != 0 {
		t.Error("a filter on userPassword matched")
	}
	if _, err := NewTree([]string{"not a dn"}, nil); err == nil {
		t.Error("a bad naming context was accepted")
	}
}

func TestSearchScopes(t *testing.T) {
	tree := testTree(t)
	for _, c := range []struct {
		base  string
		scope int
		want  string
	}{
		{testBase, ScopeBase, "dc=example"},
		{testBase, ScopeOne, "ou=groups ou=people"},
		{"ou=people," + testBase, ScopeOne, "uid=alice uid=bob uid=carol uid=dave"},
		{"OU=People , DC=Example,dc=ORG", ScopeSubtree, "ou=people uid=alice uid=bob uid=carol uid=dave"},
		{"ou=people," + testBase, ScopeChildren, "uid=alice uid=bob uid=carol uid=dave"},
		{"uid=alice,ou=people," + testBase, ScopeOne, ""},
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, c.base, c.scope, "(objectClass=*)"))
		if got := rdnsOf(w.dns()); got != c.want || w.result.Code != 0 {
			t.Errorf("base %q scope %d: %q (code %d), want %q", c.base, c.scope, got, w.result.Code, c.want)
		}
	}
}

func TestSearchMissingBase(t *testing.T) {
	tree := testTree(t)
	for _, c := range []struct {
		base    string
		code    uint16
		matched string
	}{
		{"uid=zed,ou=people," + testBase, ldap.LDAPResultNoSuchObject, "ou=people," + testBase},
		{"cn=x,uid=zed,OU=People," + testBase, ldap.LDAPResultNoSuchObject, "ou=people," + testBase},
		{"dc=other,dc=org", ldap.LDAPResultNoSuchObject, ""},
		{"", ldap.LDAPResultNoSuchObject, ""},
		{"garbage", ldap.LDAPResultInvalidDNSyntax, ""},
		{"fooBar=x," + testBase, ldap.LDAPResultInvalidDNSyntax, ""},
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, c.base, ScopeSubtree, "(objectClass=*)"))
		if w.result.Code != c.code || w.result.MatchedDN != c.matched || len(w.entries) != 0 {
			t.Errorf("base %q: code %d matched %q, want %d %q", c.base, w.result.Code, w.result.MatchedDN, c.code, c.matched)
		}
	}
}

func TestSearchAttributeSelection(t *testing.T) {
	tree := testTree(t)
	names := func(e *Entry) string {
		var out []string
		for _, a := range e.Attributes {
			out = append(out, a.Name)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		attrs []string
		want  string
	}{
		{nil, "objectClass uid cn cn;lang-de sn uidNumber"},
		{[]string{"*"}, "objectClass uid cn cn;lang-de sn uidNumber"},
		{[]string{"+"}, "memberOf structuralObjectClass entryDN hasSubordinates"},
		{[]string{"*", "+"}, "objectClass uid cn cn;lang-de sn uidNumber memberOf structuralObjectClass entryDN hasSubordinates"},
		{[]string{"1.1"}, ""},
		{[]string{"1.1", "UID"}, "uid"},
		{[]string{"name"}, "cn cn;lang-de sn"},
		{[]string{"cn;lang-de"}, "cn;lang-de"},
		{[]string{"2.5.4.3", "fooBar", "MEMBEROF"}, "cn cn;lang-de memberOf"},
		{[]string{"*", "entryDN", "uid"}, "objectClass uid cn cn;lang-de sn uidNumber entryDN"},
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, "uid=carol,ou=people,"+testBase, ScopeBase, "(objectClass=*)", c.attrs...))
		if len(w.entries) != 1 {
			t.Fatalf("%q: %d entries", c.attrs, len(w.entries))
		}
		if got := names(w.entries[0]); got != c.want {
			t.Errorf("attributes %q: %q, want %q", c.attrs, got, c.want)
		}
	}
	w := &collectWriter{}
	searchInto(tree, w, searchRequest(t, "ou=people,"+testBase, ScopeBase, "(objectClass=*)", "entryDN", "hasSubordinates", "structuralObjectClass"))
	got := fmt.Sprint(w.entries[0].Attributes)
	if want := "[{structuralObjectClass [[111 114 103 97 110 105 122 97 116 105 111 110 97 108 85 110 105 116]]} {entryDN [[111 117 61 112 101 111 112 108 101 44 100 99 61 101 120 97 109 112 108 101 44 100 99 61 111 114 103]]} {hasSubordinates [[84 82 85 69]]}]"; got != want {
		t.Errorf("computed attributes: %s", got)
	}
}

func TestSearchLimits(t *testing.T) {
	tree := testTree(t)
	req := searchRequest(t, testBase, ScopeSubtree, "(objectClass=inetOrgPerson)")
	req.Search.SizeLimit = 2
	w := &collectWriter{}
	searchInto(tree, w, req)
	if len(w.entries) != 2 || w.result.Code != ldap.LDAPResultSizeLimitExceeded {
		t.Errorf("size limit 2: %d entries, code %d", len(w.entries), w.result.Code)
	}
	req.Search.SizeLimit = 4 // exactly the number of matches: no error
	w = &collectWriter{}
	searchInto(tree, w, req)
	if len(w.entries) != 4 || w.result.Code != ldap.LDAPResultSuccess {
		t.Errorf("size limit 4: %d entries, code %d", len(w.entries), w.result.Code)
	}

	req.Search.SizeLimit, req.Search.TimeLimit = 0, 1
	w = &collectWriter{delay: 600 * time.Millisecond}
	searchInto(tree, w, req)
	if len(w.entries) != 2 || w.result.Code != ldap.LDAPResultTimeLimitExceeded {
		t.Errorf("time limit: %d entries, code %d", len(w.entries), w.result.Code)
	}

	// An abandoned search writes no result.
	w = &collectWriter{fail: true}
	searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)"))
	if w.result != nil {
		t.Errorf("abandoned search answered %+v", w.result)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w = &collectWriter{}
	big := benchTree(t, 1000)
	searchInto(big, w, searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)").WithContext(ctx))
	if w.result != nil || len(w.entries) >= 1000 {
		t.Errorf("cancelled search: %d entries, result %+v", len(w.entries), w.result)
	}
}

func TestSearchControls(t *testing.T) {
	tree := testTree(t)
	for _, c := range []struct {
		ctl  Control
		code uint16
	}{
		{Control{Type: "1.2.3.4", Critical: true}, ldap.LDAPResultUnavailableCriticalExtension},
		{Control{Type: "1.2.3.4"}, ldap.LDAPResultSuccess},
		{Control{Type: ldapControlManageDsaIT, Critical: true}, ldap.LDAPResultSuccess},
		{Control{Type: ldap.ControlTypePaging, Value: []byte("junk"), HasValue: true}, ldap.LDAPResultProtocolError},
	} {
		req := searchRequest(t, testBase, ScopeSubtree, "(uid=alice)")
		req.Controls = []Control{c.ctl}
		w := &collectWriter{}
		searchInto(tree, w, req)
		if w.result.Code != c.code {
			t.Errorf("control %+v: code %d, want %d", c.ctl, w.result.Code, c.code)
		}
	}
}

func TestCompare(t *testing.T) {
	tree := testTree(t)
	for _, c := range []struct {
		dn, attr, value string
		code            uint16
	}{
		{"uid=alice,ou=people," + testBase, "uid", "ALICE", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "cn", "alice  liddell", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "uid", "bob", ldap.LDAPResultCompareFalse},
		{"uid=alice,ou=people," + testBase, "objectClass", "person", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "memberOf", "CN=Devs,ou=groups,dc=example,dc=org", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "costCenter", "r&d", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "hasSubordinates", "FALSE", ldap.LDAPResultCompareTrue},
		{"uid=alice,ou=people," + testBase, "title", "x", ldap.LDAPResultNoSuchAttribute},
		{"uid=alice,ou=people," + testBase, "fooBar", "x", ldap.LDAPResultUndefinedAttributeType},
		{"uid=alice,ou=people," + testBase, "uidNumber", "x", ldap.LDAPResultInvalidAttributeSyntax},
		{"uid=zed,ou=people," + testBase, "uid", "x", ldap.LDAPResultNoSuchObject},
		{"zed", "uid", "x", ldap.LDAPResultInvalidDNSyntax},
	} {
		w := &collectWriter{}
		compareInto(tree, w, &Request{Op: OpCompare, Compare: &CompareRequest{DN: c.dn, Attribute: c.attr, Value: []byte(c.value)}})
		if w.result.Code != c.code {
			t.Errorf("compare %s %s=%s: %d, want %d", c.dn, c.attr, c.value, w.result.Code, c.code)
		}
	}
}

// TestTreeIsSharedSafely runs searches concurrently, for the race detector.
func TestTreeIsSharedSafely(t *testing.T) {
	tree := testTree(t)
	done := make(chan bool)
	for i := range 8 {
		go func() {
			for j := range 50 {
				w := &collectWriter{}
				f := fmt.Sprintf("(|(uid=alice)(memberOf:%s:=cn=all,ou=groups,dc=example,dc=org)(cn=*o*)(uidNumber>=%d))", OIDInChain, 1000+i+j)
				searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, f, "*", "+"))
			}
			done <- true
		}()
	}
	for range 8 {
		<-done
	}
}

// benchTree is a directory shaped like the served one: users with the clean schema's
// attributes under ou=people, groups with members under ou=groups.
func benchTree(t testing.TB, users int) *Tree {
	t.Helper()
	tree, err := NewTree([]string{testBase}, benchEntries(users))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func benchEntries(users int) []*Entry {
	const groups = 50
	entries := []*Entry{
		entry(testBase, "objectClass: top", "objectClass: dcObject", "objectClass: organization", "dc: example", "o: example"),
		entry("ou=people,"+testBase, "objectClass: top", "objectClass: organizationalUnit", "ou: people"),
		entry("ou=groups,"+testBase, "objectClass: top", "objectClass: organizationalUnit", "ou: groups"),
	}
	members := make([][]string, groups)
	for i := range users {
		name := fmt.Sprintf("user%04d", i)
		dn := "uid=" + name + ",ou=people," + testBase
		g := i % groups
		members[g] = append(members[g], "member: "+dn)
		entries = append(entries, entry(dn, "objectClass: top", "objectClass: person", "objectClass: organizationalPerson",
			"objectClass: inetOrgPerson", "uid: "+name, "cn: User "+name[4:], "displayName: User "+name[4:], "sn: "+name[4:],
			"givenName: User", "mail: "+name+"@example.org", fmt.Sprintf("entryUUID: 00000000-0000-4000-8000-%012d", i),
			fmt.Sprintf("memberOf: cn=group%02d,ou=groups,%s", g, testBase)))
	}
	for g := range groups {
		entries = append(entries, entry(fmt.Sprintf("cn=group%02d,ou=groups,%s", g, testBase),
			append([]string{"objectClass: top", "objectClass: groupOfNames", fmt.Sprintf("cn: group%02d", g)}, members[g]...)...))
	}
	return entries
}

// discardWriter counts entries and throws them away.
type discardWriter struct{ entries, results int }

func (w *discardWriter) WriteEntry(*Entry) error   { w.entries++; return nil }
func (w *discardWriter) WriteResult(*Result) error { w.results++; return nil }

// BenchmarkTreeSearchUID is the cached-search lookup of ldapbench's search round: one
// user by uid among 10,000, the filter decoded from the wire as the server does.
// The tree built and the same tree read from its image (its indexes read in place).
func BenchmarkTreeSearchUID(b *testing.B) {
	built := benchTree(b, 10000)
	var img bytes.Buffer
	if err := built.WriteImage(&img, nil, nil); err != nil {
		b.Fatal(err)
	}
	read, err := ReadTree(nil, []string{testBase}, img.Bytes(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("built", func(b *testing.B) { benchSearchUID(b, built) })
	b.Run("image", func(b *testing.B) { benchSearchUID(b, read) })
}

func benchSearchUID(b *testing.B, tree *Tree) {
	reqs := make([]*Request, 1000)
	for i := range reqs {
		reqs[i] = searchRequest(b, testBase, ScopeSubtree, fmt.Sprintf("(uid=user%04d)", i*10), "uid", "cn", "mail")
	}
	w := &discardWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		searchInto(tree, w, reqs[i%len(reqs)])
	}
	if w.entries != w.results {
		b.Fatalf("%d entries for %d searches", w.entries, w.results)
	}
}

// BenchmarkTreeSearchGroupMembers is an application's group check: the members of one
// group that are persons, by memberOf.
func BenchmarkTreeSearchGroupMembers(b *testing.B) {
	tree := benchTree(b, 10000)
	req := searchRequest(b, testBase, ScopeSubtree, "(&(objectClass=person)(memberOf=cn=group07,ou=groups,dc=example,dc=org))", "uid")
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		searchInto(tree, w, req)
	}
}

// BenchmarkTreeSearchUnindexed scans every entry: a substrings filter has no index.
func BenchmarkTreeSearchUnindexed(b *testing.B) {
	tree := benchTree(b, 10000)
	req := searchRequest(b, testBase, ScopeSubtree, "(cn=*ser 12*)", "1.1")
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		searchInto(tree, w, req)
	}
}

// BenchmarkNewTree builds the tree of 10,000 users, as every sync does.
func BenchmarkNewTree(b *testing.B) {
	entries := benchEntries(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewTree([]string{testBase}, entries); err != nil {
			b.Fatal(err)
		}
	}
}

// bigOr is an OR of n uid equality items, with the value of every step-th user (others
// match nobody), decoded from the wire as the server does.
func bigOr(tb testing.TB, n, step int, attr string) *SearchRequest {
	var sb strings.Builder
	sb.WriteString("(|")
	for i := range n {
		fmt.Fprintf(&sb, "(%s=user%04d)", attr, i*step)
	}
	sb.WriteString(")")
	return searchRequest(tb, testBase, ScopeSubtree, sb.String(), "1.1").Search
}

// BenchmarkTreeSearchBigOr is an application that fetches many users at once: an OR of
// 10,000 uid values over 10,000 users, indexed (uid) and not (mail).
func BenchmarkTreeSearchBigOr(b *testing.B) {
	tree := benchTree(b, 10000)
	for _, attr := range []string{"uid", "displayName"} {
		req := bigOr(b, 10000, 1, attr)
		b.Run(attr, func(b *testing.B) {
			w := &discardWriter{}
			b.ReportAllocs()
			for b.Loop() {
				searchInto(tree, w, &Request{Op: OpSearch, Search: req})
			}
		})
	}
}

// TestBigOrMatchesAsItemByItem checks the set lookup that a long OR of equality items
// compiles to against the same items tested one by one (an OR short of eqSetMin).
func TestBigOrMatchesAsItemByItem(t *testing.T) {
	tree := benchTree(t, 300)
	count := func(req *SearchRequest) int {
		w := &discardWriter{}
		searchInto(tree, w, &Request{Op: OpSearch, Search: req})
		return w.entries
	}
	for _, attr := range []string{"uid", "UID", "displayName", "cn", "0.9.2342.19200300.100.1.1"} {
		big := count(bigOr(t, 100, 3, attr)) // users 0, 3, ..., 297: 100 of them
		small := 0
		for i := 0; i < 100; i += eqSetMin - 1 {
			var sb strings.Builder
			sb.WriteString("(|")
			for j := i; j < min(i+eqSetMin-1, 100); j++ {
				fmt.Fprintf(&sb, "(%s=user%04d)", attr, j*3)
			}
			sb.WriteString(")")
			small += count(searchRequest(t, testBase, ScopeSubtree, sb.String(), "1.1").Search)
		}
		want := 100
		if attr == "displayName" || attr == "cn" {
			want = 0 // their values are "User 0003": no user%04d matches
		}
		if big != small || big != want {
			t.Errorf("%s: the big OR finds %d entries, item by item %d, want %d", attr, big, small, want)
		}
	}
}

// TestNewTreeFrom: a tree built from entries made on demand, a fresh copy at every call
// (as the proxy makes them from its store), is the tree built from the entries at once.
func TestNewTreeFrom(t *testing.T) {
	entries := testEntries()
	want := testTree(t)
	var calls atomic.Int64
	got, err := NewTreeFrom(nil, []string{testBase}, len(entries), func(i int) *Entry {
		calls.Add(1)
		return cloneEntry(entries[i])
	})
	if err != nil {
		t.Fatal(err)
	}
	searchesMatch(t, want, got, entries, 3)
	if n := calls.Load(); n < 2*int64(len(entries)) {
		t.Fatalf("%d calls for %d entries: each is made once for its DN and once for its attributes", n, len(entries))
	}
	// Broken entries are refused as NewTree refuses them.
	bad := append(testEntries(), entry("uid=x,ou=nowhere,"+testBase, "objectClass: person", "cn: x", "sn: x"))
	if _, err := NewTreeFrom(nil, []string{testBase}, len(bad), func(i int) *Entry { return cloneEntry(bad[i]) }); err == nil {
		t.Fatal("an entry whose parent is missing was taken")
	}
}
