package directory

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/go-ldap/ldap/v3"
)

// withSource returns a copy of e whose DN and values are slices of one string, its
// Source, as the proxy's entries are slices of the store's records; the object classes
// stay the strings e has (shared, as the proxy's are).
func withSource(e *Entry) *Entry {
	var b strings.Builder
	b.WriteString(e.DN)
	for _, a := range e.Attributes {
		if !strings.EqualFold(a.Name, "objectClass") {
			for _, v := range a.Values {
				b.Write(v)
			}
		}
	}
	src := b.String()
	out := &Entry{DN: src[:len(e.DN)], Source: src}
	pos := len(e.DN)
	for _, a := range e.Attributes {
		c := Attribute{Name: a.Name}
		for _, v := range a.Values {
			if strings.EqualFold(a.Name, "objectClass") {
				c.Values = append(c.Values, v)
				continue
			}
			c.Values = append(c.Values, bytesOf(src[pos:pos+len(v)]))
			pos += len(v)
		}
		out.Attributes = append(out.Attributes, c)
	}
	return out
}

// searchAll returns what each search of a fixed list finds in tree, entries in full.
func searchAll(t *testing.T, tree *Tree) []string {
	t.Helper()
	var out []string
	for _, c := range []struct {
		filter string
		attrs  []string
	}{
		{"(objectClass=*)", []string{"*", "+"}},
		{"(objectClass=*)", nil},
		{"(cn=alice liddell)", []string{"cn", "entryDN", "hasSubordinates"}},
		{"(description=builds things)", []string{"description"}},
		{"(mail=bob@example.org)", []string{"mail", "uid"}},
		{"(member=cn=admins,ou=groups,dc=example,dc=org)", []string{"member"}},
		{"(cn;lang-de=karola)", []string{"cn;lang-de"}},
		{"(&(uidNumber>=1002)(sn=*i*))", []string{"1.1"}},
		{"(costCenter=r&d)", []string{"costCenter"}},
	} {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, c.filter, c.attrs...))
		if w.result == nil || w.result.Code != 0 {
			t.Fatalf("%s: %+v", c.filter, w.result)
		}
		for _, e := range w.entries {
			out = append(out, fmt.Sprintf("%s %q: %s %q", c.filter, c.attrs, e.DN, e.Attributes))
		}
	}
	return out
}

// sourcedTestEntries returns the test entries, each with a source (withSource).
func sourcedTestEntries() []*Entry {
	var out []*Entry
	for _, e := range testEntries() {
		out = append(out, withSource(e))
	}
	return out
}

