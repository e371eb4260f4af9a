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
	logged := len(p.logs.String())
	if err := bindErr(t, p, "", up.UserDN(1), slapdtest.UserPassword(1)); !isThrottled(err) {
		t.Fatalf("throttled bind with the upstream down: %v, want invalidCredentials %q", err, throttledDiagnostic)
	}
	if d := p.loggedBindDuration(t, logged, up.UserDN(1)); d > time.Second {
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
	eventually(t, settleWithin, "the hash stored", func() bool {
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

// dialVia opens a connection that a load balancer forwards for client (an IPv4 address):
// it starts with a PROXY protocol header, version 1 or 2, naming client.
func dialVia(t *testing.T, p *proxy, version int, client string) *ldap.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.URL, "ldap://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte(fmt.Sprintf("PROXY TCP4 %s 127.0.0.1 40000 389\r\n", client))
	if version == 2 {
		header = []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
		header = append(header, net.ParseIP(client).To4()...)
		header = append(header, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0x85)
	}
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	lc := ldap.NewConn(c, false)
	lc.Start()
	lc.SetTimeout(5 * time.Second)
	t.Cleanup(func() { lc.Close() })
	return lc
}

// TestSharedAddressLimits runs the per-address connection cap and the limit on a request
// before bind as the program configures them: one client address (named by a PROXY
// protocol header, version 1 or 2) gets at most max_connections_per_address connections,
// other addresses, exempt networks and loopback are not held back by it, and a request
// over max_message_size_anonymous is refused before bind but not after.
func TestSharedAddressLimits(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 2, Groups: 1})
	p := startProxy(t, config(up, map[string]string{"listen": `  max_connections_per_address: 3
  max_message_size_anonymous: 65536
  proxy_protocol: true
  proxy_protocol_from: ["127.0.0.0/8"]
  throttle_exempt: ["198.51.100.0/24"]`}))
	bind := func(c *ldap.Conn) error { return c.Bind(up.ServiceDN, up.ServicePassword) }
	for i := range 3 {
		if err := bind(dialVia(t, p, 1+i%2, "192.0.2.1")); err != nil {
			t.Fatalf("connection %d from 192.0.2.1: %v", i+1, err)
		}
	}
	for _, version := range []int{1, 2} {
		if err := bind(dialVia(t, p, version, "192.0.2.1")); err == nil {
			t.Fatalf("a fourth connection from 192.0.2.1 (PROXY v%d) was served", version)
		}
	}
	if !strings.Contains(p.logs.String(), `"msg":"connection refused: too many connections from this address","component":"frontend","conn":`) ||
		!strings.Contains(p.logs.String(), `"remote":"192.0.2.1:40000","proxy":"127.0.0.1:`) {
		t.Error("no log line for the refused connection, naming the client and the balancer")
	}
	if err := bind(dialVia(t, p, 2, "192.0.2.2")); err != nil {
		t.Fatalf("another address: %v", err)
	}
	for i := range 5 {
		if err := bind(dialVia(t, p, 1, "198.51.100.7")); err != nil {
			t.Fatalf("connection %d from an exempt network: %v", i+1, err)
		}
	}

	// Without a balancer, loopback (every client of a sidecar) is not capped.
	side := startProxy(t, config(up, map[string]string{"listen": "  max_connections_per_address: 3\n  max_message_size_anonymous: 65536"}))
	for i := range 6 {
		if err := bind(dial(t, side.URL)); err != nil {
			t.Fatalf("loopback connection %d: %v", i+1, err)
		}
	}
	// A 100 KB request: over the limit before bind, within it after.
	big := ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(description="+strings.Repeat("x", 100_000)+")", []string{"1.1"}, nil)
	anon := dial(t, side.URL)
	if _, err := anon.Search(big); err == nil || resultCode(err) == ldap.LDAPResultInsufficientAccessRights {
		t.Fatalf("a 100 KB search before bind: %v, want the connection closed", err)
	}
	if !strings.Contains(side.logs.String(), `"msg":"connection closed: message too large"`) {
		t.Error("no log line for the request over max_message_size_anonymous")
	}
	bound := dial(t, side.URL)
	if err := bind(bound); err != nil {
		t.Fatal(err)
	}
	if _, err := bound.Search(big); err != nil {
		t.Fatalf("a 100 KB search after bind: %v", err)
	}
}
