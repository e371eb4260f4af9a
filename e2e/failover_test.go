package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// deadURL returns an ldap:// URL on loopback where nothing listens.
func deadURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "ldap://" + addr
}

// metricValue finds the sample name{labels} in a Prometheus text scrape; labels is the
// text between the braces, in the exposition's order (sorted by label name).
func metricValue(scrape, name, labels string) (float64, bool) {
	prefix := name + "{" + labels + "} "
	for line := range strings.Lines(scrape) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// upstreamUp reads ldapproxy_upstream_up for the server with the configured URL.
func upstreamUp(t testing.TB, p *proxy, url string) (float64, bool) {
	t.Helper()
	return metricValue(p.scrape(t), "ldapproxy_upstream_up", fmt.Sprintf("server=%q", url))
}

// upstreamBinds is how many binds the proxy has sent to the server with the configured URL.
func upstreamBinds(t testing.TB, p *proxy, url string) float64 {
	t.Helper()
	v, _ := metricValue(p.scrape(t), "ldapproxy_upstream_request_duration_seconds_count", fmt.Sprintf("op=\"bind\",server=%q", url))
	return v
}

// waitUp waits until the proxy's metrics show the server at url up (1) or down (0).
func waitUp(t testing.TB, p *proxy, url string, want float64, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("ldapproxy_upstream_up{server=%q} %v", url, want), func() bool {
		v, ok := upstreamUp(t, p, url)
		return ok && v == want
	})
}

// recheckDue bounds the wait for the proxy to see a restarted server that had been down
// since downSince. The quarantine back-off doubles with each failed background re-check,
// so the next re-check is due at most about as long after the restart as the server had
// been down (plus retry_interval); twice that, and two seconds, leave room for a busy
// machine.
func recheckDue(downSince time.Time) time.Duration {
	return 2*time.Since(downSince) + 2*time.Second
}

// login is what an application does to check a password: connect, bind as user i, read
// the user's entry, close. Every step is bounded so that a hang shows as an error.
func login(proxyURL string, up *slapdtest.Server, i int) error {
	c, err := ldap.DialURL(proxyURL, ldap.DialWithDialer(&net.Dialer{Timeout: clientTimeout}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(clientTimeout)
	if err := c.Bind(up.UserDN(i), slapdtest.UserPassword(i)); err != nil {
		return fmt.Errorf("%w: %w", errBindFailed, err)
	}
	return searchSelf(c, up, i)
}

// clientTimeout bounds each step of the load's clients: longer than any upstream
// timeout of these tests, so that the proxy answers first, even when a loaded machine
// makes it wait that out.
const clientTimeout = 15 * time.Second

// errBindFailed marks a login whose bind failed. A bind is answered in one message, so
// one whose connection broke had nothing of its answer delivered and is retried, on the
// next server: a killed server must fail none.
var errBindFailed = errors.New("bind failed")

// errWrongAnswer marks a search that succeeded with the wrong entries: never acceptable.
var errWrongAnswer = errors.New("wrong search result")

// searchSelf looks user i up by uid and checks the answer.
func searchSelf(c *ldap.Conn, up *slapdtest.Server, i int) error {
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		fmt.Sprintf("(uid=%s)", slapdtest.UserName(i)), []string{"uid", "mail"}, nil))
	if err != nil {
		return err
	}
	if len(res.Entries) != 1 || res.Entries[0].DN != up.UserDN(i) {
		return fmt.Errorf("%w: search for %s returned %d entries", errWrongAnswer, slapdtest.UserName(i), len(res.Entries))
	}
	return nil
}