// TestEntrySource checks that a tree keeps the values of an entry given with a Source as
// offsets into it, not as strings of their own or copies, and serves and matches them as
// the same entries without one.
func TestEntrySource(t *testing.T) {
	plain := testTree(t)
	sourced := sourcedTestEntries()
	tree, err := NewTree([]string{testBase}, sourced)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := searchAll(t, tree), searchAll(t, plain); !slices.Equal(got, want) {
		t.Fatalf("with sources:\n%s\nwithout:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, e := range sourced {
		te := tree.entry(tree.findID(t, e.DN))
		if te.src() != e.Source {
			t.Errorf("%s: keeps no source", e.DN)
		}
		for _, x := range te.extList() {
			if _, in := within(x, e.Source); in {
				t.Errorf("%s: %q kept as a string of its own", e.DN, x)
			}
		}
		for _, a := range testEntries()[i].Attributes {
			for _, v := range a.Values {
				if len(v) > inlineMax && !strings.EqualFold(a.Name, "objectClass") && strings.Contains(te.meta(), string(v)) {
					t.Errorf("%s: %q copied", e.DN, v)
				}
			}
		}
	}

	// Replaced, an entry's values are the new source's; an entry given without one keeps
	// none.
	bob := withSource(entry("uid=bob,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: bob", "cn: Bob Builder",
		"sn: Builder", "description: Builds bridges and roads, mostly"))
	next, err := tree.Apply([]Change{{DN: bob.DN, Entry: bob}, {DN: "uid=dave,ou=people," + testBase, Entry: entry("uid=dave,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: dave", "cn: Dave", "sn: D", "title: Dr")}})
	if err != nil {
		t.Fatal(err)
	}
	if te := next.entry(next.findID(t, bob.DN)); te.src() != bob.Source {
		t.Error("bob replaced: keeps no source")
	}
	if te := next.entry(next.findID(t, "uid=dave,ou=people,"+testBase)); te.src() != "" {
		t.Errorf("dave: keeps a source %q", te.src())
	}
	w := &collectWriter{}
	searchInto(next, w, searchRequest(t, testBase, ScopeSubtree, "(description=*bridges*)", "description"))
	if len(w.entries) != 1 || string(w.entries[0].Attributes[0].Values[0]) != "Builds bridges and roads, mostly" {
		t.Errorf("bob replaced: %v", w.entries)
	}
}

// findID returns the ID of the entry at dn.
func (t *Tree) findID(tb testing.TB, dn string) entryID {
	tb.Helper()
	e, res := t.locate(dn)
	if res != nil {
		tb.Fatalf("%s: %+v", dn, res)
	}
	return e.id
}

// TestApplyBranchesShareTypes applies two batches to one version, each with an attribute
// type only its entry makes known: the versions number their types in one table, and
// each still serves and matches its own.
func TestApplyBranchesShareTypes(t *testing.T) {
	tree := testTree(t)
	branch := func(attr string) *Tree {
		next, err := tree.Apply([]Change{{Entry: entry("uid=erin,ou=people,"+testBase, "objectClass: inetOrgPerson",
			"uid: erin", "cn: Erin", "sn: E", attr+": value of "+attr)}})
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	a, b := branch("fooAttr"), branch("barAttr")
	for _, c := range []struct {
		tree       *Tree
		have, lack string
	}{{a, "fooAttr", "barAttr"}, {b, "barAttr", "fooAttr"}} {
		w := &collectWriter{}
		searchInto(c.tree, w, searchRequest(t, testBase, ScopeSubtree, "("+c.have+"=Value of "+c.have+")"))
		if len(w.entries) != 1 || !slices.ContainsFunc(w.entries[0].Attributes, func(a Attribute) bool {
			return a.Name == c.have && string(a.Values[0]) == "value of "+c.have
		}) {
			t.Errorf("%s: %v", c.have, w.entries)
		}
		w = &collectWriter{}
		searchInto(c.tree, w, searchRequest(t, testBase, ScopeSubtree, "("+c.lack+"=*)"))
		if len(w.entries) != 0 {
			t.Errorf("%s: %v", c.lack, w.entries)
		}
	}
}

// TestEntryCanonAndExt: an entry's canonical DN is its DN when they are the same string
// and is kept after its values kept whole otherwise, not among them; so through a
// version applied to the tree and an image of it. An entry takes 56 bytes.
func TestEntryCanonAndExt(t *testing.T) {
	if n := unsafe.Sizeof(treeEntry{}); n != 56 {
		t.Fatalf("treeEntry takes %d bytes", n)
	}
	long := "cn=a group with a long name,ou=groups," + testBase
	entries := []*Entry{
		entry(testBase, "objectClass: dcObject", "dc: example"),
		entry("OU=People, "+testBase, "objectClass: organizationalUnit", "ou: People"),
		entry("uid=a,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: a", "cn: A", "sn: A", "memberOf: "+long),
		entry("UID=B,OU=People,"+testBase, "objectClass: inetOrgPerson", "uid: b", "cn: B", "sn: B", "memberOf: "+long, "seeAlso: "+long+"x"),
	}
	check := func(t *testing.T, tree *Tree) {
		t.Helper()
		for _, c := range []struct {
			ndn  string
			own  bool
			read string
		}{
			{"ou=people," + testBase, true, ""},
			{"uid=a,ou=people," + testBase, false, long},
			{"uid=b,ou=people," + testBase, true, long + "x"},
		} {
			id, ok := tree.byDN.get(c.ndn)
			if !ok {
				t.Fatalf("%s not found", c.ndn)
			}
			e := tree.entry(id)
			ext := e.extList()
			if e.canon() != c.ndn || (e.extFlags&entryNDNOwn != 0) != c.own || slices.Contains(ext, c.ndn) {
				t.Fatalf("%s: canonical %q (own %v), values kept whole %q", c.ndn, e.canon(), e.extFlags&entryNDNOwn != 0, ext)
			}
			if c.read != "" && !slices.Contains(ext, c.read) {
				t.Fatalf("%s: %q not among %q", c.ndn, c.read, ext)
			}
		}
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	check(t, tree)
	tree = apply(t, tree, Change{DN: "uid=b,ou=people," + testBase, Entry: entry("UID=B,OU=People,"+testBase, "objectClass: inetOrgPerson", "uid: b", "cn: B2", "sn: B", "memberOf: "+long, "seeAlso: "+long+"x")})
	check(t, tree)
	read, err := ReadTree(nil, []string{testBase}, image(t, tree, "k", nil), []byte("k"), nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, read)
}

// TestClassNamesAreConstants: the normalised objectClass values and a computed
// structuralObjectClass are the tree's constants, referred to from meta, not copied
// into each entry; a version that adds a class numbers it for itself and its successors
// and serves it, and the versions before it are unchanged.
func TestClassNamesAreConstants(t *testing.T) {
	tree, err := NewTree([]string{testBase}, sourcedTestEntries())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tree.consts, "inetorgperson") || !slices.Contains(tree.consts, "inetOrgPerson") {
		t.Fatalf("constants %q: no inetOrgPerson", tree.consts)
	}
	alice := tree.entry(tree.findID(t, "uid=alice,ou=people,"+testBase))
	for _, c := range []string{"inetorgperson", "inetOrgPerson", "organizationalperson"} {
		if strings.Contains(alice.meta(), c) {
			t.Errorf("alice: %q copied into meta", c)
		}
	}
	served := func(tree *Tree, filter string) []string {
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, filter, "structuralObjectClass", "objectClass"))
		var out []string
		for _, e := range w.entries {
			for _, a := range e.Attributes {
				for _, v := range a.Values {
					out = append(out, e.DN+" "+a.Name+": "+string(v))
				}
			}
		}
		return out
	}
	before := served(tree, "(uid=alice)")
	if !slices.Contains(before, "uid=alice,ou=people,"+testBase+" structuralObjectClass: inetOrgPerson") {
		t.Fatalf("alice: %q", before)
	}
	next, err := tree.Apply([]Change{{Entry: withSource(entry("cn=printer,"+testBase, "objectClass: device", "cn: printer"))}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tree.consts, "device") || !slices.Contains(next.consts, "device") {
		t.Errorf("device: in the constants of the version before (%q) or not in its own (%q)", tree.consts, next.consts)
	}
	if got := served(next, "(objectClass=device)"); !slices.Equal(got, []string{
		"cn=printer," + testBase + " objectClass: device", "cn=printer," + testBase + " structuralObjectClass: device",
	}) {
		t.Errorf("printer: %q", got)
	}
	if got := served(tree, "(uid=alice)"); !slices.Equal(got, before) {
		t.Errorf("alice in the version before: %q, was %q", got, before)
	}
}

// TestClassNamesPastTheBound: a tree whose entries hold more distinct class names than
// its constants' bound (maxConsts) numbers the first ones and copies the rest into meta;
// the table stops growing at the bound across versions, and every class name is served
// and matched alike, in the tree built, a version applied to it and the tree read from
// its image.
func TestClassNamesPastTheBound(t *testing.T) {
	n := maxConsts + 500
	var sources []string
	device := func(i int) *Entry {
		e := withSource(entry(fmt.Sprintf("cn=d%d,%s", i, testBase), "objectClass: device",
			fmt.Sprintf("objectClass: AuxiliaryClassNumber%05d", i), fmt.Sprintf("cn: d%d", i)))
		sources = append(sources, e.Source)
		return e
	}
	entries := []*Entry{entry(testBase, "objectClass: organization", "o: example")}
	for i := range n / 2 {
		entries = append(entries, device(i))
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	var more []Change
	for i := n / 2; i < n; i++ {
		more = append(more, Change{Entry: device(i)})
	}
	next := apply(t, tree, more...)
	if len(tree.consts) > maxConsts || len(next.consts) != maxConsts {
		t.Fatalf("%d constants, then %d: the bound is %d", len(tree.consts), len(next.consts), maxConsts)
	}
	read, err := ReadTree(nil, []string{testBase}, image(t, next, "k", sources), []byte("k"), sources)
	if err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]*Tree{"applied": next, "read": read} {
		for _, i := range []int{0, n/2 - 1, n / 2, maxConsts - 1, maxConsts, n - 1} {
			class := fmt.Sprintf("AuxiliaryClassNumber%05d", i)
			if got := found(t, tr, testBase, ScopeSubtree, "(objectClass="+strings.ToLower(class)+")"); got != fmt.Sprintf("cn=d%d", i) {
				t.Errorf("%s: (objectClass=%s) finds %q", name, class, got)
			}
			w := &collectWriter{}
			searchInto(tr, w, searchRequest(t, testBase, ScopeSubtree, fmt.Sprintf("(cn=d%d)", i), "objectClass", "structuralObjectClass"))
			if len(w.entries) != 1 || fmt.Sprint(w.entries[0].Attributes) != fmt.Sprint([]Attribute{
				{Name: "objectClass", Values: [][]byte{[]byte("device"), []byte(class)}},
				{Name: "structuralObjectClass", Values: [][]byte{[]byte("device")}},
			}) {
				t.Errorf("%s: d%d served as %v", name, i, w.entries)
			}
		}
	}
}

// TestEntryDNInSource: an entry whose DN is a slice of its source keeps it as its place
// there, in the tree built, a version applied to it and the tree read from its image;
// a DN that is not (no source, or a DN spelled otherwise) is kept whole.
func TestEntryDNInSource(t *testing.T) {
	entries := []*Entry{
		entry(testBase, "objectClass: dcObject", "dc: example"),
		entry("ou=people,"+testBase, "objectClass: organizationalUnit", "ou: people"),
		withSource(entry("uid=a,ou=people,"+testBase, "objectClass: inetOrgPerson", "uid: a", "cn: A", "sn: A")),
		withSource(entry("UID=B,OU=People,"+testBase, "objectClass: inetOrgPerson", "uid: b", "cn: B", "sn: B")),
	}
	check := func(t *testing.T, tree *Tree) {
		t.Helper()
		for _, e := range entries {
			te := tree.entry(tree.findID(t, e.DN))
			inSrc := e.Source != ""
			if own := te.extFlags&entryDNOwn != 0; own == inSrc || te.dn() != e.DN {
				t.Fatalf("%s: DN %q kept whole %v", e.DN, te.dn(), own)
			}
			if _, ok := within(te.dn(), te.src()); ok != inSrc {
				t.Fatalf("%s: DN within the source %v", e.DN, ok)
			}
		}
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	check(t, tree)
	b := withSource(entry("UID=B,OU=People,"+testBase, "objectClass: inetOrgPerson", "uid: b", "cn: B2", "sn: B"))
	entries[3] = b
	tree = apply(t, tree, Change{DN: b.DN, Entry: b})
	check(t, tree)
	sources := []string{entries[2].Source, entries[3].Source}
	read, err := ReadTree(nil, []string{testBase}, image(t, tree, "k", sources), []byte("k"), sources)
	if err != nil {
		t.Fatal(err)
	}
	check(t, read)
}

// TestNormalisedCopiedOnce: a normalised value that several attributes of an entry
// share (the cn that gecos repeats) is copied into meta once, and each attribute is
// matched, indexed and compared by it, in the tree built, a version applied to it and
// the tree read from its image.
func TestNormalisedCopiedOnce(t *testing.T) {
	people := "ou=people," + testBase
	entries := []*Entry{
		entry(testBase, "objectClass: dcObject", "dc: example"),
		entry(people, "objectClass: organizationalUnit", "ou: people"),
		withSource(entry("uid=a,"+people, "objectClass: inetOrgPerson", "objectClass: posixAccount", "uid: a",
			"cn: Alice Liddell", "sn: L", "gecos: Alice Liddell", "displayName: ALICE LIDDELL", "uidNumber: 1", "gidNumber: 1",
			"homeDirectory: /home/a")),
	}
	check := func(t *testing.T, tree *Tree) {
		t.Helper()
		a := tree.entry(tree.findID(t, "uid=a,"+people))
		if n := strings.Count(a.meta(), "alice liddell"); n != 1 {
			t.Errorf("the normalised name is in meta %d times", n)
		}
		for _, f := range []string{"(cn=alice liddell)", "(gecos=ALICE LIDDELL)", "(displayName=alice liddell)", "(gecos=alice*)", "(displayName=*LIDDELL)"} {
			if got := found(t, tree, testBase, ScopeSubtree, f); got != "uid=a" {
				t.Errorf("%s: %q", f, got)
			}
		}
		w := &collectWriter{}
		searchInto(tree, w, searchRequest(t, testBase, ScopeSubtree, "(uid=a)", "cn", "gecos", "displayName"))
		if len(w.entries) != 1 || len(w.entries[0].Attributes) != 3 {
			t.Fatalf("entries %+v", w.entries)
		}
		for _, at := range w.entries[0].Attributes {
			if want := map[string]string{"cn": "Alice Liddell", "gecos": "Alice Liddell", "displayName": "ALICE LIDDELL"}[at.Name]; len(at.Values) != 1 || string(at.Values[0]) != want {
				t.Errorf("%s: %q", at.Name, at.Values)
			}
		}
		if res := tree.Compare(&CompareRequest{DN: "uid=a," + people, Attribute: "displayName", Value: []byte("Alice Liddell")}); res.Code != ldap.LDAPResultCompareTrue {
			t.Errorf("compare: %d", res.Code)
		}
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	check(t, tree)
	tree = apply(t, tree, Change{DN: "uid=a," + people, Entry: withSource(entry("uid=a,"+people, "objectClass: inetOrgPerson",
		"objectClass: posixAccount", "uid: a", "cn: Alice Liddell", "sn: L2", "gecos: Alice Liddell", "displayName: ALICE LIDDELL",
		"uidNumber: 1", "gidNumber: 1", "homeDirectory: /home/a"))})
	check(t, tree)
	var sources []string
	for id := range tree.entries.next {
		if e := tree.entry(id); e != nil && e.src() != "" {
			sources = append(sources, e.src())
		}
	}
	read, err := ReadTree(nil, []string{testBase}, image(t, tree, "k", sources), []byte("k"), sources)
	if err != nil {
		t.Fatal(err)
	}
	check(t, read)
	if a, b := indexContent(tree), indexContent(read); a != b {
		t.Fatalf("indexes differ:\n%s\n---\n%s", a, b)
	}
}
