package sync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/sambatest"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// newDirSyncEnv is a Samba AD domain controller with a pool bound as its Administrator,
// which has the Replicating Directory Changes right DirSync needs.
func newDirSyncEnv(t *testing.T) (*env, *sambatest.Server) {
	t.Helper()
	dc := sambatest.New(t, sambatest.Options{})
	return newEnvAt(t, dc.LDAPURL, "CN=Administrator,CN=Users,"+sambatest.BaseDN, sambatest.AdminPassword, sambatest.BaseDN), dc
}

// startDirSync starts a dirsync-mode loop with the active-directory preset on a store in
// dir.
func startDirSync(t *testing.T, e *env, dir string) *streamer {
	t.Helper()
	return startDirSyncWith(t, e, dir, nil)
}

// startDirSyncWith is startDirSync with a configuration mod changes.
func startDirSyncWith(t *testing.T, e *env, dir string, mod func(*ldapsync.Config)) *streamer {
	t.Helper()
	return startStreamerWith(t, e, dir, func(c *ldapsync.Config) {
		c.Preset, c.Mode, c.PollInterval = "active-directory", ldapsync.ModeDirSync, tsPoll
		if mod != nil {
			mod(c)
		}
	})
}

// TestDirSyncChanges: in dirsync mode against a Samba AD domain controller, a modify, a
// move to another OU, a rename, a group membership change, an add and a delete are each
// in the store within one poll interval; the moved and renamed users keep their groups;
// the changes are counted; there is one full read, at start; idle polls write nothing.
func TestDirSyncChanges(t *testing.T) {
	e, dc := newDirSyncEnv(t)
	st := startDirSync(t, e, t.TempDir())
	if got := st.store.Status()[0].Mode; got != ldapsync.ModeDirSync {
		t.Fatalf("mode in the status: %q", got)
	}
	// No commit: the same generation (the snapshot itself may be replaced by the same
	// one read from the store's checkpoint, its records moved there).
	cookie, gen := string(st.store.Cookie("dirsync")), st.store.Snapshot().Generation()
	time.Sleep(3 * tsPoll)
	if string(st.store.Cookie("dirsync")) != cookie || st.store.Snapshot().Generation() != gen {
		t.Errorf("idle polls changed the store: cookie %q, was %q", st.store.Cookie("dirsync"), cookie)
	}
	admin := dc.Conn(t)
	within := tsPoll + tsSlack
	byName := func(sn *cache.Snapshot, name string) (*cache.User, bool) { return sn.UserByUsername(name) }

	modify(t, admin, dc.User("bob").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"bob.changed@example.org"}) })
	t.Logf("modify visible after %v", st.waitFor(within, "modified mail", func(sn *cache.Snapshot) bool {
		u, ok := byName(sn, "bob")
		return ok && u.Email == "bob.changed@example.org"
	}))

	for _, mv := range []struct{ name, rdn, sup, to string }{
		{"alice", "CN=Alice Adams", "OU=Staff," + sambatest.BaseDN, "CN=Alice Adams,OU=Staff," + sambatest.BaseDN},
		{"jsmith", "CN=Johnny Smith", "", "CN=Johnny Smith,OU=Engineering,OU=Staff," + sambatest.BaseDN},
	} {
		before, ok := byName(st.store.Snapshot(), mv.name)
		if !ok || len(before.Groups) == 0 {
			t.Fatalf("%s before the modrdn: %+v", mv.name, before)
		}
		if err := admin.ModifyDN(ldap.NewModifyDNRequest(before.DN, mv.rdn, true, mv.sup)); err != nil {
			t.Fatal(err)
		}
		t.Logf("modrdn of %s visible after %v", mv.name, st.waitFor(within, "modrdn", func(sn *cache.Snapshot) bool {
			u, ok := byName(sn, mv.name)
			return ok && directory.NormalizeDN(u.DN) == directory.NormalizeDN(mv.to)
		}))
		time.Sleep(tsPoll)
		sn := st.store.Snapshot()
		after, _ := byName(sn, mv.name)
		if after.ID != before.ID || !slices.Equal(after.Groups, before.Groups) {
			t.Fatalf("%s: ID %s groups %v, was %s %v", mv.name, after.ID, after.Groups, before.ID, before.Groups)
		}
	}

	modify(t, admin, dc.Group("Engineering").DN, func(r *ldap.ModifyRequest) { r.Add("member", []string{dc.User("bob").DN}) })
	t.Logf("group change visible after %v", st.waitFor(within, "new member", func(sn *cache.Snapshot) bool {
		u, _ := byName(sn, "bob")
		return slices.Contains(groupNamesOf(sn, u), "Engineering")
	}))

	newDN := "CN=New Comer,OU=Staff," + sambatest.BaseDN
	add := ldap.NewAddRequest(newDN, nil)
	add.Attribute("objectClass", []string{"user"})
	add.Attribute("sAMAccountName", []string{"newcomer"})
	add.Attribute("givenName", []string{"New"})
	add.Attribute("sn", []string{"Comer"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	t.Logf("add visible after %v", st.waitFor(within, "added user", func(sn *cache.Snapshot) bool { _, ok := byName(sn, "newcomer"); return ok }))

	if err := admin.Del(ldap.NewDelRequest(dc.User("dave").DN, nil)); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete visible after %v", st.waitFor(within, "deleted user gone", func(sn *cache.Snapshot) bool {
		_, ok := byName(sn, "dave")
		return !ok
	}))

	for _, c := range []struct {
		kind, op string
		min      float64
	}{{"users", "add", 1}, {"users", "modify", 1}, {"users", "rename", 2}, {"users", "delete", 1}, {"groups", "modify", 1}} {
		if got := st.counted(c.min, "ldapproxy_sync_changes_total", "kind", c.kind, "op", c.op); got < c.min {
			t.Errorf("changes_total{%s,%s} = %v, want at least %v", c.kind, c.op, got, c.min)
		}
	}
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 1 {
		t.Errorf("full reads: %v, want 1", got)
	}
}

