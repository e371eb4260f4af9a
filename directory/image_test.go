package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// sourcedTree builds a tree of the test entries, each with a Source, and changes it with
// random batches (entries with Sources too), so that it has learnt types, sparse IDs and
// applied posting lists. It returns the tree, the mutator and every Source given.
func sourcedTree(t testing.TB, opts ...TreeOption) (*Tree, *mutator, []string) {
	t.Helper()
	var sources []string
	sourced := func(e *Entry) *Entry {
		e = withSource(e)
		sources = append(sources, e.Source)
		return e
	}
	var start []*Entry
	for _, e := range append(testEntries(), benchEntries(40)[3:]...) {
		if strings.HasPrefix(e.DN, "uid=user") {
			// A DN whose canonical form no source holds, the same in many entries:
			// an outside value that the image holds once.
			e.Attributes = append(e.Attributes, Attribute{Name: "manager", Values: [][]byte{[]byte("UID=Boss,OU=People,DC=Example,DC=Org")}})
		}
		start = append(start, sourced(e))
	}
	tree, err := NewTree([]string{testBase}, start, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m := newMutator(3, start)
	for range 20 {
		changes := m.batch(6)
		for i, c := range changes {
			if c.Entry != nil {
				changes[i].Entry = sourced(c.Entry)
				m.cur[strings.ToLower(c.Entry.DN)] = changes[i].Entry
			}
		}
		tree = apply(t, tree, changes...)
	}
	return tree, m, sources
}

func image(t testing.TB, tree *Tree, key string, sources []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tree.WriteImage(&buf, []byte(key), sources); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// searchesMatch checks that two trees answer random filters in every scope alike, in
// the same order, and serve the same entries and indexes.
func searchesMatch(t *testing.T, a, b *Tree, entries []*Entry, seed uint64) {
	t.Helper()
	if a.Len() != b.Len() {
		t.Fatalf("%d entries against %d", a.Len(), b.Len())
	}
	if x, y := everything(t, a), everything(t, b); x != y {
		t.Fatalf("entries differ\n%s\nagainst\n%s", x, y)
	}
	if x, y := indexContent(a), indexContent(b); x != y {
		t.Fatalf("indexes differ\n%s\nagainst\n%s", x, y)
	}
	gen := newFilterGen(entries, seed)
	for _, f := range append(gen.filters(40), "(objectClass=person)", "(costCenter=*)", "(!(objectClass=customPerson))",
		"(memberOf:"+OIDInChain+":=cn=all,ou=groups,dc=example,dc=org)", "(:caseIgnoreMatch:=cc2)", "(ou:dn:=people)") {
		for _, s := range []struct {
			base  string
			scope int
		}{{testBase, ScopeSubtree}, {"ou=people," + testBase, ScopeOne}, {testBase, ScopeOne}} {
			wa, wb := &collectWriter{}, &collectWriter{}
			searchInto(a, wa, searchRequest(t, s.base, s.scope, f, "*", "+"))
			searchInto(b, wb, searchRequest(t, s.base, s.scope, f, "*", "+"))
			if x, y := rendered(wa), rendered(wb); x != y {
				t.Fatalf("%s under %s scope %d:\n%s\nagainst\n%s", f, s.base, s.scope, x, y)
			}
		}
	}
}

// rendered renders what a search sent, in order.
func rendered(w *collectWriter) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+v\n", *w.result)
	for _, e := range w.entries {
		fmt.Fprintf(&b, "%s %q\n", e.DN, e.Attributes)
	}
	return b.String()
}

// TestImageRoundTrip checks that a tree read from its image answers every search as the
// tree written does (the same entries in the same order, the same indexes), that its
// values are the sources' and the image's bytes, not copies, and that batches apply to
// it as to the tree written.
func TestImageRoundTrip(t *testing.T) {
	tree, m, sources := sourcedTree(t)
	data := image(t, tree, "commit 1", sources)
	read, err := ReadTree(nil, []string{testBase}, data, []byte("commit 1"), sources)
	if err != nil {
		t.Fatal(err)
	}
	searchesMatch(t, tree, read, m.all(), 1)
	if a, b := indexContent(tree), indexContent(read); a != b {
		t.Fatalf("the indexes read differ from those written:\n%s\n---\n%s", b, a)
	}
	// (objectClass=top) and the users' classes are runs of the entries' IDs.
	if b, ok := read.index[atObjectClass].base.(*baseTable); !ok || b.live == nil {
		t.Fatal("no posting list read as a run of the entries' IDs")
	}
	for at, ix := range read.index {
		if ix.base == nil || ix.shards != nil {
			t.Fatalf("index %s is not read in place from the image", at.name)
		}
	}

	inData := func(s string) bool {
		_, ok := within(s, unsafe.String(&data[0], len(data)))
		return ok
	}
	srcs := 0
	for id := range read.entries.next {
		e := read.entry(id)
		if e == nil {
			continue
		}
		// The DNs are the image's bytes or the source's (read where they are, never copied).
		inSrc := func(s string) bool { _, ok := within(s, e.src()); return ok }
		if !inData(e.meta()) || !inData(e.canon()) && !inSrc(e.canon()) || !inData(e.dn()) && !inSrc(e.dn()) {
			t.Fatalf("%s: meta or DN copied out of the image", e.dn())
		}
		if e.src() != "" {
			srcs++
			if w := tree.entry(id); w == nil || e.src() != w.src() || !sameString(e.src(), w.src()) {
				t.Fatalf("%s: source is not the one given", e.dn())
			}
		}
	}
	if srcs == 0 {
		t.Fatal("no entry kept its source")
	}
	// An index key that an entry's source holds (a uid, a member's DN) is read there,
	// not written into the image again; shorter ones are the image's.
	inAnySrc := func(k string) bool {
		for _, s := range sources {
			if _, ok := within(k, s); ok {
				return true
			}
		}
		return false
	}
	for at, ix := range read.index {
		refs := 0
		ix.base.each(func(k string, _ []entryID) {
			switch {
			case inAnySrc(k):
				refs++
			case !inData(k):
				t.Fatalf("index %s: key %q neither in the image nor in a source", at.name, k)
			}
		})
		if (at.name == "uid" || at.name == "member") && refs == 0 {
			t.Fatalf("index %s: no key read from a source", at.name)
		}
	}
	// An outside value that several entries have is in the image once, or in the
	// source of the entry it names (a group's DN in its members' memberOf): the entries
	// read the same bytes.
	extAt := map[string]*byte{}
	repeated, shared, inSources := 0, 0, 0
	for id := range read.entries.next {
		e := read.entry(id)
		if e == nil {
			continue
		}
		for _, v := range e.extList() {
			switch {
			case inAnySrc(v):
				inSources++
			case !inData(v):
				t.Fatalf("%s: outside value %q copied out of the image and the sources", e.dn(), v)
			}
			if p, ok := extAt[v]; ok {
				repeated++
				if p == unsafe.StringData(v) {
					shared++
				}
				continue
			}
			extAt[v] = unsafe.StringData(v)
		}
	}
	if inSources == 0 {
		t.Fatal("no outside value read from a source")
	}
	if repeated == 0 || shared != repeated {
		t.Fatalf("%d outside values repeat those of other entries, %d of them share their bytes", repeated, shared)
	}

	// A paged search begun on the tree written goes on in the tree read.
	req := searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)", "1.1")
	first, res, cookie := page(t, tree, req, 7, nil)
	if res.Code != 0 || len(cookie) == 0 {
		t.Fatalf("first page: %+v", res)
	}
	var rest []string
	for len(cookie) > 0 {
		var dns []string
		if dns, res, cookie = page(t, read, req, 7, cookie); res.Code != 0 {
			t.Fatalf("a page from the tree read: %d %s", res.Code, res.Diagnostic)
		}
		rest = append(rest, dns...)
	}
	w := &collectWriter{}
	searchInto(tree, w, req)
	if got, want := strings.Join(slices.Sorted(slices.Values(append(first, rest...))), ";"), strings.Join(w.dns(), ";"); got != want {
		t.Fatalf("paged across the image: %s\nwant %s", got, want)
	}

	// The same batches on both: still alike, and the image's bytes untouched.
	saved := bytes.Clone(data)
	for i := range 15 {
		changes := m.batch(6)
		tree, read = apply(t, tree, changes...), apply(t, read, changes...)
		searchesMatch(t, tree, read, m.all(), uint64(100+i))
	}
	if !bytes.Equal(saved, data) {
		t.Fatal("applying batches changed the image's bytes")
	}
}

