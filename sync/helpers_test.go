package sync_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// env is one upstream (a slapd or a fake) with a pool pointed at it and an empty
// in-memory store.
type env struct {
	t     *testing.T
	srv   *slapdtest.Server // nil for a fake upstream
	pool  *upstream.Pool
	store *cache.Store
}

// newEnv starts a slapd with opts and connects a pool (as the service account) and an
// in-memory store to it.
func newEnv(t *testing.T, opts slapdtest.Options) *env {
	t.Helper()
	srv := slapdtest.New(t, opts)
	e := newEnvAt(t, srv.URL, srv.ServiceDN, srv.ServicePassword, srv.Suffix)
	e.srv = srv
	return e
}

// newEnvAt connects a pool and an in-memory store to the upstream at url.
func newEnvAt(t *testing.T, url, bindDN, password, base string) *env {
	t.Helper()
	pool, err := upstream.New(upstream.Config{
		URLs: url, BindDN: bindDN, BindPassword: password, BaseDN: base,
		Timeout: 10 * time.Second, RetryInterval: 50 * time.Millisecond,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &env{t: t, pool: pool, store: store}
}

// config returns the validated defaults of the openldap preset changed by mod.
func config(t *testing.T, mod func(*ldapsync.Config)) ldapsync.Config {
	t.Helper()
	cfg := ldapsync.Default()
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// syncer makes a syncer for cfg writing to the env's store; reg may be nil.
func (e *env) syncer(cfg ldapsync.Config, reg prometheus.Registerer) *ldapsync.Syncer {
	e.t.Helper()
	s, err := ldapsync.New(cfg, e.pool, e.store, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		e.t.Fatalf("sync.New: %v", err)
	}
	return s
}

// sync runs one sync with a fresh syncer for cfg and fails the test if it fails.
func (e *env) sync(cfg ldapsync.Config) *cache.Snapshot {
	e.t.Helper()
	return e.run(e.syncer(cfg, nil))
}

// run runs s once and fails the test if it fails.
func (e *env) run(s *ldapsync.Syncer) *cache.Snapshot {
	e.t.Helper()
	if err := runErr(s); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
	return e.store.Snapshot()
}

func runErr(s *ldapsync.Syncer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Run(ctx)
}

// status returns the store's status of kind.
func (e *env) status(kind string) cache.Status {
	e.t.Helper()
	for _, st := range e.store.Status() {
		if st.Kind == kind {
			return st
		}
	}
	e.t.Fatalf("no %s status in %+v", kind, e.store.Status())
	return cache.Status{}
}

// uuids reads every entry's entryUUID as the admin: lower-case DN → entryUUID.
func (e *env) uuids() map[string]string {
	e.t.Helper()
	res, err := e.srv.Conn(e.t).Search(ldap.NewSearchRequest(e.srv.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"entryUUID"}, nil))
	if err != nil {
		e.t.Fatalf("read entryUUIDs: %v", err)
	}
	m := map[string]string{}
	for _, en := range res.Entries {
		m[strings.ToLower(en.DN)] = strings.ToLower(en.GetAttributeValue("entryUUID"))
	}
	return m
}

// id returns the entryUUID of dn from ids, failing the test when there is none.
func id(t *testing.T, ids map[string]string, dn string) string {
	t.Helper()
	v, ok := ids[strings.ToLower(dn)]
	if !ok || v == "" {
		t.Fatalf("no entryUUID for %s", dn)
	}
	return v
}

// userNames lists the user names in sn, sorted.
func userNames(sn *cache.Snapshot) []string {
	var names []string
	for u := range sn.Users {
		names = append(names, u.Username)
	}
	slices.Sort(names)
	return names
}

// groupNames lists the group names in sn, sorted.
func groupNames(sn *cache.Snapshot) []string {
	var names []string
	for g := range sn.Groups {
		names = append(names, g.Name)
	}
	slices.Sort(names)
	return names
}

// graph is a membership graph by name: user name → group names, and group name →
// parent group names, each sorted. It lets syncs of differently shaped data be compared.
type graph struct {
	users  map[string][]string
	groups map[string][]string
}

// graphOf reads the membership graph of sn, from both sides: User.Groups and
// Group.Parents must agree with Snapshot.Members.
func graphOf(t *testing.T, sn *cache.Snapshot) graph {
	t.Helper()
	g := graph{users: map[string][]string{}, groups: map[string][]string{}}
	name := func(id string) string {
		gr, ok := sn.GroupByID(id)
		if !ok {
			t.Fatalf("membership in unknown group %q", id)
		}
		return gr.Name
	}
	fromMembers := graph{users: map[string][]string{}, groups: map[string][]string{}}
	for u := range sn.Users {
		for _, gid := range u.Groups {
			g.users[u.Username] = append(g.users[u.Username], name(gid))
		}
	}
	for gr := range sn.Groups {
		for _, pid := range gr.Parents {
			g.groups[gr.Name] = append(g.groups[gr.Name], name(pid))
		}
		users, groups := sn.Members(gr.ID)
		for _, uid := range users {
			u, ok := sn.UserByID(uid)
			if !ok {
				t.Fatalf("group %s lists unknown user %q", gr.Name, uid)
			}
			fromMembers.users[u.Username] = append(fromMembers.users[u.Username], gr.Name)
		}
		for _, cid := range groups {
			fromMembers.groups[name(cid)] = append(fromMembers.groups[name(cid)], gr.Name)
		}
	}
	for _, m := range []map[string][]string{g.users, g.groups, fromMembers.users, fromMembers.groups} {
		for k := range m {
			slices.Sort(m[k])
		}
	}
	if !equalGraph(g, fromMembers) {
		t.Fatalf("User.Groups/Group.Parents %v disagree with Snapshot.Members %v", g, fromMembers)
	}
	return g
}

func equalGraph(a, b graph) bool {
	eq := func(x, y map[string][]string) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !slices.Equal(v, y[k]) {
				return false
			}
		}
		return true
	}
	return eq(a.users, b.users) && eq(a.groups, b.groups)
}

// sampleGraph is the membership graph of slapdtest's sample data (Server.UserGroups,
// and group001 containing group002).
func sampleGraph(srv *slapdtest.Server) graph {
	g := graph{users: map[string][]string{}, groups: map[string][]string{}}
	for i := 1; i <= srv.Users; i++ {
		for _, gi := range srv.UserGroups(i) {
			name := slapdtest.UserName(i)
			g.users[name] = append(g.users[name], slapdtest.GroupName(gi))
		}
		slices.Sort(g.users[slapdtest.UserName(i)])
	}
	if srv.Groups >= 2 {
		g.groups[slapdtest.GroupName(2)] = []string{slapdtest.GroupName(1)}
	}
	return g
}

// modify applies one modify request as the admin.
func modify(t *testing.T, c *ldap.Conn, dn string, change func(*ldap.ModifyRequest)) {
	t.Helper()
	req := ldap.NewModifyRequest(dn, nil)
	change(req)
	if err := c.Modify(req); err != nil {
		t.Fatalf("modify %s: %v", dn, err)
	}
}

// dnsOf returns the DNs of the given sample users.
func dnsOf(srv *slapdtest.Server, users ...int) []string {
	var dns []string
	for _, i := range users {
		dns = append(dns, srv.UserDN(i))
	}
	return dns
}