// setStoredDirSync changes the dirsync position stored in dir.
func setStoredDirSync(t *testing.T, dir string, change func(map[string]any)) {
	t.Helper()
	store, err := cache.Open(cache.Config{Path: dir}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var pos map[string]any
	if err := json.Unmarshal(store.Cookie("dirsync"), &pos); err != nil {
		t.Fatalf("stored position %q: %v", store.Cookie("dirsync"), err)
	}
	change(pos)
	c, _ := json.Marshal(pos)
	b, err := store.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	b.SetCookie("dirsync", c)
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestDirSyncResume: a restart resumes from the stored cookie without a full read and
// catches up with a change made while down; a cookie the DC refuses, and a position of
// another DC (its invocationId changed, as after a restore from a backup), each lead to
// a full read, after which the polls go on from the DC's new cookie.
func TestDirSyncResume(t *testing.T) {
	e, dc := newDirSyncEnv(t)
	dir := t.TempDir()
	st := startDirSync(t, e, dir)
	st.stop()

	admin := dc.Conn(t)
	modify(t, admin, dc.User("asmithers").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"anna.changed@example.org"}) })
	st = startDirSync(t, e, dir)
	st.waitFor(tsPoll+tsSlack, "the change made while down", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername("asmithers")
		return ok && u.Email == "anna.changed@example.org"
	})
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 0 {
		t.Errorf("full reads after the restart: %v, want 0", got)
	}
	st.stop()

	for _, tt := range []struct {
		name   string
		change func(map[string]any)
	}{
		{"refused cookie", func(p map[string]any) { p["cookie"] = []byte("not a DirSync cookie at all, refused") }},
		{"another DC", func(p map[string]any) { p["invocation_id"] = "00112233445566778899aabbccddeeff" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before map[string]any
			setStoredDirSync(t, dir, func(p map[string]any) { before = maps.Clone(p); tt.change(p) })
			st := startDirSync(t, e, dir)
			st.waitFor(5*time.Second, "a full read", func(*cache.Snapshot) bool {
				return st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full") == 1
			})
			if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "refresh_required"); got != 1 {
				t.Errorf("full reads for a %s: %v, want 1", tt.name, got)
			}
			var after map[string]any
			if err := json.Unmarshal(st.store.Cookie("dirsync"), &after); err != nil || after["invocation_id"] != before["invocation_id"] {
				t.Errorf("stored position after the full read: %q (%v), want the DC's", st.store.Cookie("dirsync"), err)
			}
			modify(t, admin, dc.User("bob").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{tt.name + "@example.org"}) })
			st.waitFor(tsPoll+tsSlack, "a change after the full read", func(sn *cache.Snapshot) bool {
				u, ok := sn.UserByUsername("bob")
				return ok && u.Email == tt.name+"@example.org"
			})
			if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 1 {
				t.Errorf("full reads: %v, want 1", got)
			}
			st.stop()
		})
	}
}

// TestDirSyncLeaver: with user_dn set, a user moved out of it (to the domain's CN=Users)
// is gone within one poll interval, and back when moved in again, with its groups.
func TestDirSyncLeaver(t *testing.T) {
	e, dc := newDirSyncEnv(t)
	st := startDirSyncWith(t, e, t.TempDir(), func(c *ldapsync.Config) { c.UserDN = "OU=Staff" })
	before, ok := st.store.Snapshot().UserByUsername("alice")
	if !ok || len(before.Groups) == 0 {
		t.Fatalf("alice before the move: %+v", before)
	}
	admin := dc.Conn(t)
	if err := admin.ModifyDN(ldap.NewModifyDNRequest(dc.User("alice").DN, "CN=Alice Adams", true, "CN=Users,"+sambatest.BaseDN)); err != nil {
		t.Fatal(err)
	}
	t.Logf("moved out: gone after %v", st.waitFor(tsPoll+tsSlack, "user moved out gone", func(sn *cache.Snapshot) bool {
		_, ok := sn.UserByUsername("alice")
		return !ok
	}))
	if err := admin.ModifyDN(ldap.NewModifyDNRequest("CN=Alice Adams,CN=Users,"+sambatest.BaseDN, "CN=Alice Adams", true, "OU=Engineering,OU=Staff,"+sambatest.BaseDN)); err != nil {
		t.Fatal(err)
	}
	t.Logf("moved back: there after %v", st.waitFor(tsPoll+tsSlack, "user moved back with its groups", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername("alice")
		return ok && slices.Equal(u.Groups, before.Groups)
	}))
}

