package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	// Imported under another name: this package has a type named metrics.
	promns "github.com/ldapproxy/ldapproxy/metrics"
)

type testPool struct {
	*Pool
	reg  *prometheus.Registry
	logs *slapdtest.LockedBuffer
}

// newTestPool validates cfg with short test defaults and builds a pool
// that is closed when the test ends.
func newTestPool(t *testing.T, cfg Config) *testPool {
	t.Helper()
	if cfg.BaseDN == "" {
		cfg.BaseDN = testBaseDN
	}
	if cfg.Timeout == 0 {
		// Long enough for a TLS handshake with slapd on a loaded machine;
		// tests that wait for a timeout set a shorter one.
		cfg.Timeout = 5 * time.Second
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 50 * time.Millisecond
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tp := &testPool{reg: prometheus.NewRegistry(), logs: &slapdtest.LockedBuffer{}}
	// Registered as the app does, so the names are the ones Prometheus sees.
	p, err := New(cfg, slog.New(slog.NewTextHandler(tp.logs, nil)), promns.Registerer(tp.reg))
	if err != nil {
		t.Fatal(err)
	}
	tp.Pool = p
	t.Cleanup(func() {
		_ = p.Close()
		if t.Failed() {
			t.Logf("pool logs:\n%s", tp.logs)
		}
	})
	return tp
}

// metric reads one series from the pool's registry: a gauge's or a
// counter's value, or a histogram's sample count. labels are name, value
// pairs; a series never written reads 0.
func (p *testPool) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func (p *testPool) up(t *testing.T, server string) float64 {
	return p.metric(t, "ldapproxy_upstream_up", "server", server)
}

// requests is how many requests of op were sent to server, from the
// duration histogram.
func (p *testPool) requests(t *testing.T, server, op string) int {
	return int(p.metric(t, "ldapproxy_upstream_request_duration_seconds", "server", server, "op", op))
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// closedURL is an ldap:// URL on which nothing listens.
func closedURL(t *testing.T) string {
	return "ldap://127.0.0.1:" + strconv.Itoa(freePort(t))
}

// hangingServer accepts TCP connections and never answers: a hung
// directory, or a firewall that lets the handshake through.
func hangingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestDeadFirstServerFailsOverAndIsMarkedDown(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	dead := closedURL(t)
	p := newTestPool(t, Config{URLs: dead + "," + srv.URL})

	for range 3 {
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Server(); got != srv.URL {
			t.Errorf("Server() = %q, want the second URL %q", got, srv.URL)
		}
		_ = c.Close()
	}
	if got := p.up(t, dead); got != 0 {
		t.Errorf("ldapproxy_upstream_up{server=dead} = %v, want 0", got)
	}
	if got := p.up(t, srv.URL); got != 1 {
		t.Errorf("ldapproxy_upstream_up{server=live} = %v, want 1", got)
	}
	if got := p.metric(t, "ldapproxy_upstream_connect_failures_total", "server", dead); got < 1 {
		t.Errorf("connect failures of the dead server = %v, want at least 1", got)
	}
	// Re-checks keep failing in the background; the warning is for the
	// transition only.
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(p.logs.String(), "upstream server down"); n != 1 {
		t.Errorf("logged %d down warnings, want 1:\n%s", n, p.logs)
	}
	if !p.Healthy() {
		t.Error("Healthy() = false with one server up")
	}
}

func TestAllServersDownFailsFastWithErrUnavailable(t *testing.T) {
	dead1, dead2 := closedURL(t), closedURL(t)
	p := newTestPool(t, Config{URLs: dead1 + "," + dead2, Timeout: 3 * time.Second})

	start := time.Now()
	_, err := p.Dial(t.Context())
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Dial took %v on refused connections", elapsed)
	}
	if !errors.Is(err, ErrUnavailable) || !IsUnavailable(err) {
		t.Fatalf("Dial error %v does not wrap ErrUnavailable", err)
	}
	for _, want := range []string{"no upstream server reachable", dead1 + ": connect: connection refused", dead2 + ": connect: connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Dial error %q lacks %q", err, want)
		}
	}
	if p.Healthy() {
		t.Error("Healthy() = true with every server refusing")
	}
}

