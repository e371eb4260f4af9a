package cache

import (
	"context"
	"errors"
	"testing"
	"time"
)

// svcDN is an application's own account: in the directory, not a synced user.
const svcDN = "cn=svc-gitlab,ou=services,dc=example,dc=org"

// wantVerifyDN is wantVerify for an identity kept by DN.
func wantVerifyDN(t *testing.T, c *Credentials, dn string, password []byte, want error) {
	t.Helper()
	ok, reason := c.VerifyDN(context.Background(), dn, password)
	switch {
	case want == nil && (!ok || reason != nil):
		t.Fatalf("VerifyDN(%s) = %v, %v; want ok", dn, ok, reason)
	case want != nil && (ok || !errors.Is(reason, want)):
		t.Fatalf("VerifyDN(%s) = %v, %v; want refused with %v", dn, ok, reason, want)
	}
}

func rememberDN(t *testing.T, c *Credentials, dn string, password []byte) {
	t.Helper()
	if err := c.RememberDN(dn, password); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsDN(t *testing.T) {
	s := openMem(t)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	clk := newFakeClock()
	c, reg := newCreds(t, s, clk, func(cfg *CredentialConfig) { cfg.OfflineMaxAge = time.Hour })

	wantVerifyDN(t, c, svcDN, testPassword, ErrOfflineNoHash)
	rememberDN(t, c, svcDN, testPassword)
	if c.Len() != 1 {
		t.Fatalf("Len %d after RememberDN", c.Len())
	}
	// Any spelling of the DN the directory takes is the same identity.
	wantVerifyDN(t, c, "CN=svc-gitlab, OU=Services,DC=example,DC=org", testPassword, nil)
	wantVerifyDN(t, c, svcDN, []byte("not it"), ErrOfflineWrongPassword)
	wantVerifyDN(t, c, svcDN, nil, ErrEmptyPassword)
	wantVerifyDN(t, c, "cn=svc-jira,ou=services,dc=example,dc=org", testPassword, ErrOfflineNoHash)
	wantVerifyDN(t, c, "", testPassword, ErrOfflineNoHash)
	if err := c.RememberDN(svcDN, nil); !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("RememberDN of an empty password: %v", err)
	}
	// The user's own DN as a DN identity is another entry than the user's hash:
	// neither answers for the other.
	wantVerify(t, c, u, testPassword, ErrOfflineNoHash)
	wantVerifyDN(t, c, u.DN, testPassword, ErrOfflineNoHash)

	// A sync that does not hold the identity keeps its hash: it never was a user.
	syncUsers(t, s, u)
	if c.Len() != 1 {
		t.Fatalf("a sync dropped the DN identity's hash: Len %d", c.Len())
	}
	// The upstream refused its password: forgotten, in any spelling.
	if err := c.ForgetDN("cn=SVC-GITLAB,ou=services,dc=example,dc=org"); err != nil {
		t.Fatal(err)
	}
	wantVerifyDN(t, c, svcDN, testPassword, ErrOfflineNoHash)

	// offline_max_age is all that limits it otherwise.
	rememberDN(t, c, svcDN, testPassword)
	clk.advance(time.Hour - time.Second)
	wantVerifyDN(t, c, svcDN, testPassword, nil)
	clk.advance(time.Second)
	wantVerifyDN(t, c, svcDN, testPassword, ErrOfflineExpired)
	if c.Len() != 0 {
		t.Fatalf("expired hash kept: Len %d", c.Len())
	}
	for result, want := range map[string]float64{"success": 2, "wrong_password": 2, "no_hash": 6, "expired": 1} {
		if got := counterValue(t, reg, "ldapproxy_offline_logins_total", result); got != want {
			t.Errorf("offline logins %s = %v, want %v", result, got, want)
		}
	}
}

