package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// metricValue reads one sample of the proxy's metrics, "" when absent.
func scrapeValue(t *testing.T, p *proxy, series string) string {
	t.Helper()
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(p.scrape(t))
	if m == nil {
		return ""
	}
	return m[1]
}

func bindCode(t *testing.T, p *proxy, dn, password string) uint16 {
	t.Helper()
	c := dial(t, p.URL)
	if password == "" {
		return resultCode(c.UnauthenticatedBind(dn))
	}
	return resultCode(c.Bind(dn, password))
}

// checkOfflineMaxAge checks, with the upstream down, that a hash the proxy stored
// between before and stored serves offline logins (bind, with the right password) until
// maxAge has passed, and none after, refused as expired. The first bind can be required
// to succeed only when it ends less than maxAge after before: on a machine slow enough
// to take longer, the proxy may rightly have found the hash expired already, and then
// only the reason is checked.
func checkOfflineMaxAge(t *testing.T, p *proxy, maxAge time.Duration, before, stored time.Time, bind func() uint16) {
	t.Helper()
	expired := func() string { return scrapeValue(t, p, `ldapproxy_offline_logins_total{result="expired"}`) }
	code := bind()
	switch took := time.Since(before); {
	case took < maxAge:
		if code != 0 {
			t.Fatalf("offline bind %v after the online one began, within offline_max_age %v: %d", took.Round(time.Millisecond), maxAge, code)
		}
	case code == ldap.LDAPResultInvalidCredentials:
		if v := expired(); v != "1" {
			t.Fatalf("offline bind %v after the online one began refused, but not as expired (%q expired)", took.Round(time.Millisecond), v)
		}
		t.Logf("the offline bind within offline_max_age ended %v after the online one began: too late to require a success", took.Round(time.Millisecond))
	case code != 0:
		t.Fatalf("offline bind %v after the online one began: %d, want 0 or 49", took.Round(time.Millisecond), code)
	}
	time.Sleep(time.Until(stored.Add(maxAge)))
	if code := bind(); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("offline bind after offline_max_age: %d, want 49", code)
	}
	if v := expired(); v != "1" {
		t.Errorf("expired offline logins: %q, want 1", v)
	}
}

func TestOfflineLogin(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 6, Groups: 2, PasswordPolicy: true})
	// A user is disabled when its description says so (a stand-in for AD's
	// userAccountControl or FreeIPA's nsAccountLock).
	cfg := config(up, map[string]string{"mode": "cached", "sync": `  enabled: true
  interval: 1s
  mappings:
    users:
      - name: openldap-is-active
        field: is_active
        expression: 'list_flatten(ldap.description) != "disabled"'`})
	cfg += "bind:\n  cache_passwords: true\n  offline_max_age: 1h\n"
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	// waitSynced bound as the service account, which has a hash of its own from then on
	// (an identity that is not a synced user, kept by its DN).
	eventually(t, settleWithin, "the service account's hash stored", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "1"
	})

	// A user who logged in, then was disabled upstream: once synced, the hash is gone.
	if code := bindCode(t, p, up.UserDN(5), slapdtest.UserPassword(5)); code != 0 {
		t.Fatalf("online bind of user 5: %d", code)
	}
	eventually(t, settleWithin, "user 5's hash stored", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "2"
	})
	disable := ldap.NewModifyRequest(up.UserDN(5), nil)
	disable.Replace("description", []string{"disabled"})
	if err := up.Conn(t).Modify(disable); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the disabled user's hash dropped", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "1"
	})

	// Logins while the upstream answers store hashes (in the background).
	for _, i := range []int{1, 3} {
		if code := bindCode(t, p, up.UserDN(i), slapdtest.UserPassword(i)); code != 0 {
			t.Fatalf("online bind of user %d: %d", i, code)
		}
	}
	eventually(t, settleWithin, "two more hashes stored", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "3"
	})
	// While an upstream answers it is always believed: a wrong password is refused by
	// the upstream, and drops the user's hash.
	if code := bindCode(t, p, up.UserDN(3), "wrong"); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("wrong password online: %d", code)
	}
	eventually(t, settleWithin, "user 3's hash dropped", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "2"
	})

	up.Stop()
	tests := []struct {
		name     string
		dn, pass string
		want     uint16
	}{
		{"remembered password", up.UserDN(1), slapdtest.UserPassword(1), 0},
		{"by user name", slapdtest.UserName(1), slapdtest.UserPassword(1), 0},
		{"wrong password", up.UserDN(1), "not-it", ldap.LDAPResultInvalidCredentials},
		{"hash dropped after the upstream refused", up.UserDN(3), slapdtest.UserPassword(3), ldap.LDAPResultInvalidCredentials},
		{"user never seen logging in", up.UserDN(2), slapdtest.UserPassword(2), ldap.LDAPResultInvalidCredentials},
		{"disabled user", up.UserDN(5), slapdtest.UserPassword(5), ldap.LDAPResultInvalidCredentials},
		{"unknown user", "uid=nobody,ou=people," + up.Suffix, "x", ldap.LDAPResultInvalidCredentials},
		{"unauthenticated bind is still no login", up.UserDN(1), "", ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := bindCode(t, p, tt.dn, tt.pass); code != tt.want {
				t.Fatalf("offline bind %q: %d, want %d", tt.dn, code, tt.want)
			}
		})
	}
	c := dial(t, p.URL)
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(nil)
	if err != nil || !strings.EqualFold(who.AuthzID, "dn:"+up.UserDN(1)) {
		t.Fatalf("whoami after an offline login: %q %v", who.AuthzID, err)
	}
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0002)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("cached search after an offline login: %v %v", res, err)
	}
	if v := scrapeValue(t, p, `ldapproxy_offline_logins_total{result="success"}`); v != "3" {
		t.Errorf("offline successes counted %q, want 3", v)
	}
	if !strings.Contains(p.logs.String(), "offline login: accepted") {
		t.Error("no log line for the offline login")
	}

	// The password changes upstream; once synced, the old one no longer logs in offline.
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	admin := up.Conn(t)
	time.Sleep(1100 * time.Millisecond) // pwdChangedTime has a resolution of one second
	mod := ldap.NewModifyRequest(up.UserDN(1), nil)
	mod.Replace("userPassword", []string{"changed-secret-1"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the password change to be synced and the hash dropped", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "1"
	})
	up.Stop()
	if code := bindCode(t, p, up.UserDN(1), slapdtest.UserPassword(1)); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("old password offline after a synced change: %d, want 49", code)
	}
	if strings.Contains(p.logs.String(), slapdtest.UserPassword(1)) {
		t.Fatal("a password reached the log")
	}
}