func sameString(a, b string) bool {
	off, ok := within(a, b)
	return ok && off == 0 && len(a) == len(b)
}

// TestImageActiveDirectory checks that the schema naming context a tree learnt from its
// entries' objectCategory values comes back with its image, and that an image is only
// read with the conventions it was written with.
func TestImageActiveDirectory(t *testing.T) {
	entries := []*Entry{
		entry(testBase, "objectClass: domain", "dc: example"),
		entry("cn=users,"+testBase, "objectClass: container", "cn: users"),
		entry("cn=Ann,cn=users,"+testBase, "objectClass: user", "cn: Ann", "sAMAccountName: ann",
			"objectCategory: CN=Person,CN=Schema,CN=Configuration,DC=example,DC=org"),
	}
	ad := WithActiveDirectory(ADOptions{})
	tree, err := NewTree([]string{testBase}, entries, ad)
	if err != nil {
		t.Fatal(err)
	}
	data := image(t, tree, "k", nil)
	read, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil, ad)
	if err != nil {
		t.Fatal(err)
	}
	if got := found(t, read, testBase, ScopeSubtree, "(objectCategory=person)"); got != "cn=Ann" {
		t.Fatalf("(objectCategory=person) found %q", got)
	}
	if _, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil); !errors.Is(err, ErrImageStale) {
		t.Fatalf("read without the conventions: %v", err)
	}
	plain := image(t, testTree(t), "k", nil)
	if _, err := ReadTree(nil, []string{testBase}, plain, []byte("k"), nil, ad); !errors.Is(err, ErrImageStale) {
		t.Fatalf("read with conventions it was not written with: %v", err)
	}
}

