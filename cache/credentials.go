package cache

// The credential cache: "update internal password on login" (bind.cache_passwords).
//
// After a successful upstream bind the proxy hands the password to Remember,
// which stores an argon2id hash of it under c/<user ID>, with the time and
// the user's password-change marker. When no upstream can be reached, Verify
// checks a bind against that hash. A hash is dropped as soon as it may no
// longer be the user's password: the upstream rejected it (Forget), a sync
// saw the marker move or the user disabled or deleted (the OnCommit sweep),
// or it is older than offline_max_age.
//
// An identity the store does not hold as a user (an application's own
// account in the directory, say) is remembered by its normalised DN instead
// (RememberDN, VerifyDN, ForgetDN), under c/ 0x00 <DN>: user IDs hold no
// 0x00, so the two never meet. Such an identity has no password-change marker
// and no disabled flag; only offline_max_age, a refusal upstream, a change
// through the proxy, and the cap of maxDNCredentials limit its hash.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
)

// Defaults of CredentialConfig; README.md has the measurements behind the
// argon2 ones.
const (
	DefaultOfflineMaxAge        = 168 * time.Hour
	DefaultArgon2Time           = 3
	DefaultArgon2MemoryKiB      = 19456 // 19 MiB, OWASP's minimum memory for argon2id
	DefaultArgon2Threads        = 1
	DefaultMaxConcurrentHashes  = 2
	DefaultOfflineFailureLimit  = 5
	DefaultOfflineFailureWindow = 15 * time.Minute
)

// Bounds on argon2 parameters, checked in the configuration and in every
// stored record, so that a typo or a corrupt record cannot make one login
// allocate gigabytes or run for minutes.
const (
	maxArgon2Time      = 64
	maxArgon2MemoryKiB = 1 << 20 // 1 GiB
)

// CredentialConfig is the part of the `bind:` section about stored
// credentials.
//
// Example:
//
//	bind:
//	  cache_passwords: true
//	  offline_max_age: 72h
//	  argon2: {time: 3, memory_kib: 19456, threads: 1}
//	  max_concurrent_hashes: 2
type CredentialConfig struct {
	// CachePasswords turns the credential cache on. Default off; turning it
	// off again drops every stored hash at the next start.
	CachePasswords bool `yaml:"cache_passwords"`
	// OfflineMaxAge is how long after the last successful upstream login a
	// hash may be used; an older one is never used, and is dropped. Default
	// 168h.
	OfflineMaxAge time.Duration `yaml:"offline_max_age"`
	// Argon2 are the parameters of new hashes. Each hash keeps the
	// parameters it was made with, so changing them affects only hashes
	// made afterwards. Default time 3, memory_kib 19456, threads 1.
	Argon2 Argon2Params `yaml:"argon2"`
	// MaxConcurrentHashes bounds the argon2 computations running at once
	// (hashing and verifying together); each allocates Argon2.MemoryKiB.
	// Default 2.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
	// OfflineFailureLimit is how many failed offline logins of one user,
	// within OfflineFailureWindow, make further offline logins of that user
	// be refused until the window has passed. Default 5. The proxy's
	// bind-failure throttle enforces it; Verify itself does not count.
	OfflineFailureLimit int `yaml:"offline_failure_limit"`
	// OfflineFailureWindow is the period over which OfflineFailureLimit
	// counts, starting with the first failure. Default 15m.
	OfflineFailureWindow time.Duration `yaml:"offline_failure_window"`
}

// Argon2Params are the argon2id cost parameters.
type Argon2Params struct {
	// Time is the number of passes over the memory.
	Time uint32 `yaml:"time"`
	// MemoryKiB is the memory one computation fills, in KiB.
	MemoryKiB uint32 `yaml:"memory_kib"`
	// Threads is the parallelism of one computation.
	Threads uint8 `yaml:"threads"`
}

// Validate fills in defaults and checks the values. Every mistake is
// reported (errors.Join), each naming its key (`argon2.memory_kib: ...`).
func (c *CredentialConfig) Validate() error {
	var errs []error
	positive := func(key string, v *time.Duration, def time.Duration) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", key, *v))
		}
	}
	count := func(key string, v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: %d is negative", key, *v))
		}
	}
	positive("offline_max_age", &c.OfflineMaxAge, DefaultOfflineMaxAge)
	positive("offline_failure_window", &c.OfflineFailureWindow, DefaultOfflineFailureWindow)
	count("max_concurrent_hashes", &c.MaxConcurrentHashes, DefaultMaxConcurrentHashes)
	count("offline_failure_limit", &c.OfflineFailureLimit, DefaultOfflineFailureLimit)

	a := &c.Argon2
	if a.Time == 0 {
		a.Time = DefaultArgon2Time
	}
	if a.MemoryKiB == 0 {
		a.MemoryKiB = DefaultArgon2MemoryKiB
	}
	if a.Threads == 0 {
		a.Threads = DefaultArgon2Threads
	}
	for _, err := range a.problems() {
		errs = append(errs, fmt.Errorf("argon2.%w", err))
	}
	return errors.Join(errs...)
}

