package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// The probes run every healthInterval in these tests (upstream.health_interval); a
// change must show within one interval, plus the probe and a busy machine's delays.
const (
	healthInterval = 200 * time.Millisecond
	healthSlack    = 1300 * time.Millisecond
)

// healthConfig is the upstream section's extra lines for fast probes.
var healthConfig = fmt.Sprintf("  health_interval: %v", healthInterval)

// available reads ldapproxy_upstream_available.
func available(t testing.TB, p *proxy) (float64, bool) {
	t.Helper()
	for line := range strings.Lines(p.scrape(t)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ldapproxy_upstream_available "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err == nil
		}
	}
	return 0, false
}

// upstreamSearches is how many searches the proxy has sent to the server with the
// configured URL.
func upstreamSearches(t testing.TB, p *proxy, url string) float64 {
	t.Helper()
	v, _ := metricValue(p.scrape(t), "ldapproxy_upstream_request_duration_seconds_count", fmt.Sprintf("op=\"search\",server=%q", url))
	return v
}

func TestHealthWithoutTraffic(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	b := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL, "upstream": healthConfig}))
	waitUp(t, p, a.URL, 1, settleWithin)
	if v, ok := available(t, p); !ok || v != 1 {
		t.Fatalf("ldapproxy_upstream_available = %v, %v at start; want 1", v, ok)
	}

	// No client sends anything from here on.
	killed := time.Now()
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	waitUp(t, p, a.URL, 0, healthInterval+healthSlack)
	t.Logf("killed server down in the metrics after %v", time.Since(killed).Round(time.Millisecond))
	if v, _ := available(t, p); v != 1 {
		t.Errorf("ldapproxy_upstream_available = %v with one server up, want 1", v)
	}

	// Hung: the kernel accepts, slapd answers nothing. It goes down and stays down.
	pauseUntilHung(t, b)
	waitUp(t, p, b.URL, 0, healthInterval+3*time.Second+healthSlack) // a probe waits up to the upstream timeout (3s)
	eventually(t, healthSlack, "ldapproxy_upstream_available 0", func() bool {
		v, ok := available(t, p)
		return ok && v == 0
	})
	if code, _ := p.get(t, "/readyz"); code != 503 {
		t.Errorf("/readyz = %d with every upstream gone, want 503", code)
	}
	if !strings.Contains(p.logs.String(), "all upstream servers unreachable") {
		t.Error("no log line says that every upstream is unreachable")
	}
	for deadline := time.Now().Add(10 * healthInterval); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, _ := upstreamUp(t, p, b.URL); v != 0 {
			t.Fatal("the hung server flapped up")
		}
	}

	if err := b.Resume(); err != nil {
		t.Fatal(err)
	}
	waitUp(t, p, b.URL, 1, healthInterval+healthSlack)
	if v, _ := available(t, p); v != 1 {
		t.Errorf("ldapproxy_upstream_available = %v with a server back, want 1", v)
	}
	if code, _ := p.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d with a server back, want 200", code)
	}
	if !strings.Contains(p.logs.String(), "upstream available again") {
		t.Error("no log line says that an upstream is available again")
	}
}

