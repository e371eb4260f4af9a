package sync_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/sambatest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// newSambaEnv is a Samba AD domain controller with a pool bound as its service account.
func newSambaEnv(t *testing.T) (*env, *sambatest.Server) {
	t.Helper()
	dc := sambatest.New(t, sambatest.Options{})
	return newEnvAt(t, dc.LDAPURL, dc.ServiceDN, dc.ServicePassword, sambatest.BaseDN), dc
}

// startUSN starts a usn-mode loop with the active-directory preset on a store in dir.
func startUSN(t *testing.T, e *env, dir string, mod func(*ldapsync.Config)) *streamer {
	t.Helper()
	return startStreamerWith(t, e, dir, func(c *ldapsync.Config) {
		c.Preset, c.Mode, c.PollInterval = "active-directory", ldapsync.ModeUSN, tsPoll
		if mod != nil {
			mod(c)
		}
	})
}

// groupNamesOf returns the names of the groups a user is directly in, sorted.
func groupNamesOf(sn *cache.Snapshot, u *cache.User) []string {
	var names []string
	for _, id := range u.Groups {
		if g, ok := sn.GroupByID(id); ok {
			names = append(names, g.Name)
		}
	}
	slices.Sort(names)
	return names
}

// TestUSNChanges: in usn mode against a Samba AD domain controller, a modify, a move to
// another OU, a rename, a group membership change and an add are each in the store within
// one poll interval; a moved or renamed user keeps its groups though AD rewrites no group
// when a member moves; the changes are counted.
func TestUSNChanges(t *testing.T) {
	e, dc := newSambaEnv(t)
	st := startUSN(t, e, t.TempDir(), nil)
	if got := st.store.Status()[0].Mode; got != ldapsync.ModeUSN {
		t.Fatalf("mode in the status: %q", got)
	}
	admin := dc.Conn(t)
	within := tsPoll + tsSlack
	byName := func(sn *cache.Snapshot, name string) (*cache.User, bool) { return sn.UserByUsername(name) }

	// modify
	modify(t, admin, dc.User("bob").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"bob.changed@example.org"}) })
	t.Logf("modify visible after %v", st.waitFor(within, "modified mail", func(sn *cache.Snapshot) bool {
		u, ok := byName(sn, "bob")
		return ok && u.Email == "bob.changed@example.org"
	}))

	// move and rename: same ID, same groups
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

	// a group gains a member
	modify(t, admin, dc.Group("Engineering").DN, func(r *ldap.ModifyRequest) { r.Add("member", []string{dc.User("bob").DN}) })
	t.Logf("group change visible after %v", st.waitFor(within, "new member", func(sn *cache.Snapshot) bool {
		u, _ := byName(sn, "bob")
		return slices.Contains(groupNamesOf(sn, u), "Engineering")
	}))

	// add
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

	for _, c := range []struct {
		kind, op string
		min      float64
	}{{"users", "add", 1}, {"users", "modify", 1}, {"users", "rename", 2}, {"groups", "modify", 1}} {
		if got := st.counted(c.min, "ldapproxy_sync_changes_total", "kind", c.kind, "op", c.op); got < c.min {
			t.Errorf("changes_total{%s,%s} = %v, want at least %v", c.kind, c.op, got, c.min)
		}
	}
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 1 {
		t.Errorf("full reads: %v, want 1", got)
	}
}

// TestUSNResume: a restart resumes from the stored position without a full read and
// catches up; a stored position of another DC (here: its invocationId changed, as after
// a restore from a backup) leads to a full read.
func TestUSNResume(t *testing.T) {
	e, dc := newSambaEnv(t)
	dir := t.TempDir()
	st := startUSN(t, e, dir, nil)
	st.stop()

	admin := dc.Conn(t)
	modify(t, admin, dc.User("asmithers").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"anna.changed@example.org"}) })
	st = startUSN(t, e, dir, nil)
	st.waitFor(tsPoll+tsSlack, "the change made while down", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername("asmithers")
		return ok && u.Email == "anna.changed@example.org"
	})
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != 0 {
		t.Errorf("full reads after the restart: %v, want 0", got)
	}
	st.stop()

	// Another DC's position.
	store, err := cache.Open(cache.Config{Path: dir}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	var pos map[string]any
	if err := json.Unmarshal(store.Cookie("usn"), &pos); err != nil {
		t.Fatalf("stored position %q: %v", store.Cookie("usn"), err)
	}
	pos["invocation_id"] = "00112233445566778899aabbccddeeff"
	c, _ := json.Marshal(pos)
	b, err := store.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	b.SetCookie("usn", c)
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	store.Close()
	st = startUSN(t, e, dir, nil)
	st.waitFor(5*time.Second, "a full read", func(*cache.Snapshot) bool {
		return st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full") == 1
	})
	if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "refresh_required"); got != 1 {
		t.Errorf("full reads for another DC: %v, want 1", got)
	}
	st.waitFor(5*time.Second, "the DC's own position stored", func(*cache.Snapshot) bool {
		var p map[string]any
		return json.Unmarshal(st.store.Cookie("usn"), &p) == nil && p["invocation_id"] != "00112233445566778899aabbccddeeff"
	})
}