// check verifies that p is usable and within bounds.
func (p Argon2Params) check() error {
	return errors.Join(p.problems()...)
}

// problems lists every parameter of p that is unusable or out of bounds, each
// error starting with its key.
func (p Argon2Params) problems() []error {
	var errs []error
	if p.Time == 0 || p.Time > maxArgon2Time {
		errs = append(errs, fmt.Errorf("time: %d is not between 1 and %d", p.Time, maxArgon2Time))
	}
	if p.Threads == 0 {
		errs = append(errs, errors.New("threads: must be at least 1"))
	}
	switch {
	case p.MemoryKiB < 8*uint32(p.Threads):
		// argon2 needs 8 KiB per thread; below that it silently uses more.
		errs = append(errs, fmt.Errorf("memory_kib: %d is less than 8 × threads (%d)", p.MemoryKiB, p.Threads))
	case p.MemoryKiB > maxArgon2MemoryKiB:
		errs = append(errs, fmt.Errorf("memory_kib: %d is more than %d (1 GiB)", p.MemoryKiB, maxArgon2MemoryKiB))
	}
	return errs
}

// Reasons Verify refuses an offline login. Each maps to one value of the
// result label of ldapproxy_offline_logins_total.
var (
	ErrOfflineNoHash          = errors.New("no cached password for this user")
	ErrOfflineExpired         = errors.New("cached password older than offline_max_age")
	ErrOfflineDisabled        = errors.New("user is disabled")
	ErrOfflinePasswordChanged = errors.New("password changed upstream since it was cached")
	ErrOfflineThrottled       = errors.New("too many failed offline logins")
	ErrOfflineWrongPassword   = errors.New("password does not match the cached hash")
	// The directory's own refusals, from the user's Account as last synced.
	ErrOfflineAccountExpired     = errors.New("account expired")
	ErrOfflineLocked             = errors.New("account locked")
	ErrOfflinePasswordExpired    = errors.New("password expired")
	ErrOfflineMustChangePassword = errors.New("password must be changed")
)

// ErrEmptyPassword is returned for an empty password: a bind with one is an
// unauthenticated bind, which proves nothing, so it is never remembered and
// never verified.
var ErrEmptyPassword = errors.New("empty password")

// ErrRememberBusy is returned by Remember when so many passwords are already
// waiting to be hashed that this one is skipped rather than queued.
var ErrRememberBusy = errors.New("credential cache busy: password not cached")

// Sizes of a stored hash.
const (
	credentialSaltLen = 16
	credentialHashLen = 32
)

// rememberQueue bounds the Remember calls accepted and not yet stored. Each
// waiting one holds a goroutine and a copy of the password; with the default
// parameters the queue drains in about half a second.
const rememberQueue = 64

// credentialSweepInterval is how often hashes are checked for age when no
// sync commits; Verify refuses an expired one whenever it is asked.
const credentialSweepInterval = 10 * time.Minute

// maxDNCredentials caps the hashes of identities that are not synced users:
// any DN the upstream accepts gets one, and a directory may hold many more
// accounts than the sync reads. A new one beyond the cap replaces the one
// stored longest ago; the hashes of synced users are not counted.
const maxDNCredentials = 10_000

