package sync_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestFailedSyncKeepsPreviousState makes a sync fail after a good one: the store keeps
// the good one's state, and the status says what went wrong.
func TestFailedSyncKeepsPreviousState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	good := e.sync(config(t, nil))

	tests := []struct {
		name string
		cfg  func(*ldapsync.Config)
		kind string // whose status must carry the error
	}{
		{"user_dn missing", func(c *ldapsync.Config) { c.UserDN = "ou=missing" }, cache.KindUsers},
		{"group_dn missing", func(c *ldapsync.Config) { c.GroupDN = "ou=missing" }, cache.KindGroups},
		// Groups are read for the users' memberships even when only users are synced.
		{"group_dn missing, users only", func(c *ldapsync.Config) { c.GroupDN, c.Groups = "ou=missing", false }, cache.KindUsers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runErr(e.syncer(config(t, tt.cfg), nil))
			var le *ldap.Error
			if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultNoSuchObject {
				t.Fatalf("Run = %v, want noSuchObject", err)
			}
			if sn := e.store.Snapshot(); sn.Generation() != good.Generation() {
				t.Errorf("generation %d after a failed sync, was %d", sn.Generation(), good.Generation())
			}
			if n, m := e.store.Snapshot().Counts(); n != e.srv.Users || m != e.srv.Groups {
				t.Errorf("%d users and %d groups after a failed sync, want %d and %d", n, m, e.srv.Users, e.srv.Groups)
			}
			st := e.status(tt.kind)
			if st.Result != cache.ResultFailed || st.Ended.IsZero() || len(st.Errors) == 0 ||
				!strings.Contains(strings.ToLower(strings.Join(st.Errors, " ")), "no such object") {
				t.Errorf("%s status %+v, want failed with the upstream's error", tt.kind, st)
			}
		})
	}
}

// TestInterruptedSyncKeepsPreviousState fails a sync after some users have been
// written: none of them may show.
func TestInterruptedSyncKeepsPreviousState(t *testing.T) {
	t.Parallel()
	const users = 50
	f := &fakeAD{users: users, rangeSize: 1500}
	e := serveFake(t, f)
	s := e.syncer(config(t, func(c *ldapsync.Config) { c.Preset, c.PageSize = "active-directory", 10 }), nil)
	good := e.run(s)
	if u, _ := good.UserByUsername("user0001"); u == nil || u.Name != "user0001" {
		t.Fatalf("user0001 after the first sync: %+v", u)
	}

	f.mu.Lock()
	f.display, f.failUsersPage = "renamed ", 3 // pages 1 and 2 change 20 users, then page 3 fails
	f.mu.Unlock()
	err := runErr(s)
	if err == nil || !strings.Contains(err.Error(), "simulated failure") {
		t.Fatalf("Run = %v, want the upstream's failure", err)
	}
	sn := e.store.Snapshot()
	if sn.Generation() != good.Generation() {
		t.Errorf("generation %d after a failed sync, was %d", sn.Generation(), good.Generation())
	}
	for u := range sn.Users {
		if u.Name != u.Username {
			t.Errorf("user %s shows %q from the failed sync", u.Username, u.Name)
		}
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultFailed || !strings.Contains(strings.Join(st.Errors, " "), "simulated failure") {
		t.Errorf("users status %+v, want failed with the error", st)
	}

	f.mu.Lock()
	f.failUsersPage = 0
	f.mu.Unlock()
	sn = e.run(s)
	for u := range sn.Users {
		if u.Name != "renamed "+u.Username {
			t.Errorf("user %s named %q after the next good sync", u.Username, u.Name)
		}
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultSuccess || st.Updated != users || st.Created != 0 {
		t.Errorf("users status %+v, want %d updated", st, users)
	}
}

// TestConnectionLostMidSync breaks the connection during the users search. The pool
// runs a call whose connection broke once more on a fresh one: fine before the first
// entry, but entries already read cannot be read twice, so later the sync fails with the
// error that broke it.
func TestConnectionLostMidSync(t *testing.T) {
	t.Parallel()
	srv := slapdtest.New(t, slapdtest.Options{Users: 30})
	spy := newSearchSpy(t, srv.URL)
	e := newEnvAt(t, spy.url, srv.ServiceDN, srv.ServicePassword, srv.Suffix)
	s := e.syncer(config(t, func(c *ldapsync.Config) { c.PageSize = 7; c.UserDN = "ou=people" }), nil)
	cutAt := func(page int) {
		n := 0
		spy.mu.Lock()
		spy.cut = func(s spiedSearch) bool {
			if strings.EqualFold(s.base, srv.PeopleDN) {
				n++
				return n == page
			}
			return false
		}
		spy.mu.Unlock()
	}

	cutAt(1)
	good := e.run(s)
	if users, _ := good.Counts(); users != 30 {
		t.Fatalf("%d users after a connection lost before the first page, want all 30", users)
	}

	cutAt(2)
	err := runErr(s)
	if err == nil || !strings.Contains(err.Error(), "users page 2") {
		t.Fatalf("Run = %v, want the error of users page 2", err)
	}
	if sn := e.store.Snapshot(); sn.Generation() != good.Generation() {
		t.Errorf("generation %d after a failed sync, was %d", sn.Generation(), good.Generation())
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultFailed || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "users page 2") {
		t.Errorf("users status %+v, want failed with the error of page 2", st)
	}
}

// cancelOnProgress cancels a sync at its first progress line of users, a second after it
// (by then the reader has read every page, and entries wait for the mapping).
type cancelOnProgress struct {
	slog.Handler
	once   *gosync.Once
	cancel context.CancelFunc
}

func (h cancelOnProgress) Enabled(context.Context, slog.Level) bool { return true }

func (h cancelOnProgress) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "sync: users 1 ") {
		h.once.Do(func() {
			time.Sleep(time.Second)
			h.cancel() // as at a shutdown: the program stops the sync and waits for it
		})
	}
	return nil
}

// TestCancelledFullSyncDoesNotCommit: a full sync stopped while the users it read still
// wait to be mapped fails and commits nothing: the store keeps every user.
func TestCancelledFullSyncDoesNotCommit(t *testing.T) {
	defer ldapsync.SetProgressEntries(1)()
	e := newEnv(t, slapdtest.Options{Users: 120, Groups: 3})
	cfg := config(t, func(c *ldapsync.Config) {
		c.Groups = false
		c.MembershipField = "memberOf"
	})
	if n, _ := e.sync(cfg).Counts(); n != 120 {
		t.Fatalf("first sync: %d users", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := ldapsync.New(cfg, e.pool, e.store, slog.New(cancelOnProgress{Handler: slog.DiscardHandler, once: &gosync.Once{}, cancel: cancel}), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(ctx)
	if n, _ := e.store.Snapshot().Counts(); n != 120 {
		t.Fatalf("a cancelled full sync (%v) left %d of 120 users", err, n)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled full sync returned %v", err)
	}
}
