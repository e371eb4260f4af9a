package sync_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/metrics"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// visibleWithin is how soon a change upstream must be in the store in syncrepl mode.
const visibleWithin = time.Second

// streamer runs a syncrepl-mode Loop on a store in a directory, so that it can be
// stopped and started again on the same store.
type streamer struct {
	t      *testing.T
	e      *env
	dir    string
	store  *cache.Store
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func startStreamer(t *testing.T, e *env, dir string) *streamer {
	t.Helper()
	return startStreamerWith(t, e, dir, nil)
}

// startStreamerWith starts a streamer whose configuration mod changes (mode auto).
func startStreamerWith(t *testing.T, e *env, dir string, mod func(*ldapsync.Config)) *streamer {
	t.Helper()
	store, err := cache.Open(cache.Config{Path: dir}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	st := &streamer{t: t, e: e, dir: dir, store: store, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg := config(t, func(c *ldapsync.Config) {
		c.Mode = ldapsync.ModeAuto
		if mod != nil {
			mod(c)
		}
	})
	var log *slog.Logger = slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := ldapsync.New(cfg, e.pool, store, log, metrics.Registerer(st.reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	go func() {
		defer close(st.done)
		s.Loop(ctx)
	}()
	t.Cleanup(st.stop)
	st.waitConnected()
	return st
}

// stop ends the loop and closes the store.
func (st *streamer) stop() {
	if st.cancel == nil {
		return
	}
	st.cancel()
	<-st.done
	st.store.Close()
	st.cancel = nil
}

func (st *streamer) metric(name string, labels ...string) float64 {
	v, _ := metricValue(st.t, st.reg, name, labels...)
	return v
}

// counted returns a counter once it reaches least, or after 5 s as it is then: a batch
// is counted just after its commit, which a test may see first.
func (st *streamer) counted(least float64, name string, labels ...string) float64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := st.metric(name, labels...)
		if v >= least || time.Now().After(deadline) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConnected waits until the stream is up and has caught up.
func (st *streamer) waitConnected() {
	st.t.Helper()
	st.waitFor(15*time.Second, "the stream to connect", func(*cache.Snapshot) bool {
		return st.metric("ldapproxy_sync_stream_connected") == 1 && len(st.store.Status()) > 0
	})
}

// waitFor polls the store until ok holds, and fails the test after d.
func (st *streamer) waitFor(d time.Duration, what string, ok func(*cache.Snapshot) bool) time.Duration {
	st.t.Helper()
	start := time.Now()
	for {
		if ok(st.store.Snapshot()) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			st.t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newSyncreplEnv(t *testing.T) *env {
	return newEnv(t, slapdtest.Options{Users: 30, Groups: 3, Syncprov: true})
}

// TestSyncreplChanges: with slapd's syncprov, adds, modifies, renames and deletes of
// users and groups upstream are each in the store within a second, a renamed user
// keeps its groups, and the changes are counted by kind and operation.
func TestSyncreplChanges(t *testing.T) {
	e := newSyncreplEnv(t)
	st := startStreamer(t, e, t.TempDir())
	if got := st.store.Status()[0].Mode; got != ldapsync.ModeSyncrepl {
		t.Fatalf("auto chose %q against slapd with syncprov", got)
	}
	admin := e.srv.Conn(t)
	sn := st.store.Snapshot()
	if u, g := sn.Counts(); u != 30 || g != 3 {
		t.Fatalf("initial read: %d users, %d groups", u, g)
	}

	// add
	newDN := "uid=fresh,ou=people," + e.srv.Suffix
	add := ldap.NewAddRequest(newDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"fresh"})
	add.Attribute("cn", []string{"Fresh User"})
	add.Attribute("sn", []string{"User"})
	add.Attribute("mail", []string{"fresh@example.org"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	took := st.waitFor(visibleWithin, "added user", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(newDN); return ok })
	t.Logf("add visible after %v", took)

	// modify
	mod := ldap.NewModifyRequest(e.srv.UserDN(2), nil)
	mod.Replace("mail", []string{"changed@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	took = st.waitFor(visibleWithin, "modified mail", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(2))
		return ok && u.Email == "changed@example.org"
	})
	t.Logf("modify visible after %v", took)

	// rename: the user keeps its ID and its groups, though the groups still list the
	// old DN (no refint overlay here)
	before, ok := st.store.Snapshot().UserByDN(e.srv.UserDN(1))
	if !ok || len(before.Groups) == 0 {
		t.Fatalf("user 1 before the rename: %+v", before)
	}
	if err := admin.ModifyDN(ldap.NewModifyDNRequest(e.srv.UserDN(1), "uid=renamed", true, "")); err != nil {
		t.Fatal(err)
	}
	renamedDN := "uid=renamed,ou=people," + e.srv.Suffix
	took = st.waitFor(visibleWithin, "renamed user", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(renamedDN); return ok })
	t.Logf("rename visible after %v", took)
	after, _ := st.store.Snapshot().UserByDN(renamedDN)
	if after.ID != before.ID || !slices.Equal(after.Groups, before.Groups) {
		t.Fatalf("renamed user: ID %s groups %v, was %s %v", after.ID, after.Groups, before.ID, before.Groups)
	}
	for _, gid := range after.Groups {
		if users, _ := st.store.Snapshot().Members(gid); !slices.Contains(users, after.ID) {
			t.Fatalf("group %s lost the renamed user", gid)
		}
	}

	// a group gains the new user and the renamed one's new DN replaces its old
	fresh, _ := st.store.Snapshot().UserByDN(newDN)
	group := e.srv.GroupDN(1)
	gmod := ldap.NewModifyRequest(group, nil)
	gmod.Add("member", []string{newDN})
	if err := admin.Modify(gmod); err != nil {
		t.Fatal(err)
	}
	took = st.waitFor(visibleWithin, "new member", func(sn *cache.Snapshot) bool {
		u, _ := sn.UserByID(fresh.ID)
		return len(u.Groups) == 1
	})
	t.Logf("group modify visible after %v", took)

	// delete
	if err := admin.Del(ldap.NewDelRequest(e.srv.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}
	took = st.waitFor(visibleWithin, "deleted user gone", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(e.srv.UserDN(3)); return !ok })
	t.Logf("delete visible after %v", took)

	for _, c := range []struct{ kind, op string }{{"users", "add"}, {"users", "modify"}, {"users", "rename"}, {"users", "delete"}, {"groups", "modify"}} {
		if st.counted(1, "ldapproxy_sync_changes_total", "kind", c.kind, "op", c.op) < 1 {
			t.Errorf("no %s %s counted", c.kind, c.op)
		}
	}
	if st.counted(3, "ldapproxy_sync_lag_seconds") < 3 {
		t.Errorf("lag observed %v times", st.metric("ldapproxy_sync_lag_seconds"))
	}
}

// TestSyncreplResume: a proxy restarted resumes from the stored cookie, without a full
// read, and catches up with what changed while it was down; a slapd restarted is
// reconnected to, and the stream catches up.
func TestSyncreplResume(t *testing.T) {
	e := newSyncreplEnv(t)
	dir := t.TempDir()
	st := startStreamer(t, e, dir)
	if n := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); n != 1 {
		t.Fatalf("%v full reads at the first start", n)
	}
	st.stop()

	admin := e.srv.Conn(t)
	mod := ldap.NewModifyRequest(e.srv.UserDN(4), nil)
	mod.Replace("mail", []string{"while-down@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := admin.Del(ldap.NewDelRequest(e.srv.UserDN(5), nil)); err != nil {
		t.Fatal(err)
	}

	st = startStreamer(t, e, dir)
	st.waitFor(visibleWithin, "changes made while stopped", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(4))
		_, gone := sn.UserByDN(e.srv.UserDN(5))
		return ok && u.Email == "while-down@example.org" && !gone
	})
	if n := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); n != 0 {
		t.Fatalf("restart read everything again (%v full reads)", n)
	}
	if n := st.metric("ldapproxy_sync_runs_total", "kind", "users", "result", "success"); n != 0 {
		t.Fatalf("restart ran %v full syncs", n)
	}

	// slapd restarted: the stream notices, reconnects and catches up.
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	st.waitFor(5*time.Second, "stream disconnected", func(*cache.Snapshot) bool {
		return st.metric("ldapproxy_sync_stream_connected") == 0
	})
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	admin = e.srv.Conn(t)
	mod = ldap.NewModifyRequest(e.srv.UserDN(6), nil)
	mod.Replace("mail", []string{"after-restart@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	took := st.waitFor(10*time.Second, "change after slapd's restart", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(6))
		return ok && u.Email == "after-restart@example.org"
	})
	t.Logf("caught up %v after slapd came back", took)
	if st.metric("ldapproxy_sync_stream_connected") != 1 {
		t.Fatal("stream not connected again")
	}
}

// TestSyncreplCookieRefused: a stored cookie the upstream refuses to resume from
// (slapd: unwillingToPerform, "consumer state is newer than provider") leads to a full
// read, after which the stream runs.
func TestSyncreplCookieRefused(t *testing.T) {
	e := newSyncreplEnv(t)
	dir := t.TempDir()
	st := startStreamer(t, e, dir)
	st.stop()
	store, err := cache.Open(cache.Config{Path: dir}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"syncrepl-users", "syncrepl-groups"} {
		b.SetCookie(name, []byte(bogusCookie))
	}
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	store.Close()

	st = startStreamer(t, e, dir)
	st.waitFor(10*time.Second, "a full read after e-syncRefreshRequired", func(*cache.Snapshot) bool {
		return st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "refresh_required") >= 1 &&
			st.metric("ldapproxy_sync_stream_connected") == 1
	})
	if strings.Contains(string(st.store.Cookie("syncrepl-users")), "bogus") {
		t.Fatal("the bogus cookie is still stored")
	}
}

// bogusCookie names a position from the future, which syncprov cannot resume from.
const bogusCookie = "rid=000,csn=29991231235959.000000Z#000000#000#000000"

// TestSyncreplMemberBeforeUser: a group that lists a DN no user has yet gets that user
// as a member when it is added later, though the group does not change again.
func TestSyncreplMemberBeforeUser(t *testing.T) {
	e := newSyncreplEnv(t)
	st := startStreamer(t, e, t.TempDir())
	admin := e.srv.Conn(t)
	laterDN := "uid=later,ou=people," + e.srv.Suffix
	group, ok := st.store.Snapshot().GroupByDN(e.srv.GroupDN(2))
	if !ok {
		t.Fatal("group002 not synced")
	}
	before := st.metric("ldapproxy_sync_changes_total", "kind", "groups", "op", "modify")
	mod := ldap.NewModifyRequest(e.srv.GroupDN(2), nil)
	mod.Add("member", []string{laterDN})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	st.waitFor(visibleWithin, "the group's change", func(*cache.Snapshot) bool {
		return st.metric("ldapproxy_sync_changes_total", "kind", "groups", "op", "modify") > before
	})
	add := ldap.NewAddRequest(laterDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"later"})
	add.Attribute("cn", []string{"Later"})
	add.Attribute("sn", []string{"Later"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	st.waitFor(visibleWithin, "the user added in the group that listed it", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(laterDN)
		return ok && slices.Equal(u.Groups, []string{group.ID})
	})
}

// TestSyncreplReconciliation: every full_interval the stream stops for a full read,
// which writes nothing when the stream missed nothing, and then resumes.
func TestSyncreplReconciliation(t *testing.T) {
	e := newSyncreplEnv(t)
	st := startStreamerWith(t, e, t.TempDir(), func(c *ldapsync.Config) { c.FullInterval = 300 * time.Millisecond })
	var status []cache.Status
	st.waitFor(10*time.Second, "two reconciliations", func(*cache.Snapshot) bool {
		status = st.store.Status()
		return st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full") >= 3 &&
			!slices.ContainsFunc(status, func(s cache.Status) bool { return s.Result != cache.ResultSuccess })
	})
	for _, s := range status {
		if s.Created+s.Updated+s.Deleted != 0 {
			t.Fatalf("a reconciliation with nothing to catch up wrote something: %+v", s)
		}
	}
	mod := ldap.NewModifyRequest(e.srv.UserDN(7), nil)
	mod.Replace("mail", []string{"between@example.org"})
	if err := e.srv.Conn(t).Modify(mod); err != nil {
		t.Fatal(err)
	}
	st.waitFor(2*time.Second, "a change between reconciliations", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(7))
		return ok && u.Email == "between@example.org"
	})
}