// TestImageStale checks that an image is refused, and nothing built from it, unless it
// was written under the same key, for the same naming contexts, schema and sources, and
// is whole.
func TestImageStale(t *testing.T) {
	tree, _, sources := sourcedTree(t)
	data := image(t, tree, "commit 1", sources)
	other, err := ParseSchema(Descriptions{AttributeTypes: []string{
		"( 2.5.4.3 NAME 'cn' EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
		"( 0.9.2342.19200300.100.1.25 NAME 'dc' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	shorter := append([]string(nil), sources...)
	for i, s := range shorter {
		if s != "" {
			shorter[i] = s[:len(s)-1]
			break
		}
	}
	for _, c := range []struct {
		name    string
		sch     *Schema
		roots   []string
		key     string
		sources []string
	}{
		{"another key", nil, []string{testBase}, "commit 2", sources},
		{"another naming context", nil, []string{"dc=example,dc=com"}, "commit 1", sources},
		{"two naming contexts", nil, []string{testBase, "dc=example,dc=com"}, "commit 1", sources},
		{"another schema", other, []string{testBase}, "commit 1", sources},
		{"sources of another length", nil, []string{testBase}, "commit 1", shorter},
		{"fewer sources", nil, []string{testBase}, "commit 1", sources[:3]},
	} {
		if got, err := ReadTree(c.sch, c.roots, data, []byte(c.key), c.sources); !errors.Is(err, ErrImageStale) || got != nil {
			t.Errorf("%s: %v, %v", c.name, got, err)
		}
	}
	// A key that is a prefix of the image's is another key too.
	if _, err := ReadTree(nil, []string{testBase}, data, []byte("commit"), sources); !errors.Is(err, ErrImageStale) {
		t.Errorf("a prefix of the key: %v", err)
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"cut short", data[:len(data)/2]},
		{"a byte changed", func() []byte { d := bytes.Clone(data); d[len(d)/3] ^= 0x40; return d }()},
	} {
		if got, err := ReadTree(nil, []string{testBase}, c.data, []byte("commit 1"), sources); err == nil || got != nil {
			t.Errorf("%s: read (%v)", c.name, err)
		}
	}
}

// TestImageTamperedNoPanic changes bytes of an image and fixes its checksum, as a file
// written by someone else would be: ReadTree refuses it or reads it, and never panics.
func TestImageTamperedNoPanic(t *testing.T) {
	tree, _, sources := sourcedTree(t)
	data := image(t, tree, "k", sources)
	rng := rand.New(rand.NewPCG(5, 5))
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	for range rounds {
		d := bytes.Clone(data)
		body := d[:len(d)-4]
		for range 1 + rng.IntN(3) {
			i := len(imageMagic) + rng.IntN(len(body)-len(imageMagic))
			switch rng.IntN(3) {
			case 0:
				body[i] ^= byte(1 << rng.IntN(8))
			case 1:
				body[i] = 0xff
			default:
				body[i] = 0
			}
		}
		binary.LittleEndian.PutUint32(d[len(body):], crc32.Checksum(body, castagnoli))
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("ReadTree panicked: %v", r)
				}
			}()
			ReadTree(nil, []string{testBase}, d, []byte("k"), sources)
		}()
	}
}

// sourcedImage builds a tree of users whose values are slices of their sources, as the
// proxy's are, and writes its image.
func sourcedImage(tb testing.TB, users int) (*Tree, []byte, []string) {
	tb.Helper()
	entries := benchEntries(users)
	sources := make([]string, 0, len(entries))
	for i, e := range entries {
		entries[i] = withSource(e)
		sources = append(sources, entries[i].Source)
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		tb.Fatal(err)
	}
	return tree, image(tb, tree, "k", sources), sources
}