func TestFailoverFirstURLDead(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 10})
	dead := deadURL(t)
	p := startProxy(t, config(up, map[string]string{"urls": dead + "," + up.URL}))

	for i := 1; i <= 5; i++ {
		if err := login(p.URL, up, i); err != nil {
			t.Fatalf("login %d with the first server dead: %v", i, err)
		}
	}
	waitUp(t, p, dead, 0, 5*time.Second)
	if v, ok := upstreamUp(t, p, up.URL); !ok || v != 1 {
		t.Fatalf("ldapproxy_upstream_up{server=%q} = %v, %v; want 1", up.URL, v, ok)
	}
	if n := upstreamBinds(t, p, up.URL); n < 5 {
		t.Fatalf("%v binds reached %s, want at least 5", n, up.URL)
	}
	if code, body := p.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz with one server of two up: %d %s", code, body)
	}
}

// loadStats counts what the load against the proxy saw, split at the moment the upstream
// was killed.
type loadStats struct {
	mu          sync.Mutex
	killedAt    time.Time
	okBefore    int
	okAfter     int
	errs        []loadError
	longest     time.Duration // the slowest operation, failed or not
	longestWhat string
}

type loadError struct {
	worker     string // "login" for the short-lived sessions, else the long-lived one's name
	beforeKill bool   // it failed before the kill
	at         time.Duration
	err        error
}

// record counts one operation of worker that started at start.
func (s *loadStats) record(worker string, start time.Time, what string, err error) {
	d := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > s.longest {
		s.longest, s.longestWhat = d, what
	}
	switch {
	case err != nil:
		e := loadError{worker: worker, beforeKill: s.killedAt.IsZero(), err: fmt.Errorf("%s: %w", what, err)}
		if !e.beforeKill {
			e.at = start.Sub(s.killedAt)
		}
		s.errs = append(s.errs, e)
	case s.killedAt.IsZero() || start.Before(s.killedAt):
		s.okBefore++
	default:
		s.okAfter++
	}
}

func (s *loadStats) kill(up *slapdtest.Server) error {
	s.mu.Lock()
	s.killedAt = time.Now()
	s.mu.Unlock()
	return up.Kill()
}

func (s *loadStats) counts() (before, after int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.okBefore, s.okAfter
}

// tolerable tells an error a client may see while a server dies (the proxy's unavailable
// result, or the connection going away) from one it must never see (a wrong answer,
// invalid credentials, a protocol error).
func tolerable(err error) bool {
	code := resultCode(err)
	return !errors.Is(err, errWrongAnswer) && (code == ldap.LDAPResultUnavailable || code == ldap.ErrorNetwork)
}

// longLivedSession binds once as user i and searches again and again on one connection
// until stop is closed. After unavailable (its upstream connection was lost) it binds
// again; after a connection error it reconnects.
func longLivedSession(name string, p *proxy, up *slapdtest.Server, i int, stats *loadStats, stop <-chan struct{}) {
	var c *ldap.Conn
	bound := false
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		start := time.Now()
		if c == nil {
			var err error
			c, err = ldap.DialURL(p.URL, ldap.DialWithDialer(&net.Dialer{Timeout: clientTimeout}))
			if err != nil {
				stats.record(name, start, name+" dial", err)
				c = nil
				continue
			}
			c.SetTimeout(clientTimeout)
		}
		var err error
		what := name + " search"
		if !bound {
			what = name + " bind"
			err = c.Bind(up.UserDN(i), slapdtest.UserPassword(i))
			bound = err == nil
		}
		if err == nil {
			err = searchSelf(c, up, i)
		}
		stats.record(name, start, what, err)
		switch resultCode(err) {
		case ldap.LDAPResultUnavailable:
			bound = false
		case ldap.ErrorNetwork:
			c.Close()
			c, bound = nil, false
		}
	}
}

