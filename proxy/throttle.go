package proxy

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// Bind-failure throttling (listen.bind_failures_per_user, bind_failures_per_address,
// bind_failure_window). A client that guesses passwords through the proxy is stopped by
// the proxy: once a user, or a client address, has failed the limit within the window,
// its further binds are refused here for the rest of the window, without asking the
// upstream. So the guesses neither load the directory nor count towards its own lockout,
// which would lock the real account out of every application.
//
// A failure is an invalidCredentials answer from the upstream or a wrong password at an
// offline login. Offline logins have a limit of their own besides
// (bind.offline_failure_limit, offline_failure_window): every offline attempt of a user
// counts until one succeeds, and it is counted before the hash is checked, so that
// guesses sent in parallel cannot all pass. Both limits are the same mechanism, a
// failureTable. Binds the proxy refuses by itself (unauthenticated, disabled account,
// throttled) are not counted: they never reach the upstream. Binds already in flight when
// the limit is reached still finish upstream, so a client with C parallel connections can
// get up to C-1 guesses more than the limit.

const (
	// throttleTableSize caps the counters of each scope, so that a client spraying random
	// user names cannot grow memory without bound; a full table evicts the oldest.
	throttleTableSize = 100_000
	// throttleShards spreads the counters over locks, so that parallel binds of
	// different users do not wait for each other.
	throttleShards = 32
)

// Throttle scopes: the values of the scope label.
const (
	scopeUser    = "user"
	scopeAddress = "address"
)

// throttledDiagnostic is the diagnostic of a throttled bind. The code is
// invalidCredentials, as Active Directory answers a locked-out account.
const throttledDiagnostic = "too many failed binds; try again later"

// ThrottleMetrics counts the binds the bind-failure throttle refused.
type ThrottleMetrics struct {
	refused *prometheus.CounterVec
}

// NewThrottleMetrics registers ldapproxy_bind_throttled_total on reg.
func NewThrottleMetrics(reg prometheus.Registerer) *ThrottleMetrics {
	m := &ThrottleMetrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bind_throttled_total",
		Help: "Binds refused without asking the upstream after too many failed binds, by scope: user or address.",
	}, []string{"scope"})}
	for _, s := range []string{scopeUser, scopeAddress} {
		m.refused.WithLabelValues(s)
	}
	reg.MustRegister(m.refused)
	return m
}

func (m *ThrottleMetrics) count(scope string) {
	if m != nil {
		m.refused.WithLabelValues(scope).Inc()
	}
}

// bindThrottle counts failed binds per user and per client address and refuses binds
// over the limits. A nil *bindThrottle throttles nothing.
type bindThrottle struct {
	users   *failureTable[string]     // nil: the per-user throttle is off
	addrs   *failureTable[netip.Addr] // nil: the per-address throttle is off
	offline *failureTable[string]     // offline logins by user ID; nil: off
	exempt  []netip.Prefix            // addresses the per-address limit does not count
	metrics *ThrottleMetrics
	log     *slog.Logger
	now     func() time.Time // time.Now; tests set their own clock
}

// FailureLimit is a limit of failed logins: Limit failures within Window, counted from
// the first; a Limit of 0 turns it off.
type FailureLimit struct {
	Limit  int
	Window time.Duration
}

// newBindThrottle builds the throttle the listen section and the offline limit describe;
// nil when every limit is 0. Unset values (a section that was not validated) take the
// defaults.
func newBindThrottle(cfg ListenConfig, offline FailureLimit, m *ThrottleMetrics, log *slog.Logger) *bindThrottle {
	perUser := limitOrDefault(cfg.BindFailuresPerUser, DefaultBindFailuresPerUser)
	perAddr := limitOrDefault(cfg.BindFailuresPerAddress, DefaultBindFailuresPerAddress)
	window := cfg.BindFailureWindow
	if window <= 0 {
		window = DefaultBindFailureWindow
	}
	if perUser <= 0 && perAddr <= 0 && offline.Limit <= 0 {
		return nil
	}
	t := &bindThrottle{exempt: cfg.LimitExempt(), metrics: m, log: log, now: time.Now}
	if perUser > 0 {
		t.users = newFailureTable[string](perUser, window, throttleTableSize)
	}
	if perAddr > 0 {
		t.addrs = newFailureTable[netip.Addr](perAddr, window, throttleTableSize)
	}
	if offline.Limit > 0 && offline.Window > 0 {
		t.offline = newFailureTable[string](offline.Limit, offline.Window, throttleTableSize)
	}
	return t
}

func limitOrDefault(limit *int, def int) int {
	if limit == nil {
		return def
	}
	return *limit
}

