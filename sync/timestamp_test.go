package sync_test

import (
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// tsPoll is the poll interval of the timestamp tests; a change must be in the store
// within one interval, plus tsSlack for the poll under way and the next one, a search
// and a commit each, which a loaded machine running the tests with -race makes take
// several hundred milliseconds each. It stays below the 3 s full_interval of the tests
// that count on a poll, not a reconciliation, to see a change.
const (
	tsPoll  = 300 * time.Millisecond
	tsSlack = 2 * time.Second
)

// newTimestampEnv is slapd without syncprov (timestamp mode works with any directory),
// with refint (a rename rewrites the member values) and an OU to move users to.
func newTimestampEnv(t *testing.T) *env {
	return newEnv(t, slapdtest.Options{Users: 30, Groups: 3, RefInt: true,
		ExtraLDIF: "dn: ou=moved," + slapdtest.DefaultSuffix + "\nobjectClass: organizationalUnit\nou: moved\n"})
}

// startPoller starts a timestamp-mode loop on a store in dir; mod may change more.
func startPoller(t *testing.T, e *env, dir string, mod func(*ldapsync.Config)) *streamer {
	t.Helper()
	return startStreamerWith(t, e, dir, func(c *ldapsync.Config) {
		c.Mode, c.PollInterval = ldapsync.ModeTimestamp, tsPoll
		if mod != nil {
			mod(c)
		}
	})
}

// TestTimestampChanges: in timestamp mode against slapd without syncprov, an add, a
// modify, a rename, a move and a group membership change are each in the store within
// one poll interval; the renamed and moved users keep their groups; a delete is not seen
// by the polls (it waits for the reconciliation); the changes are counted, unchanged
// objects read again are not.
func TestTimestampChanges(t *testing.T) {
	e := newTimestampEnv(t)
	st := startPoller(t, e, t.TempDir(), nil)
	if got := st.store.Status()[0].Mode; got != ldapsync.ModeTimestamp {
		t.Fatalf("mode in the status: %q", got)
	}
	if u, g := st.store.Snapshot().Counts(); u != 30 || g != 3 {
		t.Fatalf("initial read: %d users, %d groups", u, g)
	}
	admin := e.srv.Conn(t)
	within := tsPoll + tsSlack
	suffix := e.srv.Suffix

	// add
	newDN := "uid=fresh,ou=people," + suffix
	add := ldap.NewAddRequest(newDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"fresh"})
	add.Attribute("cn", []string{"Fresh User"})
	add.Attribute("sn", []string{"User"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	t.Logf("add visible after %v", st.waitFor(within, "added user", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(newDN); return ok }))

	// modify
	modify(t, admin, e.srv.UserDN(2), func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"changed@example.org"}) })
	t.Logf("modify visible after %v", st.waitFor(within, "modified mail", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(2))
		return ok && u.Email == "changed@example.org"
	}))

	// rename and move: same ID, same groups
	for _, mv := range []struct{ from, rdn, sup, to string }{
		{e.srv.UserDN(1), "uid=renamed", "", "uid=renamed,ou=people," + suffix},
		{e.srv.UserDN(4), "uid=" + slapdtest.UserName(4), "ou=moved," + suffix, "uid=" + slapdtest.UserName(4) + ",ou=moved," + suffix},
	} {
		before, ok := st.store.Snapshot().UserByDN(mv.from)
		if !ok || len(before.Groups) == 0 {
			t.Fatalf("%s before the modrdn: %+v", mv.from, before)
		}
		if err := admin.ModifyDN(ldap.NewModifyDNRequest(mv.from, mv.rdn, true, mv.sup)); err != nil {
			t.Fatal(err)
		}
		t.Logf("modrdn to %s visible after %v", mv.to, st.waitFor(within, "modrdn", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(mv.to); return ok }))
		// The groups the modrdn changed (refint) may come with the next poll.
		time.Sleep(tsPoll)
		sn := st.store.Snapshot()
		after, _ := sn.UserByDN(mv.to)
		if after.ID != before.ID || !slices.Equal(after.Groups, before.Groups) {
			t.Fatalf("%s: ID %s groups %v, was %s %v", mv.to, after.ID, after.Groups, before.ID, before.Groups)
		}
		for _, gid := range after.Groups {
			if users, _ := sn.Members(gid); !slices.Contains(users, after.ID) {
				t.Fatalf("group %s lost %s", gid, mv.to)
			}
		}
	}

	// a group gains the new user
	fresh, _ := st.store.Snapshot().UserByDN(newDN)
	modify(t, admin, e.srv.GroupDN(3), func(r *ldap.ModifyRequest) { r.Add("member", []string{newDN}) })
	t.Logf("group change visible after %v", st.waitFor(within, "new member", func(sn *cache.Snapshot) bool {
		u, _ := sn.UserByID(fresh.ID)
		return len(u.Groups) == 1
	}))

	// a delete waits for the reconciliation
	if err := admin.Del(ldap.NewDelRequest(e.srv.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * tsPoll)
	if _, ok := st.store.Snapshot().UserByDN(e.srv.UserDN(3)); !ok {
		t.Fatal("a deleted user is gone before any reconciliation")
	}

	for _, c := range []struct {
		kind, op string
		min      float64
	}{{"users", "add", 1}, {"users", "modify", 1}, {"users", "rename", 2}, {"groups", "modify", 1}} {
		if got := st.counted(c.min, "ldapproxy_sync_changes_total", "kind", c.kind, "op", c.op); got < c.min {
			t.Errorf("changes_total{%s,%s} = %v, want at least %v", c.kind, c.op, got, c.min)
		}
	}
	// Ten polls read the 30 unchanged sample users again (the overlap); none is counted.
	if got := st.metric("ldapproxy_sync_changes_total", "kind", "users", "op", "modify"); got > 3 {
		t.Errorf("changes_total{users,modify} = %v: objects read again were counted", got)
	}
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 1 {
		t.Errorf("full reads: %v, want 1", got)
	}
}