func TestFailoverKillUnderLoad(t *testing.T) {
	const (
		users     = 50
		workers   = 8 // each: connect, bind, search, close, again
		longLived = 2 // each: one connection, bind once, search repeatedly
		// The load runs at least this long after the kill, and until this many
		// operations have succeeded (on a busy machine that takes longer).
		after, wantAfter = 2 * time.Second, 50
		// The upstream timeout: a killed server refuses connections, so no operation
		// waits it out. It is long so that a live server slowed by a loaded machine
		// (the load here keeps both cores busy) is not taken for a hung one.
		timeout = 10 * time.Second
	)
	a := slapdtest.New(t, slapdtest.Options{Users: users})
	b := slapdtest.New(t, slapdtest.Options{Users: users})
	p := startProxy(t, strings.Replace(config(a, map[string]string{"urls": a.URL + "," + b.URL}), "timeout: 3s", "timeout: "+timeout.String(), 1))

	stats := &loadStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := 1 + rand.IntN(users)
				start := time.Now()
				stats.record("login", start, "login "+slapdtest.UserName(i), login(p.URL, a, i))
			}
		})
	}
	for n := range longLived {
		wg.Go(func() { longLivedSession(fmt.Sprintf("session %d", n), p, a, 1+n, stats, stop) })
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()

	eventually(t, settleWithin, "the load to get going", func() bool {
		before, _ := stats.counts()
		return before >= 30
	})
	if err := stats.kill(a); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 15*time.Second, fmt.Sprintf("%d successful operations after the kill", wantAfter), func() bool {
		_, n := stats.counts()
		return time.Since(killed) >= after && n >= wantAfter
	})
	stopLoad()

	t.Logf("before the kill: %d ok; after: %d ok in %v, %d errors; slowest operation %v (%s)",
		stats.okBefore, stats.okAfter, time.Since(killed).Round(time.Millisecond), len(stats.errs), stats.longest, stats.longestWhat)
	// Only the sessions that were on the killed server may fail, about once each.
	if len(stats.errs) > workers+2*longLived {
		t.Errorf("%d errors; want at most %d (one per session cut by the kill)", len(stats.errs), workers+2*longLived)
	}
	perSession := map[string]int{}
	for _, e := range stats.errs {
		perSession[e.worker]++
		switch {
		case e.beforeKill:
			t.Errorf("operation failed before the kill: %v", e.err)
		case errors.Is(e.err, errBindFailed):
			t.Errorf("a login's bind, started %v after the kill, failed: %v; its retry must go to the next server", e.at, e.err)
		case !tolerable(e.err):
			t.Errorf("operation started %v after the kill: %v; want unavailable (52) or a connection error", e.at, e.err)
		case e.at < -time.Second:
			t.Errorf("operation started %v before the kill failed: %v", -e.at, e.err)
		case e.worker == "login" && e.at > time.Second:
			// A new session started this late must not meet the dead server.
			t.Errorf("login started %v after the kill failed: %v; failover must be done by then", e.at, e.err)
		case e.worker != "login" && perSession[e.worker] > 2:
			t.Errorf("%s failed again %v after the kill: %v; after binding again it must be on the live server", e.worker, e.at, e.err)
		default:
			t.Logf("expected error, operation started %v after the kill: %v", e.at, e.err)
		}
	}
	// An operation as long as the upstream timeout waited on the dead server.
	if stats.longest >= timeout {
		t.Errorf("an operation took %v (%s); a killed server must not cost a timeout", stats.longest, stats.longestWhat)
	}
	if err := login(p.URL, a, 1); err != nil {
		t.Fatalf("login after the load: %v", err)
	}
	waitUp(t, p, a.URL, 0, 5*time.Second)

	// A comes back on the same port: the proxy notices and prefers it again.
	failures, _ := metricValue(p.scrape(t), "ldapproxy_upstream_connect_failures_total", fmt.Sprintf("server=%q", a.URL))
	t.Logf("%v failed connects to %s while it was down", failures, a.URL)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitUp(t, p, a.URL, 1, recheckDue(killed))
	onA, onB := upstreamBinds(t, p, a.URL), upstreamBinds(t, p, b.URL)
	for i := 1; i <= 5; i++ {
		if err := login(p.URL, a, i); err != nil {
			t.Fatalf("login %d after A came back: %v", i, err)
		}
	}
	if got := upstreamBinds(t, p, a.URL) - onA; got != 5 {
		t.Errorf("%v of 5 new binds went to %s, the preferred server, after it came back", got, a.URL)
	}
	if got := upstreamBinds(t, p, b.URL) - onB; got != 0 {
		t.Errorf("%v new binds went to %s although the preferred server is back", got, b.URL)
	}

	// And with B gone, nothing changes for new logins: they are on A.
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := login(p.URL, a, i); err != nil {
			t.Fatalf("login %d after B was killed: %v", i, err)
		}
	}
}

