package directory

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// apply applies changes to tree and fails the test on an error.
func apply(t testing.TB, tree *Tree, changes ...Change) *Tree {
	t.Helper()
	next, err := tree.Apply(changes)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// found returns the first RDNs of the entries a search finds, sorted.
func found(t testing.TB, tree *Tree, base string, scope int, filter string) string {
	t.Helper()
	w := &collectWriter{}
	searchInto(tree, w, searchRequest(t, base, scope, filter, "1.1"))
	if w.result == nil || w.result.Code != 0 {
		t.Fatalf("search %s %s: %+v", base, filter, w.result)
	}
	return rdnsOf(w.dns())
}

func TestApply(t *testing.T) {
	v0 := testTree(t)
	people := "ou=people," + testBase
	erin := entry("uid=erin,"+people, "objectClass: inetOrgPerson", "uid: erin", "cn: Erin", "sn: E",
		"mail: erin@example.org", "memberOf: cn=ops,ou=groups,dc=example,dc=org")
	v1 := apply(t, v0, Change{Entry: erin})
	if got := found(t, v1, testBase, ScopeSubtree, "(|(uid=erin)(mail=ERIN@example.org)(memberOf=cn=ops,ou=groups,dc=example,dc=org))"); got != "uid=bob uid=erin" {
		t.Errorf("added: %q", got)
	}
	if got := found(t, v0, testBase, ScopeSubtree, "(uid=erin)"); got != "" {
		t.Errorf("the previous version changed: %q", got)
	}

	// Replaced: alice's mail changes and she leaves devs; bob is renamed and moved
	// under a new OU, added in the same batch; carol is deleted.
	alice := entry("uid=alice,"+people, "objectClass: inetOrgPerson", "uid: alice", "cn: Alice Liddell", "sn: Liddell",
		"mail: alice@wonderland.example", "entryUUID: 0b5a7e4e-0000-4000-8000-000000000001")
	staff := entry("ou=staff,"+testBase, "objectClass: organizationalUnit", "ou: staff")
	robert := entry("uid=robert,ou=staff,"+testBase, "objectClass: inetOrgPerson", "uid: robert", "cn: Bob Builder", "sn: Builder")
	v2 := apply(t, v1,
		Change{DN: "UID=Alice, ou=People, dc=example, dc=org", Entry: alice},
		Change{DN: "uid=bob," + people, Entry: robert},
		Change{Entry: staff},
		Change{DN: "uid=carol," + people},
	)
	for _, c := range []struct{ base, filter, want string }{
		{testBase, "(mail=alice@example.org)", ""},
		{testBase, "(mail=alice@wonderland.example)", "uid=alice"},
		{testBase, "(memberOf=cn=devs,ou=groups,dc=example,dc=org)", "cn=admins"},
		{testBase, "(entryUUID=0b5a7e4e-0000-4000-8000-000000000001)", "uid=alice"},
		{testBase, "(|(uid=bob)(uid=carol)(cn=carol))", ""},
		{testBase, "(cn=Bob Builder)", "uid=robert"},
		{"ou=staff," + testBase, "(objectClass=*)", "ou=staff uid=robert"},
		{people, "(objectClass=person)", "uid=alice uid=dave uid=erin"},
		{testBase, "(&(objectClass=organizationalUnit)(hasSubordinates=TRUE))", "ou=groups ou=people ou=staff"},
		{testBase, "(entryDN=uid=robert,ou=staff,dc=example,dc=org)", "uid=robert"},
	} {
		if got := found(t, v2, c.base, ScopeSubtree, c.filter); got != c.want {
			t.Errorf("%s under %s: %q, want %q", c.filter, c.base, got, c.want)
		}
	}
	if v2.Len() != v0.Len()+1 || v2.Version() != 2 {
		t.Errorf("v2: %d entries, version %d", v2.Len(), v2.Version())
	}
	if got := found(t, v1, testBase, ScopeSubtree, "(|(uid=bob)(uid=carol))"); got != "uid=bob uid=carol" {
		t.Errorf("v1 changed: %q", got)
	}

	// hasSubordinates follows the children: the last one gone, it is FALSE.
	v3 := apply(t, v2, Change{DN: "uid=robert,ou=staff," + testBase})
	w := &collectWriter{}
	compareInto(v3, w, &Request{Op: OpCompare, Compare: &CompareRequest{DN: "ou=staff," + testBase, Attribute: "hasSubordinates", Value: []byte("FALSE")}})
	if w.result.Code != ldap.LDAPResultCompareTrue {
		t.Errorf("ou=staff without children: hasSubordinates compare %d", w.result.Code)
	}

	// costCenter is known while an entry has it: then a filter on it is False for the
	// others; once the last one is gone it is Undefined, as in a tree built anew.
	if got := found(t, v0, people, ScopeOne, "(!(costCenter=x))"); got != "uid=alice uid=bob uid=carol uid=dave" {
		t.Errorf("costCenter known: %q", got)
	}
	if got := found(t, v2, people, ScopeOne, "(!(costCenter=x))"); got != "" {
		t.Errorf("costCenter forgotten: %q", got)
	}

	// An entry whose only class is one entries make known is indexed under it and top;
	// gone, it leaves nothing in the indexes, though the class is forgotten with it.
	thing := entry("cn=thing,"+people, "objectClass: customThing", "cn: thing")
	v5 := apply(t, apply(t, v0, Change{Entry: thing}), Change{DN: thing.DN})
	if a, b := indexContent(v5), indexContent(testTree(t)); a != b {
		t.Errorf("indexes after adding and deleting cn=thing:\n%s\nanew:\n%s", a, b)
	}

	// A batch of unchanged entries is no change at all.
	if v4 := apply(t, v3, Change{DN: alice.DN, Entry: alice}); v4 != v3 {
		t.Error("an unchanged entry made a new version")
	}
}

// TestApplyRefuses checks the batches Apply refuses, and that a refused batch leaves
// the tree as it was.
func TestApplyRefuses(t *testing.T) {
	tree := testTree(t)
	people := "ou=people," + testBase
	dave := entry("uid=dave,"+people, "objectClass: inetOrgPerson", "uid: dave", "cn: Dave", "sn: D")
	for _, c := range []struct {
		name    string
		changes []Change
		want    string
	}{
		{"no such entry", []Change{{DN: "uid=nobody," + people}}, "no such entry"},
		{"duplicate DN", []Change{{Entry: dave}}, "duplicate DN"},
		{"missing parent", []Change{{Entry: entry("uid=x,ou=nowhere,"+testBase, "objectClass: person", "cn: x", "sn: x")}}, "parent is missing"},
		{"delete with children", []Change{{DN: people}}, "has children"},
		{"rename with children", []Change{{DN: people, Entry: entry("ou=persons,"+testBase, "objectClass: organizationalUnit", "ou: persons")}}, "has children"},
		{"twice", []Change{{DN: dave.DN}, {DN: dave.DN}}, "no such entry"},
		{"empty", []Change{{}}, "neither"},
		{"bad attribute", []Change{{DN: dave.DN, Entry: entry(dave.DN, "objectClass: person", "bad name: x")}}, "bad attribute name"},
	} {
		next, err := tree.Apply(c.changes)
		if err == nil || !strings.Contains(err.Error(), c.want) || next != nil {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if got := found(t, tree, testBase, ScopeSubtree, "(objectClass=*)"); got != found(t, testTree(t), testBase, ScopeSubtree, "(objectClass=*)") {
		t.Errorf("a refused batch changed the tree: %s", got)
	}
	// Two entries may swap DNs in one batch.
	alice := entry("uid=alice,"+people, "objectClass: inetOrgPerson", "uid: alice", "cn: was dave", "sn: D")
	dave2 := entry("uid=dave,"+people, "objectClass: inetOrgPerson", "uid: dave", "cn: was alice", "sn: L")
	swapped := apply(t, tree, Change{DN: dave.DN, Entry: alice}, Change{DN: alice.DN, Entry: dave2})
	if got := found(t, swapped, testBase, ScopeSubtree, "(&(uid=alice)(cn=was dave))"); got != "uid=alice" {
		t.Errorf("swap: %q", got)
	}
}

// mutator makes random batches of changes to a directory and keeps the entries the
// directory should hold after each.
type mutator struct {
	rng     *rand.Rand
	cur     map[string]*Entry // by lower-case DN
	next    int
	entries []*Entry
}

func newMutator(seed uint64, entries []*Entry) *mutator {
	m := &mutator{rng: rand.New(rand.NewPCG(seed, 7)), cur: map[string]*Entry{}}
	for _, e := range entries {
		m.cur[strings.ToLower(e.DN)] = e
	}
	return m
}

func (m *mutator) all() []*Entry {
	keys := slices.Sorted(maps.Keys(m.cur))
	out := make([]*Entry, len(keys))
	for i, k := range keys {
		out[i] = m.cur[k]
	}
	return out
}

// pick returns a random entry under the OU ou (lower case), or nil.
func (m *mutator) pick(under string) *Entry {
	var c []*Entry
	for k, e := range m.cur {
		if strings.HasSuffix(k, ","+under) {
			c = append(c, e)
		}
	}
	if len(c) == 0 {
		return nil
	}
	slices.SortFunc(c, func(a, b *Entry) int { return strings.Compare(a.DN, b.DN) })
	return c[m.rng.IntN(len(c))]
}

func (m *mutator) user(dn string) *Entry {
	m.next++
	name := strings.TrimPrefix(strings.SplitN(dn, ",", 2)[0], "uid=")
	attrs := []string{"objectClass: top", "objectClass: person", "objectClass: organizationalPerson", "objectClass: inetOrgPerson",
		"uid: " + name, fmt.Sprintf("cn: User %d", m.next), "sn: " + name, fmt.Sprintf("mail: %s@example.org", name),
		fmt.Sprintf("entryUUID: 00000000-0000-4000-9000-%012d", m.next)}
	if m.rng.IntN(2) == 0 {
		attrs = append(attrs, fmt.Sprintf("memberOf: cn=group%02d,ou=groups,%s", m.rng.IntN(10), testBase))
	}
	if m.rng.IntN(3) == 0 {
		attrs = append(attrs, fmt.Sprintf("description: changed %d", m.next), fmt.Sprintf("uidNumber: %d", m.rng.IntN(100)))
	}
	if m.rng.IntN(8) == 0 {
		// A type and a class only entries make known: forgotten with the last of them.
		attrs = append(attrs, fmt.Sprintf("costCenter: cc%d", m.rng.IntN(3)), "objectClass: customPerson")
	}
	return entry(dn, attrs...)
}

// batch makes a random batch of one to n changes, applies it to the model and returns it.
func (m *mutator) batch(n int) []Change {
	people, extra := "ou=people,"+testBase, "ou=extra,"+testBase
	var out []Change
	touched := map[string]bool{}
	put := func(c Change) {
		if c.DN != "" {
			delete(m.cur, strings.ToLower(c.DN))
		}
		if c.Entry != nil {
			m.cur[strings.ToLower(c.Entry.DN)] = c.Entry
			touched[strings.ToLower(c.Entry.DN)] = true
		}
		out = append(out, c)
	}
	for range 1 + m.rng.IntN(n) {
		var e *Entry
		if m.rng.IntN(2) == 0 {
			e = m.pick(people)
		} else {
			e = m.pick(extra)
		}
		if e != nil && touched[strings.ToLower(e.DN)] {
			continue
		}
		switch r := m.rng.IntN(10); {
		case r < 3 || e == nil: // add, under people or extra (added with it when missing)
			under := people
			if m.rng.IntN(3) == 0 {
				under = extra
				if m.cur[extra] == nil && !touched[extra] {
					put(Change{Entry: entry(extra, "objectClass: organizationalUnit", "ou: extra")})
				}
			}
			dn := fmt.Sprintf("uid=new%d,%s", m.next, under)
			if m.cur[strings.ToLower(dn)] == nil {
				put(Change{Entry: m.user(dn)})
			}
		case r < 5: // delete
			put(Change{DN: e.DN})
		case r < 8: // modify in place
			put(Change{DN: e.DN, Entry: m.user(e.DN)})
		default: // rename or move
			under := people
			if m.rng.IntN(2) == 0 {
				under = extra
				if m.cur[extra] == nil && !touched[extra] {
					put(Change{Entry: entry(extra, "objectClass: organizationalUnit", "ou: extra")})
				}
			}
			dn := fmt.Sprintf("uid=moved%d,%s", m.next, under)
			put(Change{DN: e.DN, Entry: m.user(dn)})
		}
	}
	// An empty ou=extra sometimes goes.
	if m.cur[extra] != nil && !touched[extra] && m.pick(extra) == nil && m.rng.IntN(2) == 0 {
		put(Change{DN: extra})
	}
	return out
}

// everything renders every entry of a tree with all its attributes, sorted.
func everything(t testing.TB, tree *Tree) string {
	t.Helper()
	var lines []string
	tree.Search(context.Background(), searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)", "*", "+").Search, nil, func(e *Entry) error {
		for _, a := range e.Attributes {
			for _, v := range a.Values {
				lines = append(lines, e.DN+" "+a.Name+": "+string(v))
			}
		}
		return nil
	})
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestApplyMatchesNewTree is the differential test of Apply: after each of many random
// batches (adds, deletes, modifications, renames and moves, an OU coming and going),
// the applied version answers random filters, in every scope, as a tree built anew
// from the same entries does, and serves the same entries.
func TestApplyMatchesNewTree(t *testing.T) {
	start := append(testEntries(), benchEntries(40)[3:]...)
	tree, err := NewTree([]string{testBase}, start)
	if err != nil {
		t.Fatal(err)
	}
	m := newMutator(1, start)
	batches := 150
	if testing.Short() {
		batches = 30
	}
	for i := range batches {
		changes := m.batch(6)
		next, err := tree.Apply(changes)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		tree = next
		fresh, err := NewTree([]string{testBase}, m.all())
		if err != nil {
			t.Fatalf("batch %d: the model does not build: %v", i, err)
		}
		if tree.Len() != fresh.Len() {
			t.Fatalf("batch %d: %d entries, anew %d", i, tree.Len(), fresh.Len())
		}
		if a, b := everything(t, tree), everything(t, fresh); a != b {
			t.Fatalf("batch %d: entries differ\napplied:\n%s\nanew:\n%s", i, a, b)
		}
		if a, b := indexContent(tree), indexContent(fresh); a != b {
			t.Fatalf("batch %d: indexes differ\napplied:\n%s\nanew:\n%s", i, a, b)
		}
		gen := newFilterGen(m.all(), uint64(i))
		for _, f := range append(gen.filters(20), "(objectClass=person)", "(memberOf=cn=group03,ou=groups,dc=example,dc=org)",
			"(hasSubordinates=TRUE)", "(memberOf:"+OIDInChain+":=cn=all,ou=groups,dc=example,dc=org)",
			"(!(costCenter=cc1))", "(costCenter=*)", "(!(objectClass=customPerson))", "(:caseIgnoreMatch:=cc2)") {
			for _, s := range []struct {
				base  string
				scope int
			}{{testBase, ScopeSubtree}, {"ou=people," + testBase, ScopeOne}, {"ou=people," + testBase, ScopeChildren}, {testBase, ScopeOne}} {
				if a, b := found(t, tree, s.base, s.scope, f), found(t, fresh, s.base, s.scope, f); a != b {
					t.Fatalf("batch %d: %s under %s scope %d: applied %q, anew %q", i, f, s.base, s.scope, a, b)
				}
			}
		}
	}
}

// indexContent renders a tree's equality indexes: attribute, value and the DNs found.
func indexContent(tree *Tree) string {
	var lines []string
	for at, m := range tree.index {
		m.each(func(k string, ids []entryID) {
			dns := make([]string, len(ids))
			for i, id := range ids {
				dns[i] = tree.entry(id).canon()
			}
			slices.Sort(dns)
			lines = append(lines, at.name+" "+k+" "+strings.Join(dns, ";"))
		})
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestPagingAcrossVersions pages through a directory while batches change it between
// pages: no page fails, no entry comes twice, and every entry present throughout comes
// exactly once.
func TestPagingAcrossVersions(t *testing.T) {
	for seed := range uint64(20) {
		start := benchEntries(300)
		tree, err := NewTree([]string{testBase}, start)
		if err != nil {
			t.Fatal(err)
		}
		m := newMutator(seed, start)
		throughout := map[string]bool{}
		for _, e := range start {
			throughout[strings.ToLower(e.DN)] = true
		}
		filter := "(objectClass=*)"
		if seed%2 == 1 {
			filter = "(|(objectClass=person)(cn=group*))" // indexed candidates, then a scan
		}
		if seed%4 == 1 {
			filter = "(objectClass=person)" // indexed only
		}
		req := searchRequest(t, testBase, ScopeSubtree, filter, "1.1")
		seen := map[string]int{}
		var cookie []byte
		for pages := 0; ; pages++ {
			dns, res, next := page(t, tree, req, 5, cookie)
			if res.Code != 0 {
				t.Fatalf("seed %d page %d: code %d %s", seed, pages, res.Code, res.Diagnostic)
			}
			for _, dn := range dns {
				seen[strings.ToLower(dn)]++
			}
			if len(next) == 0 {
				break
			}
			cookie = next
			changes := m.batch(4)
			for _, c := range changes {
				delete(throughout, strings.ToLower(c.DN))
			}
			if tree, err = tree.Apply(changes); err != nil {
				t.Fatal(err)
			}
		}
		f, _ := NewTree([]string{testBase}, start)
		w := &collectWriter{}
		searchInto(f, w, req)
		matched := map[string]bool{}
		for _, dn := range w.dns() {
			matched[strings.ToLower(dn)] = true
		}
		for dn, n := range seen {
			if n > 1 {
				t.Errorf("seed %d: %s returned %d times", seed, dn, n)
			}
		}
		for dn := range throughout {
			if matched[dn] && seen[dn] != 1 {
				t.Errorf("seed %d: %s, present throughout, returned %d times", seed, dn, seen[dn])
			}
		}
	}
}

// TestApplyWhileSearching applies batches while searches run on the versions being
// replaced (for the race detector: a batch writes nothing a published version holds),
// and checks that a search never sees half a batch: each batch sets one value on two
// entries, and every search finds the two equal.
func TestApplyWhileSearching(t *testing.T) {
	people := "ou=people," + testBase
	batch := func(n int) []Change {
		return []Change{
			{DN: "uid=alice," + people, Entry: entry("uid=alice,"+people, "objectClass: inetOrgPerson", "uid: alice", "cn: Alice", "sn: L", fmt.Sprintf("uidNumber: %d", n))},
			{DN: "uid=dave," + people, Entry: entry("uid=dave,"+people, "objectClass: inetOrgPerson", "uid: dave", "cn: Dave", "sn: D", fmt.Sprintf("uidNumber: %d", n))},
		}
	}
	var current atomic.Pointer[Tree]
	current.Store(apply(t, testTree(t), batch(0)...))
	stop := make(chan bool)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	req := searchRequest(t, people, ScopeOne, "(|(uid=alice)(uid=dave))", "uidNumber").Search
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tree := current.Load()
				var nums []string
				tree.Search(context.Background(), req, nil, func(e *Entry) error {
					nums = append(nums, firstValue(e, "uidNumber"))
					return nil
				})
				if len(nums) != 2 || nums[0] != nums[1] {
					errs <- fmt.Sprintf("version %d: uidNumbers %v", tree.Version(), nums)
					return
				}
			}
		})
	}
	for n := 1; n <= 300; n++ {
		current.Store(apply(t, current.Load(), batch(n)...))
	}
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
}