// Credentials is the credential cache: argon2id hashes of the passwords of
// users who logged in through the upstream, for logins while no upstream
// can be reached. Its methods may be called from several goroutines.
type Credentials struct {
	s   *Store
	cfg CredentialConfig
	log *slog.Logger

	// now and idKey are time.Now and argon2.IDKey; tests replace them.
	now   func() time.Time
	idKey func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

	// fpKey keys the fingerprints of recently remembered passwords (see
	// credEntry.fp); it exists only in this process's memory. fpInner and fpOuter
	// are HMAC-SHA256's two hashes under it with the key's block absorbed, as
	// sha256 marshals them: a fingerprint starts from them rather than from the key.
	fpKey            [32]byte
	fpInner, fpOuter []byte

	slots chan struct{} // argon2 computations running: MaxConcurrentHashes
	queue chan struct{} // Remember calls accepted and not yet finished
	done  chan struct{} // closed by Close: queued Remembers give up

	mu       sync.Mutex
	closed   bool
	entries  map[string]*credEntry // mirrors the c/ records, by key: user ID, or dnKey
	inflight map[string]*inflight  // Remembers under way, by key
	dns      int                   // entries keyed by DN
	maxDNs   int                   // maxDNCredentials; tests lower it
	seq      uint64                // numbers Remember calls
	pending  int                   // Remembers accepted and not finished
	idle     chan struct{}         // closed when pending drops to 0

	stopSweep chan struct{}
	sweepDone chan struct{}

	logins *prometheus.CounterVec
}

// credEntry is what memory keeps of a stored hash: enough to sweep and to
// refuse without reading Badger.
type credEntry struct {
	storedAt time.Time
	marker   string
	seq      uint64 // of the Remember that stored it; 0 if loaded at start
	// fp is an HMAC of the password, kept while the hash is younger than
	// refresh(), so that a user binding again and again with the same
	// password does not cost an argon2 computation each time.
	fp    [sha256.Size]byte
	hasFP bool
}

// inflight tracks the Remember calls of one user that are under way.
type inflight struct {
	n  int
	fp [sha256.Size]byte // of the latest; a Remember of the same password is not queued twice
	// voidUpTo is the last Remember call (seq) a Forget cancelled: its
	// hash, computed from a password no longer valid, must not be stored.
	voidUpTo uint64
}

// credentialRecord is the value under c/<user ID> and c/ 0x00 <DN>.
//
//	version(1) time(4) memory_kib(4) threads(1) salt_len(1) salt hash_len(1) hash stored_at(8, Unix ns) marker
type credentialRecord struct {
	params   Argon2Params
	salt     []byte
	hash     []byte
	storedAt time.Time
	marker   string
}

const (
	prefixCredentials = "c/"
	credentialFormat  = 1
)

// Offline login results, the values of the result label.
var offlineResults = []string{"success", "wrong_password", "no_hash", "expired", "disabled", "password_changed", "throttled",
	"account_expired", "locked", "password_expired", "must_change_password", "error"}

// NewCredentials opens the credential cache kept in s, which must stay open
// until the cache is closed. It loads the stored hashes, drops those that
// are expired or no longer match the synced users, and registers a sweep
// with s.OnCommit. With cfg.CachePasswords off it drops every stored hash
// and gives a cache that stores nothing. Metrics are registered on reg
// unless it is nil, with names without the namespace (offline_logins_total):
// reg is expected to add it, so that Prometheus sees
// ldapproxy_offline_logins_total.
func NewCredentials(s *Store, cfg CredentialConfig, reg prometheus.Registerer) (*Credentials, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bind.%w", err)
	}
	c := &Credentials{
		s:         s,
		cfg:       cfg,
		log:       s.log.With("component", "credentials"),
		now:       time.Now,
		idKey:     argon2.IDKey,
		slots:     make(chan struct{}, cfg.MaxConcurrentHashes),
		queue:     make(chan struct{}, rememberQueue),
		done:      make(chan struct{}),
		entries:   map[string]*credEntry{},
		inflight:  map[string]*inflight{},
		maxDNs:    maxDNCredentials,
		stopSweep: make(chan struct{}),
		sweepDone: make(chan struct{}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offline_logins_total",
			Help: "Binds checked against the credential cache while no upstream could be reached, by result.",
		}, []string{"result"}),
	}
	if _, err := rand.Read(c.fpKey[:]); err != nil {
		return nil, fmt.Errorf("credential cache key: %w", err)
	}
	if err := c.keyFingerprints(); err != nil {
		return nil, fmt.Errorf("credential cache key: %w", err)
	}
	for _, r := range offlineResults {
		c.logins.WithLabelValues(r)
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("load credential cache: %w", err)
	}
	if !cfg.CachePasswords {
		if n := len(c.entries); n > 0 {
			c.lockWrite()
			err := c.dropLocked(c.ids())
			c.unlockWrite()
			if err != nil {
				return nil, fmt.Errorf("drop credential cache: %w", err)
			}
			c.log.Info("credential cache: bind.cache_passwords is off; dropped the stored hashes", "hashes", n)
		}
	} else {
		c.sweep(s.Snapshot())
		c.log.Info("credential cache loaded", "hashes", c.Len())
	}
	if reg != nil {
		reg.MustRegister(c.logins, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "credential_cache_entries",
			Help: "Password hashes in the credential cache.",
		}, func() float64 { return float64(c.Len()) }))
	}
	s.OnCommit(c.sweep)
	go c.sweepPeriodically()
	return c, nil
}