func TestHangingServerFailsWithinTimeout(t *testing.T) {
	// Long enough that scheduling delays on a loaded machine stay well
	// below the bounds checked (one more timeout, or half of one).
	const timeout = time.Second
	hang := hangingServer(t)

	t.Run("ldaps dial", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: "ldaps://" + hang, Timeout: timeout, InsecureSkipVerify: true})
		start := time.Now()
		_, err := p.Dial(t.Context())
		elapsed := time.Since(start)
		if !IsUnavailable(err) || !strings.Contains(err.Error(), "tls") {
			t.Errorf("Dial error = %v, want an unavailable TLS failure", err)
		}
		// Twice the timeout would mean a second wait on the same server.
		if elapsed > 2*timeout {
			t.Errorf("Dial took %v, timeout is %v", elapsed, timeout)
		}
	})
	t.Run("ldap bind", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: "ldap://" + hang, Timeout: timeout})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatalf("Dial: %v (a TCP accept is a connect)", err)
		}
		defer c.Close()
		start := time.Now()
		err = c.Bind(t.Context(), fakeUserDN, []byte(slapdtest.UserPassword(1)))
		elapsed := time.Since(start)
		if !IsUnavailable(err) {
			t.Errorf("Bind error = %v, want unavailable", err)
		}
		if elapsed > timeout+timeout/2 {
			t.Errorf("Bind took %v, timeout is %v", elapsed, timeout)
		}
	})
	t.Run("context", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: "ldap://" + hang, Timeout: 10 * time.Second})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.Bind(ctx, fakeUserDN, []byte(slapdtest.UserPassword(1)))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Bind error = %v, want the context's deadline", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Bind took %v after its context ended", elapsed)
		}
	})
}

func TestPreferredServerIsUsedAgainAfterRecheck(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: a.URL + "," + b.URL, BindDN: a.ServiceDN, BindPassword: a.ServicePassword,
	})
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if c.Server() != b.URL {
		t.Fatalf("Server() = %q with the first one stopped, want %q", c.Server(), b.URL)
	}
	if err := p.WithService(t.Context(), "test", func(*ldap.Conn) error { return nil }); err != nil {
		t.Fatal(err)
	}

	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	// Nothing but the background re-check looks at a while b answers.
	waitFor(t, "the re-check to mark the preferred server up", func() bool { return p.up(t, a.URL) == 1 })

	c, err = p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Server() != a.URL {
		t.Errorf("Server() = %q after the preferred one came back, want %q", c.Server(), a.URL)
	}
	// The idle service connection on b is not reused either.
	if err := p.WithService(t.Context(), "test", func(*ldap.Conn) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := p.requests(t, a.URL, "test"); got != 1 {
		t.Errorf("service requests on the preferred server = %d, want 1", got)
	}
}