// BenchmarkReadTree100k measures loading 100,000 users from an image against building
// them anew.
func BenchmarkReadTree100k(b *testing.B) {
	tree, data, sources := sourcedImage(b, 100_000)
	b.ReportMetric(float64(len(data))/(1<<20), "MiB/image")
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if _, err := ReadTree(nil, []string{testBase}, data, []byte("k"), sources); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			tree.WriteImage(discard{}, []byte("k"), sources)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestImageForgottenType checks that the image of a tree whose batches made the last
// entry with a learnt attribute type go (the type forgotten by the schema, still
// numbered in the type table) is read, and read back as the tree written.
func TestImageForgottenType(t *testing.T) {
	people := "ou=people," + testBase
	tree := testTree(t)
	odd := entry("cn=odd,"+people, "objectClass: customThing", "cn: odd", "oddAttribute: x")
	tree = apply(t, apply(t, tree, Change{Entry: odd}), Change{DN: odd.DN})
	data := image(t, tree, "k", nil)
	read, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil)
	if err != nil {
		t.Fatalf("the image of a tree that forgot a learnt type: %v", err)
	}
	searchesMatch(t, tree, read, testEntries(), 7)
	// Learnt again, by the next batch on both.
	again := entry("cn=again,"+people, "objectClass: customThing", "cn: again", "oddAttribute: y")
	tree, read = apply(t, tree, Change{Entry: again}), apply(t, read, Change{Entry: again})
	searchesMatch(t, tree, read, append(testEntries(), again), 8)
	if got := found(t, read, testBase, ScopeSubtree, "(oddAttribute=y)"); got != "cn=again" {
		t.Fatalf("(oddAttribute=y) found %q", got)
	}
}

// TestImageStaleLeavesNoReference checks that an image refused after its learnt types
// were read leaves no string of it in the Schema it was read with: the caller unmaps a
// refused image, and the Schema outlives it (the built-in one lives as long as the
// process).
func TestImageStaleLeavesNoReference(t *testing.T) {
	people := "ou=people," + testBase
	// A type spelled in lower case: its lowercased name is the image's own bytes unless
	// copied.
	e := withSource(entry("uid=lower,"+people, "objectClass: inetOrgPerson", "uid: lower", "cn: lower", "sn: lower",
		"imagelowercaseattr: 1"))
	parse := func() *Schema {
		sch, err := ParseSchema(Descriptions{AttributeTypes: []string{
			"( 2.5.4.3 NAME 'cn' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
			"( 0.9.2342.19200300.100.1.25 NAME 'dc' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
		}}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return sch
	}
	tree, err := NewTreeSchema(parse(), []string{testBase}, append(testEntries(), e))
	if err != nil {
		t.Fatal(err)
	}
	data := image(t, tree, "k", []string{e.Source})
	// The same schema in a process that has not met the type yet; sources of another
	// length: refused after the learnt types are read.
	sch := parse()
	if _, err := ReadTree(sch, []string{testBase}, data, []byte("k"), []string{e.Source + "x"}); !errors.Is(err, ErrImageStale) {
		t.Fatalf("read with other sources: %v", err)
	}
	img := unsafe.String(&data[0], len(data))
	n := 0
	sch.logged.Range(func(k, _ any) bool {
		n++
		if _, in := within(k.(string), img); in {
			t.Errorf("the Schema keeps %q, a slice of the refused image", k)
		}
		return true
	})
	if n == 0 {
		t.Fatal("the read logged no type it learnt")
	}
}

// TestImageSourcesByValue checks that WriteImage finds an entry's source among sources
// that are copies of the strings the entries were made of, and that the tree read with
// the copies serves what the tree written serves.
func TestImageSourcesByValue(t *testing.T) {
	tree, m, sources := sourcedTree(t)
	copies := make([]string, len(sources))
	for i, s := range sources {
		copies[i] = strings.Clone(s)
	}
	var buf bytes.Buffer
	if err := tree.WriteImage(&buf, []byte("k"), copies); err != nil {
		t.Fatalf("written with copies of the sources: %v", err)
	}
	read, err := ReadTree(nil, []string{testBase}, buf.Bytes(), []byte("k"), copies)
	if err != nil {
		t.Fatal(err)
	}
	searchesMatch(t, tree, read, m.all(), 3)
}

// TestImageCraftedCounts checks that an image whose counts were made up (with its
// checksum fixed) makes ReadTree allocate no more than an image of its size holds: an
// index listed many times, or more entries than its bytes can hold, is refused, the
// entries before any is allocated.
func TestImageCraftedCounts(t *testing.T) {
	padded := func() *Tree {
		tree := testTree(t)
		// The cn index, listed 20,000 times: about 4 bytes each.
		at := tree.schema.attr("cn")
		tree.index = map[*attrType]*shardMap[[]entryID]{}
		for range 20000 {
			c := *at
			tree.index[&c] = &shardMap[[]entryID]{}
		}
		return tree
	}
	many := padded()
	// Entries of at least 14 bytes each: 80,000 are beyond what the image holds (the
	// indexes above pad it, after the entries).
	more := padded()
	more.count, more.entries.next = 80000, 80000
	for _, c := range []struct {
		name string
		tree *Tree
	}{{"an index listed 20,000 times", many}, {"80,000 entries claimed", more}} {
		data := image(t, c.tree, "k", nil)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: read", c.name)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 16*uint64(len(data))+1<<20 {
			t.Errorf("%s: %d MiB allocated for an image of %d KiB", c.name, got>>20, len(data)>>10)
		}
	}
}