// load reads the stored hashes into c.entries. A record that does not
// decode is dropped: it could never verify.
func (c *Credentials) load() error {
	var bad [][]byte
	err := c.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(prefixCredentials)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(prefixCredentials):])
			err := item.Value(func(v []byte) error {
				rec, err := decodeCredential(v)
				if err != nil {
					return err
				}
				c.entries[id] = &credEntry{storedAt: rec.storedAt, marker: rec.marker}
				if isDNKey(id) {
					c.dns++
				}
				return nil
			})
			if err != nil {
				c.log.Warn("credential cache: dropping a record that does not decode", "identity", logKey(id), "err", err)
				bad = append(bad, item.KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return c.delete(bad)
	}
	return nil
}

// Remember stores a hash of password as user u's, after the upstream
// accepted it; u is the user as the snapshot has it, whose PasswordMarker is
// stored with the hash. It does not wait for the hash: the computation
// (tens of milliseconds, see README.md) runs in the background, at most
// MaxConcurrentHashes at once, and Remember returns at once. When
// rememberQueue calls are already waiting, it skips this one and returns
// ErrRememberBusy; the next login of the user tries again. The same password
// remembered again within refresh() is not hashed again. Remember keeps its
// own copy of password and wipes it when done.
func (c *Credentials) Remember(u *User, password []byte) error {
	switch {
	case !c.cfg.CachePasswords:
		return nil
	case u == nil:
		return errors.New("remember password: no user")
	case len(password) == 0:
		return ErrEmptyPassword
	case !u.IsActive:
		return ErrOfflineDisabled
	}
	return c.remember(u.ID, u.PasswordMarker, password)
}

// RememberDN is Remember for an identity the store does not hold as a user,
// such as an application's own account: its hash is kept under dn,
// normalised as the store compares DNs, with no password-change marker. The
// proxy calls it only for a bind name that is a DN.
func (c *Credentials) RememberDN(dn string, password []byte) error {
	switch {
	case !c.cfg.CachePasswords:
		return nil
	case dn == "":
		return errors.New("remember password: no DN")
	case len(password) == 0:
		return ErrEmptyPassword
	}
	return c.remember(c.dnKey(dn), "", password)
}

// remember queues the hash of password under key, with marker.
func (c *Credentials) remember(key, marker string, password []byte) error {
	fp := c.fingerprint(key, password)
	now := c.now()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if e := c.entries[key]; e != nil && e.hasFP && e.marker == marker &&
		now.Sub(e.storedAt) < c.refresh() && hmac.Equal(e.fp[:], fp[:]) {
		return nil
	}
	in := c.inflight[key]
	if in != nil && in.n > 0 && hmac.Equal(in.fp[:], fp[:]) {
		return nil
	}
	select {
	case c.queue <- struct{}{}:
	default:
		return ErrRememberBusy
	}
	if in == nil {
		in = &inflight{}
		c.inflight[key] = in
	}
	in.n++
	in.fp = fp
	c.seq++
	if c.pending == 0 {
		c.idle = make(chan struct{})
	}
	c.pending++
	go c.store(key, marker, c.seq, bytes.Clone(password), fp)
	return nil
}

// store computes and writes the hash of one Remember call.
func (c *Credentials) store(id, marker string, seq uint64, password []byte, fp [sha256.Size]byte) {
	defer c.finish(id)
	defer clear(password)
	select {
	case c.slots <- struct{}{}:
	case <-c.done:
		return
	}
	rec := credentialRecord{params: c.cfg.Argon2, salt: make([]byte, credentialSaltLen), marker: marker}
	_, err := rand.Read(rec.salt)
	if err == nil {
		rec.hash = c.idKey(password, rec.salt, rec.params.Time, rec.params.MemoryKiB, rec.params.Threads, credentialHashLen)
	}
	<-c.slots
	if err != nil {
		c.log.Error("credential cache: no random salt", "identity", logKey(id), "err", err)
		return
	}
	rec.storedAt = c.now()

	c.lockWrite()
	defer c.unlockWrite()
	if in := c.inflight[id]; in != nil && seq <= in.voidUpTo {
		return // Forgotten meanwhile: the password is no longer valid
	}
	old := c.entries[id]
	if old != nil && old.seq > seq {
		return // a later login's hash is already stored
	}
	if old == nil && isDNKey(id) && c.dns >= c.maxDNs {
		if err := c.dropLocked([]string{c.oldestDN()}); err != nil {
			c.log.Warn("credential cache: cannot make room for a hash", "err", err)
			return
		}
	}
	err = c.s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(credentialKey(id), rec.encode())
	})
	if err != nil {
		c.log.Warn("credential cache: cannot store a hash", "identity", logKey(id), "err", err)
		return
	}
	if old == nil && isDNKey(id) {
		c.dns++
	}
	c.entries[id] = &credEntry{storedAt: rec.storedAt, marker: marker, seq: seq, fp: fp, hasFP: true}
}