// TestUSNDeletes: a user deleted upstream is gone within one poll when the account the
// proxy binds with may read the domain's tombstones (show-deleted control; here the
// Administrator), and at the next reconciliation when it may not (an ordinary service
// account, as by default in Active Directory).
func TestUSNDeletes(t *testing.T) {
	for _, tt := range []struct {
		name      string
		admin     bool
		within    time.Duration
		notBefore time.Duration
		fullReads float64
	}{
		{"tombstones readable", true, tsPoll + tsSlack, 0, 1},
		{"tombstones hidden", false, 6 * time.Second, 2 * time.Second, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dc := sambatest.New(t, sambatest.Options{})
			e := newEnvAt(t, dc.LDAPURL, dc.ServiceDN, dc.ServicePassword, sambatest.BaseDN)
			if tt.admin {
				e = newEnvAt(t, dc.LDAPURL, "CN=Administrator,CN=Users,"+sambatest.BaseDN, sambatest.AdminPassword, sambatest.BaseDN)
			}
			st := startUSN(t, e, t.TempDir(), func(c *ldapsync.Config) { c.FullInterval = 3 * time.Second })
			start := time.Now()
			if err := dc.Conn(t).Del(ldap.NewDelRequest(dc.User("dave").DN, nil)); err != nil {
				t.Fatal(err)
			}
			took := st.waitFor(tt.within, "deleted user gone", func(sn *cache.Snapshot) bool { _, ok := sn.UserByUsername("dave"); return !ok })
			t.Logf("delete visible after %v", took)
			if since := time.Since(start); since < tt.notBefore {
				t.Errorf("the delete showed after %v, before the reconciliation", since)
			}
			if got := st.metric("ldapproxy_sync_stream_full_reads_total", "reason", "full"); got != tt.fullReads {
				t.Errorf("full reads: %v, want %v", got, tt.fullReads)
			}
			if tt.admin {
				if got := st.counted(1, "ldapproxy_sync_changes_total", "kind", "users", "op", "delete"); got != 1 {
					t.Errorf("deletes counted: %v, want 1", got)
				}
			}
		})
	}
}

// TestTimestampAD: timestamp mode works against Active Directory too (Samba AD: its
// modifyTimestamp is constructed from whenChanged, with a ".0Z" fraction): a modify and
// a move show within one poll interval, the moved user keeping its groups.
func TestTimestampAD(t *testing.T) {
	e, dc := newSambaEnv(t)
	st := startStreamerWith(t, e, t.TempDir(), func(c *ldapsync.Config) {
		c.Preset, c.Mode, c.PollInterval = "active-directory", ldapsync.ModeTimestamp, tsPoll
	})
	admin := dc.Conn(t)
	within := tsPoll + tsSlack
	modify(t, admin, dc.User("bob").DN, func(r *ldap.ModifyRequest) { r.Replace("mail", []string{"bob.ts@example.org"}) })
	t.Logf("modify visible after %v", st.waitFor(within, "modified mail", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername("bob")
		return ok && u.Email == "bob.ts@example.org"
	}))
	before, _ := st.store.Snapshot().UserByUsername("alice")
	if err := admin.ModifyDN(ldap.NewModifyDNRequest(before.DN, "CN=Alice Adams", true, "OU=Staff,"+sambatest.BaseDN)); err != nil {
		t.Fatal(err)
	}
	t.Logf("move visible after %v", st.waitFor(within, "moved user", func(sn *cache.Snapshot) bool {
		u, ok := sn.UserByUsername("alice")
		return ok && directory.NormalizeDN(u.DN) == directory.NormalizeDN("CN=Alice Adams,OU=Staff,"+sambatest.BaseDN)
	}))
	if after, _ := st.store.Snapshot().UserByUsername("alice"); len(before.Groups) == 0 || !slices.Equal(after.Groups, before.Groups) {
		t.Fatalf("moved user's groups %v, were %v", after.Groups, before.Groups)
	}
}

// TestUSNLeaver: with user_dn set, a user moved out of it (to the domain's CN=Users) is
// gone within one poll interval: the polls search the whole naming context.
func TestUSNLeaver(t *testing.T) {
	e, dc := newSambaEnv(t)
	st := startUSN(t, e, t.TempDir(), func(c *ldapsync.Config) { c.UserDN = "OU=Staff" })
	if _, ok := st.store.Snapshot().UserByUsername("alice"); !ok {
		t.Fatal("alice not synced")
	}
	if err := dc.Conn(t).ModifyDN(ldap.NewModifyDNRequest(dc.User("alice").DN, "CN=Alice Adams", true, "CN=Users,"+sambatest.BaseDN)); err != nil {
		t.Fatal(err)
	}
	t.Logf("moved out: gone after %v", st.waitFor(tsPoll+tsSlack, "user moved out gone", func(sn *cache.Snapshot) bool {
		_, ok := sn.UserByUsername("alice")
		return !ok
	}))
}