// TestImageParentsChecked checks that an image whose parents would make a walk up the
// tree go round in a circle, or end below the naming contexts, is refused.
func TestImageParentsChecked(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(tree *Tree, people, alice *treeEntry)
	}{
		{"a circle", func(_ *Tree, people, alice *treeEntry) { people.parent = alice.id }},
		{"a parentless entry below the naming context", func(_ *Tree, people, _ *treeEntry) { people.parent = noEntry }},
		{"a parent at the wrong depth", func(_ *Tree, _, alice *treeEntry) { alice.depth = 5 }},
		{"two entries with one ID", func(tree *Tree, _, alice *treeEntry) { alice.id = tree.findID(t, "uid=bob,ou=people,"+testBase) }},
		{"a circle whose depths wrap around", func(tree *Tree, _, alice *treeEntry) {
			// maxDepth+1 entries, each the parent of the next and the last the first's,
			// at depths 0 to maxDepth: each one level below its parent, if the level
			// after maxDepth were 0.
			const n = maxDepth + 1
			ids := newIDWriter(tree.entries)
			first := tree.entries.next
			for k := range entryID(n) {
				te := *alice
				dn := fmt.Sprintf("cn=c%d,%s", k, testBase)
				setEntry(&te, alice.meta(), dn, dn)
				te.id, te.parent, te.depth, te.nchild = first+k, first+(k+n-1)%n, uint16(k), 1
				ids.set(te.id, &te)
			}
			ids.t.next = first + n
			tree.entries, tree.count = ids.table(), tree.count+n
		}},
	} {
		tree := testTree(t)
		people := tree.entry(tree.findID(t, "ou=people,"+testBase))
		alice := tree.entry(tree.findID(t, "uid=alice,ou=people,"+testBase))
		c.change(tree, people, alice)
		data := image(t, tree, "k", nil)
		if got, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil); !errors.Is(err, errDamaged) || got != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestImageSpareIDs: a tree that lost nearly all its entries keeps its IDs' range (IDs
// are not reused), and its image is refused rather than read into an ID table out of
// proportion to what it holds; the caller builds the tree anew.
func TestImageSpareIDs(t *testing.T) {
	defer func(n int) { spareIDs = n }(spareIDs)
	spareIDs = 100
	tree := testTree(t)
	var add, del []Change
	for i := range maxSpareIDs*tree.Len() + spareIDs {
		dn := fmt.Sprintf("uid=spare%d,ou=people,%s", i, testBase)
		add = append(add, Change{Entry: entry(dn, "objectClass: person", "cn: x", "sn: x")})
		del = append(del, Change{DN: dn})
	}
	grown, err := tree.Apply(add)
	if err != nil {
		t.Fatal(err)
	}
	shrunk, err := grown.Apply(del)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTree(nil, []string{testBase}, image(t, shrunk, "k", nil), []byte("k"), nil); !errors.Is(err, ErrImageStale) {
		t.Fatalf("an image with more than 64 spare IDs per entry: %v, want ErrImageStale (nothing is damaged)", err)
	}
	if _, err := ReadTree(nil, []string{testBase}, image(t, tree, "k", nil), []byte("k"), nil); err != nil {
		t.Fatalf("the image of the tree before: %v", err)
	}
}