// oldestDN returns the DN key stored longest ago; c.mu must be held and
// c.dns be positive.
func (c *Credentials) oldestDN() string {
	var key string
	var at time.Time
	for k, e := range c.entries {
		if isDNKey(k) && (key == "" || e.storedAt.Before(at)) {
			key, at = k, e.storedAt
		}
	}
	return key
}

// finish ends one Remember call of user id.
func (c *Credentials) finish(id string) {
	<-c.queue
	c.mu.Lock()
	defer c.mu.Unlock()
	if in := c.inflight[id]; in != nil {
		if in.n--; in.n == 0 {
			delete(c.inflight, id)
		}
	}
	if c.pending--; c.pending == 0 {
		close(c.idle)
	}
}

// Flush waits until every Remember accepted before it was called has stored
// its hash or given up, or until ctx ends.
func (c *Credentials) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.pending == 0 {
		c.mu.Unlock()
		return nil
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Verify checks password against user u's stored hash, for a login while no
// upstream can be reached; u is the user as the current snapshot has it. It
// is ok only if u is active, u's Account refuses nothing (not locked, expired,
// ...: what the directory would refuse, checked first, hash or no hash), a
// hash exists, is younger than OfflineMaxAge, u's PasswordMarker is the one
// stored with the hash, and the password matches. Otherwise reason says why,
// for the log; it never contains the password. ctx bounds the wait for a
// hash slot. Throttling failed offline logins (offline_failure_limit) is the
// caller's: the proxy's bind-failure throttle counts them, and reports its
// refusals with Throttled.
func (c *Credentials) Verify(ctx context.Context, u *User, password []byte) (ok bool, reason error) {
	reason = c.verify(ctx, u, password)
	c.logins.WithLabelValues(offlineResult(reason)).Inc()
	return reason == nil, reason
}

// VerifyDN is Verify for an identity the store does not hold as a user, whose
// hash RememberDN stored under dn. Only the hash's age limits it: there is no
// account state, disabled flag or password-change marker to check.
func (c *Credentials) VerifyDN(ctx context.Context, dn string, password []byte) (ok bool, reason error) {
	if dn == "" {
		reason = ErrOfflineNoHash
	} else {
		reason = c.check(ctx, c.dnKey(dn), nil, password)
	}
	c.logins.WithLabelValues(offlineResult(reason)).Inc()
	return reason == nil, reason
}

// Throttled counts an offline login the caller's failure throttle refused
// without asking Verify (result "throttled" of offline_logins_total).
func (c *Credentials) Throttled() {
	c.logins.WithLabelValues(offlineResult(ErrOfflineThrottled)).Inc()
}

func (c *Credentials) verify(ctx context.Context, u *User, password []byte) error {
	if u == nil {
		return ErrOfflineNoHash
	}
	now := c.now()
	// What the directory itself would refuse comes first, hash or no hash: the
	// reason an operator needs is that the account is locked, not that nothing
	// was cached for it.
	if !u.IsActive {
		return ErrOfflineDisabled
	}
	if err := u.Account.Refusal(now); err != nil {
		return err
	}
	return c.check(ctx, u.ID, u, password)
}

// check verifies password against the hash under key, of user u (nil for an
// identity kept by DN).
func (c *Credentials) check(ctx context.Context, key string, u *User, password []byte) error {
	if len(password) == 0 {
		// Offline as online: an empty password is an unauthenticated
		// bind, and must never be taken for a login.
		return ErrEmptyPassword
	}
	now := c.now()
	c.lockWrite() // an expired hash is deleted
	if c.closed {
		c.unlockWrite()
		return ErrClosed
	}
	e := c.entries[key]
	var err error
	if e == nil {
		err = ErrOfflineNoHash
	} else {
		err = c.refusal(u, e.storedAt, e.marker, now)
	}
	if errors.Is(err, ErrOfflineExpired) {
		if derr := c.dropLocked([]string{key}); derr != nil {
			c.log.Warn("credential cache: cannot drop an expired hash", "identity", logKey(key), "err", derr)
		}
	}
	c.unlockWrite()
	if err != nil {
		return err
	}

	rec, err := c.read(key)
	if err != nil {
		return err
	}
	// The record may have been replaced since the entry was checked.
	if err := c.refusal(u, rec.storedAt, rec.marker, now); err != nil {
		return err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a hash slot: %w", ctx.Err())
	}
	sum := c.idKey(password, rec.salt, rec.params.Time, rec.params.MemoryKiB, rec.params.Threads, uint32(len(rec.hash)))
	<-c.slots
	if subtle.ConstantTimeCompare(sum, rec.hash) != 1 {
		return ErrOfflineWrongPassword
	}
	return nil
}

// refusal says why a hash stored at storedAt with marker may not be used
// for u now, or nil when it may; whether u may log in at all, verify has
// checked. u is nil for an identity kept by DN, which only its age limits.
func (c *Credentials) refusal(u *User, storedAt time.Time, marker string, now time.Time) error {
	switch {
	case c.expired(storedAt, now):
		return ErrOfflineExpired
	case u != nil && u.PasswordMarker != marker:
		return ErrOfflinePasswordChanged
	}
	return nil
}

func (c *Credentials) expired(storedAt, now time.Time) bool {
	return now.Sub(storedAt) >= c.cfg.OfflineMaxAge
}

// refresh is how long a remembered password is not hashed again when the
// same user binds with it again; the stored time lags by as much.
func (c *Credentials) refresh() time.Duration {
	return min(10*time.Minute, c.cfg.OfflineMaxAge/10)
}

// read returns user id's stored record.
func (c *Credentials) read(id string) (*credentialRecord, error) {
	var rec *credentialRecord
	err := c.view(func(txn *badger.Txn) error {
		item, err := txn.Get(credentialKey(id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			rec, err = decodeCredential(v)
			return err
		})
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, ErrOfflineNoHash // dropped since the entry was checked
	case err != nil:
		return nil, fmt.Errorf("read cached password: %w", err)
	}
	return rec, nil
}

// Forget drops user id's hash: the upstream rejected the user's password,
// or it was changed through the proxy. A Remember still computing a hash
// for the user is cancelled too, so that the old password is not stored
// after all.
func (c *Credentials) Forget(id string) error {
	return c.forget(id)
}

// ForgetDN is Forget for an identity kept by DN (RememberDN).
func (c *Credentials) ForgetDN(dn string) error {
	return c.forget(c.dnKey(dn))
}

// forget drops the hash under key and cancels the Remembers under way.
func (c *Credentials) forget(id string) error {
	c.lockWrite()
	defer c.unlockWrite()
	if in := c.inflight[id]; in != nil {
		in.voidUpTo = c.seq
		in.fp = [sha256.Size]byte{}
	}
	if _, ok := c.entries[id]; !ok {
		return nil // no write: a stream of wrong passwords costs nothing
	}
	if err := c.dropLocked([]string{id}); err != nil {
		return fmt.Errorf("forget cached password: %w", err)
	}
	return nil
}

// dropLocked deletes the hashes of users ids, from memory even when the
// store fails; c.mu must be held, taken with lockWrite.
func (c *Credentials) dropLocked(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = credentialKey(id)
		if _, ok := c.entries[id]; ok && isDNKey(id) {
			c.dns--
		}
		delete(c.entries, id)
	}
	return c.s.deleteKeys(keys)
}

// ids returns the user IDs that have a hash; c.mu must be held or c not yet
// shared.
func (c *Credentials) ids() []string {
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	return ids
}

// Len returns the number of stored hashes.
func (c *Credentials) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// sweep drops the hashes that may no longer be used: expired ones, and,
// once a sync has committed, those of users the snapshot sn no longer holds,
// holds disabled, or holds with another password marker. It also forgets
// expired throttle windows, and fingerprints older than refresh().
func (c *Credentials) sweep(sn *Snapshot) {
	now := c.now()
	type check struct {
		id     string
		entry  *credEntry // to notice a replacement
		marker string
		stored time.Time
		drop   bool
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	checks := make([]check, 0, len(c.entries))
	for id, e := range c.entries {
		checks = append(checks, check{id: id, entry: e, marker: e.marker, stored: e.storedAt})
		if e.hasFP && now.Sub(e.storedAt) >= c.refresh() {
			e.fp, e.hasFP = [sha256.Size]byte{}, false
		}
	}
	c.mu.Unlock()

	// Users are looked up without the lock: with 100,000 hashes this takes
	// tens of milliseconds, which logins should not wait for.
	n := 0
	for i := range checks {
		ch := &checks[i]
		ch.drop = c.expired(ch.stored, now)
		switch {
		case ch.drop || sn.gen == 0: // a store never synced knows no users yet
		case isDNKey(ch.id):
			// Kept until it expires, unless the DN is now a synced user's,
			// whose own hash and rules apply.
			ch.drop = sn.usersByDN.lookup(ch.id[1:]) != nil
		default:
			active, marker, ok := sn.passwordState(ch.id)
			ch.drop = !ok || !active || marker != ch.marker
		}
		if ch.drop {
			n++
		}
	}
	if n == 0 {
		return
	}
	c.lockWrite()
	defer c.unlockWrite()
	var drop []string
	for _, ch := range checks {
		// An entry replaced meanwhile by a new Remember is left to the
		// next sweep.
		if ch.drop && c.entries[ch.id] == ch.entry {
			drop = append(drop, ch.id)
		}
	}
	if err := c.dropLocked(drop); err != nil {
		c.log.Warn("credential cache: cannot drop hashes", "hashes", len(drop), "err", err)
		return
	}
	if len(drop) > 0 {
		c.log.Info("credential cache: dropped hashes expired, of users deleted, disabled or with a changed password, or of DNs now synced users",
			"hashes", len(drop), "generation", sn.gen)
	}
}

// passwordState returns what the credential cache needs of user id, without
// decoding the whole user.
func (sn *Snapshot) passwordState(id string) (active bool, marker string, ok bool) {
	r := sn.userRec(id)
	if r == nil {
		return false, "", false
	}
	d := decoder{s: r.val(sn.regions)}
	var u User
	d.userHead(&u)
	return u.IsActive, u.PasswordMarker, true
}

// sweepPeriodically sweeps for expired hashes while no sync commits.
func (c *Credentials) sweepPeriodically() {
	defer close(c.sweepDone)
	t := time.NewTicker(credentialSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.sweep(c.s.Snapshot())
		case <-c.stopSweep:
			return
		}
	}
}

// Close stops the cache: Remember calls still waiting for a hash slot give
// up, those computing finish and are stored. Call it before closing the
// Store.
func (c *Credentials) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	close(c.stopSweep)
	<-c.sweepDone
	return c.Flush(context.Background())
}