// bindAttempt is one bind as the throttle sees it: the user and the client address it
// counts against. Its methods do nothing when the throttle is off.
type bindAttempt struct {
	t    *bindThrottle
	s    *ldapserver.Session // the client's connection, for log lines
	name string              // the bind name as the client sent it
	u    *cache.User         // the synced user it resolved to, or nil
	key  string              // the user's counter key; see userKey
	ip   netip.Addr          // invalid: the address is not counted
}

// attempt starts the throttle's view of a bind of name (resolved to u, or nil) on the
// connection s.
func (t *bindThrottle) attempt(name string, u *cache.User, s *ldapserver.Session) bindAttempt {
	if t == nil {
		return bindAttempt{}
	}
	addr := s.RemoteAddr
	a := bindAttempt{t: t, s: s, name: name, u: u}
	if t.addrs != nil {
		// An exempt address (loopback, listen.throttle_exempt) is shared by every client
		// behind it: one client's typos there must not lock the others out. Its users
		// are still counted one by one.
		if ip := ldapserver.AddrIP(addr); !slices.ContainsFunc(t.exempt, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			a.ip = ip
		}
	}
	return a
}

// refused reports whether the user or the address is throttled; a refusal is counted.
func (a *bindAttempt) refused() bool {
	if a.t == nil {
		return false
	}
	now := a.t.now()
	if a.t.users != nil && !a.t.users.empty() && a.t.users.blocked(a.userKey(), now) {
		a.t.metrics.count(scopeUser)
		logSession(a.t.log, slog.LevelDebug, a.s, "bind refused: too many failed binds of this user", "name", a.name)
		return true
	}
	if a.t.addrs != nil && a.ip.IsValid() && a.t.addrs.blocked(a.ip, now) {
		a.t.metrics.count(scopeAddress)
		logSession(a.t.log, slog.LevelDebug, a.s, "bind refused: too many failed binds from this address", "name", a.name, "address", a.ip.String())
		return true
	}
	return false
}

// failed counts a failed bind against the user and the address, and logs a lockout as
// it starts.
func (a *bindAttempt) failed() {
	if a.t == nil {
		return
	}
	now := a.t.now()
	if a.t.users != nil {
		if until, locked := a.t.users.fail(a.userKey(), now); locked {
			logSession(a.t.log, slog.LevelWarn, a.s, "bind throttle: too many failed binds of one user; its binds are refused without asking the upstream",
				"name", a.name, "user", a.userKey(), "failures", a.t.users.limit, "until", until)
		}
	}
	if a.t.addrs != nil && a.ip.IsValid() {
		if until, locked := a.t.addrs.fail(a.ip, now); locked {
			logSession(a.t.log, slog.LevelWarn, a.s, "bind throttle: too many failed binds from one client address; its binds are refused without asking the upstream",
				"address", a.ip.String(), "failures", a.t.addrs.limit, "until", until)
		}
	}
}

// succeeded clears the user's failures. The address's stay: one client logging in as
// one user must not reset what it guessed for others.
func (a *bindAttempt) succeeded() {
	if a.t == nil || a.t.users == nil || a.t.users.empty() {
		return
	}
	a.t.users.clear(a.userKey())
}

// offlineStart counts an offline login before its password is checked; it reports false,
// counting nothing, when the identity's offline logins are throttled.
func (a *bindAttempt) offlineStart() bool {
	if a.t == nil || a.t.offline == nil {
		return true
	}
	if !a.t.offline.take(a.offlineKey(), a.t.now()) {
		logSession(a.t.log, slog.LevelDebug, a.s, "offline login refused: too many failed offline logins of this user", "name", a.name)
		return false
	}
	return true
}

// offlineEnd settles what offlineStart counted: a success clears the identity's offline
// failures; an attempt that learnt nothing of the password (it gave up waiting for a
// hash slot) is taken back.
func (a *bindAttempt) offlineEnd(ok, learntNothing bool) {
	if a.t == nil || a.t.offline == nil {
		return
	}
	switch {
	case ok:
		a.t.offline.clear(a.offlineKey())
	case learntNothing:
		a.t.offline.undo(a.offlineKey())
	}
}

// offlineKey is the offline counter key: a synced user's ID (the identity its hash is
// kept by), else the user key of the name, which counts the spellings of one DN together.
func (a *bindAttempt) offlineKey() string {
	if a.u != nil {
		return "id:" + a.u.ID
	}
	return "name:" + a.userKey()
}

// userKey is the user's counter key: the normalised upstream DN when the name resolved
// through the store (so a user name, a UPN and the DN count as one user), otherwise the
// normalised bind name.
func (a *bindAttempt) userKey() string {
	if a.key == "" {
		switch {
		case a.u != nil:
			a.key = directory.NormalizeDN(a.u.DN)
		case strings.Contains(a.name, "="):
			a.key = looseDNKey(a.name)
		default:
			a.key = strings.ToLower(strings.TrimSpace(a.name))
		}
	}
	return a.key
}

