package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

const servedBase = "dc=example,dc=org"

// syncModel is what the upstream holds, synced into a store by commit.
type syncModel struct {
	t      *testing.T
	rng    *rand.Rand
	store  *cache.Store
	users  map[string]*cache.User
	groups map[string]*cache.Group
	// sets are sync.extra entry sets: "ous" holds OU entries that may take the place of
	// containers the tree would make, "misc" leaves of an OU of their own.
	sets map[string][]cache.Entry
	next int
	// memberDNs gives groups upstream attributes whose member values are their
	// members' DNs as a commit finds them, or, for half the groups at each commit, as an
	// earlier one found them (the DNs of users renamed or deleted since among them).
	memberDNs bool
	// dir is the store's directory (newDirSyncModel).
	dir string
}

func newSyncModel(t *testing.T, seed uint64) *syncModel {
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &syncModel{t: t, rng: rand.New(rand.NewPCG(seed, 3)), store: store, users: map[string]*cache.User{}, groups: map[string]*cache.Group{},
		sets: map[string][]cache.Entry{}}
}

// newDirSyncModel is newSyncModel with a store in a directory of its own, which
// openStore opens again (after m.store is closed) as a restart does.
func newDirSyncModel(t *testing.T, seed uint64, log *slog.Logger) (m *syncModel, openStore func() *cache.Store) {
	dir := t.TempDir()
	openStore = func() *cache.Store {
		s, err := cache.Open(cache.Config{Path: dir}, log, directory.NormalizeDN)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	m = newSyncModel(t, seed)
	m.store.Close()
	m.store, m.dir = openStore(), dir
	return m, openStore
}

// changeAndCompare makes a few random changes upstream, commits them and requires the
// served tree of c to serve exactly what a tree built anew from the snapshot serves.
func (m *syncModel) changeAndCompare(c *cached, o ServedOptions, round int) {
	m.t.Helper()
	for range 1 + m.rng.IntN(4) {
		m.change()
	}
	m.commit()
	fresh, err := directory.NewTree([]string{servedBase}, ServedEntries(m.store.Snapshot(), o))
	if err != nil {
		m.t.Fatalf("round %d: %v", round, err)
	}
	if a, b := servedContent(m.t, c.tree.Load()), servedContent(m.t, fresh); a != b {
		m.t.Fatalf("round %d: the served tree differs from one built anew\napplied:\n%s\nanew:\n%s", round, a, b)
	}
}

// populate adds users and groups, puts the users in random groups and commits.
func (m *syncModel) populate(users, groups int) {
	for range users {
		m.addUser()
	}
	for range groups {
		m.addGroup()
	}
	for _, u := range m.users {
		u.Groups = m.someGroups()
	}
	m.commit()
}

func (m *syncModel) commit() {
	w, err := m.store.BeginSync(cache.KindUsers, cache.KindGroups)
	if err != nil {
		m.t.Fatal(err)
	}
	defer w.Abort()
	for _, id := range m.ids(1) {
		g := m.groups[id]
		if m.memberDNs && (g.Upstream == nil || m.rng.IntN(2) == 0) {
			g.Upstream = m.groupUpstream(g)
		}
		c := *g
		c.Parents = slices.Clone(g.Parents)
		if err := w.PutGroup(&c); err != nil {
			m.t.Fatal(err)
		}
	}
	for _, u := range m.users {
		c := *u
		c.Groups = slices.Clone(u.Groups)
		c.Attributes = maps.Clone(u.Attributes)
		if err := w.PutUser(&c); err != nil {
			m.t.Fatal(err)
		}
	}
	sets := map[string][]cache.Entry{}
	for name, set := range m.sets {
		sets[name] = slices.Clone(set)
	}
	if err := w.SetEntrySets(sets); err != nil {
		m.t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		m.t.Fatal(err)
	}
}

// groupUpstream is the upstream entry of g: its members' DNs, one of them in upper case
// too, and a DN no synced object has.
func (m *syncModel) groupUpstream(g *cache.Group) []cache.Attribute {
	var dns []string
	for _, id := range m.ids(0) {
		if u := m.users[id]; slices.Contains(u.Groups, g.ID) {
			dns = append(dns, u.DN)
		}
	}
	if len(dns) > 0 {
		dns = append(dns, strings.ToUpper(dns[0]))
	}
	return []cache.Attribute{{Name: "objectClass", Values: []string{"top", "groupOfNames"}}, {Name: "cn", Values: []string{g.Name}},
		{Name: "member", Values: append(dns, "uid=nobody,ou=people,"+servedBase)}}
}

func (m *syncModel) ids(objects int) []string {
	if objects == 0 {
		return slices.Sorted(maps.Keys(m.users))
	}
	return slices.Sorted(maps.Keys(m.groups))
}

func (m *syncModel) someGroups() []string {
	var out []string
	for _, id := range m.ids(1) {
		if m.rng.IntN(4) == 0 {
			out = append(out, id)
		}
	}
	return out
}

// userDN places a user under one of a few OUs, one of them only some users are in.
func (m *syncModel) userDN() string {
	m.next++
	ou := []string{"people", "people", "staff", fmt.Sprintf("temp%d", m.rng.IntN(2))}[m.rng.IntN(4)]
	return fmt.Sprintf("uid=u%d,ou=%s,%s", m.next, ou, servedBase)
}

func (m *syncModel) addUser() {
	m.next++
	id := fmt.Sprintf("u-%04d", m.next)
	m.users[id] = &cache.User{ID: id, DN: m.userDN(), Username: id, Name: "User " + id, Email: id + "@example.org",
		IsActive: true, Groups: m.someGroups(), Attributes: map[string]any{"title": "t"}}
}

func (m *syncModel) addGroup() {
	m.next++
	id := fmt.Sprintf("g-%04d", m.next)
	m.groups[id] = &cache.Group{ID: id, DN: fmt.Sprintf("cn=g%d,ou=groups,%s", m.next, servedBase), Name: id, Parents: m.someGroups()}
}

// change makes one random change upstream.
func (m *syncModel) change() {
	users, groups := m.ids(0), m.ids(1)
	if len(users) == 0 || len(groups) == 0 {
		m.addUser()
		m.addGroup()
		return
	}
	u := m.users[users[m.rng.IntN(len(users))]]
	g := m.groups[groups[m.rng.IntN(len(groups))]]
	switch m.rng.IntN(14) {
	case 11: // an OU mirrored as it is upstream, or no longer
		ou := []string{"people", "staff", "temp0", "temp1", "groups", "roles", "mapped", "empty"}[m.rng.IntN(8)]
		dn := fmt.Sprintf("ou=%s,%s", ou, servedBase)
		set := m.sets["ous"]
		if i := slices.IndexFunc(set, func(e cache.Entry) bool { return e.DN == dn }); i >= 0 {
			m.sets["ous"] = slices.Delete(set, i, i+1)
		} else {
			m.sets["ous"] = append(set, cache.Entry{DN: dn, Upstream: []cache.Attribute{
				{Name: "objectClass", Values: []string{"top", "organizationalUnit"}}, {Name: "ou", Values: []string{ou}},
				{Name: "description", Values: []string{fmt.Sprint("mirrored ", m.next)}}}})
		}
		m.next++
	case 12: // a leaf of an extra set added, changed or removed
		set := m.sets["misc"]
		switch {
		case len(set) > 0 && m.rng.IntN(3) == 0:
			i := m.rng.IntN(len(set))
			m.sets["misc"] = slices.Delete(set, i, i+1)
		case len(set) > 0 && m.rng.IntN(2) == 0:
			set[m.rng.IntN(len(set))].Upstream = []cache.Attribute{{Name: "objectClass", Values: []string{"device"}},
				{Name: "cn", Values: []string{"x"}}, {Name: "serialNumber", Values: []string{fmt.Sprint(m.next)}}}
		default:
			m.sets["misc"] = append(set, cache.Entry{DN: fmt.Sprintf("cn=d%d,ou=devices,%s", m.next, servedBase),
				Upstream: []cache.Attribute{{Name: "objectClass", Values: []string{"device"}}, {Name: "cn", Values: []string{fmt.Sprint("d", m.next)}}}})
		}
		m.next++
	case 13: // a user with its upstream attributes, memberOf among them
		u.Upstream = []cache.Attribute{{Name: "objectClass", Values: []string{"inetOrgPerson"}}, {Name: "cn", Values: []string{"Up " + u.ID}},
			{Name: "sn", Values: []string{u.ID}}, {Name: "memberOf", Values: []string{"cn=elsewhere," + servedBase}}}
	case 0:
		m.addUser()
	case 1:
		delete(m.users, u.ID)
	case 2: // renamed or moved, maybe to an OU of its own
		u.DN = m.userDN()
	case 3: // served under a path of its own, or no longer
		if u.Path == "" {
			u.Path = fmt.Sprintf("uid=%s,ou=mapped,%s", u.ID, servedBase)
		} else {
			u.Path = ""
		}
	case 4:
		u.Groups = m.someGroups()
	case 5:
		u.Email = fmt.Sprintf("%s.%d@example.org", u.ID, m.next)
		m.next++
	case 6:
		m.addGroup()
	case 7:
		delete(m.groups, g.ID)
	case 8:
		m.next++
		g.DN = fmt.Sprintf("cn=g%d,ou=%s,%s", m.next, []string{"groups", "roles"}[m.rng.IntN(2)], servedBase)
	case 9:
		g.Parents = m.someGroups()
	default:
		g.Name = fmt.Sprintf("renamed %d", m.next)
		m.next++
	}
}

// failOnWarning is a log handler that fails the test on a warning or an error: here,
// a batch that did not apply and made the tree be built anew.
type failOnWarning struct{ t *testing.T }

func (h failOnWarning) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h failOnWarning) Handle(_ context.Context, r slog.Record) error {
	h.t.Errorf("logged: %s", r.Message)
	r.Attrs(func(a slog.Attr) bool { h.t.Log(a.String()); return true })
	return nil
}
func (h failOnWarning) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h failOnWarning) WithGroup(string) slog.Handler      { return h }