// TestHealthFigure measures how long a killed upstream shows as up in the metrics, with
// no traffic, at the default health_interval (10s): LDAPPROXY_HEALTH_SAMPLES kills, each
// at a random moment of the probes' cycle, then one SIGSTOP. It runs only when that
// variable is set (each sample takes up to an interval);
// LDAPPROXY_HEALTH_INTERVAL_MS sets another interval.
func TestHealthFigure(t *testing.T) {
	samples := envInt("LDAPPROXY_HEALTH_SAMPLES", 0)
	if samples == 0 {
		t.Skip("set LDAPPROXY_HEALTH_SAMPLES to measure")
	}
	interval := time.Duration(envInt("LDAPPROXY_HEALTH_INTERVAL_MS", 10000)) * time.Millisecond
	const timeout, slack = 3 * time.Second, time.Second // the harness's upstream timeout; probe and scrape
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"upstream": fmt.Sprintf("  health_interval: %v", interval)}))
	waitUp(t, p, a.URL, 1, settleWithin)

	// downAfter polls the metric every 10ms from the moment of the failure.
	downAfter := func(within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			if v, ok := upstreamUp(t, p, a.URL); ok && v == 0 {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("ldapproxy_upstream_up still 1 %v after the failure (health_interval %v)", within, interval)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var worst time.Duration
	for i := range samples {
		time.Sleep(rand.N(interval))
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		took := downAfter(interval + slack)
		worst = max(worst, took)
		t.Logf("kill %d: down in the metrics after %v", i+1, took.Round(time.Millisecond))
		if took > interval+slack/2 {
			t.Errorf("kill %d: down after %v, more than one health interval (%v)", i+1, took, interval)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		waitUp(t, p, a.URL, 1, interval+slack)
	}
	time.Sleep(rand.N(interval))
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	defer a.Resume()
	hung := downAfter(interval + timeout + slack)
	t.Logf("health_interval %v: a killed server down after %v at most (%d kills, no traffic); a SIGSTOPped one after %v (the probe waits out timeout %v)",
		interval, worst.Round(time.Millisecond), samples, hung.Round(time.Millisecond), timeout)
}

func TestFailoverUserSessionIsBoundAgain(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	b := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL, "upstream": healthConfig}))

	// Bound once; afterwards the client only searches, as pooled application
	// connections do. Reading its own userPassword proves the upstream identity: slapd
	// shows it to the user alone.
	c := dial(t, p.URL)
	if err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if err := readOwnPassword(c, a, 1); err != nil {
		t.Fatal(err)
	}

	t.Run("server killed", func(t *testing.T) {
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := readOwnPassword(c, a, 1); err != nil {
				t.Fatalf("search %d after the server was killed: %v; want the same identity on the other server", i, err)
			}
		}
		// A request is counted once its answer has been relayed: wait for the last.
		eventually(t, settleWithin, fmt.Sprintf("3 searches counted on %s", b.URL), func() bool {
			return upstreamSearches(t, p, b.URL) == 3
		})
	})

	t.Run("idle session moves back", func(t *testing.T) {
		// The probes see the server gone first: a server back before they noticed it
		// had left would be no return to them.
		waitUp(t, p, a.URL, 0, settleWithin)
		bindsOnA := upstreamBinds(t, p, a.URL)
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		// Its return is the setup here; how soon the probes see it, TestHealthWithoutTraffic checks.
		waitUp(t, p, a.URL, 1, settleWithin)
		// With no request from the client, which sends nothing from here until it
		// searches below: the session is bound again there once the server is back.
		eventually(t, settleWithin, fmt.Sprintf("the idle session bound again on %s", a.URL), func() bool {
			return upstreamBinds(t, p, a.URL)-bindsOnA == 1
		})
		onA := upstreamSearches(t, p, a.URL)
		if err := readOwnPassword(c, a, 1); err != nil {
			t.Fatalf("search after the preferred server came back: %v", err)
		}
		eventually(t, settleWithin, fmt.Sprintf("the search counted on %s, the preferred server", a.URL), func() bool {
			return upstreamSearches(t, p, a.URL)-onA == 1
		})
	})

	t.Run("password changed meanwhile", func(t *testing.T) {
		// The password changes on the server the session will fail over to: binding
		// again there is refused, and the session is lost as before, never anonymous.
		admin := b.Conn(t)
		if err := admin.Bind(b.AdminDN, b.AdminPassword); err != nil {
			t.Fatal(err)
		}
		mod := ldap.NewModifyRequest(b.UserDN(1), nil)
		mod.Replace("userPassword", []string{"changed-password"})
		if err := admin.Modify(mod); err != nil {
			t.Fatal(err)
		}
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			err := readOwnPassword(c, a, 1)
			if resultCode(err) != ldap.LDAPResultUnavailable || !strings.Contains(err.Error(), "bind again") {
				t.Fatalf("search after the password changed: %v; want unavailable (52) saying to bind again", err)
			}
		}
		if err := c.Bind(b.UserDN(1), "changed-password"); err != nil {
			t.Fatal(err)
		}
		if err := readOwnPassword(c, b, 1); err != nil {
			t.Fatalf("search after binding with the new password: %v", err)
		}
	})
}