func TestWithServiceBindsAsServiceAccountAndReuses(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword})

	var conns []*ldap.Conn
	for range 3 {
		err := p.WithService(t.Context(), "test", func(lc *ldap.Conn) error {
			conns = append(conns, lc)
			who, err := lc.WhoAmI(nil)
			if err != nil {
				return err
			}
			if who.AuthzID != "dn:"+srv.ServiceDN {
				t.Errorf("service connection is %q, want dn:%s", who.AuthzID, srv.ServiceDN)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if conns[0] != conns[1] || conns[1] != conns[2] {
		t.Error("sequential WithService calls did not reuse the idle connection")
	}
	if got := p.requests(t, srv.URL, "bind"); got != 1 {
		t.Errorf("service binds = %d, want 1", got)
	}
	if idle, inUse := p.metric(t, "ldapproxy_upstream_service_connections", "state", "idle"),
		p.metric(t, "ldapproxy_upstream_service_connections", "state", "in_use"); idle != 1 || inUse != 0 {
		t.Errorf("service connections idle=%v in_use=%v, want 1 and 0", idle, inUse)
	}
}

func TestWithServiceWrongPasswordIsAConfigError(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: "wrong-secret"})
	err := p.WithService(t.Context(), "test", func(*ldap.Conn) error {
		t.Error("fn ran without a service bind")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "service bind as "+srv.ServiceDN+": invalid credentials") {
		t.Fatalf("WithService error = %v, want a service bind invalid credentials error", err)
	}
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("error %v does not carry code 49", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(p.logs.String(), "wrong-secret") {
		t.Error("the password appears in the error or the logs")
	}
	if IsUnavailable(err) {
		t.Error("a wrong service password counts as the upstream being unavailable")
	}
}

func TestWithServiceRetriesOnceOnNetworkError(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword})

	var conns []*ldap.Conn
	err := p.WithService(t.Context(), "test", func(lc *ldap.Conn) error {
		conns = append(conns, lc)
		if len(conns) == 1 {
			_ = lc.Close() // the connection breaks under the request
			_, err := lc.WhoAmI(nil)
			return err
		}
		_, err := lc.WhoAmI(nil)
		return err
	})
	if err != nil {
		t.Fatalf("WithService = %v, want success on the retry", err)
	}
	if len(conns) != 2 || conns[0] == conns[1] {
		t.Fatalf("fn ran %d times, want twice on different connections", len(conns))
	}

	calls := 0
	err = p.WithService(t.Context(), "test", func(lc *ldap.Conn) error {
		calls++
		_, err := lc.Search(ldap.NewSearchRequest("dc=nope,dc=org", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", nil, nil))
		return err
	})
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || calls != 1 {
		t.Errorf("WithService = %v after %d calls, want noSuchObject after 1", err, calls)
	}

	calls = 0
	err = p.WithService(t.Context(), "test", func(lc *ldap.Conn) error {
		calls++
		_ = lc.Close()
		_, err := lc.WhoAmI(nil)
		return err
	})
	if !IsUnavailable(err) || calls != 2 {
		t.Errorf("WithService = %v after %d calls, want unavailable after 2", err, calls)
	}
}

func TestWithServiceFailsOverFromHungServer(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: a.URL + "," + b.URL, BindDN: a.ServiceDN, BindPassword: a.ServicePassword, Timeout: 500 * time.Millisecond,
	})
	whoami := func(lc *ldap.Conn) error {
		_, err := lc.WhoAmI(nil)
		return err
	}
	if err := p.WithService(t.Context(), "test", whoami); err != nil {
		t.Fatal(err)
	}
	pause(t, a)
	if err := p.WithService(t.Context(), "test", whoami); err != nil {
		t.Fatalf("WithService with the first server hung = %v, want success on the second", err)
	}
	if got := p.requests(t, b.URL, "test"); got != 1 {
		t.Errorf("requests on the second server = %d, want 1", got)
	}
	if got := p.up(t, a.URL); got != 0 {
		t.Errorf("hung server up = %v, want 0", got)
	}
}

func TestCheck(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	dead := closedURL(t)
	p := newTestPool(t, Config{URLs: srv.URL + "," + dead, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword})

	res := p.Check(t.Context())
	if len(res) != 2 {
		t.Fatalf("Check returned %d results, want 2", len(res))
	}
	if res[0].Server != srv.URL || res[0].Err != nil {
		t.Errorf("live server: %+v", res[0])
	}
	want := []string{"connect ok", "no tls (passwords cross the network in clear)", "service bind ok", "base DN readable"}
	if strings.Join(res[0].Steps, "|") != strings.Join(want, "|") {
		t.Errorf("steps = %q, want %q", res[0].Steps, want)
	}
	if res[1].Server != dead || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "connection refused") || len(res[1].Steps) != 0 {
		t.Errorf("dead server: %+v", res[1])
	}

	bad := newTestPool(t, Config{URLs: srv.URL, BaseDN: "dc=nope,dc=org", BindDN: srv.ServiceDN, BindPassword: "wrong-secret"})
	res = bad.Check(t.Context())
	if err := res[0].Err; err == nil || !strings.Contains(err.Error(), "invalid credentials") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("wrong password: %v", err)
	}
	anon := newTestPool(t, Config{URLs: srv.URL, BaseDN: "dc=nope,dc=org"})
	res = anon.Check(t.Context())
	if err := res[0].Err; !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || !strings.Contains(err.Error(), `read base DN "dc=nope,dc=org"`) {
		t.Errorf("missing base DN: %v", err)
	}
}

func TestClose(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	if err := p.WithService(t.Context(), "test", func(*ldap.Conn) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := p.Dial(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close = %v, want ErrClosed", err)
	}
	if got := p.metric(t, "ldapproxy_upstream_service_connections", "state", "idle"); got != 0 {
		t.Errorf("idle service connections after Close = %v", got)
	}
}

func TestAddressStaysUntilItFails(t *testing.T) {
	s := newServer(serverURL{raw: "ldap://multi.example", host: "multi.example", port: "389"}, 0, &tls.Config{}, false)
	s.addrs = []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}
	s.use("192.0.2.2")
	got, err := s.addresses(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "192.0.2.2,192.0.2.1,192.0.2.3" {
		t.Errorf("addresses = %v, want the one that worked first", got)
	}
	p := &Pool{cfg: Config{RetryInterval: time.Second, HealthInterval: time.Second}, log: slog.New(slog.DiscardHandler), m: newMetrics(nil)}
	p.markDown(s, errors.New("test"))
	if s.addrs != nil {
		t.Error("a server marked down keeps its resolved addresses; want a new lookup")
	}
}

func TestUpdateBindPassword(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: "old-secret"})
	if err := p.WithService(t.Context(), "test", func(*ldap.Conn) error { return nil }); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("with the old password: %v, want invalid credentials", err)
	}
	next := Config{URLs: srv.URL, BaseDN: testBaseDN, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword}
	if err := p.UpdateBindPassword(next); err != nil {
		t.Fatal(err)
	}
	if err := p.WithService(t.Context(), "test", func(lc *ldap.Conn) error {
		who, err := lc.WhoAmI(nil)
		if err == nil && !strings.EqualFold(who.AuthzID, "dn:"+srv.ServiceDN) {
			t.Errorf("service connection bound as %q", who.AuthzID)
		}
		return err
	}); err != nil {
		t.Fatalf("after UpdateBindPassword: %v", err)
	}
}