// The sweep keeps a DN identity's hash until it expires, or until the DN becomes a
// synced user's (whose own hash and rules then apply), and a restart keeps it.
func TestCredentialsDNSweepAndPersist(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	u := credUser(1, "m", true)
	syncUsers(t, s, u)
	// Opening sweeps with the real clock, before a test's clock is in place.
	clk := &fakeClock{t: time.Now()}
	c, _ := newCreds(t, s, clk, func(cfg *CredentialConfig) { cfg.OfflineMaxAge = time.Hour })
	becomesUser := "uid=late,ou=people,dc=example,dc=org"
	rememberDN(t, c, svcDN, testPassword)
	rememberDN(t, c, becomesUser, testPassword)
	remember(t, c, u, testPassword)
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openDir(t, dir)
	defer s.Close()
	c, _ = newCreds(t, s, clk, func(cfg *CredentialConfig) { cfg.OfflineMaxAge = time.Hour })
	if c.Len() != 3 {
		t.Fatalf("%d hashes after reopening, want 3", c.Len())
	}
	wantVerifyDN(t, c, svcDN, testPassword, nil)

	late := credUser(2, "m", true)
	late.DN = becomesUser
	syncUsers(t, s, u, late)
	if c.Len() != 2 || c.dns != 1 {
		t.Fatalf("%d hashes (%d by DN) after the DN became a user's, want 2 (1)", c.Len(), c.dns)
	}
	wantVerifyDN(t, c, becomesUser, testPassword, ErrOfflineNoHash)
	wantVerifyDN(t, c, svcDN, testPassword, nil)

	clk.advance(time.Hour)
	c.sweep(s.Snapshot())
	if c.Len() != 0 || c.dns != 0 {
		t.Fatalf("%d hashes (%d by DN) after they expired", c.Len(), c.dns)
	}
}

// Hashes of DN identities are capped: a new one replaces the one stored longest ago,
// and synced users' hashes neither count nor go.
func TestCredentialsDNCap(t *testing.T) {
	s := openMem(t)
	users := []*User{credUser(1, "m", true), credUser(2, "m", true)}
	syncUsers(t, s, users...)
	clk := newFakeClock()
	c, _ := newCreds(t, s, clk, nil)
	c.maxDNs = 3
	for _, u := range users {
		remember(t, c, u, testPassword)
	}
	dns := []string{
		"cn=a,ou=services,dc=example,dc=org", "cn=b,ou=services,dc=example,dc=org",
		"cn=c,ou=services,dc=example,dc=org", "cn=d,ou=services,dc=example,dc=org",
		"cn=e,ou=services,dc=example,dc=org",
	}
	for _, dn := range dns[:3] {
		rememberDN(t, c, dn, testPassword)
		clk.advance(time.Minute)
	}
	// b logs in again after refresh() with another password: it is now the newest.
	clk.advance(time.Hour)
	rememberDN(t, c, dns[0], []byte("a's new password"))
	clk.advance(time.Minute)
	rememberDN(t, c, dns[3], testPassword) // replaces b, the oldest
	clk.advance(time.Minute)
	rememberDN(t, c, dns[4], testPassword) // replaces c
	if c.Len() != 5 || c.dns != 3 {
		t.Fatalf("%d hashes, %d by DN; want 5 and 3", c.Len(), c.dns)
	}
	for _, u := range users {
		wantVerify(t, c, u, testPassword, nil)
	}
	wantVerifyDN(t, c, dns[0], []byte("a's new password"), nil)
	wantVerifyDN(t, c, dns[1], testPassword, ErrOfflineNoHash)
	wantVerifyDN(t, c, dns[2], testPassword, ErrOfflineNoHash)
	wantVerifyDN(t, c, dns[3], testPassword, nil)
	wantVerifyDN(t, c, dns[4], testPassword, nil)
	// A replaced hash of an identity already stored does not count twice.
	clk.advance(time.Hour)
	rememberDN(t, c, dns[4], []byte("e's new password"))
	if c.dns != 3 {
		t.Fatalf("%d by DN after replacing one", c.dns)
	}
	wantVerifyDN(t, c, dns[3], testPassword, nil)
}
