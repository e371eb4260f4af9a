package proxy

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/metrics"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testThrottle is a throttle with the given limits, a hand-moved clock, a registry for
// its metric and a buffer for its log.
func testThrottle(t *testing.T, perUser, perAddr int, window time.Duration) (*bindThrottle, *testClock, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	th := newBindThrottle(ListenConfig{BindFailuresPerUser: &perUser, BindFailuresPerAddress: &perAddr, BindFailureWindow: window}, FailureLimit{}, NewThrottleMetrics(metrics.Registerer(reg)), log)
	if th == nil {
		t.Fatal("no throttle built")
	}
	clock := newTestClock()
	th.now = clock.Now
	return th, clock, reg, logs
}

func tcpAddr(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// sessionFrom is a client connection from addr.
func sessionFrom(addr net.Addr) *ldapserver.Session { return &ldapserver.Session{RemoteAddr: addr} }

// pipeAddr is the address of a net.Pipe connection: no IP.
type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// bindOnce runs one bind through the throttle as the handler does: refused, or answered
// with ok (success) or a failure.
func bindOnce(th *bindThrottle, name string, u *cache.User, addr net.Addr, ok bool) (refused bool) {
	a := th.attempt(name, u, sessionFrom(addr))
	if a.refused() {
		return true
	}
	if ok {
		a.succeeded()
	} else {
		a.failed()
	}
	return false
}

// throttled reads ldapproxy_bind_throttled_total{scope}.
func throttled(t *testing.T, reg *prometheus.Registry, scope string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ldapproxy_bind_throttled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == scope {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no ldapproxy_bind_throttled_total{scope=%q}", scope)
	return 0
}

func TestThrottleUserLimitAndWindow(t *testing.T) {
	th, clock, reg, logs := testThrottle(t, 3, 0, time.Minute)
	client := tcpAddr("192.0.2.1:40000")
	const alice = "uid=alice,ou=people,dc=example,dc=org"
	for i := range 3 {
		if bindOnce(th, alice, nil, client, false) {
			t.Fatalf("failure %d refused before the limit", i+1)
		}
		clock.Advance(time.Second)
	}
	// The right password too: the throttle is checked before the upstream is asked.
	if !bindOnce(th, alice, nil, client, true) {
		t.Fatal("bind after 3 failures not refused")
	}
	// The same DN written differently is the same user.
	if !bindOnce(th, "UID=Alice, OU=People,DC=Example,DC=Org", nil, client, true) {
		t.Fatal("the same DN in another spelling escaped the throttle")
	}
	if bindOnce(th, "uid=bob,ou=people,dc=example,dc=org", nil, client, true) {
		t.Fatal("another user refused")
	}
	if got := throttled(t, reg, scopeUser); got != 2 {
		t.Fatalf("throttled{scope=user} = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "too many failed binds of one user"); n != 1 {
		t.Fatalf("lockout logged %d times, want once:\n%s", n, logs)
	}
	// The window started with the first failure, 3 s ago.
	clock.Advance(time.Minute - 3*time.Second - time.Nanosecond)
	if !bindOnce(th, alice, nil, client, true) {
		t.Fatal("refusal ended before the window")
	}
	clock.Advance(time.Nanosecond)
	if bindOnce(th, alice, nil, client, true) {
		t.Fatal("still refused after the window")
	}
	if th.users.entries.Load() != 0 {
		t.Fatalf("counters after the success: %d, want 0", th.users.entries.Load())
	}
}

func TestThrottleSuccessClearsUserNotAddress(t *testing.T) {
	th, _, _, _ := testThrottle(t, 3, 7, time.Minute)
	client := tcpAddr("[2001:db8::7]:40000")
	for round := range 3 {
		for range 2 {
			if bindOnce(th, "carol", nil, client, false) {
				t.Fatalf("round %d: refused", round)
			}
		}
		if bindOnce(th, "carol", nil, client, true) {
			t.Fatalf("round %d: success refused", round)
		}
	}
	// Six failures from the address, one more by another user: the address's limit of 7.
	bindOnce(th, "dave", nil, client, false)
	if !bindOnce(th, "dave", nil, client, true) {
		t.Fatal("the address's failures were cleared by the user's successes")
	}
}

func TestThrottleAddressLimit(t *testing.T) {
	th, clock, reg, logs := testThrottle(t, 3, 5, time.Minute)
	v4 := tcpAddr("192.0.2.1:40000")
	for i := range 5 {
		if bindOnce(th, fmt.Sprintf("user%d", i), nil, v4, false) {
			t.Fatalf("failure %d refused", i+1)
		}
	}
	tests := []struct {
		name    string
		addr    net.Addr
		refused bool
	}{
		{"same address, another port", tcpAddr("192.0.2.1:40001"), true},
		{"same address as IPv4-mapped IPv6", tcpAddr("[::ffff:192.0.2.1]:40002"), true},
		{"another IPv4 address", tcpAddr("192.0.2.2:40000"), false},
		{"an IPv6 address", tcpAddr("[2001:db8::1]:40000"), false},
		{"an address that is not IP (pipe)", pipeAddr{}, false},
		{"no address", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bindOnce(th, "erin", nil, tt.addr, true); got != tt.refused {
				t.Fatalf("refused = %v, want %v", got, tt.refused)
			}
		})
	}
	if got := throttled(t, reg, scopeAddress); got != 2 {
		t.Fatalf("throttled{scope=address} = %v, want 2", got)
	}
	if !strings.Contains(logs.String(), "address=192.0.2.1") {
		t.Fatalf("lockout log does not name the address:\n%s", logs)
	}
	clock.Advance(time.Minute)
	if bindOnce(th, "erin", nil, v4, true) {
		t.Fatal("address still refused after the window")
	}
}

func TestThrottleIPv6Limit(t *testing.T) {
	th, _, _, _ := testThrottle(t, 0, 2, time.Minute)
	a, b := tcpAddr("[2001:db8::1]:1"), tcpAddr("[2001:db8::2]:1")
	bindOnce(th, "u1", nil, a, false)
	bindOnce(th, "u2", nil, a, false)
	if !bindOnce(th, "u3", nil, a, true) {
		t.Fatal("IPv6 address over its limit not refused")
	}
	if bindOnce(th, "u3", nil, b, true) {
		t.Fatal("another IPv6 address refused")
	}
}

func TestThrottleResolvedUserKey(t *testing.T) {
	th, _, _, _ := testThrottle(t, 2, 0, time.Minute)
	u := &cache.User{DN: "uid=frank,ou=people,dc=example,dc=org"}
	client := tcpAddr("192.0.2.1:1")
	// A user name, a UPN and the DN that resolve to the same user count together.
	bindOnce(th, "frank", u, client, false)
	bindOnce(th, "frank@example.org", u, client, false)
	if !bindOnce(th, "UID=frank,OU=people,DC=example,DC=org", u, client, true) {
		t.Fatal("the names of one resolved user counted apart")
	}
	// Unresolved names are keyed by the name, case-insensitively.
	bindOnce(th, "Grace", nil, client, false)
	bindOnce(th, " grace ", nil, client, false)
	if !bindOnce(th, "GRACE", nil, client, true) {
		t.Fatal("an unresolved name in another case escaped the throttle")
	}
}

func TestThrottleOff(t *testing.T) {
	if th := newBindThrottle(ListenConfig{BindFailuresPerUser: new(0), BindFailuresPerAddress: new(0)}, FailureLimit{}, nil, slog.New(slog.DiscardHandler)); th != nil {
		t.Fatal("a throttle built with both limits 0")
	}
	var off *bindThrottle
	a := off.attempt("x", nil, sessionFrom(tcpAddr("192.0.2.1:1")))
	for range 100 {
		a.failed()
	}
	if a.refused() {
		t.Fatal("a nil throttle refused")
	}
	// One scope off, the other on.
	th, _, _, _ := testThrottle(t, 0, 2, time.Minute)
	if th.users != nil {
		t.Fatal("per-user throttle built with limit 0")
	}
	bindOnce(th, "x", nil, tcpAddr("192.0.2.1:1"), false)
	bindOnce(th, "x", nil, tcpAddr("192.0.2.1:1"), false)
	if !bindOnce(th, "y", nil, tcpAddr("192.0.2.1:1"), true) {
		t.Fatal("the per-address throttle did not work with the per-user one off")
	}
	// Unset limits (a section that was not validated) are the defaults.
	def := newBindThrottle(ListenConfig{}, FailureLimit{}, nil, slog.New(slog.DiscardHandler))
	if def.users.limit != DefaultBindFailuresPerUser || def.addrs.limit != DefaultBindFailuresPerAddress || def.users.window != DefaultBindFailureWindow {
		t.Fatalf("unset limits: user %d, address %d, window %v", def.users.limit, def.addrs.limit, def.users.window)
	}
}

func TestFailureTableEviction(t *testing.T) {
	const size = 4 * throttleShards
	ft := newFailureTable[string](1, time.Minute, size)
	now := newTestClock().Now()
	// A client spraying random names: the table never holds more than its size.
	for i := range 100 * size {
		ft.fail(fmt.Sprintf("sprayed-%d", i), now.Add(time.Duration(i)))
		if n := ft.entries.Load(); n > size {
			t.Fatalf("after %d names: %d counters, cap %d", i+1, n, size)
		}
	}
	counted := 0
	for i := range ft.shards {
		s := &ft.shards[i]
		counted += len(s.m)
		if len(s.m) > ft.perShard {
			t.Fatalf("shard %d holds %d counters, cap %d", i, len(s.m), ft.perShard)
		}
		// The list holds what the map holds, oldest first.
		n := 0
		for c := s.oldest; c != nil; c = c.next {
			if c.next != nil && c.next.start.Before(c.start) {
				t.Fatalf("shard %d: list out of order", i)
			}
			if s.m[c.key] != c {
				t.Fatalf("shard %d: listed counter %q not in the map", i, c.key)
			}
			n++
		}
		if n != len(s.m) {
			t.Fatalf("shard %d: list %d, map %d", i, n, len(s.m))
		}
	}
	if int64(counted) != ft.entries.Load() {
		t.Fatalf("entries %d, shards hold %d", ft.entries.Load(), counted)
	}
	// The newest names are kept, the oldest evicted.
	last := fmt.Sprintf("sprayed-%d", 100*size-1)
	if !ft.blocked(last, now.Add(100*size)) {
		t.Fatal("the newest counter was evicted")
	}
	if ft.blocked("sprayed-0", now.Add(100*size)) {
		t.Fatal("the oldest counter was kept")
	}
	// Expired counters go when their shard is next written to.
	later := now.Add(time.Hour)
	for i := range 10 * size {
		ft.fail(fmt.Sprintf("later-%d", i), later)
	}
	for i := range ft.shards {
		for c := ft.shards[i].oldest; c != nil; c = c.next {
			if strings.HasPrefix(c.key, "sprayed-") {
				t.Fatalf("expired counter %q kept", c.key)
			}
		}
	}
}

func TestValidateBindThrottle(t *testing.T) {
	c := ListenConfig{LDAP: "127.0.0.1:0"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if *c.BindFailuresPerUser != 10 || *c.BindFailuresPerAddress != 100 || c.BindFailureWindow != 5*time.Minute {
		t.Fatalf("defaults: %d, %d, %v", *c.BindFailuresPerUser, *c.BindFailuresPerAddress, c.BindFailureWindow)
	}
	off := ListenConfig{LDAP: "127.0.0.1:0", BindFailuresPerUser: new(0), BindFailuresPerAddress: new(0)}
	if err := off.Validate(); err != nil {
		t.Fatal(err)
	}
	if *off.BindFailuresPerUser != 0 || *off.BindFailuresPerAddress != 0 {
		t.Fatal("an explicit 0 was replaced by the default")
	}
	for _, tt := range []struct {
		c    ListenConfig
		want string
	}{
		{ListenConfig{LDAP: "127.0.0.1:0", BindFailuresPerUser: new(-1)}, "bind_failures_per_user: must not be negative"},
		{ListenConfig{LDAP: "127.0.0.1:0", BindFailuresPerAddress: new(-1)}, "bind_failures_per_address: must not be negative"},
		{ListenConfig{LDAP: "127.0.0.1:0", BindFailureWindow: -time.Second}, "bind_failure_window: must not be negative"},
	} {
		if err := tt.c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
}

// TestThrottledBindSkipsUpstream runs the bind handler in front of slapd: after the
// limit, even the right password is refused, and the upstream sees no further bind.
func TestThrottledBindSkipsUpstream(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 3, Groups: -1})
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	pool, err := upstream.New(upstream.Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword, BaseDN: srv.Suffix, Timeout: 5 * time.Second}, log, metrics.Registerer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	th, clock, _, _ := testThrottle(t, 3, 0, time.Minute)
	h := &binder{pool: pool, names: &resolver{}, log: log, passwords: &passwordCaches{log: log}, throttle: th}
	front := &ldapserver.Server{Handler: ldapserver.HandlerFunc(h.bind), ConnContext: withClient, Logger: log}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	t.Cleanup(func() { front.Close() })
	addr := ln.Addr().String()
	c := dialLDAP(t, addr)

	bind := func(i int, password string) error { return c.Bind(srv.UserDN(i), password) }
	for range 3 {
		if code := ldapCode(bind(1, "wrong")); code != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("wrong password: %d", code)
		}
	}
	waitUpstreamBinds(t, reg, 3)
	err = bind(1, slapdtest.UserPassword(1))
	if code := ldapCode(err); code != ldap.LDAPResultInvalidCredentials || !strings.Contains(err.Error(), throttledDiagnostic) {
		t.Fatalf("right password after 3 failures: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
	// Another user is not throttled. Its bind is the fourth upstream, not the fifth.
	if err := bind(2, slapdtest.UserPassword(2)); err != nil {
		t.Fatalf("another user: %v", err)
	}
	waitUpstreamBinds(t, reg, 4)
	clock.Advance(time.Minute)
	if err := bind(1, slapdtest.UserPassword(1)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// waitUpstreamBinds waits until the pool has sent want binds upstream (it counts a bind
// just after relaying its answer) and fails if it sent more.
func waitUpstreamBinds(t *testing.T, reg *prometheus.Registry, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := upstreamBinds(t, reg)
	for n < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = upstreamBinds(t, reg)
	}
	if n == want {
		time.Sleep(20 * time.Millisecond) // a bind counted late would show by now
		n = upstreamBinds(t, reg)
	}
	if n != want {
		t.Fatalf("upstream binds: %d, want %d", n, want)
	}
}

// upstreamBinds is how many binds the pool sent upstream.
func upstreamBinds(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "ldapproxy_upstream_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" && l.GetValue() == "bind" {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

// BenchmarkThrottleSuccessfulBind is what the throttle adds to a successful bind, with
// parallel binds of many users from a few addresses: with nothing counted (the usual
// case), and with failures of other users and the same addresses counted.
func BenchmarkThrottleSuccessfulBind(b *testing.B) {
	users := make([]*cache.User, 10_000)
	for i := range users {
		users[i] = &cache.User{DN: fmt.Sprintf("uid=user%05d,ou=people,dc=example,dc=org", i)}
	}
	addrs := make([]net.Addr, 16)
	sessions := make([]*ldapserver.Session, len(addrs))
	for i := range addrs {
		addrs[i] = tcpAddr(fmt.Sprintf("10.0.0.%d:4000", i+1))
		sessions[i] = sessionFrom(addrs[i])
	}
	run := func(b *testing.B, th *bindThrottle) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				u := users[i%len(users)]
				a := th.attempt("name", u, sessions[i%len(sessions)])
				if a.refused() {
					b.Fatal("refused")
				}
				a.succeeded()
			}
		})
	}
	newThrottle := func() *bindThrottle {
		return newBindThrottle(ListenConfig{}, FailureLimit{}, NewThrottleMetrics(metrics.Registerer(prometheus.NewRegistry())), slog.New(slog.DiscardHandler))
	}
	b.Run("off", func(b *testing.B) { run(b, nil) })
	b.Run("nothing-counted", func(b *testing.B) { run(b, newThrottle()) })
	b.Run("failures-counted", func(b *testing.B) {
		th := newThrottle()
		now := time.Now()
		for i := range 50_000 {
			th.users.fail(fmt.Sprintf("uid=other%d,ou=people,dc=example,dc=org", i), now)
		}
		for _, a := range addrs {
			th.addrs.fail(ldapserver.AddrIP(a), now) // below the limit
		}
		run(b, th)
	})
}

func TestLooseDNKeyJoinsSpellings(t *testing.T) {
	base := looseDNKey("uid=user0001,ou=people,dc=example,dc=org")
	for _, v := range []string{
		`UID=user0001\20,ou=people,dc=example,dc=org`,
		`uid=user0001\20\20\20,OU=People,DC=Example,DC=org`,
		"0.9.2342.19200300.100.1.1=user0001,ou=people,dc=example,dc=org",
		"uid = user0001 , ou=people,dc=example,dc=org",
	} {
		if got := looseDNKey(v); got != base {
			t.Errorf("looseDNKey(%q) = %q, want %q", v, got, base)
		}
	}
	if looseDNKey("uid=user0002,ou=people,dc=example,dc=org") == base {
		t.Error("two different users share a key")
	}
}

// TestOfflineFailureLimit: offline logins of a user count until one succeeds, per user;
// once the limit is reached the user is refused until the window ends; guesses sent at
// once cannot pass the limit together; an attempt that learnt nothing is taken back.
func TestOfflineFailureLimit(t *testing.T) {
	clock := newTestClock()
	th := newBindThrottle(ListenConfig{BindFailuresPerUser: new(0), BindFailuresPerAddress: new(0)},
		FailureLimit{Limit: 3, Window: 10 * time.Minute}, nil, slog.New(slog.DiscardHandler))
	th.now = clock.Now
	alice, bob := &cache.User{ID: "alice"}, &cache.User{ID: "bob"}
	try := func(u *cache.User, ok bool) bool {
		a := th.attempt(u.ID, u, sessionFrom(nil))
		if !a.offlineStart() {
			return false
		}
		a.offlineEnd(ok, false)
		return true
	}
	// A success clears the failures before it.
	try(alice, false)
	try(alice, false)
	try(alice, true)
	for i := range 3 {
		if !try(alice, false) {
			t.Fatalf("attempt %d refused before the limit", i+1)
		}
	}
	if try(alice, true) {
		t.Fatal("the right password passed after 3 failures")
	}
	if !try(bob, true) {
		t.Fatal("another user was throttled")
	}
	clock.Advance(9 * time.Minute)
	if try(alice, true) {
		t.Fatal("throttle ended before its window")
	}
	clock.Advance(time.Minute)
	if !try(alice, true) {
		t.Fatal("throttle outlived its window")
	}

	// An attempt that learnt nothing of the password does not count.
	carol := &cache.User{ID: "carol"}
	for range 5 {
		a := th.attempt(carol.ID, carol, sessionFrom(nil))
		if !a.offlineStart() {
			t.Fatal("attempts that learnt nothing were counted")
		}
		a.offlineEnd(false, true)
	}

	// Guesses sent at once: no more than the limit get past the check.
	dave := &cache.User{ID: "dave"}
	var passed atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			a := th.attempt(dave.ID, dave, sessionFrom(nil))
			if a.offlineStart() {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := passed.Load(); n != 3 {
		t.Errorf("%d parallel guesses got past the limit, want 3", n)
	}

	// An identity that is no synced user counts by its DN, in every spelling, apart
	// from other DNs.
	svc := func(name string, ok bool) bool {
		a := th.attempt(name, nil, sessionFrom(nil))
		if !a.offlineStart() {
			return false
		}
		a.offlineEnd(ok, false)
		return true
	}
	for _, name := range []string{"cn=svc-a,ou=services,dc=example,dc=org", "CN=svc-a, ou=Services,dc=example,dc=org", "cn=SVC-A,ou=services,dc=example,dc=org"} {
		if !svc(name, false) {
			t.Fatalf("%s refused before the limit", name)
		}
	}
	if svc("cn=svc-a,ou=services,dc=example,dc=org", true) {
		t.Fatal("a DN identity passed after 3 failures in several spellings")
	}
	if !svc("cn=svc-b,ou=services,dc=example,dc=org", true) {
		t.Fatal("another DN identity was throttled")
	}
}

// TestThrottleSparesSharedAddresses replays the sidecar case: one application behind
// 127.0.0.1 sends 100 failed binds, 10 for one user and one each for 90 others. Only the
// user who failed 10 times is refused; everyone else behind the address, the service
// account included, still binds. The same holds for a listen.throttle_exempt network,
// and an address outside them is still limited.
func TestThrottleSparesSharedAddresses(t *testing.T) {
	perUser, perAddr := 10, 100
	th := newBindThrottle(ListenConfig{BindFailuresPerUser: &perUser, BindFailuresPerAddress: &perAddr,
		BindFailureWindow: time.Minute, ThrottleExempt: []string{"10.0.0.0/8", "2001:db8:1::/48"}},
		FailureLimit{}, nil, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		addr    string
		limited bool
	}{
		{"127.0.0.1:40000", false},
		{"127.3.4.5:40000", false},
		{"[::1]:40000", false},
		{"[::ffff:127.0.0.1]:40000", false},
		{"10.20.30.40:40000", false},
		{"[2001:db8:1::9]:40000", false},
		{"192.0.2.1:40000", true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			client := tcpAddr(tc.addr)
			user := func(i int) string { return fmt.Sprintf("uid=u%d-%s,ou=people,dc=example,dc=org", i, tc.addr) }
			for range 10 {
				bindOnce(th, user(0), nil, client, false)
			}
			for i := 1; i <= 90; i++ {
				bindOnce(th, user(i), nil, client, false)
			}
			if !bindOnce(th, user(0), nil, client, true) {
				t.Fatal("the user who failed 10 times is not refused")
			}
			innocent := 0 // users with a right password refused
			for i := 1; i <= 90; i++ {
				if bindOnce(th, user(i), nil, client, true) {
					innocent++
				}
			}
			if bindOnce(th, "cn=svc-"+tc.addr+",ou=services,dc=example,dc=org", nil, client, true) {
				innocent++
			}
			t.Logf("after 100 failed binds from %s (10 for one user, 1 each for 90 others): %d of 91 binds with the right password from it refused",
				tc.addr, innocent)
			switch {
			case tc.limited && innocent != 91:
				t.Fatalf("an unexempt address over its limit: %d of 91 binds refused, want all", innocent)
			case !tc.limited && innocent != 0:
				t.Fatalf("%d users with the right password refused behind a shared address", innocent)
			}
		})
	}
}

func TestValidateListenLimits(t *testing.T) {
	c := ListenConfig{LDAP: "127.0.0.1:0", ProxyProtocol: true, ProxyProtocolFrom: []string{"10.0.0.0/8", "192.0.2.7"},
		ThrottleExempt: []string{"::1", "fd00::/8"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageSizeAnonymous != 256<<10 || c.MaxPartialRequestBytes != 16<<20 || *c.MaxConnectionsPerAddress != 1000 {
		t.Fatalf("defaults: %d, %d, %d", c.MaxMessageSizeAnonymous, c.MaxPartialRequestBytes, *c.MaxConnectionsPerAddress)
	}
	if got := fmt.Sprint(c.ProxyProtocolPeers()); got != "[10.0.0.0/8 192.0.2.7/32]" {
		t.Fatalf("proxy_protocol_from: %s", got)
	}
	if got := fmt.Sprint(c.LimitExempt()); got != "[127.0.0.0/8 ::1/128 ::1/128 fd00::/8]" {
		t.Fatalf("exempt: %s", got)
	}
	for _, tt := range []struct {
		c    ListenConfig
		want string
	}{
		{ListenConfig{LDAP: "127.0.0.1:0", ProxyProtocol: true}, "proxy_protocol_from: required"},
		{ListenConfig{LDAP: "127.0.0.1:0", ProxyProtocolFrom: []string{"10.0.0.0/8"}}, "proxy_protocol is false"},
		{ListenConfig{LDAP: "127.0.0.1:0", ThrottleExempt: []string{"10.0.0.0/33"}}, `throttle_exempt: "10.0.0.0/33" is not a CIDR`},
		{ListenConfig{LDAP: "127.0.0.1:0", MaxMessageSize: 4096, MaxMessageSizeAnonymous: 8192}, "max_message_size_anonymous: 8192 is more than max_message_size"},
		{ListenConfig{LDAP: "127.0.0.1:0", MaxConnectionsPerAddress: new(-1)}, "max_connections_per_address: must not be negative"},
	} {
		if err := tt.c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.c, err, tt.want)
		}
	}
}
