package cache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Logins while the first sync's load replaces Badger's contents: the hashes they store
// wait for the load (Store.replacing) and none is lost, before or after a
// reopen; the hash stored before the sync is kept.
func TestFirstSyncLoadWithLogins(t *testing.T) {
	const users, groups = 20_000, 20
	dir := t.TempDir()
	s := openDir(t, dir)
	c, _ := newCreds(t, s, nil, nil)
	before := "uid=before,dc=example,dc=org"
	if err := c.RememberDN(before, []byte("pw-before")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := beginFullSync(t, s, users, groups, "a", nil)
	defer w.Abort()

	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		kept    = map[string]string{} // DN -> password remembered and not forgotten
		slowest time.Duration
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dn := fmt.Sprintf("uid=app%d,dc=example,dc=org", i)
			pw := fmt.Sprintf("pw-%d", i)
			start := time.Now()
			err := c.RememberDN(dn, []byte(pw))
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			if err == nil {
				kept[dn] = pw
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	commit := time.Since(start)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("commit %v; %d hashes kept; slowest remember %v", commit, len(kept), slowest)
	if len(kept) == 0 {
		t.Fatal("no hash remembered during the load")
	}
	check := func(c *Credentials, when string) {
		t.Helper()
		if ok, reason := c.VerifyDN(context.Background(), before, []byte("pw-before")); !ok {
			t.Errorf("%s: the hash stored before the first sync: %v", when, reason)
		}
		for dn, pw := range kept {
			if ok, reason := c.VerifyDN(context.Background(), dn, []byte(pw)); !ok {
				t.Errorf("%s: %s: %v", when, dn, reason)
			}
		}
	}
	check(c, "after the load")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if u, _ := s.Snapshot().Counts(); s.Snapshot().Generation() != 1 || u != users {
		t.Fatalf("reopened at generation %d with %d users", s.Snapshot().Generation(), u)
	}
	c2, _ := newCreds(t, s, nil, nil)
	check(c2, "reopened")
}

// A login's Remember and Forget on the bind's path do not wait for a first load: a hash
// being stored or a forget waiting for it (Store.replacing) does not hold the lock they
// take. The load is stood for by holding Store.replacing as loadFirst does.
func TestRememberDoesNotWaitForLoad(t *testing.T) {
	s := openDir(t, t.TempDir())
	defer s.Close()
	c, _ := newCreds(t, s, nil, nil)
	if err := c.RememberDN("uid=old,dc=example,dc=org", []byte("pw-old")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	s.replacing.Lock() // a first load begins
	loading := true
	defer func() {
		if loading {
			s.replacing.Unlock()
		}
	}()
	// A hash computed during the load, waiting to be written; a forget waiting too.
	if err := c.RememberDN("uid=first,dc=example,dc=org", []byte("pw-first")); err != nil {
		t.Fatal(err)
	}
	forgot := make(chan error, 1)
	go func() { forgot <- c.ForgetDN("uid=old,dc=example,dc=org") }()
	time.Sleep(300 * time.Millisecond) // the hash computed (cheap parameters), its write waiting

	returned := make(chan error, 1)
	go func() { returned <- c.RememberDN("uid=second,dc=example,dc=org", []byte("pw-second")) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Remember waits for the first load")
	}
	select {
	case err := <-forgot:
		t.Fatalf("Forget returned during the load (%v): it deletes from Badger", err)
	default:
	}

	s.replacing.Unlock() // the load ends
	loading = false
	if err := <-forgot; err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for dn, pw := range map[string]string{"uid=first,dc=example,dc=org": "pw-first", "uid=second,dc=example,dc=org": "pw-second"} {
		if ok, reason := c.VerifyDN(context.Background(), dn, []byte(pw)); !ok {
			t.Errorf("%s: %v", dn, reason)
		}
	}
	if ok, _ := c.VerifyDN(context.Background(), "uid=old,dc=example,dc=org", []byte("pw-old")); ok {
		t.Error("the forgotten hash verifies")
	}
}