// looseDNKey keys a DN the store does not know so that the spellings a directory takes
// for the same name (attribute types by OID, case, escaped or repeated spaces) count
// together: only the RDN values are kept, lower-cased, with all spaces removed. Two
// different users may share a key; over-throttling is the safe side.
func looseDNKey(name string) string {
	dn, err := ldap.ParseDN(name)
	if err != nil {
		return strings.ToLower(strings.Join(strings.Fields(name), ""))
	}
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, ava := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(strings.Join(strings.Fields(ava.Value), "")))
		}
	}
	return b.String()
}

// throttledResult is the answer to a throttled bind.
func throttledResult() *ldapserver.Result {
	return &ldapserver.Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: throttledDiagnostic}
}

// failureTable counts failures per key in fixed windows: a key's window starts with its
// first failure, and once the count reaches the limit the key is blocked until the
// window ends. Counters are forgotten when their window ends, and a full shard evicts
// its oldest counter.
type failureTable[K comparable] struct {
	limit    int
	window   time.Duration
	perShard int
	seed     maphash.Seed
	// entries counts the counters in all shards: while it is 0 (nobody failed lately),
	// a bind neither hashes nor locks.
	entries atomic.Int64
	shards  [throttleShards]failureShard[K]
}

type failureShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]*failureCount[K]
	// oldest and newest are the ends of a list of the shard's counters in the order their
	// windows started: expired counters gather at the front, and the front is what a full
	// shard evicts.
	oldest, newest *failureCount[K]
}

type failureCount[K comparable] struct {
	key        K
	n          int
	start      time.Time
	prev, next *failureCount[K] // prev is older
}

func newFailureTable[K comparable](limit int, window time.Duration, size int) *failureTable[K] {
	t := &failureTable[K]{limit: limit, window: window, perShard: max(1, size/throttleShards), seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[K]*failureCount[K])
	}
	return t
}

func (t *failureTable[K]) empty() bool { return t.entries.Load() == 0 }

func (t *failureTable[K]) shard(k K) *failureShard[K] {
	return &t.shards[maphash.Comparable(t.seed, k)%throttleShards]
}

// blocked reports whether k has reached the limit in a window that has not ended.
func (t *failureTable[K]) blocked(k K, now time.Time) bool {
	if t.empty() {
		return false
	}
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[k]
	if c == nil {
		return false
	}
	if t.expired(c, now) {
		t.remove(s, c)
		return false
	}
	return c.n >= t.limit
}

// fail counts one failure of k. locked is true for the failure that reaches the limit
// (once per lockout), with the time the lockout ends.
func (t *failureTable[K]) fail(k K, now time.Time) (until time.Time, locked bool) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return t.failLocked(s, k, now)
}

// failLocked is fail with the shard's lock held.
func (t *failureTable[K]) failLocked(s *failureShard[K], k K, now time.Time) (until time.Time, locked bool) {
	for s.oldest != nil && t.expired(s.oldest, now) {
		t.remove(s, s.oldest)
	}
	c := s.m[k]
	if c != nil && t.expired(c, now) {
		t.remove(s, c)
		c = nil
	}
	if c == nil {
		if len(s.m) >= t.perShard {
			t.remove(s, s.oldest)
		}
		c = &failureCount[K]{key: k, start: now, prev: s.newest}
		if s.newest != nil {
			s.newest.next = c
		} else {
			s.oldest = c
		}
		s.newest = c
		s.m[k] = c
		t.entries.Add(1)
	}
	c.n++
	return c.start.Add(t.window), c.n == t.limit
}

// take counts one attempt of k unless k is blocked, in one step, so that attempts made
// in parallel cannot all pass; it reports whether k was allowed.
func (t *failureTable[K]) take(k K, now time.Time) bool {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[k]; c != nil && !t.expired(c, now) && c.n >= t.limit {
		return false
	}
	t.failLocked(s, k, now)
	return true
}

// undo takes back one failure of k.
func (t *failureTable[K]) undo(k K) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[k]; c != nil {
		if c.n--; c.n <= 0 {
			t.remove(s, c)
		}
	}
}

// clear forgets k's failures.
func (t *failureTable[K]) clear(k K) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.m[k]; c != nil {
		t.remove(s, c)
	}
}

func (t *failureTable[K]) expired(c *failureCount[K], now time.Time) bool {
	return now.Sub(c.start) >= t.window
}

// remove unlinks c from its shard; the shard's lock is held.
func (t *failureTable[K]) remove(s *failureShard[K], c *failureCount[K]) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		s.oldest = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		s.newest = c.prev
	}
	c.prev, c.next = nil, nil
	delete(s.m, c.key)
	t.entries.Add(-1)
}