// fingerprint is an HMAC-SHA256 of user id's password under the per-process key.
// Every successful upstream bind computes one (Remember): it starts from the
// two hashes keyFingerprints prepared, not from the key (hmac.New absorbs the
// key's two blocks again, and allocates eight times, each call).
func (c *Credentials) fingerprint(id string, password []byte) [sha256.Size]byte {
	var n [binary.MaxVarintLen64]byte
	var sum, fp [sha256.Size]byte
	in := resumeHash(c.fpInner)
	in.Write(binary.AppendUvarint(n[:0], uint64(len(id))))
	io.WriteString(in, id)
	in.Write(password)
	out := resumeHash(c.fpOuter)
	out.Write(in.Sum(sum[:0]))
	out.Sum(fp[:0])
	return fp
}

// keyFingerprints prepares fpInner and fpOuter from fpKey (RFC 2104: the key,
// padded to SHA-256's block, xor ipad for the inner hash and opad for the outer).
func (c *Credentials) keyFingerprints() error {
	var ipad, opad [sha256.BlockSize]byte
	copy(ipad[:], c.fpKey[:])
	copy(opad[:], c.fpKey[:])
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	var err error
	for _, k := range []struct {
		pad   []byte
		state *[]byte
	}{{ipad[:], &c.fpInner}, {opad[:], &c.fpOuter}} {
		h := sha256.New()
		h.Write(k.pad)
		if *k.state, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return err
		}
	}
	clear(ipad[:])
	clear(opad[:])
	return nil
}