// TestSyncreplResumePresentPhase: without a session log, slapd answers a resuming
// consumer with a present phase: unchanged entries named present, changed ones whole,
// deleted ones not named. The store ends with exactly the upstream's users.
func TestSyncreplResumePresentPhase(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 30, Groups: 3, Syncprov: true, SyncprovNoSessionLog: true})
	dir := t.TempDir()
	st := startStreamer(t, e, dir)
	st.stop()

	admin := e.srv.Conn(t)
	mod := ldap.NewModifyRequest(e.srv.UserDN(4), nil)
	mod.Replace("mail", []string{"while-down@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := admin.Del(ldap.NewDelRequest(e.srv.UserDN(5), nil)); err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest("uid=fresh,ou=people,"+e.srv.Suffix, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"fresh"})
	add.Attribute("cn", []string{"Fresh"})
	add.Attribute("sn", []string{"Fresh"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}

	st = startStreamer(t, e, dir)
	st.waitFor(visibleWithin, "changes made while stopped", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(4))
		_, gone := sn.UserByDN(e.srv.UserDN(5))
		_, fresh := sn.UserByDN("uid=fresh,ou=people," + e.srv.Suffix)
		return ok && u.Email == "while-down@example.org" && !gone && fresh
	})
	if n := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); n != 0 {
		t.Fatalf("restart read everything again (%v full reads)", n)
	}
	if users, groups := st.store.Snapshot().Counts(); users != 30 || groups != 3 {
		t.Fatalf("after the present phase: %d users, %d groups; want 30 and 3", users, groups)
	}
	if st.counted(1, "ldapproxy_sync_changes_total", "kind", "users", "op", "delete") != 1 {
		t.Fatalf("deletes counted: %v", st.metric("ldapproxy_sync_changes_total", "kind", "users", "op", "delete"))
	}
}
