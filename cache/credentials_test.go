package cache

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
)

// testPassword is distinctive enough that finding it in a file means it was
// stored.
var testPassword = []byte("Tr0ub4dor&3-correct-horse-7f3a9c")

// cheapArgon2 keeps the tests fast; the benchmark uses the defaults.
var cheapArgon2 = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// credUser is a user as a sync stores it.
func credUser(i int, marker string, active bool) *User {
	return &User{
		ID:             userID(i),
		DN:             fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=org", i),
		Username:       fmt.Sprintf("user%06d", i),
		IsActive:       active,
		PasswordMarker: marker,
	}
}

// syncUsers commits a sync of exactly users.
func syncUsers(t testing.TB, s *Store, users ...*User) {
	t.Helper()
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, u := range users {
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// newCreds opens a credential cache on s with cheap argon2 parameters and
// the clock clk (if not nil), after edit has changed the configuration.
func newCreds(t testing.TB, s *Store, clk *fakeClock, edit func(*CredentialConfig)) (*Credentials, *prometheus.Registry) {
	t.Helper()
	cfg := CredentialConfig{CachePasswords: true, Argon2: cheapArgon2}
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	// The prefix the app's registerer (metrics.Registerer) adds, so that the names
	// looked up are the ones Prometheus sees.
	c, err := NewCredentials(s, cfg, prometheus.WrapRegistererWithPrefix("ldapproxy_", reg))
	if err != nil {
		t.Fatal(err)
	}
	if clk != nil {
		c.now = clk.now
	}
	t.Cleanup(func() { c.Close() })
	return c, reg
}

// remember calls Remember and waits for the hash to be stored.
func remember(t testing.TB, c *Credentials, u *User, password []byte) {
	t.Helper()
	if err := c.Remember(u, password); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// wantVerify checks Verify's answer: ok when want is nil, else a refusal
// matching want.
func wantVerify(t *testing.T, c *Credentials, u *User, password []byte, want error) {
	t.Helper()
	ok, reason := c.Verify(context.Background(), u, password)
	switch {
	case want == nil && (!ok || reason != nil):
		t.Fatalf("Verify = %v, %v; want ok", ok, reason)
	case want != nil && (ok || !errors.Is(reason, want)):
		t.Fatalf("Verify = %v, %v; want refused with %v", ok, reason, want)
	}
}

// counterValue returns the value of the metric name with the given label
// values, in the order the metric declares them.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i, l := range m.GetLabel() {
				if i >= len(labels) || l.GetValue() != labels[i] {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func TestCredentialsRememberVerify(t *testing.T) {
	s := openMem(t)
	u := credUser(1, "20250101000000Z", true)
	syncUsers(t, s, u)
	c, reg := newCreds(t, s, nil, nil)

	wantVerify(t, c, u, testPassword, ErrOfflineNoHash)
	remember(t, c, u, testPassword)
	if c.Len() != 1 {
		t.Fatalf("Len %d after Remember", c.Len())
	}
	wantVerify(t, c, u, testPassword, nil)
	wantVerify(t, c, u, []byte("Tr0ub4dor&3-correct-horse-7f3a9C"), ErrOfflineWrongPassword)
	wantVerify(t, c, u, nil, ErrEmptyPassword)
	wantVerify(t, c, nil, testPassword, ErrOfflineNoHash)
	if err := c.Remember(u, nil); !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("Remember of an empty password: %v", err)
	}
	for result, want := range map[string]float64{"success": 1, "wrong_password": 2, "no_hash": 2, "throttled": 0} {
		if got := counterValue(t, reg, "ldapproxy_offline_logins_total", result); got != want {
			t.Errorf("offline logins %s = %v, want %v", result, got, want)
		}
	}
	if got := counterValue(t, reg, "ldapproxy_credential_cache_entries"); got != 1 {
		t.Errorf("entries gauge %v", got)
	}
}

func TestCredentialsRefusals(t *testing.T) {
	const maxAge = 24 * time.Hour
	for _, tc := range []struct {
		name string
		// change is what happens after the login: it returns the user as
		// the proxy then sees it.
		change    func(t *testing.T, s *Store, clk *fakeClock, u *User) *User
		want      error
		wantAfter int // hashes left after the next sync of the changed user
	}{
		{"unchanged", func(t *testing.T, s *Store, clk *fakeClock, u *User) *User {
			clk.advance(maxAge - time.Second)
			return u
		}, nil, 1},
		{"password marker moved", func(t *testing.T, s *Store, clk *fakeClock, u *User) *User {
			v := *u
			v.PasswordMarker = "20250602000000Z"
			return &v
		}, ErrOfflinePasswordChanged, 0},
		{"disabled", func(t *testing.T, s *Store, clk *fakeClock, u *User) *User {
			v := *u
			v.IsActive = false
			return &v
		}, ErrOfflineDisabled, 0},
		{"expired", func(t *testing.T, s *Store, clk *fakeClock, u *User) *User {
			clk.advance(maxAge)
			return u
		}, ErrOfflineExpired, 0},
		{"renamed", func(t *testing.T, s *Store, clk *fakeClock, u *User) *User {
			v := *u
			v.DN = "uid=renamed,ou=people,dc=example,dc=org"
			v.Username = "renamed"
			return &v
		}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openMem(t)
			u := credUser(1, "20250101000000Z", true)
			bystander := credUser(2, "20250101000000Z", true)
			syncUsers(t, s, u, bystander)
			clk := newFakeClock()
			c, _ := newCreds(t, s, clk, func(cfg *CredentialConfig) { cfg.OfflineMaxAge = maxAge })
			remember(t, c, u, testPassword)

			v := tc.change(t, s, clk, u)
			wantVerify(t, c, v, testPassword, tc.want)
			syncUsers(t, s, v, bystander)
			if c.Len() != tc.wantAfter {
				t.Fatalf("%d hashes after the sync, want %d", c.Len(), tc.wantAfter)
			}
		})
	}
}

func TestCredentialsSweep(t *testing.T) {
	s := openMem(t)
	users := []*User{
		credUser(0, "m", true), // stays
		credUser(1, "m", true), // deleted
		credUser(2, "m", true), // disabled
		credUser(3, "m", true), // password changed
		credUser(4, "m", true), // stays, until it expires
	}
	syncUsers(t, s, users...)
	clk := newFakeClock()
	c, reg := newCreds(t, s, clk, func(cfg *CredentialConfig) { cfg.OfflineMaxAge = time.Hour })
	for _, u := range users {
		remember(t, c, u, testPassword)
	}
	clk.advance(30 * time.Minute)
	remember(t, c, users[0], []byte("a newer password"))

	disabled, changed := *users[2], *users[3]
	disabled.IsActive = false
	changed.PasswordMarker = "m2"
	syncUsers(t, s, users[0], &disabled, &changed, users[4])
	if c.Len() != 2 {
		t.Fatalf("%d hashes after the sync, want 2", c.Len())
	}
	for _, u := range []*User{users[1], &disabled, &changed} {
		if _, err := c.read(u.ID); !errors.Is(err, ErrOfflineNoHash) {
			t.Errorf("hash of %s still stored: %v", u.ID, err)
		}
	}
	if got := counterValue(t, reg, "ldapproxy_credential_cache_entries"); got != 2 {
		t.Errorf("entries gauge %v", got)
	}

	// Without a sync, the periodic sweep drops the expired hash.
	clk.advance(30 * time.Minute)
	c.sweep(s.Snapshot())
	if c.Len() != 1 {
		t.Fatalf("%d hashes after the sweep, want 1", c.Len())
	}
	wantVerify(t, c, users[0], []byte("a newer password"), nil)
	wantVerify(t, c, users[4], testPassword, ErrOfflineNoHash)
}

func TestCredentialsForget(t *testing.T) {
	s := openMem(t)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	c, _ := newCreds(t, s, nil, nil)
	remember(t, c, u, testPassword)
	if err := c.Forget(u.ID); err != nil {
		t.Fatal(err)
	}
	wantVerify(t, c, u, testPassword, ErrOfflineNoHash)
	if err := c.Forget(u.ID); err != nil {
		t.Fatal(err)
	}

	// A Forget while the old password is being hashed: the old password
	// must not be stored once the hash is done; a later one may.
	for _, newPassword := range [][]byte{nil, []byte("the new password")} {
		release := make(chan struct{})
		c.idKey = func(password, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte {
			<-release
			return argon2.IDKey(password, salt, passes, memory, threads, keyLen)
		}
		if err := c.Remember(u, testPassword); err != nil {
			t.Fatal(err)
		}
		if err := c.Forget(u.ID); err != nil {
			t.Fatal(err)
		}
		if newPassword != nil {
			if err := c.Remember(u, newPassword); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		if err := c.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if newPassword == nil {
			wantVerify(t, c, u, testPassword, ErrOfflineNoHash)
		} else {
			wantVerify(t, c, u, testPassword, ErrOfflineWrongPassword)
			wantVerify(t, c, u, newPassword, nil)
		}
	}
}

func TestCredentialsNoClearText(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	c, _ := newCreds(t, s, nil, nil)
	remember(t, c, u, testPassword)
	wantVerify(t, c, u, testPassword, nil)

	values := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if bytes.Contains(it.Item().Key(), testPassword) || bytes.Contains(v, testPassword) {
				t.Errorf("record %q holds the password", it.Item().Key())
			}
			if strings.HasPrefix(string(it.Item().Key()), prefixCredentials) {
				values++
				if len(v) < credentialSaltLen+credentialHashLen {
					t.Errorf("credential record of %d bytes", len(v))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if values != 1 {
		t.Fatalf("%d credential records, want 1", values)
	}
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(data, testPassword) {
			t.Errorf("%s holds the password", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no store files to scan")
	}
}

func TestCredentialsPersistAndParamsChange(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	u1, u2 := credUser(1, "m", true), credUser(2, "m", true)
	syncUsers(t, s, u1, u2)
	c, _ := newCreds(t, s, nil, nil)
	remember(t, c, u1, testPassword)
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openDir(t, dir)
	defer s.Close()
	stronger := Argon2Params{Time: 2, MemoryKiB: 128, Threads: 2}
	c, reg := newCreds(t, s, nil, func(cfg *CredentialConfig) { cfg.Argon2 = stronger })
	if c.Len() != 1 {
		t.Fatalf("%d hashes after reopening, want 1", c.Len())
	}
	if got := counterValue(t, reg, "ldapproxy_credential_cache_entries"); got != 1 {
		t.Errorf("entries gauge %v at start", got)
	}
	wantVerify(t, c, u1, testPassword, nil) // with the parameters it was made with
	remember(t, c, u2, testPassword)
	for _, tc := range []struct {
		u    *User
		want Argon2Params
	}{{u1, cheapArgon2}, {u2, stronger}} {
		rec, err := c.read(tc.u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rec.params != tc.want {
			t.Errorf("%s: stored parameters %+v, want %+v", tc.u.ID, rec.params, tc.want)
		}
	}
	wantVerify(t, c, u2, testPassword, nil)
}

func TestCredentialsTurnedOff(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	c, _ := newCreds(t, s, nil, nil)
	remember(t, c, u, testPassword)
	c.Close()

	c, _ = newCreds(t, s, nil, func(cfg *CredentialConfig) { cfg.CachePasswords = false })
	if c.Len() != 0 {
		t.Fatalf("%d hashes kept with cache_passwords off", c.Len())
	}
	if _, err := c.read(u.ID); !errors.Is(err, ErrOfflineNoHash) {
		t.Fatalf("hash still stored: %v", err)
	}
	remember(t, c, u, testPassword)
	wantVerify(t, c, u, testPassword, ErrOfflineNoHash)
	c.Close()
	s.Close()
}

func TestCredentialsConcurrencyBound(t *testing.T) {
	s := openMem(t)
	var users []*User
	for i := range 12 {
		users = append(users, credUser(i, "m", true))
	}
	syncUsers(t, s, users...)
	c, _ := newCreds(t, s, nil, func(cfg *CredentialConfig) { cfg.MaxConcurrentHashes = 2 })
	var running, most atomic.Int32
	c.idKey = func(password, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		return argon2.IDKey(password, salt, passes, memory, threads, keyLen)
	}
	for _, u := range users[:6] {
		remember(t, c, u, testPassword)
	}
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			if err := c.Remember(u, []byte("another password")); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() { c.Verify(context.Background(), u, testPassword) })
	}
	wg.Wait()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := most.Load(); m != 2 {
		t.Fatalf("at most %d argon2 computations ran at once, want 2", m)
	}

	// A Verify waiting for a slot gives up with its context.
	block := make(chan struct{})
	c.idKey = func(password, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte {
		<-block
		return make([]byte, keyLen)
	}
	c.Remember(users[0], []byte("p1"))
	c.Remember(users[1], []byte("p2"))
	for len(c.slots) < 2 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ok, reason := c.Verify(ctx, users[7], []byte("another password"))
	if ok || !errors.Is(reason, context.DeadlineExceeded) {
		t.Fatalf("Verify with all slots busy = %v, %v", ok, reason)
	}

	// Remember does not wait: beyond the queue it skips.
	var busy int
	for _, u := range users[2:] {
		for k := range rememberQueue {
			if err := c.Remember(u, fmt.Appendf(nil, "password %d", k)); errors.Is(err, ErrRememberBusy) {
				busy++
			}
		}
	}
	if busy == 0 {
		t.Fatal("Remember never skipped with a full queue")
	}
	close(block)
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsRememberOnce(t *testing.T) {
	s := openMem(t)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	clk := newFakeClock()
	c, _ := newCreds(t, s, clk, nil)
	var hashed atomic.Int32
	c.idKey = func(password, salt []byte, passes, memory uint32, threads uint8, keyLen uint32) []byte {
		hashed.Add(1)
		return argon2.IDKey(password, salt, passes, memory, threads, keyLen)
	}
	for range 5 {
		remember(t, c, u, testPassword)
	}
	if n := hashed.Load(); n != 1 {
		t.Fatalf("the same password was hashed %d times", n)
	}
	remember(t, c, u, []byte("another"))
	clk.advance(c.refresh())
	remember(t, c, u, []byte("another")) // refreshes the stored time
	if n := hashed.Load(); n != 3 {
		t.Fatalf("%d hashes, want 3", n)
	}
	disabled := *u
	disabled.IsActive = false
	if err := c.Remember(&disabled, testPassword); !errors.Is(err, ErrOfflineDisabled) {
		t.Fatalf("Remember of a disabled user: %v", err)
	}
}

func TestCredentialConfigValidate(t *testing.T) {
	var cfg CredentialConfig
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := CredentialConfig{
		OfflineMaxAge:        168 * time.Hour,
		Argon2:               Argon2Params{Time: 3, MemoryKiB: 19456, Threads: 1},
		MaxConcurrentHashes:  2,
		OfflineFailureLimit:  5,
		OfflineFailureWindow: 15 * time.Minute,
	}
	if cfg != want {
		t.Fatalf("defaults %+v, want %+v", cfg, want)
	}
	for _, tc := range []struct {
		cfg  CredentialConfig
		want string
	}{
		{CredentialConfig{OfflineMaxAge: -time.Hour}, "offline_max_age: "},
		{CredentialConfig{OfflineFailureWindow: -1}, "offline_failure_window: "},
		{CredentialConfig{MaxConcurrentHashes: -1}, "max_concurrent_hashes: "},
		{CredentialConfig{OfflineFailureLimit: -2}, "offline_failure_limit: "},
		{CredentialConfig{Argon2: Argon2Params{MemoryKiB: 8, Threads: 2}}, "argon2.memory_kib: "},
		{CredentialConfig{Argon2: Argon2Params{MemoryKiB: 2 << 20}}, "argon2.memory_kib: "},
		{CredentialConfig{Argon2: Argon2Params{Time: 1000}}, "argon2.time: "},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q...", tc.cfg, err, tc.want)
		}
	}
}

// TestCredentialConfigReportsEveryError: a section with several independent
// mistakes reports each of them, not only the first.
func TestCredentialConfigReportsEveryError(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  CredentialConfig
		want []string
	}{
		{"two durations", CredentialConfig{OfflineMaxAge: -time.Hour, OfflineFailureWindow: -1},
			[]string{"offline_max_age: ", "offline_failure_window: "}},
		{"two counts", CredentialConfig{MaxConcurrentHashes: -1, OfflineFailureLimit: -2},
			[]string{"max_concurrent_hashes: ", "offline_failure_limit: "}},
		{"a count and argon2", CredentialConfig{MaxConcurrentHashes: -1, Argon2: Argon2Params{Time: 1000}},
			[]string{"max_concurrent_hashes: ", "argon2.time: "}},
		{"two argon2 parameters", CredentialConfig{Argon2: Argon2Params{Time: 1000, MemoryKiB: 2 << 20}},
			[]string{"argon2.time: ", "argon2.memory_kib: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			var parts []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				parts = j.Unwrap()
			}
			if len(parts) != len(tc.want) {
				t.Errorf("Validate() reported %d errors, want %d: %q", len(parts), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(parts, func(e error) bool { return strings.HasPrefix(e.Error(), w) }) {
					t.Errorf("Validate() = %q, want an error starting with %q", err, w)
				}
			}
		})
	}
}

func TestCredentialRecordDecode(t *testing.T) {
	rec := credentialRecord{params: cheapArgon2, salt: bytes.Repeat([]byte{1}, 16), hash: bytes.Repeat([]byte{2}, 32),
		storedAt: time.Unix(1700000000, 5), marker: "20250101000000Z"}
	v := rec.encode()
	got, err := decodeCredential(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.params != rec.params || !bytes.Equal(got.salt, rec.salt) || !bytes.Equal(got.hash, rec.hash) ||
		!got.storedAt.Equal(rec.storedAt) || got.marker != rec.marker {
		t.Fatalf("decoded %+v, want %+v", got, rec)
	}
	for i := range len(v) - len(rec.marker) - 1 {
		if _, err := decodeCredential(v[:i]); err == nil {
			t.Errorf("a record cut to %d bytes decodes", i)
		}
	}
	huge := rec
	huge.params.MemoryKiB = 1 << 30
	if _, err := decodeCredential(huge.encode()); err == nil {
		t.Error("a record asking for 1 TiB of memory decodes")
	}
}

// BenchmarkCredentialsVerify is one offline login with the default argon2
// parameters, the cost README.md reports: alone, and as many at once as the
// default max_concurrent_hashes allows.
func BenchmarkCredentialsVerify(b *testing.B) {
	s := openMem(b)
	u := credUser(1, "m", true)
	syncUsers(b, s, u)
	c, _ := newCreds(b, s, nil, func(cfg *CredentialConfig) { cfg.Argon2 = Argon2Params{} })
	remember(b, c, u, testPassword)
	verify := func(b *testing.B) {
		if ok, reason := c.Verify(context.Background(), u, testPassword); !ok {
			b.Error(reason)
		}
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			verify(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(DefaultMaxConcurrentHashes)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				verify(b)
			}
		})
	})
}

// TestFingerprintIsHMAC: the fingerprint, made from the prepared inner and outer
// hashes, is HMAC-SHA256 of the identity and the password under the process's key.
func TestFingerprintIsHMAC(t *testing.T) {
	s := openMem(t)
	c, _ := newCreds(t, s, nil, nil)
	for _, tc := range []struct{ id, password string }{
		{"1", "secret"}, {"", ""}, {"\x00uid=a,dc=example", strings.Repeat("p", 200)}, {strings.Repeat("i", 300), "x"},
	} {
		m := hmac.New(sha256.New, c.fpKey[:])
		m.Write(binary.AppendUvarint(nil, uint64(len(tc.id))))
		m.Write([]byte(tc.id))
		m.Write([]byte(tc.password))
		if got := c.fingerprint(tc.id, []byte(tc.password)); !hmac.Equal(got[:], m.Sum(nil)) {
			t.Errorf("fingerprint(%q, %d bytes) is not the HMAC", tc.id, len(tc.password))
		}
	}
}

// BenchmarkRememberSamePassword is what a successful bind costs the credential cache
// when it already holds that password's hash: its fingerprint, and no argon2.
func BenchmarkRememberSamePassword(b *testing.B) {
	s := openMem(b)
	u := credUser(1, "m", true)
	syncUsers(b, s, u)
	c, _ := newCreds(b, s, nil, func(cfg *CredentialConfig) { cfg.Argon2 = Argon2Params{} })
	remember(b, c, u, testPassword)
	password := []byte(testPassword)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Remember(u, password); err != nil {
			b.Fatal(err)
		}
	}
}