// servedContent renders every entry a tree serves with all its attributes, sorted.
func servedContent(t *testing.T, tree *directory.Tree) string {
	t.Helper()
	f, err := ldap.CompileFilter("(objectClass=*)")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ldapwire.Decode(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	q := &directory.SearchRequest{BaseDN: servedBase, Scope: directory.ScopeSubtree, Filter: p, Attributes: []string{"*", "+"}}
	res := tree.Search(context.Background(), q, nil, func(e *directory.Entry) error {
		for _, a := range e.Attributes {
			for _, v := range a.Values {
				lines = append(lines, strings.ToLower(e.DN)+" "+a.Name+": "+string(v))
			}
		}
		return nil
	})
	if res == nil || res.Code != 0 {
		t.Fatalf("search: %+v", res)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestCachedFollowsSyncs syncs random upstream changes (users and groups added,
// deleted, renamed, moved between OUs that come and go, memberships and nesting
// changed) and requires, after each commit, that the served tree Apply made serves
// exactly what a tree built anew from the snapshot serves; and that a sync that
// changed nothing leaves the served tree as it was.
func TestCachedFollowsSyncs(t *testing.T) {
	for _, nested := range []bool{false, true} {
		t.Run(fmt.Sprint("nested=", nested), func(t *testing.T) {
			m := newSyncModel(t, 1)
			m.populate(30, 6)
			o := ServedOptions{BaseDN: servedBase, NestedGroups: nested}
			c := newCached(m.store, o, slog.New(failOnWarning{t}))
			first := c.tree.Load()
			for round := range 80 {
				m.changeAndCompare(c, o, round)
			}
			tree := c.tree.Load()
			if tree == first || tree.Version() == 0 {
				t.Fatal("every sync built the tree anew")
			}
			m.commit()
			if c.tree.Load() != tree {
				t.Error("a sync that changed nothing made a new served tree")
			}
		})
	}
}

// benchStore is a store of users users in groups groups, as a sync at round commits
// them: the users in changed (by index) as of the round given there, the others as of
// round 0 (from round 1, a third of them are renamed, and all move between groups).
type benchStore struct {
	b             testing.TB
	store         *cache.Store
	users, groups int
	// upstream gives the users the upstream attributes of a POSIX directory's users,
	// as a sync keeping them stores them.
	upstream bool
}

func newBenchStore(b testing.TB, users, groups int) *benchStore {
	return newBenchStoreWith(b, &benchStore{users: users, groups: groups})
}

func newBenchStoreWith(b testing.TB, s *benchStore) *benchStore {
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	s.b, s.store = b, store
	s.sync(nil)
	return s
}

func (s *benchStore) user(i, round int) *cache.User {
	id := fmt.Sprintf("u-%06d", i)
	dn := fmt.Sprintf("uid=%s,ou=people,%s", id, servedBase)
	if round > 0 && i%3 == 0 {
		dn = fmt.Sprintf("uid=%s-r%d,ou=people,%s", id, round, servedBase)
	}
	u := &cache.User{ID: id, DN: dn, Username: id, Name: "User " + id, Email: fmt.Sprintf("%s.%d@example.org", id, round),
		IsActive: true, Groups: []string{fmt.Sprintf("g-%04d", (i+round)%s.groups), fmt.Sprintf("g-%04d", (i*7)%s.groups)},
		Attributes: map[string]any{"title": "Engineer", "employee_number": int64(i)}}
	if s.upstream {
		one := func(name, v string) cache.Attribute { return cache.Attribute{Name: name, Values: []string{v}} }
		u.Upstream = []cache.Attribute{
			{Name: "objectClass", Values: []string{"top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount", "shadowAccount"}},
			one("uid", id), one("cn", u.Name), one("sn", id), one("givenName", "User"), one("displayName", u.Name),
			one("mail", u.Email), one("uidNumber", fmt.Sprint(10000+i)), one("gidNumber", fmt.Sprint(20000+i%s.groups)),
			one("homeDirectory", "/home/"+id), one("loginShell", "/bin/bash"), one("gecos", u.Name),
			one("telephoneNumber", fmt.Sprintf("+1 555 %07d", i)), one("title", "Engineer"),
			one("entryUUID", fmt.Sprintf("6f1e0a52-0000-4000-8000-%012d", i)),
			one("createTimestamp", "20261206093014Z"), one("modifyTimestamp", "20261206093014Z"),
			{Name: "memberOf", Values: nil},
		}
	}
	return u
}

func (s *benchStore) sync(changed map[int]int) {
	w, err := s.store.BeginSync(cache.KindUsers, cache.KindGroups)
	if err != nil {
		s.b.Fatal(err)
	}
	for g := range s.groups {
		if err := w.PutGroup(&cache.Group{ID: fmt.Sprintf("g-%04d", g), DN: fmt.Sprintf("cn=g%04d,ou=groups,%s", g, servedBase), Name: fmt.Sprint(g)}); err != nil {
			s.b.Fatal(err)
		}
	}
	for i := range s.users {
		if err := w.PutUser(s.user(i, changed[i])); err != nil {
			s.b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		s.b.Fatal(err)
	}
}

// BenchmarkServedUpdate is what a commit costs the served directory at 100,000 users in
// 2,000 groups: taking in a sync that changed 1 or 100 users (mail, groups, renames),
// against building the tree anew as every sync did before. Run with -benchtime 5x.
func BenchmarkServedUpdate(b *testing.B) {
	s := newBenchStore(b, 100000, 2000)
	o := ServedOptions{BaseDN: servedBase}
	c := newCached(s.store, o, slog.New(slog.DiscardHandler))
	base, baseTree, baseContainers := s.store.Snapshot(), c.tree.Load(), c.containers
	for _, n := range []int{1, 100} {
		changed := map[int]int{}
		for k := range n {
			changed[(k*7919)%s.users] = 1
		}
		s.sync(changed)
		next := s.store.Snapshot()
		s.sync(nil) // back, for the next size
		b.Run(fmt.Sprint("apply-", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.mu.Lock()
				c.sn, c.containers = base, baseContainers
				c.tree.Store(baseTree)
				c.mu.Unlock()
				c.update(next)
				if c.tree.Load() == baseTree {
					b.Fatal("nothing applied")
				}
			}
		})
	}
	b.Run("rebuild", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := directory.NewTree([]string{servedBase}, ServedEntries(base, o)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkServedMemory reports the live heap the served tree of 100,000 users in 2,000
// groups adds to the loaded store, and how much of it the collector scans for pointers
// at each cycle (scan-MiB). Run with -benchtime 1x.
func BenchmarkServedMemory(b *testing.B) {
	for b.Loop() {
		s := newBenchStore(b, 100000, 2000)
		before, scanBefore := liveHeap(), scannableHeap()
		c := newCached(s.store, ServedOptions{BaseDN: servedBase}, slog.New(slog.DiscardHandler))
		b.ReportMetric(float64(liveHeap()-before)/(1<<20), "tree-MiB")
		b.ReportMetric(float64(scannableHeap()-scanBefore)/(1<<20), "scan-MiB")
		runtime.KeepAlive(c)
	}
}

// BenchmarkServedMemoryUpstream reports the live heap of a store of 100,000 users in
// 2,000 groups and its served tree, the users stored with the upstream attributes of a
// POSIX directory (eighteen, memberOf from the memberships) as the proxy serves them,
// their values slices of the store's records; and how much of that heap the collector
// scans. The whole heap, not the tree's part: the store gives memory back while the
// tree is built. Run with -benchtime 1x.
func BenchmarkServedMemoryUpstream(b *testing.B) {
	for b.Loop() {
		s := newBenchStoreWith(b, &benchStore{users: 100000, groups: 2000, upstream: true})
		c := newCached(s.store, ServedOptions{BaseDN: servedBase}, slog.New(slog.DiscardHandler))
		b.ReportMetric(float64(liveHeap())/(1<<20), "heap-MiB")
		b.ReportMetric(float64(scannableHeap())/(1<<20), "scan-MiB")
		runtime.KeepAlive(c)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// scannableHeap is the part of the heap, as of the last collection, that holds pointers
// the collector follows.
func scannableHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestServedTreeFromImage checks that a start on the generation the served tree's image
// was written for reads the tree from it, serves what a tree built anew serves and
// follows syncs from there; and that a start with other served options builds the tree
// anew.
func TestServedTreeFromImage(t *testing.T) {
	m, openStore := newDirSyncModel(t, 4, slog.New(slog.DiscardHandler))
	m.populate(40, 6)
	o := ServedOptions{BaseDN: servedBase, NestedGroups: true}
	c := newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers == nil {
		t.Fatal("the first start read an image")
	}
	built := c.tree.Load()
	want := servedContent(t, built)
	// Once its image is written, the tree built is replaced by the tree read from it.
	if !c.waitMapped() || c.tree.Load() == built {
		t.Fatal("the tree built was not replaced by its image")
	}
	if got := servedContent(t, c.tree.Load()); got != want {
		t.Fatalf("the tree read from its image differs\nread:\n%s\nbuilt:\n%s", got, want)
	}
	m.store.Close()

	m.store = openStore()
	c = newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers != nil {
		t.Fatal("the tree was built anew, not read from its image")
	}
	if got := servedContent(t, c.tree.Load()); got != want {
		t.Fatalf("the tree read from its image differs\nread:\n%s\nbuilt:\n%s", got, want)
	}
	for round := range 20 {
		m.changeAndCompare(c, o, round)
	}
	if c.tree.Load().Version() == 0 {
		t.Fatal("the syncs built the tree anew")
	}
	m.store.Close()

	m.store = openStore()
	o.NestedGroups = false
	c = newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers == nil {
		t.Fatal("an image written with other options was read")
	}
	fresh, err := directory.NewTree([]string{servedBase}, ServedEntries(m.store.Snapshot(), o))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := servedContent(t, c.tree.Load()), servedContent(t, fresh); a != b {
		t.Fatal("the tree differs from one built anew")
	}
	m.store.Close() // writes the image for these options

	m.store = openStore()
	c = newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers != nil {
		t.Fatal("the image was not written again for the options in use")
	}
	m.store.Close()
}

// With groups whose member values are their members' DNs, which the store's checkpoint
// refers to where it holds the users' DNs (the groups' records laid out otherwise than
// in the heap), a start reads the served tree from the image the process before wrote:
// after the first sync, whose tree was made of the records before they moved to the
// checkpoint, and after syncs that renamed, moved and deleted members.
func TestServedTreeFromImageWithMemberDNs(t *testing.T) {
	m, openStore := newDirSyncModel(t, 5, slog.New(slog.DiscardHandler))
	m.memberDNs = true
	o := ServedOptions{BaseDN: servedBase, NestedGroups: true}
	var last string // what the process before served last
	for start := range 3 {
		c := newCached(m.store, o, slog.New(failOnWarning{t}))
		if start == 0 {
			m.populate(40, 6) // the tree made in the commit, of the records before they move
		}
		want := servedContent(t, c.tree.Load())
		if start > 0 && (c.containers != nil || want != last) {
			t.Fatalf("start %d: the tree was built anew (%v), or differs from the one served before it", start, c.containers != nil)
		}
		if start == 0 {
			if !c.waitMapped() {
				t.Fatal("the tree built was not replaced by its image")
			}
			if got := servedContent(t, c.tree.Load()); got != want {
				t.Fatalf("the tree read from its image differs\nread:\n%s\nbuilt:\n%s", got, want)
			}
		}
		for round := range 30 {
			m.changeAndCompare(c, o, round)
		}
		last = servedContent(t, c.tree.Load())
		m.store.Close()
		m.store = openStore()
	}
	m.store.Close()
}

// waitMapped waits up to 10 s for a tree read from its image to serve, and reports
// whether one does.
func (c *cached) waitMapped() bool {
	mapped := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.mapped
	}
	for deadline := time.Now().Add(10 * time.Second); !mapped() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return mapped()
}

// TestServedTreeImageOfAnotherProgram checks that an image written by another build of
// the program (whose code may make other served entries from the same records, or
// normalise values otherwise) is not read: the tree is built anew.
func TestServedTreeImageOfAnotherProgram(t *testing.T) {
	m, openStore := newDirSyncModel(t, 9, slog.New(slog.DiscardHandler))
	for range 10 {
		m.addUser()
	}
	m.addGroup()
	m.commit()
	o := ServedOptions{BaseDN: servedBase}
	c := newCached(m.store, o, slog.New(failOnWarning{t}))
	if !c.waitMapped() {
		t.Fatal("no image written")
	}
	m.store.Close()

	defer func(p func() string) { programIdentity = p }(programIdentity)
	programIdentity = func() string { return "another build" }
	m.store = openStore()
	defer m.store.Close()
	if c := newCached(m.store, o, slog.New(failOnWarning{t})); c.containers == nil {
		t.Fatal("an image written by another build of the program was read")
	}
}

// TestServedTreeImageDamaged checks that a start whose image was damaged on disk, its
// checksum made right again (bytes that the program did not write), logs that the image
// is not used and why, builds the tree anew, serves what the tree read before served,
// and writes the image again, which the next start reads.
func TestServedTreeImageDamaged(t *testing.T) {
	m, openStore := newDirSyncModel(t, 13, slog.New(slog.DiscardHandler))
	m.populate(20, 4)
	o := ServedOptions{BaseDN: servedBase}
	c := newCached(m.store, o, slog.New(failOnWarning{t}))
	if !c.waitMapped() {
		t.Fatal("no image written")
	}
	want := servedContent(t, c.tree.Load())
	m.store.Close()

	// A byte more after the indexes: the image's parts end before the image does.
	path := filepath.Join(m.dir, servedImage)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(file, []byte("LPXTREE"))
	if i < 0 {
		t.Fatal("no image in the file")
	}
	body := append(bytes.Clone(file[:len(file)-4]), 0)
	damaged := binary.LittleEndian.AppendUint32(body, crc32.Checksum(body[i:], crc32.MakeTable(crc32.Castagnoli)))
	// A new file in its place: the tree read before has the old one mapped.
	if err := os.WriteFile(path+".new", damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}

	m.store = openStore()
	var warned []string
	c = newCached(m.store, o, slog.New(recordWarnings{&warned}))
	if c.containers == nil {
		t.Fatal("the damaged image was read")
	}
	if len(warned) != 1 || warned[0] != "served tree image not used" {
		t.Errorf("warnings: %q", warned)
	}
	if got := servedContent(t, c.tree.Load()); got != want {
		t.Fatalf("the tree built anew differs from the one read before\nnow:\n%s\nbefore:\n%s", got, want)
	}
	m.store.Close()

	m.store = openStore()
	defer m.store.Close()
	c = newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers != nil {
		t.Fatal("the image was not written again")
	}
	if got := servedContent(t, c.tree.Load()); got != want {
		t.Fatalf("the tree read from the image written again differs\nnow:\n%s\nbefore:\n%s", got, want)
	}
}

// TestServedTreeImageAfterRecordsMoved checks that the image is written when the store
// moved its records to its checkpoint while the tree's entries were made of the heap's
// (their values slices of records equal to, not the same strings as, the snapshot's):
// here the move comes between the first commit and the second, whose changes the tree
// applies, and the image written at Close is read by the next start.
func TestServedTreeImageAfterRecordsMoved(t *testing.T) {
	m, openStore := newDirSyncModel(t, 11, slog.New(failOnWarning{t}))
	// A derived file before the tree's, whose first write after a commit waits: the
	// checkpointer has written the checkpoint and moved the records by then, and does
	// not write the tree's image until it returns.
	entered, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	m.store.AddDerived(cache.DerivedFile{Name: "hold", Write: func(w io.Writer, sn *cache.Snapshot) error {
		once.Do(func() { close(entered); <-proceed })
		return nil
	}}, false)
	o := ServedOptions{BaseDN: servedBase}
	c := newCached(m.store, o, slog.New(failOnWarning{t}))
	for range 10 {
		m.addUser()
	}
	m.addGroup()
	m.commit() // the tree applies it: its entries' values are the heap records'
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint written")
	}
	// The records are the checkpoint's now; the next commit keeps those it does not change.
	m.change()
	m.commit()
	close(proceed)
	want := servedContent(t, c.tree.Load())
	m.store.Close() // writes the image of the second commit's tree

	m.store = openStore()
	defer m.store.Close()
	c = newCached(m.store, o, slog.New(failOnWarning{t}))
	if c.containers != nil {
		t.Fatal("the tree was built anew, not read from its image")
	}
	if got := servedContent(t, c.tree.Load()); got != want {
		t.Fatalf("the tree read from its image differs\nread:\n%s\nwritten:\n%s", got, want)
	}
}

// TestCachedSyncedWhenFirstSyncChangesNothing: a first sync whose served entries are
// those of the empty store (an upstream with no users or groups in scope) still makes
// the directory known: searches are no longer unavailable.
func TestCachedSyncedWhenFirstSyncChangesNothing(t *testing.T) {
	m := newSyncModel(t, 1)
	c := newCached(m.store, ServedOptions{BaseDN: servedBase}, slog.New(failOnWarning{t}))
	if c.synced.Load() {
		t.Fatal("synced before the first sync")
	}
	m.commit()
	if g := m.store.Snapshot().Generation(); g == 0 {
		t.Fatal("the sync committed no generation")
	}
	if !c.synced.Load() {
		t.Fatal("still not synced after the first sync")
	}
}

// TestHandlerCachedReady: a cached-mode handler is ready (what /readyz reports) once its
// served tree serves a synced generation, not as soon as the store has committed one:
// between the two (the first tree being built) searches are still unavailable.
func TestHandlerCachedReady(t *testing.T) {
	m := newSyncModel(t, 1)
	var h *Handler
	during, seen := true, false
	m.store.OnCommit(func(sn *cache.Snapshot) { // called before the handler's own
		if !seen && sn.Generation() > 0 {
			during, seen = h.CachedReady(), true
		}
	})
	h = NewHandler(Options{Search: SearchConfig{Mode: ModeCached}, Store: m.store, Served: ServedOptions{BaseDN: servedBase},
		Logger: slog.New(failOnWarning{t}), Metrics: NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 })})
	if h.CachedReady() {
		t.Fatal("ready before the first sync")
	}
	m.populate(5, 1)
	if !seen || during {
		t.Fatalf("ready as the store committed, before the served tree serves it (seen %v)", seen)
	}
	if !h.CachedReady() {
		t.Fatal("not ready after the first sync")
	}
}

// TestCachedFirstBuildInBackground: the first sync of a large directory returns from its
// commit before the served tree is built; until the tree serves, searches stay
// unavailable; the tree is built from the records the store moved to its checkpoint, not
// from the snapshot the commit made (whose records are the heap's); a commit that comes
// while the tree is being built returns at once and is applied once the tree is built;
// and the tree's image is written without waiting for another commit.
func TestCachedFirstBuildInBackground(t *testing.T) {
	defer func(n int) { backgroundBuildMin = n }(backgroundBuildMin)
	backgroundBuildMin = 1
	started, release := make(chan struct{}), make(chan struct{})
	firstBuildStarts = func() { // holding the build's lock
		close(started)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}
	defer func() { firstBuildStarts = nil }()

	m, _ := newDirSyncModel(t, 21, slog.New(slog.DiscardHandler))
	defer m.store.Close()
	o := ServedOptions{BaseDN: servedBase}
	c := newCached(m.store, o, slog.New(failOnWarning{t}))
	var committed []*cache.Snapshot
	m.store.OnCommit(func(sn *cache.Snapshot) { committed = append(committed, sn) })
	m.populate(12, 3)
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first tree's build did not start")
	}
	if c.synced.Load() {
		t.Fatal("searches served before the first tree was built")
	}
	if res := notSynced(); res.Code != ldap.LDAPResultUnavailable || !strings.Contains(res.Diagnostic, "building") {
		t.Fatalf("while the first tree is built, searches are answered %+v", res)
	}
	settled := m.store.Snapshot()
	if settled == committed[0] {
		t.Fatal("the store's records did not move to its checkpoint before the build")
	}
	m.change()
	m.change()
	begun := time.Now()
	m.commit() // while the first tree is being built
	if d := time.Since(begun); d > 5*time.Second {
		t.Errorf("a commit during the first tree's build waited %v for it", d)
	}
	close(release)

	if !c.waitMapped() {
		t.Fatal("the first tree's image was not written")
	}
	c.mu.Lock()
	sn := c.sn
	c.mu.Unlock()
	if sn != committed[1] || !c.synced.Load() {
		t.Fatalf("the tree serves generation %d, not the second commit's", sn.Generation())
	}
	fresh, err := directory.NewTree([]string{servedBase}, ServedEntries(m.store.Snapshot(), o))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := servedContent(t, c.tree.Load()), servedContent(t, fresh); a != b {
		t.Fatalf("the served tree differs from one built anew\nserved:\n%s\nanew:\n%s", a, b)
	}
}

// TestCachedFirstImageWithCommitsAround checks that the image of the first tree built in
// the background is written, and the tree moved to it, without waiting for the next
// checkpoint also when commits keep coming as the build ends: a write tried while a
// commit is on its way (published, not yet applied to the tree) writes nothing, so each
// commit applied until the image is written asks for it again. Whether a write meets a
// commit on its way is a matter of timing: the start is tried five times.
func TestCachedFirstImageWithCommitsAround(t *testing.T) {
	defer func(n, tries int) { backgroundBuildMin, firstImageTries = n, tries }(backgroundBuildMin, firstImageTries)
	backgroundBuildMin = 1
	firstImageTries = 1000 // however many writes the commits interrupt
	for try := range 5 {
		m, _ := newDirSyncModel(t, uint64(23+try), slog.New(slog.DiscardHandler))
		c := newCached(m.store, ServedOptions{BaseDN: servedBase}, slog.New(failOnWarning{t}))
		m.populate(300, 20)
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !stop.Load() {
				m.change()
				m.commit()
			}
		}()
		for deadline := time.Now().Add(10 * time.Second); !c.synced.Load() && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // commits go on after the build
		stop.Store(true)
		<-done
		if !c.synced.Load() {
			t.Fatalf("try %d: the first tree was not built", try)
		}
		if !c.waitMapped() {
			t.Fatalf("try %d: the first tree's image was not written, nor the tree moved to it, with no checkpoint due", try)
		}
		m.store.Close()
	}
}