// resumeHash is a SHA-256 in the state that state marshals.
func resumeHash(state []byte) hash.Hash {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic(err) // state is what MarshalBinary gave
	}
	return h
}

// offlineResult is the result label for a Verify outcome.
func offlineResult(reason error) string {
	switch {
	case reason == nil:
		return "success"
	case errors.Is(reason, ErrOfflineWrongPassword), errors.Is(reason, ErrEmptyPassword):
		return "wrong_password"
	case errors.Is(reason, ErrOfflineNoHash):
		return "no_hash"
	case errors.Is(reason, ErrOfflineExpired):
		return "expired"
	case errors.Is(reason, ErrOfflineDisabled):
		return "disabled"
	case errors.Is(reason, ErrOfflinePasswordChanged):
		return "password_changed"
	case errors.Is(reason, ErrOfflineThrottled):
		return "throttled"
	case errors.Is(reason, ErrOfflineAccountExpired):
		return "account_expired"
	case errors.Is(reason, ErrOfflineLocked):
		return "locked"
	case errors.Is(reason, ErrOfflinePasswordExpired):
		return "password_expired"
	case errors.Is(reason, ErrOfflineMustChangePassword):
		return "must_change_password"
	}
	return "error"
}

func credentialKey(id string) []byte {
	return append([]byte(prefixCredentials), id...)
}