func TestOfflineMaxAge(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1})
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn})
	const maxAge = 5 * time.Second
	cfg += fmt.Sprintf("bind:\n  cache_passwords: true\n  offline_max_age: %s\n", maxAge)
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	before := time.Now()
	if code := bindCode(t, p, up.UserDN(1), slapdtest.UserPassword(1)); code != 0 {
		t.Fatal(code)
	}
	eventually(t, 30*time.Second, "the hash stored (and the one of the service account waitSynced bound as)", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "2"
	})
	stored := time.Now()
	up.Stop()
	checkOfflineMaxAge(t, p, maxAge, before, stored, func() uint16 { return bindCode(t, p, up.UserDN(1), slapdtest.UserPassword(1)) })
}

func TestCachedAuthentication(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1})
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn})
	cfg += "bind:\n  cached_auth_ttl: 1m\n"
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	if code := bindCode(t, p, up.UserDN(2), slapdtest.UserPassword(2)); code != 0 {
		t.Fatal(code)
	}
	up.Stop()
	// Within the TTL the same DN and password are accepted without the upstream.
	if code := bindCode(t, p, up.UserDN(2), slapdtest.UserPassword(2)); code != 0 {
		t.Fatalf("cached authentication: %d, want success", code)
	}
	// Anything else still needs the upstream, which is down; without cache_passwords
	// that is `unavailable`.
	if code := bindCode(t, p, up.UserDN(2), "other"); code != ldap.LDAPResultUnavailable {
		t.Fatalf("another password: %d, want 52", code)
	}
	if code := bindCode(t, p, up.UserDN(1), slapdtest.UserPassword(1)); code != ldap.LDAPResultUnavailable {
		t.Fatalf("a user not in the cache: %d, want 52", code)
	}
	// The upstream comes back and refuses the user: the cached entry is dropped at once.
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	admin := up.Conn(t)
	mod := ldap.NewModifyRequest(up.UserDN(2), nil)
	mod.Replace("userPassword", []string{"changed-2"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if code := bindCode(t, p, up.UserDN(2), "wrong-one"); code != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("wrong password with the upstream back: %d", code)
	}
	up.Stop()
	if code := bindCode(t, p, up.UserDN(2), slapdtest.UserPassword(2)); code == 0 {
		t.Fatal("the cached login survived the upstream refusing the user")
	}
}
