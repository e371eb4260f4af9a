package proxy

import (
	"crypto/tls"
	"net"
	"sync"
)

// Session is the state of one client connection that handlers may read and change: the
// bound identity, TLS, and per-connection values such as the upstream connection that a
// client's bind opened.
type Session struct {
	// ID numbers connections in log lines.
	ID uint64
	// RemoteAddr is the client's address.
	RemoteAddr net.Addr

	mu       sync.Mutex
	boundDN  string
	bound    bool
	tlsState *tls.ConnectionState
	values   map[any]any
	onClose  []func()
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

// Value returns the value stored under key, or nil.
func (s *Session) Value(key any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// SetValue stores a per-connection value under key.
func (s *Session) SetValue(key, value any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = value
}

// LoadOrStore returns the value stored under key, or stores v there and returns it;
// loaded reports which.
func (s *Session) LoadOrStore(key, v any) (actual any, loaded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.values[key]; ok {
		return cur, true
	}
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = v
	return v, false
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
