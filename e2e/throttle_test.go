package e2e

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// throttledDiagnostic is what the proxy says when it refuses a bind after too many
// failures.
const throttledDiagnostic = "too many failed binds; try again later"

// bindErr binds on a fresh connection from the given local address ("" for any).
func bindErr(t *testing.T, p *proxy, from, dn, password string) error {
	t.Helper()
	var opts []ldap.DialOpt
	if from != "" {
		opts = append(opts, ldap.DialWithDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}))
	}
	return dial(t, p.URL, opts...).Bind(dn, password)
}

// isThrottled reports whether err is the proxy's refusal of a throttled bind.
func isThrottled(err error) bool {
	return resultCode(err) == ldap.LDAPResultInvalidCredentials && err != nil && strings.Contains(err.Error(), throttledDiagnostic)
}

func TestBindThrottlePerUser(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1})
	p := startProxy(t, config(up, map[string]string{"listen": "  bind_failures_per_user: 3"}))

	for i := range 3 {
		err := bindErr(t, p, "", up.UserDN(1), "wrong")
		if resultCode(err) != ldap.LDAPResultInvalidCredentials || isThrottled(err) {
			t.Fatalf("wrong password %d: %v, want the upstream's invalidCredentials", i+1, err)
		}
	}
	if err := bindErr(t, p, "", up.UserDN(1), slapdtest.UserPassword(1)); !isThrottled(err) {
		t.Fatalf("right password after 3 failures: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
	if err := bindErr(t, p, "", up.UserDN(2), slapdtest.UserPassword(2)); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if n := strings.Count(p.logs.String(), "too many failed binds of one user"); n != 1 {
		t.Fatalf("lockout logged %d times, want once", n)
	}

	// Without the upstream, the throttled user still gets the throttle's answer at once:
	// the proxy does not ask the upstream for it. Anyone else now gets unavailable.
	if err := up.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := bindErr(t, p, "", up.UserDN(1), slapdtest.UserPassword(1)); !isThrottled(err) {
		t.Fatalf("throttled bind with the upstream down: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("throttled bind took %v", d)
	}
	if code := resultCode(bindErr(t, p, "", up.UserDN(2), slapdtest.UserPassword(2))); code != ldap.LDAPResultUnavailable {
		t.Fatalf("another user with the upstream down: %d, want unavailable", code)
	}
}

// bindVia binds through a connection that a load balancer forwards for client: it starts
// with a PROXY protocol header naming client.
func bindVia(t *testing.T, p *proxy, client, dn, password string) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "ldap://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 389\r\n", client); err != nil {
		t.Fatal(err)
	}
	lc := ldap.NewConn(c, false)
	lc.Start()
	lc.SetTimeout(5 * time.Second)
	defer lc.Close()
	return lc.Bind(dn, password)
}

// TestBindThrottlePerAddress: the per-address limit stops one client address, named by
// a load balancer's PROXY protocol header, and spares loopback and exempt networks,
// where many clients share one address.
func TestBindThrottlePerAddress(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 7})

	// Loopback, where every client of a sidecar comes from: failures there lock out
	// nobody else.
	side := startProxy(t, config(up, map[string]string{"listen": "  bind_failures_per_address: 5"}))
	for i := 1; i <= 5; i++ {
		if err := bindErr(t, side, "127.0.0.1", up.UserDN(i), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials || isThrottled(err) {
			t.Fatalf("user %d, wrong password: %v", i, err)
		}
	}
	if err := bindErr(t, side, "127.0.0.1", up.UserDN(6), slapdtest.UserPassword(6)); err != nil {
		t.Fatalf("loopback after 5 failures of others: %v", err)
	}

	// Behind a load balancer the header's address is the one counted.
	p := startProxy(t, config(up, map[string]string{"listen": `  bind_failures_per_address: 5
  proxy_protocol: true
  proxy_protocol_from: ["127.0.0.0/8"]
  throttle_exempt: ["198.51.100.0/24"]`}))
	for i := 1; i <= 5; i++ {
		if err := bindVia(t, p, "192.0.2.1", up.UserDN(i), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials || isThrottled(err) {
			t.Fatalf("user %d, wrong password: %v", i, err)
		}
		if err := bindVia(t, p, "198.51.100.7", up.UserDN(i), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials || isThrottled(err) {
			t.Fatalf("user %d from an exempt network, wrong password: %v", i, err)
		}
	}
	if err := bindVia(t, p, "192.0.2.1", up.UserDN(6), slapdtest.UserPassword(6)); !isThrottled(err) {
		t.Fatalf("sixth bind from the address: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
	if err := bindVia(t, p, "192.0.2.2", up.UserDN(6), slapdtest.UserPassword(6)); err != nil {
		t.Fatalf("bind from another address: %v", err)
	}
	if err := bindVia(t, p, "198.51.100.7", up.UserDN(6), slapdtest.UserPassword(6)); err != nil {
		t.Fatalf("bind from the exempt network after 5 failures: %v", err)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "too many failed binds from one client address") || !strings.Contains(logs, `"address":"192.0.2.1"`) {
		t.Fatal("no log line for the address's lockout")
	}
	if strings.Contains(side.logs.String(), "too many failed binds from one client address") || strings.Contains(logs, `"address":"198.51.100.7"`) {
		t.Fatal("an exempt address was locked out")
	}
	// Bind and connection log lines name the client, and the balancer that forwarded it.
	for _, re := range []string{
		`"msg":"bind failed: invalid credentials","component":"frontend","conn":\d+,"remote":"192\.0\.2\.1:40000","proxy":"127\.0\.0\.1:\d+"`,
		`"msg":"bind throttle: too many failed binds from one client address[^"]*","component":"frontend","conn":\d+,"remote":"192\.0\.2\.1:40000","proxy":"127\.0\.0\.1:\d+"`,
		`"msg":"connection opened","component":"frontend","conn":\d+,"remote":"192\.0\.2\.2:40000","proxy":"127\.0\.0\.1:\d+"`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Errorf("no log line matches %s", re)
		}
	}
	if !regexp.MustCompile(`"msg":"bind failed: invalid credentials","component":"frontend","conn":\d+,"remote":"127\.0\.0\.1:\d+"`).MatchString(side.logs.String()) {
		t.Error("a bind log line without the client address")
	}
}

// TestBindThrottleOffline counts wrong passwords at offline logins too, per synced user
// whichever name it binds with.
func TestBindThrottleOffline(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1})
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn, "listen": "  bind_failures_per_user: 2"})
	cfg += "bind:\n  cache_passwords: true\n"
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	if err := bindErr(t, p, "", up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatalf("online bind: %v", err)
	}
	// The user's hash, and the service account's: waitSynced bound as it.
	eventually(t, 10*time.Second, "the hash stored", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "2"
	})
	if err := up.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{slapdtest.UserName(1), up.UserDN(1)} {
		if err := bindErr(t, p, "", name, "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials || isThrottled(err) {
			t.Fatalf("offline wrong password as %q: %v", name, err)
		}
	}
	if err := bindErr(t, p, "", up.UserDN(1), slapdtest.UserPassword(1)); !isThrottled(err) {
		t.Fatalf("offline right password after 2 failures: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
}
