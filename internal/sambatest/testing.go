package sambatest

import (
	"errors"
	"os"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// RequireEnv is the environment variable that turns a missing Samba from a skipped test
// into a failed one; scripts/test.sh sets it, so that CI cannot skip silently.
const RequireEnv = "LDAPPROXY_REQUIRE_SAMBA"

// New starts a server for a test and stops it, removing its directory, when the test
// ends. Without Samba it skips the test, or fails it when RequireEnv is set. It fails
// the test, with samba's output, when the server cannot start, and logs samba's output
// when the test has failed. Without opts.Dir, the server lives in t.TempDir().
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if !Installed() {
		unavailable(t, ErrNotInstalled)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if errors.Is(err, errNeedRoot) {
		unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("samba output:\n%s", tail(s.Output(), 60))
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// unavailable skips the test for want of Samba or of root, or fails it when RequireEnv
// is set.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(RequireEnv) == "" {
		t.Skipf("%v; set %s=1 to make this a failure", err, RequireEnv)
	}
	t.Fatalf("%v, and %s is set", err, RequireEnv)
}

// Conn returns a connection over LDAPS bound as the Administrator that is closed when
// the test ends.
func (s *Server) Conn(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.Dial(s.LDAPSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		t.Fatalf("bind as Administrator: %v", err)
	}
	return c
}