// TestTimestampReconciliation: a user deleted upstream disappears at the full read that
// runs every full_interval.
func TestTimestampReconciliation(t *testing.T) {
	e := newTimestampEnv(t)
	st := startPoller(t, e, t.TempDir(), func(c *ldapsync.Config) { c.FullInterval = 3 * time.Second })
	start := time.Now()
	if err := e.srv.Conn(t).Del(ldap.NewDelRequest(e.srv.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}
	took := st.waitFor(6*time.Second, "deleted user gone", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(e.srv.UserDN(3)); return !ok })
	if since := time.Since(start); since < 2*time.Second {
		t.Errorf("the delete showed after %v, before the reconciliation", since)
	}
	t.Logf("delete gone after %v", took)
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got < 2 {
		t.Errorf("full reads: %v, want 2 or more", got)
	}
}

// TestTimestampResume: a restart resumes from the stored mark, with no full read, and
// catches up with what changed while it was down.
func TestTimestampResume(t *testing.T) {
	e := newTimestampEnv(t)
	dir := t.TempDir()
	st := startPoller(t, e, dir, nil)
	before := st.store.Status()
	st.stop()

	admin := e.srv.Conn(t)
	modify(t, admin, e.srv.UserDN(5), func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"while-down@example.org"}) })
	modify(t, admin, e.srv.GroupDN(3), func(r *ldap.ModifyRequest) { r.Add("member", []string{e.srv.UserDN(5)}) })

	st = startPoller(t, e, dir, nil)
	st.waitFor(tsPoll+tsSlack, "the change made while down", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByDN(e.srv.UserDN(5))
		return ok && u.Email == "while-down@example.org" && len(u.Groups) == 2
	})
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 0 {
		t.Errorf("full reads after the restart: %v, want 0", got)
	}
	if after := st.store.Status(); !after[0].Started.Equal(before[0].Started) {
		t.Errorf("the status changed: a full read ran (%v, was %v)", after[0].Started, before[0].Started)
	}
}

// TestTimestampLeavers: a user moved out of user_dn, and one changed so that it no
// longer matches user_filter, are gone within one poll interval (no reconciliation
// needed); changed back, the second one returns with its groups, though the groups,
// unchanged, are not read again.
func TestTimestampLeavers(t *testing.T) {
	e := newTimestampEnv(t)
	// The polls must not read the groups again: the sample data is older than the
	// overlap, and the newest change is another entry's.
	time.Sleep(3 * time.Second)
	modify(t, e.srv.Conn(t), e.srv.UserDN(1), func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"recent@example.org"}) })
	st := startPoller(t, e, t.TempDir(), func(c *ldapsync.Config) {
		c.UserDN = "ou=people"
		c.UserFilter = "(&(objectClass=inetOrgPerson)(!(description=left)))"
	})
	admin := e.srv.Conn(t)
	within := tsPoll + tsSlack
	if err := admin.ModifyDN(ldap.NewModifyDNRequest(e.srv.UserDN(4), "uid="+slapdtest.UserName(4), true, "ou=moved,"+e.srv.Suffix)); err != nil {
		t.Fatal(err)
	}
	t.Logf("moved out: gone after %v", st.waitFor(within, "user moved out gone", func(sn *cache.Snapshot) bool {
		_, ok := sn.UserByUsername(slapdtest.UserName(4))
		return !ok
	}))
	before, _ := st.store.Snapshot().UserByUsername(slapdtest.UserName(7))
	modify(t, admin, e.srv.UserDN(7), func(r *ldap.ModifyRequest) { r.Replace("description", []string{"left"}) })
	t.Logf("filtered out: gone after %v", st.waitFor(within, "user filtered out gone", func(sn *cache.Snapshot) bool {
		_, ok := sn.UserByUsername(slapdtest.UserName(7))
		return !ok
	}))
	modify(t, admin, e.srv.UserDN(7), func(r *ldap.ModifyRequest) { r.Delete("description", nil) })
	t.Logf("back: after %v", st.waitFor(within, "user back", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername(slapdtest.UserName(7))
		return ok && slices.Equal(u.Groups, before.Groups)
	}))
	if got := st.counted(2, "ldapproxy_sync_changes_total", "kind", "users", "op", "delete"); got != 2 {
		t.Errorf("deletes counted: %v, want 2", got)
	}
}