func TestFailoverAllUpstreamsDown(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	b := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL}))
	eventually(t, settleWithin, "/readyz 200", func() bool {
		code, _ := p.get(t, "/readyz")
		return code == 200
	})
	if err := login(p.URL, a, 1); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	for _, s := range []*slapdtest.Server{a, b} {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, p.URL)
	logged := len(p.logs.String())
	err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1))
	if resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("bind with every upstream down: %v, want unavailable (52)", err)
	}
	for _, url := range []string{a.URL, b.URL} {
		if !strings.Contains(err.Error(), url) {
			t.Errorf("diagnostic %q does not name %s", err, url)
		}
	}
	if took := p.loggedBindDuration(t, logged, a.UserDN(1)); took > 4*time.Second {
		t.Errorf("the refusal took %v; want less than the upstream timeout (3s) + 1s", took)
	}
	// A failed bind leaves the client anonymous, not logged in.
	if who, err := c.WhoAmI(nil); err != nil || who.AuthzID != "" {
		t.Fatalf("whoami after the failed bind = %q, %v; want anonymous", who.AuthzID, err)
	}

	eventually(t, settleWithin, "/readyz 503", func() bool {
		code, _ := p.get(t, "/readyz")
		return code == 503
	})
	if code, body := p.get(t, "/healthz"); code != 200 {
		t.Fatalf("/healthz with every upstream down: %d %s; the process is alive", code, body)
	}

	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, recheckDue(killed), "/readyz 200 after a server came back", func() bool {
		code, _ := p.get(t, "/readyz")
		return code == 200
	})
	if err := login(p.URL, a, 2); err != nil {
		t.Fatalf("login after a server came back: %v", err)
	}
}

// TestFailoverReadyAgainAfterRetries: clients keep trying while the only upstream is
// down, as applications do. Their failures must not stretch the quarantine: the back-off
// doubles with each failed re-check, so once the server is back, the background re-check
// finds it within a few retry intervals, without any client traffic (an orchestrator
// sends none to a proxy that is not ready).
func TestFailoverReadyAgainAfterRetries(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, nil))
	eventually(t, settleWithin, "/readyz 200", func() bool {
		code, _ := p.get(t, "/readyz")
		return code == 200
	})
	killed := time.Now()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c := dial(t, p.URL)
		if err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1)); resultCode(err) != ldap.LDAPResultUnavailable {
			t.Fatalf("bind %d with the upstream down: %v, want unavailable (52)", i, err)
		}
		c.Close()
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	// The server was down for well under a second: with retry_interval 200ms, the
	// re-check is due within a second. Had each failed bind doubled the back-off, it
	// would be a minute away.
	restarted := time.Now()
	eventually(t, recheckDue(killed), "/readyz 200 after the upstream came back", func() bool {
		code, _ := p.get(t, "/readyz")
		return code == 200
	})
	t.Logf("down for %v; ready again %v after the restart", restarted.Sub(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// pauseUntilHung freezes up and waits until it has really stopped answering: SIGSTOP
// takes effect asynchronously, and a request that slips in first is still answered. It
// resumes up when the test ends, before the proxy and slapd are stopped (when called
// after startProxy).
func pauseUntilHung(t testing.TB, up *slapdtest.Server) {
	t.Helper()
	if err := up.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Resume() })
	eventually(t, settleWithin, "the paused slapd to stop answering", func() bool {
		c, err := ldap.DialURL(up.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetTimeout(200 * time.Millisecond)
		return c.UnauthenticatedBind("") != nil
	})
}

func TestFailoverHangingUpstream(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, nil))
	bound := dial(t, p.URL)
	if err := bound.Bind(a.UserDN(2), slapdtest.UserPassword(2)); err != nil {
		t.Fatal(err)
	}
	if err := searchSelf(bound, a, 2); err != nil {
		t.Fatal(err)
	}

	pauseUntilHung(t, a)

	t.Run("a new bind", func(t *testing.T) {
		c := dial(t, p.URL)
		logged := len(p.logs.String())
		err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1))
		if took := p.loggedBindDuration(t, logged, a.UserDN(1)); took > 6*time.Second {
			t.Errorf("bind to a hung upstream took %v; want about the upstream timeout (3s)", took)
		}
		if resultCode(err) != ldap.LDAPResultUnavailable {
			t.Fatalf("bind to a hung upstream: %v, want unavailable (52)", err)
		}
	})

	t.Run("a search on a bound session", func(t *testing.T) {
		logged := len(p.logs.String())
		err := searchSelf(bound, a, 2)
		if took := p.loggedDuration(t, logged, fmt.Sprintf(`"op":"search","base":%q`, a.Suffix)); took > 6*time.Second {
			t.Errorf("search on a hung upstream took %v; want about the upstream timeout (3s)", took)
		}
		if resultCode(err) != ldap.LDAPResultUnavailable {
			t.Fatalf("search on a hung upstream: %v, want unavailable (52)", err)
		}
	})

	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a login after the upstream resumed", func() bool {
		return login(p.URL, a, 3) == nil
	})
}