// TestNewTreeOnEveryCore: a tree large enough to be built on several cores holds the
// same entries and indexes as the same tree built on one, and takes batches as well.
func TestNewTreeOnEveryCore(t *testing.T) {
	entries := benchEntries(3 * parallelChunk)
	build := func(procs int) *Tree {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		tree, err := NewTree([]string{testBase}, entries)
		if err != nil {
			t.Fatal(err)
		}
		return tree
	}
	one, many := build(1), build(4)
	if a, b := everything(t, many), everything(t, one); a != b {
		t.Fatal("the entries differ from those of a tree built on one core")
	}
	if a, b := indexContent(many), indexContent(one); a != b {
		t.Fatal("the indexes differ from those of a tree built on one core")
	}
	m := newMutator(3, entries)
	for i := range 20 {
		changes := m.batch(6)
		var err error
		if one, err = one.Apply(changes); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if many, err = many.Apply(changes); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if a, b := indexContent(many), indexContent(one); a != b {
		t.Fatal("after batches, the indexes differ from those of a tree built on one core")
	}
	for _, f := range []string{"(uid=user00042)", "(objectClass=person)", "(cn=*)", "(uid=moved*)"} {
		if a, b := found(t, many, testBase, ScopeSubtree, f), found(t, one, testBase, ScopeSubtree, f); a != b {
			t.Errorf("%s: %q, on one core %q", f, a, b)
		}
	}
}
