package upstream

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// The probes run every healthInterval in these tests; a change must show within one
// interval, plus the probe itself and scheduling on a loaded machine.
const (
	healthInterval = 200 * time.Millisecond
	healthSlack    = 800 * time.Millisecond
)

// waitWithin polls cond every 10ms for at most d and reports how long it took.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestProbeFollowsServersWithoutTraffic(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: a.URL + "," + b.URL, BindDN: a.ServiceDN, BindPassword: a.ServicePassword,
		HealthInterval: healthInterval, RetryInterval: time.Minute,
	})
	available := func() float64 { return p.metric(t, "ldapproxy_upstream_available") }
	if p.up(t, a.URL) != 1 || p.up(t, b.URL) != 1 || available() != 1 {
		t.Fatal("servers not up at start")
	}

	// No request is sent from here on: only the probes can tell.
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	took := waitWithin(t, healthInterval+healthSlack, "a killed server marked down", func() bool { return p.up(t, a.URL) == 0 })
	t.Logf("killed server marked down after %v (health interval %v)", took, healthInterval)
	if available() != 1 || !p.Healthy() {
		t.Error("upstream not available with the second server up")
	}

	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, healthInterval+healthSlack, "the last server marked down", func() bool { return p.up(t, b.URL) == 0 })
	if available() != 0 || p.Healthy() {
		t.Errorf("ldapproxy_upstream_available = %v with every server dead, want 0", available())
	}
	if n := strings.Count(p.logs.String(), "all upstream servers unreachable"); n != 1 {
		t.Errorf("logged %d times that every server is unreachable, want once:\n%s", n, p.logs)
	}

	// A back-off of a minute (retry_interval) does not keep a returning server out
	// longer than a health interval.
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	took = waitWithin(t, healthInterval+healthSlack, "a restarted server marked up", func() bool { return p.up(t, b.URL) == 1 })
	t.Logf("restarted server marked up after %v", took)
	if available() != 1 {
		t.Errorf("ldapproxy_upstream_available = %v with a server back, want 1", available())
	}
	if !strings.Contains(p.logs.String(), "upstream available again") {
		t.Errorf("no log line says the upstream is available again:\n%s", p.logs)
	}
	if p.up(t, a.URL) != 0 {
		t.Error("the server still dead is up")
	}
}

func TestProbeKeepsHungServerDown(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: a.URL, BindDN: a.ServiceDN, BindPassword: a.ServicePassword,
		HealthInterval: healthInterval, Timeout: timeout, RetryInterval: 50 * time.Millisecond,
	})
	pause(t, a)
	waitWithin(t, healthInterval+timeout+healthSlack, "a hung server marked down", func() bool { return p.up(t, a.URL) == 0 })

	// Its kernel still accepts connections: neither the probes nor a client's connect
	// may count that as the server being back.
	deadline := time.Now().Add(10 * healthInterval)
	for time.Now().Before(deadline) {
		if c, err := p.Dial(t.Context()); err == nil {
			_ = c.Close()
		}
		if p.up(t, a.URL) != 0 || p.Healthy() {
			t.Fatal("a hung server was marked up again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(p.logs.String(), "upstream server up"); n != 0 {
		t.Errorf("the hung server flapped up %d times:\n%s", n, p.logs)
	}

	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, healthInterval+timeout+healthSlack, "a resumed server marked up", func() bool { return p.up(t, a.URL) == 1 })
}

func TestProbeCountsRefusedServiceBindAsAnswer(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: a.URL, BindDN: a.ServiceDN, BindPassword: "wrong-secret", HealthInterval: healthInterval,
	})
	time.Sleep(3 * healthInterval)
	if p.up(t, a.URL) != 1 {
		t.Errorf("a server that answers the service bind with invalidCredentials is down:\n%s", p.logs)
	}
	if strings.Contains(p.logs.String(), "wrong-secret") {
		t.Error("the service password reached the log")
	}
}

// A server that stopped answering (hung: its port still accepts) is not dialled as a last
// resort while it is down: every request would wait out the timeout on it. A dead one
// (refusing connections) still is, since that costs nothing and finds it back at once.
func TestSilentServerIsNotDialledAsALastResort(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{
		URLs: up.URL, BindDN: up.ServiceDN, BindPassword: up.ServicePassword,
		Timeout: time.Second, HealthInterval: healthInterval, RetryInterval: time.Minute,
	})
	if err := up.Pause(); err != nil {
		t.Fatal(err)
	}
	defer up.Resume()
	waitWithin(t, healthInterval+time.Second+healthSlack, "the hung server marked down", func() bool { return p.up(t, up.URL) == 0 })
	start := time.Now()
	c, err := p.DialService(t.Context())
	if err == nil {
		c.Close()
		t.Fatal("a session was opened on a hung server")
	}
	if took := time.Since(start); !IsUnavailable(err) || took > 300*time.Millisecond {
		t.Fatalf("dial with the only server hung: %v after %v; want unavailable at once", err, took)
	}
	if !strings.Contains(err.Error(), "not answering") {
		t.Errorf("error %q does not say the server is not answering", err)
	}
	// Once it answers again, its probe brings it back.
	if err := up.Resume(); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, healthInterval+time.Second+healthSlack, "the server back up", func() bool { return p.up(t, up.URL) == 1 })
	c, err = p.DialService(t.Context())
	if err != nil {
		t.Fatalf("dial after the server answers again: %v", err)
	}
	c.Close()
}

// go-ldap's own request timeout (it fires at the same moment as the pool's deadline and
// may come first on a loaded machine) counts as "not answering", like the deadline.
func TestLDAPTimeoutIsATimeout(t *testing.T) {
	err := fmt.Errorf("health check bind: %w", ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection timed out")))
	if !isTimeout(err) {
		t.Error("go-ldap's timeout is not a timeout")
	}
	if isTimeout(ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection closed"))) {
		t.Error("a closed connection is a timeout")
	}
}