// TestImageSchemaFingerprint: an image of a tree matched with a Samba DC's schema is read
// with that schema parsed anew, and is stale for the same schema with one attribute type
// that no entry uses matched otherwise, or with one class more.
func TestImageSchemaFingerprint(t *testing.T) {
	ad := loadSambaAD(t)
	parse := func(d Descriptions) *Schema {
		sch, err := ParseSchema(d, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return sch
	}
	roots, opts := []string{ad.BaseDN}, []TreeOption{WithActiveDirectory(ADOptions{})}
	tree, err := NewTreeSchema(parse(ad.descriptions()), roots, ad.entries(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	data := image(t, tree, "k", nil)
	if _, err := ReadTree(parse(ad.descriptions()), roots, data, []byte("k"), nil, opts...); err != nil {
		t.Fatalf("the same schema parsed anew: %v", err)
	}
	const unused = "( 1.2.840.113556.1.4.696 NAME 'currentParentCA' SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' )"
	changedType := ad.descriptions()
	i := slices.Index(changedType.AttributeTypes, unused)
	if i < 0 {
		t.Fatalf("%s not in the schema", unused)
	}
	changedType.AttributeTypes = slices.Clone(changedType.AttributeTypes)
	changedType.AttributeTypes[i] = strings.Replace(unused, ".12'", ".27'", 1) // DN → INTEGER
	moreClasses := ad.descriptions()
	moreClasses.ObjectClasses = append(slices.Clone(moreClasses.ObjectClasses), "( 1.2.3.4 NAME 'extra' SUP top AUXILIARY )")
	for name, d := range map[string]Descriptions{"an unused type matched otherwise": changedType, "one class more": moreClasses} {
		if _, err := ReadTree(parse(d), roots, data, []byte("k"), nil, opts...); !errors.Is(err, ErrImageStale) {
			t.Errorf("%s: %v, want ErrImageStale", name, err)
		}
	}
}

// TestImageAfterSourceChangedAlone checks that an entry whose record changed where the
// entry does not show it (a store record's field that is not served) takes the new
// record as its source when the batch is applied: the image of that version is written
// with the sources of its snapshot, which hold the new record and not the old, and reads
// back into the same tree.
func TestImageAfterSourceChangedAlone(t *testing.T) {
	start := []*Entry{
		entry(testBase, "objectClass: organization", "o: example"),
		withSource(entry("uid=alice,"+testBase, "objectClass: inetOrgPerson", "uid: alice", "cn: Alice", "sn: A")),
	}
	tree, err := NewTree([]string{testBase}, start)
	if err != nil {
		t.Fatal(err)
	}
	// The same entry, its values slices of a record with one more field.
	old := start[1]
	src := old.Source + "|not served"
	next := &Entry{DN: src[:len(old.DN)], Source: src}
	for _, a := range old.Attributes {
		c := Attribute{Name: a.Name}
		for _, v := range a.Values {
			if off, ok := within(stringOf(v), old.Source); ok {
				v = bytesOf(src[off : off+len(v)])
			}
			c.Values = append(c.Values, v)
		}
		next.Attributes = append(next.Attributes, c)
	}
	tree = apply(t, tree, Change{DN: old.DN, Entry: next})
	sources := []string{src}
	var buf bytes.Buffer
	if err := tree.WriteImage(&buf, []byte("k"), sources); err != nil {
		t.Fatalf("the image of the version with the new record: %v", err)
	}
	read, err := ReadTree(nil, []string{testBase}, buf.Bytes(), []byte("k"), sources)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := found(t, tree, testBase, ScopeSubtree, "(cn=alice)"), found(t, read, testBase, ScopeSubtree, "(cn=alice)"); a != b || a != "uid=alice" {
		t.Fatalf("found %q in the tree, %q in the one read from its image", a, b)
	}
}

// imageSearches returns a function that runs on a tree the searches, compares and
// lookups a client may send to the directories of the images the tests damage: every scope from
// the naming context, an OU, an entry and a DN the tree lacks; equality, substrings,
// presence, ordering, approximate and extensible matches (with :dn:, in-chain, bit
// flags), the computed attributes, nested and, or, not; all, operational, no and
// chosen attributes, types only; size limits and every page of a paged search.
func imageSearches(tb testing.TB) func(*Tree) {
	filters := []string{
		"(objectClass=*)", "(uid=alice)", "(uid=user0007)", "(cn=*)", "(cn=alice*)", "(cn=*User*0*)",
		"(cn=a*b*c)", "(mail=*@example.org)", "(uidNumber>=1002)", "(uidNumber<=1002)",
		"(createTimestamp>=20200601000000Z)", "(cn~=carol)", "(sn:caseExactMatch:=Liddell)",
		"(:caseIgnoreMatch:=devs)", "(ou:dn:=people)", "(:dn:2.5.13.2:=groups)",
		"(memberOf:" + OIDInChain + ":=cn=all,ou=groups,dc=example,dc=org)",
		"(member:" + OIDInChain + ":=uid=carol,ou=people,dc=example,dc=org)",
		"(userAccountControl:1.2.840.113556.1.4.803:=2)", "(userAccountControl:1.2.840.113556.1.4.804:=514)",
		"(member=uid=user0003,ou=people,dc=example,dc=org)", "(memberOf=cn=group01,ou=groups,dc=example,dc=org)",
		"(entryDN=uid=bob,ou=people,dc=example,dc=org)", "(hasSubordinates=TRUE)",
		"(structuralObjectClass=inetOrgPerson)", "(entryUUID=00000000-0000-4000-8000-000000000005)",
		"(&(objectClass=person)(|(uid=bob)(cn=*er*))(!(mail=*)))", "(|(objectClass=groupOfNames)(costCenter=*))",
		"(!(objectClass=inetOrgPerson))", "(description=builds things)", "(cn;lang-de=*)",
	}
	bases := []struct {
		dn    string
		scope int
	}{
		{testBase, ScopeBase}, {testBase, ScopeOne}, {testBase, ScopeSubtree}, {testBase, ScopeChildren},
		{"ou=people," + testBase, ScopeOne}, {"ou=groups," + testBase, ScopeSubtree},
		{"uid=alice,ou=people," + testBase, ScopeBase}, {"cn=nobody,ou=people," + testBase, ScopeSubtree},
	}
	attrs := [][]string{{"*", "+"}, nil, {"1.1"}, {"cn", "memberOf", "member", "entryDN", "hasSubordinates"}}
	var reqs []*SearchRequest
	for i, f := range filters {
		for j, b := range bases {
			q := searchRequest(tb, b.dn, b.scope, f, attrs[(i+j)%len(attrs)]...).Search
			q.TypesOnly = (i+j)%5 == 0
			if (i+j)%7 == 0 {
				q.SizeLimit = 3
			}
			reqs = append(reqs, q)
		}
	}
	paged := searchRequest(tb, testBase, ScopeSubtree, "(objectClass=*)", "*", "+").Search
	compares := []*CompareRequest{
		{DN: "uid=alice,ou=people," + testBase, Attribute: "cn", Value: []byte("alice liddell")},
		{DN: "uid=user0001,ou=people," + testBase, Attribute: "memberOf", Value: []byte("cn=group01,ou=groups," + testBase)},
		{DN: "cn=devs,ou=groups," + testBase, Attribute: "member", Value: []byte("uid=alice,ou=people," + testBase)},
		{DN: testBase, Attribute: "hasSubordinates", Value: []byte("TRUE")},
		{DN: "ou=people," + testBase, Attribute: "entryDN", Value: []byte("ou=people," + testBase)},
	}
	lookups := []string{testBase, "UID=Bob, OU=People, DC=Example, DC=Org", "uid=user0002,ou=people," + testBase, "cn=x,dc=org"}
	ctx := context.Background()
	send := func(e *Entry) error {
		for _, a := range e.Attributes {
			for _, v := range a.Values {
				_ = len(v)
			}
		}
		return nil
	}
	return func(t *Tree) {
		for _, q := range reqs {
			t.Search(ctx, q, nil, send)
		}
		var cookie []byte
		for range t.Len() + 1 {
			var next []byte
			res := t.Search(ctx, paged, []Control{pagingControl(3, cookie)}, send)
			if res == nil {
				break
			}
			for _, c := range res.Controls {
				if p, err := parsePaging(c); err == nil {
					next = p.cookie
				}
			}
			if len(next) == 0 {
				break
			}
			cookie = next
		}
		for _, c := range compares {
			t.Compare(c)
		}
		for _, dn := range lookups {
			t.Lookup(dn)
		}
		within := t.Within(lookups)
		t.SearchWithin(ctx, reqs[2], nil, within, send)
	}
}

// TestImageTamperedMeta changes an entry's meta in an image, and its DN, and fixes the
// checksum, as a file damaged on disk or written by someone else would be: the meta
// that would have a search read past its bounds (heads, records, values, the source,
// the values kept whole, the type table, the constants) is refused by ReadTree, and the
// DNs it accepts unparsed (empty, or naming a type the tree does not know) are served
// without a panic.
func TestImageTamperedMeta(t *testing.T) {
	var sources []string
	var entries []*Entry
	for _, e := range append(testEntries(),
		entry("cn=odd,ou=people,"+testBase, "objectClass: person", "description: foo=bar", "cn: odd", "sn: odd")) {
		e = withSource(e)
		if strings.HasPrefix(e.DN, "uid=alice,") {
			// Values neither in the source nor short: kept whole (refExt).
			e.Attributes = append(e.Attributes, Attribute{Name: "seeAlso", Values: [][]byte{
				[]byte("cn=a long value kept whole," + testBase), []byte("cn=another one," + testBase)}})
		}
		sources = append(sources, e.Source)
		entries = append(entries, e)
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		t.Fatal(err)
	}
	alice := tree.entry(tree.findID(t, "uid=alice,ou=people,"+testBase))
	data := image(t, tree, "k", sources)
	metaAt := bytes.Index(data, []byte(alice.meta()))
	if metaAt < 0 || bytes.Count(data, []byte(alice.meta())) != 1 {
		t.Fatal("alice's meta is not once in the image")
	}
	// refAt returns the place in alice's meta of the first value reference (a value's
	// or a normalised value's) whose first number is x such that is(x).
	refAt := func(is func(x int) bool) int {
		m := alice.meta()
		var c attrCursor
		for c.start(alice, tree.types, tree.consts); c.next(); {
			n, p := c.valuesAt()
			for ; n > 0; n-- {
				for range 1 + c.flags&flagNorm/flagNorm {
					if x, _ := uvar(m, p); is(x) {
						return p
					}
					p = alice.skipRef(m, p)
				}
			}
		}
		t.Fatal("no such reference in alice's meta")
		return 0
	}
	kind := func(k int) func(int) bool { return func(x int) bool { return x < 0x80 && x&3 == k } }
	// huge writes a 2-byte uvarint of 0x3fff | low at i, over what was there.
	huge := func(m []byte, i int, low byte) { m[i], m[i+1] = 0xfc|low, 0x7f }
	refused := []struct {
		name   string
		tamper func(m []byte)
	}{
		{"heads past the meta", func(m []byte) { huge(m, 0, 3) }},
		{"base past the source", func(m []byte) { huge(m, 1, 3) }},
		{"a type past the type table", func(m []byte) { huge(m, 2, 0) }},
		{"records past the meta", func(m []byte) { huge(m, 3, 2) }},
		{"an inline value past its record", func(m []byte) { huge(m, refAt(kind(refInline)), refInline) }},
		{"an offset past the source", func(m []byte) { huge(m, refAt(kind(refSource))+1, 3) }},
		{"a value kept whole past the entry's", func(m []byte) { huge(m, refAt(kind(refExt)), refExt) }},
		{"a constant past the table", func(m []byte) {
			huge(m, refAt(func(x int) bool { return x < 0x80 && x&3 == refSpecial && x>>2 >= specConst }), refSpecial)
		}},
		{"a count of values past the record", func(m []byte) {
			var c attrCursor
			for c.start(alice, tree.types, tree.consts); c.next(); {
				if c.flags&(flagOne|flagName|flagOpts) == 0 {
					m[c.rec] = 0x7f
					return
				}
			}
			t.Fatal("no attribute of several values")
		}},
		{"a uvarint cut at the meta's end", func(m []byte) { m[len(m)-1] |= 0x80 }},
	}
	searches := imageSearches(t)
	read := func(name string, d []byte) (*Tree, error) {
		body := d[:len(d)-4]
		binary.LittleEndian.PutUint32(d[len(body):], crc32.Checksum(body, castagnoli))
		return ReadTree(nil, []string{testBase}, d, []byte("k"), sources)
	}
	served := func(name string, got *Tree) {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s: a search of the tree read panicked: %v", name, r)
			}
		}()
		searches(got)
	}
	for _, c := range refused {
		d := bytes.Clone(data)
		c.tamper(d[metaAt : metaAt+len(alice.meta())])
		if got, err := read(c.name, d); !errors.Is(err, errDamaged) || got != nil {
			t.Errorf("%s: read (%v)", c.name, err)
			if got != nil {
				served(c.name, got)
			}
		}
	}

	// An entry is written as ... the DN (uvarint 2*offset+1 and its length: a slice of
	// the source), the canonical DN (0: the DN), meta (its length and bytes).
	odd := tree.entry(tree.findID(t, "cn=odd,ou=people,"+testBase))
	oddAt := bytes.Index(data, []byte(odd.meta()))
	if oddAt < 4 || data[oddAt-4] != 1 || data[oddAt-3] != byte(len(odd.dn())) || data[oddAt-2] != 0 {
		t.Fatal("the odd entry's DN is not written as a slice of its source before its meta")
	}
	for _, c := range []struct {
		name   string
		tamper func(d []byte)
	}{
		{"an empty DN", func(d []byte) { d[oddAt-3] = 0 }},
		{"a DN of a type the tree does not know", func(d []byte) {
			// foo=bar, the description's value in the source.
			d[oddAt-4], d[oddAt-3] = byte(2*strings.Index(odd.src(), "foo=bar")+1), byte(len("foo=bar"))
		}},
	} {
		d := bytes.Clone(data)
		c.tamper(d)
		got, err := read(c.name, d)
		if err != nil {
			t.Errorf("%s: not read: %v", c.name, err)
			continue
		}
		served(c.name, got)
	}
}

// TestImagePostingOfNoEntry checks that an image whose posting list names an ID below
// the tree's next that no entry has (one deleted) is refused: an in-chain match follows
// the lists to the entries they name.
func TestImagePostingOfNoEntry(t *testing.T) {
	tree := testTree(t)
	dave := tree.findID(t, "uid=dave,ou=people,"+testBase)
	tree = apply(t, tree, Change{DN: "uid=dave,ou=people," + testBase})
	carol := "uid=carol,ou=people," + testBase
	m := tree.index[tree.schema.attr("member")]
	// carol's group, and before it dave's ID: what an in-chain match of carol follows.
	shard := m.shards[shardOf(carol)]
	if l := shard[carol]; len(l) == 0 || l[0] <= dave {
		t.Fatalf("carol's groups %v do not come after dave's ID %d", l, dave)
	}
	shard[carol] = append([]entryID{dave}, shard[carol]...)
	data := image(t, tree, "k", nil)
	got, err := ReadTree(nil, []string{testBase}, data, []byte("k"), nil)
	if !errors.Is(err, errDamaged) || got != nil {
		t.Errorf("read (%v)", err)
		if got != nil {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("a search of the tree read panicked: %v", r)
					}
				}()
				imageSearches(t)(got)
			}()
		}
	}
}