// TestFailoverAfterOwnPasswordChange: a session that changed its own password through
// the proxy is bound again with the new one.
func TestFailoverAfterOwnPasswordChange(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{Users: 5})
	b := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL})+"password_writeback: true\n")
	c := dial(t, p.URL)
	if err := c.Bind(a.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), "changed-password")); err != nil {
		t.Fatalf("password change through the proxy: %v", err)
	}
	// The directory's replication, as far as this test goes.
	admin := b.Conn(t)
	if err := admin.Bind(b.AdminDN, b.AdminPassword); err != nil {
		t.Fatal(err)
	}
	mod := ldap.NewModifyRequest(b.UserDN(1), nil)
	mod.Replace("userPassword", []string{"changed-password"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := readOwnPassword(c, b, 1); err != nil {
		t.Fatalf("search after the failover: %v; want the session bound again with its new password", err)
	}
}

// TestClientAccountBindEndsTheUpstreamIdentity: a session bound upstream as a user
// that binds again as a `clients:` account reads as the service account, never with the
// user's connection (or the credential kept for it).
func TestClientAccountBindEndsTheUpstreamIdentity(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(up, map[string]string{"top": clientsSection(t, "")}))
	c := dial(t, p.URL)
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if err := readOwnPassword(c, up, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(appDN, appPassword); err != nil {
		t.Fatal(err)
	}
	if err := readOwnPassword(c, up, 1); err == nil {
		t.Fatal("after binding as a client account, the session still reads with the user's upstream identity")
	}
	if err := searchSelf(c, up, 2); err != nil {
		t.Errorf("search as the client account: %v", err)
	}
}

// TestFailoverBoundSessionsUnderLoad measures what issue 9 asks of direct mode: 16
// client connections that each bound once as a user search without pause, and the
// server they are on is killed (kill -9); then it comes back, and the sessions move back
// to it. At most 0.1% of the searches may fail (before sessions kept their credential,
// about 75% did: every search after the kill).
func TestFailoverBoundSessionsUnderLoad(t *testing.T) {
	const (
		sessions = 16
		after    = 3 * time.Second // the load runs this long after the kill
		minOps   = 200             // after the kill, or the ratio says little (about 500 on a loaded 2-core machine)
	)
	a := slapdtest.New(t, slapdtest.Options{Users: sessions})
	b := slapdtest.New(t, slapdtest.Options{Users: sessions})
	p := startProxy(t, config(a, map[string]string{"urls": a.URL + "," + b.URL, "upstream": healthConfig}))

	var ok, okAfter, failed atomic.Int64
	var killed atomic.Bool
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 1; i <= sessions; i++ {
		c, err := ldap.DialURL(p.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetTimeout(10 * time.Second)
		if err := c.Bind(a.UserDN(i), slapdtest.UserPassword(i)); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Never binds again: a failure stays a failure, as for a pooled
				// application connection that bound once.
				if err := searchSelf(c, a, i); err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 10 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
				if killed.Load() {
					okAfter.Add(1)
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()

	eventually(t, settleWithin, "the load to get going", func() bool { return ok.Load() >= 200 })
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	time.Sleep(after)

	// The preferred server returns under the load: every session moves back to it.
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitUp(t, p, a.URL, 1, settleWithin)
	time.Sleep(500 * time.Millisecond)
	onA, onB := upstreamSearches(t, p, a.URL), upstreamSearches(t, p, b.URL)
	time.Sleep(time.Second)
	stopLoad()
	if n := upstreamSearches(t, p, b.URL) - onB; n != 0 {
		t.Errorf("%v searches reached the second server 0.5 s after the preferred one was back, want none", n)
	}
	if n := upstreamSearches(t, p, a.URL) - onA; n < minOps {
		t.Errorf("%v searches on the preferred server in the second after the sessions moved back, want at least %d", n, minOps)
	}

	total := ok.Load() + failed.Load()
	t.Logf("%d sessions, %d searches: %d failed (%.3f%%), %d succeeded from the kill on (%v down, then 1.5 s after the server returned)",
		sessions, total, failed.Load(), 100*float64(failed.Load())/float64(total), okAfter.Load(), after)
	for _, e := range errs {
		t.Logf("failure: %s", e)
	}
	if okAfter.Load() < minOps {
		t.Errorf("only %d searches succeeded after the kill, want at least %d", okAfter.Load(), minOps)
	}
	if failed.Load()*1000 > total {
		t.Errorf("%d of %d searches failed (%.3f%%); want at most 0.1%%", failed.Load(), total, 100*float64(failed.Load())/float64(total))
	}
}