// dnKey is the key of the identity dn in c.entries and, after c/, in the
// store: 0x00 and dn as the store normalises DNs.
func (c *Credentials) dnKey(dn string) string {
	return "\x00" + c.s.NormalizeDN(dn)
}

// isDNKey says whether key is a dnKey rather than a user ID.
func isDNKey(key string) bool {
	return len(key) > 0 && key[0] == 0
}

// logKey is key as a log shows it.
func logKey(key string) string {
	if isDNKey(key) {
		return "dn:" + key[1:]
	}
	return key
}

// encode returns the stored form of r.
func (r *credentialRecord) encode() []byte {
	b := make([]byte, 0, 1+4+4+1+1+len(r.salt)+1+len(r.hash)+8+len(r.marker))
	b = append(b, credentialFormat)
	b = binary.BigEndian.AppendUint32(b, r.params.Time)
	b = binary.BigEndian.AppendUint32(b, r.params.MemoryKiB)
	b = append(b, r.params.Threads, byte(len(r.salt)))
	b = append(b, r.salt...)
	b = append(b, byte(len(r.hash)))
	b = append(b, r.hash...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.storedAt.UnixNano()))
	return append(b, r.marker...)
}

// decodeCredential decodes a value written by encode, refusing parameters
// out of bounds.
func decodeCredential(v []byte) (*credentialRecord, error) {
	if len(v) < 11 {
		return nil, errTruncated
	}
	if v[0] != credentialFormat {
		return nil, fmt.Errorf("unknown credential format %d", v[0])
	}
	r := &credentialRecord{params: Argon2Params{
		Time:      binary.BigEndian.Uint32(v[1:]),
		MemoryKiB: binary.BigEndian.Uint32(v[5:]),
		Threads:   v[9],
	}}
	if err := r.params.check(); err != nil {
		return nil, fmt.Errorf("argon2 parameters: %w", err)
	}
	rest := v[10:]
	field := func() []byte {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil
		}
		f := rest[1 : 1+int(rest[0])]
		rest = rest[1+int(rest[0]):]
		return f
	}
	r.salt = bytes.Clone(field())
	r.hash = bytes.Clone(field())
	if len(r.salt) == 0 || len(r.hash) == 0 || len(rest) < 8 {
		return nil, errTruncated
	}
	r.storedAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
	r.marker = string(rest[8:])
	return r, nil
}

// The credential cache accesses Badger only while no first load replaces its contents
// (Store.replacing): a write would be refused then, and a transaction would straddle the
// load's change of oracle. view and delete hold it for reading around one access; a
// change of c.mu's state that writes to Badger takes it with lockWrite, before c.mu and
// never while holding it, so that a write waiting for a load does not hold c.mu, which
// Remember takes on a bind's path (and a read lock is never taken twice, which a load
// waiting for the lock would deadlock).
func (c *Credentials) view(fn func(*badger.Txn) error) error {
	c.s.replacing.RLock()
	defer c.s.replacing.RUnlock()
	return c.s.db.View(fn)
}

// lockWrite takes Store.replacing for reading, then c.mu; unlockWrite releases both.
func (c *Credentials) lockWrite() {
	c.s.replacing.RLock()
	c.mu.Lock()
}

func (c *Credentials) unlockWrite() {
	c.mu.Unlock()
	c.s.replacing.RUnlock()
}

func (c *Credentials) delete(keys [][]byte) error {
	c.s.replacing.RLock()
	defer c.s.replacing.RUnlock()
	return c.s.deleteKeys(keys)
}