// readOwnPassword reads the userPassword of user i through c. slapd lets only the user
// itself read it, so getting it proves that c's upstream identity is that user.
func readOwnPassword(c *ldap.Conn, up *slapdtest.Server, i int) error {
	res, err := c.Search(ldap.NewSearchRequest(up.UserDN(i), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"userPassword"}, nil))
	if err != nil {
		return err
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("userPassword") == "" {
		return fmt.Errorf("%w: the user's own userPassword is not readable: the upstream identity is not %s", errWrongAnswer, up.UserDN(i))
	}
	return nil
}

// TestFailoverLostUserSessionWithoutRebind: with upstream.rebind_on_failover off, the
// proxy keeps no credential, and a session whose upstream connection broke is lost until
// the client binds again (session_failover_test.go has the default).
func TestFailoverLostUserSessionWithoutRebind(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	b := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL, "upstream": "  rebind_on_failover: false"}))
	c := dial(t, p.URL)
	if err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if err := readOwnPassword(c, a, 1); err != nil {
		t.Fatal(err)
	}

	// wantLost checks that the session fails with a clear result, and keeps failing, rather
	// than going on with another identity.
	wantLost := func(t *testing.T) {
		t.Helper()
		for range 2 {
			err := readOwnPassword(c, a, 1)
			if resultCode(err) != ldap.LDAPResultUnavailable || !strings.Contains(err.Error(), "bind again") {
				t.Fatalf("search on a session whose upstream connection broke: %v; want unavailable (52) saying to bind again", err)
			}
		}
		if _, err := c.Compare(a.UserDN(1), "uid", slapdtest.UserName(1)); resultCode(err) != ldap.LDAPResultUnavailable {
			t.Fatalf("compare on the lost session: %v; want unavailable (52)", err)
		}
	}
	rebind := func(t *testing.T) {
		t.Helper()
		if err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1)); err != nil {
			t.Fatalf("bind again: %v", err)
		}
		if err := readOwnPassword(c, a, 1); err != nil {
			t.Fatalf("search after binding again: %v", err)
		}
	}

	t.Run("upstream restarted", func(t *testing.T) {
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		wantLost(t)
		rebind(t)
	})

	t.Run("upstream gone, another one up", func(t *testing.T) {
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		wantLost(t)
		rebind(t)
		if n := upstreamBinds(t, p, b.URL); n < 1 {
			t.Fatalf("the new bind did not go to %s", b.URL)
		}
	})
}