// TestDirSyncPollCost measures what dirsync mode reads from a Samba AD domain
// controller: the bytes of the first full read, of a poll interval with no change, and
// of one in which 100 users changed. A measurement, run when LDAPPROXY_DIRSYNC_COST_USERS
// gives the number of users added to the sample domain (e.g. 5000).
func TestDirSyncPollCost(t *testing.T) {
	users, err := strconv.Atoi(os.Getenv("LDAPPROXY_DIRSYNC_COST_USERS"))
	if err != nil || users < 100 {
		t.Skip("a measurement: set LDAPPROXY_DIRSYNC_COST_USERS (e.g. 5000)")
	}
	dc := sambatest.New(t, sambatest.Options{})
	admin := dc.Conn(t)
	dn := func(i int) string { return fmt.Sprintf("CN=Cost User %d,OU=Staff,%s", i, sambatest.BaseDN) }
	start := time.Now()
	for i := range users {
		add := ldap.NewAddRequest(dn(i), nil)
		add.Attribute("objectClass", []string{"user"})
		add.Attribute("sAMAccountName", []string{fmt.Sprintf("cost%d", i)})
		add.Attribute("givenName", []string{"Cost"})
		add.Attribute("sn", []string{fmt.Sprintf("User %d", i)})
		add.Attribute("mail", []string{fmt.Sprintf("cost%d@example.org", i)})
		if err := admin.Add(add); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d users added in %v", users, time.Since(start).Round(time.Millisecond))
	cnt := newByteCounter(t, strings.TrimPrefix(dc.LDAPURL, "ldap://")+":389")
	e := newEnvAt(t, "ldap://"+cnt.addr, "CN=Administrator,CN=Users,"+sambatest.BaseDN, sambatest.AdminPassword, sambatest.BaseDN)
	const poll = time.Second
	start = time.Now()
	st := startStreamerWith(t, e, t.TempDir(), func(c *ldapsync.Config) {
		c.Preset, c.Mode, c.PollInterval = "active-directory", ldapsync.ModeDirSync, poll
	})
	took := time.Since(start)
	full := cnt.read.Load()
	from := cnt.read.Load()
	time.Sleep(poll + poll/2)
	idle := cnt.read.Load() - from

	before := cnt.read.Load()
	for i := range 100 {
		modify(t, admin, dn(i*(users/100)), func(r *ldap.ModifyRequest) {
			r.Replace("mail", []string{fmt.Sprintf("changed%d@example.org", i)})
		})
	}
	visible := st.waitFor(time.Minute, "the 100 changes", func(sn *cache.Snapshot) bool {
		for i := range 100 {
			u, ok := sn.UserByUsername(fmt.Sprintf("cost%d", i*(users/100)))
			if !ok || u.Email != fmt.Sprintf("changed%d@example.org", i) {
				return false
			}
		}
		return true
	})
	changed := cnt.read.Load() - before
	t.Logf("%d users: full read %d bytes in %v; an idle poll interval %d bytes; 100 changes visible after %v, their interval read %d bytes = %.3f%% of the full read",
		users, full, took.Round(time.Millisecond), idle, visible.Round(time.Millisecond), changed, 100*float64(changed)/float64(full))
}

// TestDirSyncWithoutRight: a service account without the Replicating Directory Changes
// right (an ordinary user) gets no store: the full read fails, saying which right it
// needs, and is retried at each poll interval.
func TestDirSyncWithoutRight(t *testing.T) {
	dc := sambatest.New(t, sambatest.Options{})
	e := newEnvAt(t, dc.LDAPURL, dc.ServiceDN, dc.ServicePassword, sambatest.BaseDN)
	store, err := cache.Open(cache.Config{Path: t.TempDir()}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := config(t, func(c *ldapsync.Config) {
		c.Preset, c.Mode, c.PollInterval = "active-directory", ldapsync.ModeDirSync, tsPoll
	})
	var logs slapdtest.LockedBuffer
	s, err := ldapsync.New(cfg, e.pool, store, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Loop(ctx) }()
	defer func() { cancel(); <-done }()
	const want = "needs the Replicating Directory Changes right"
	for start := time.Now(); strings.Count(logs.String(), want) < 2; {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no two full reads failing with %q within 5s; log:\n%s", want, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := store.Snapshot().Counts(); n != 0 {
		t.Errorf("%d users in the store", n)
	}
}
