package slapdtest

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// New starts a server for a test and stops it when the test ends. It fails
// the test, with slapd's output, when the server cannot start, and logs
// slapd's output when the test has failed. Without opts.Dir, the server
// lives in t.TempDir().
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("slapd output:\n%s", s.Output())
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Conn returns a connection bound as the admin that is closed when the test
// ends.
func (s *Server) Conn(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
