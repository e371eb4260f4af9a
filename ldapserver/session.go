package ldapserver

import (
	"crypto/tls"
	"net"
	"sync"
)

// Session is the LDAP state of one client connection: the bound identity and TLS. A
// handler that keeps state of its own per connection creates it in Server.ConnContext
// and finds it in the request's context, as net/http handlers do.
type Session struct {
	// ID numbers connections in log lines.
	ID uint64
	// RemoteAddr is the client's address: the one a trusted load balancer's PROXY
	// protocol header names, else the connection's peer.
	RemoteAddr net.Addr
	// ProxyAddr is the load balancer's address when a PROXY protocol header named the
	// client; nil otherwise.
	ProxyAddr net.Addr

	mu       sync.Mutex
	boundDN  string
	bound    bool
	tlsState *tls.ConnectionState
	onClose  []func()
}

// LogArgs are the key-value pairs that name the connection in a log line: conn (the
// connection number), remote (the client address) and, behind a load balancer, proxy.
func (s *Session) LogArgs() []any {
	args := []any{"conn", s.ID, "remote", addrString(s.RemoteAddr)}
	if s.ProxyAddr != nil {
		args = append(args, "proxy", s.ProxyAddr.String())
	}
	return args
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// BoundDN returns the DN the client is bound as; empty when anonymous.
func (s *Session) BoundDN() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boundDN
}

// Authenticated reports whether the client completed an authenticated bind. An anonymous
// bind, even when allowed, leaves it false.
func (s *Session) Authenticated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// SetBound records a successful authenticated bind as dn.
func (s *Session) SetBound(dn string) {
	s.mu.Lock()
	s.boundDN, s.bound = dn, true
	s.mu.Unlock()
}

// SetAnonymous resets the identity, as every bind does before it is processed
// (RFC 4511 §4.2.1) and as an anonymous bind leaves it.
func (s *Session) SetAnonymous() {
	s.mu.Lock()
	s.boundDN, s.bound = "", false
	s.mu.Unlock()
}

// TLS returns the connection's TLS state, or nil while it is in clear text.
func (s *Session) TLS() *tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tlsState
}

func (s *Session) setTLS(st tls.ConnectionState) {
	s.mu.Lock()
	s.tlsState = &st
	s.mu.Unlock()
}

// OnClose registers f to run once the connection has closed and every operation on it
// has finished.
func (s *Session) OnClose(f func()) {
	s.mu.Lock()
	s.onClose = append(s.onClose, f)
	s.mu.Unlock()
}

func (s *Session) close() {
	s.mu.Lock()
	fs := s.onClose
	s.onClose = nil
	s.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
