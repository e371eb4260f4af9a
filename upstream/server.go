package upstream

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/internal/rawsock"
)

// server is one configured URL with what the pool has learned about it:
// whether it is in quarantine, and which of its DNS addresses is in use.
type server struct {
	serverURL
	index    int         // position in Config.URLs: lower is preferred
	tls      *tls.Config // ServerName is the URL's host, also when dialing an IP
	startTLS bool

	mu       sync.Mutex
	addrs    []string // resolved addresses, the one in use first; nil: resolve on next connect
	down     bool
	silent   bool // down because it stopped answering (a timeout), not because it refused
	backoff  time.Duration
	retryAt  time.Time     // when the probe looks at a down server next
	probedAt time.Time     // when the last probe started
	wake     chan struct{} // tells the server's probe (Pool.watch) that it was marked down

	// durations are the server's request duration series by Kind, looked up once each
	// (metrics.observeKind).
	durations [len(kindNames)]atomic.Pointer[prometheus.Observer]
}

func newServer(u serverURL, index int, base *tls.Config, startTLS bool) *server {
	conf := base.Clone()
	conf.ServerName = u.host
	return &server{serverURL: u, index: index, tls: conf, startTLS: startTLS && !u.ldaps, wake: make(chan struct{}, 1)}
}

// poke wakes the server's probe to reconsider when it is due.
func (s *server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// isSilent reports whether the server is down because it stopped answering: connecting
// to it may well succeed (a hung process's port still accepts) and then cost a timeout.
func (s *server) isSilent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down && s.silent
}

func (s *server) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// addresses returns the addresses to try, the one that worked last first.
// A name is resolved once and one of its addresses picked at random, so
// proxies sharing a DNS name spread over its servers, and then kept so one
// proxy's connections stay on one server.
func (s *server) addresses(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	addrs := slices.Clone(s.addrs)
	s.mu.Unlock()
	if addrs != nil {
		return addrs, nil
	}
	if _, err := netip.ParseAddr(s.host); err == nil {
		addrs = []string{s.host}
	} else {
		addrs, err = net.DefaultResolver.LookupHost(ctx, s.host)
		if err != nil {
			return nil, err
		}
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	}
	s.mu.Lock()
	s.addrs = slices.Clone(addrs)
	s.mu.Unlock()
	return addrs, nil
}

// use moves addr to the front so the next connect starts with it.
func (s *server) use(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.addrs, addr); i > 0 {
		s.addrs = slices.Insert(slices.Delete(s.addrs, i, i+1), 0, addr)
	}
}

// dial connects to s, trying each of its addresses, each within timeout:
// TCP, then TLS (ldaps://) or StartTLS. It neither logs nor changes the
// server's health; callers decide what a failure means.
func (s *server) dial(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	addrs, err := s.addresses(ctx)
	if err != nil {
		return nil, &stageError{stage: "resolve", err: err}
	}
	// With a name, say which of its addresses failed.
	_, notIP := netip.ParseAddr(s.host)
	var errs []error
	for _, a := range addrs {
		nc, err := s.dialAddr(ctx, a, notIP != nil, timeout)
		if err == nil {
			s.use(a)
			return nc, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, &listError{errs: errs}
}

func (s *server) dialAddr(ctx context.Context, ip string, showAddr bool, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := s.addrFor(ip)
	fail := func(stage string, err error) error {
		e := &stageError{stage: stage, err: err}
		if showAddr {
			e.addr = addr
		}
		return e
	}

	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fail("connect", err)
	}
	nc = rawsock.Wrap(nc)
	// The StartTLS exchange reads and writes the socket directly: a deadline bounds
	// it, and cancelling ctx moves the deadline to now.
	if deadline, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })

	conn := nc
	switch {
	case s.ldaps:
		tc := tls.Client(nc, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			stop()
			_ = nc.Close()
			return nil, fail("tls", err)
		}
		conn = tc
	case s.startTLS:
		tc, err := startTLS(ctx, nc, s.tls)
		if err != nil {
			stop()
			_ = nc.Close()
			return nil, fail("starttls", err)
		}
		conn = tc
	}
	if !stop() {
		// ctx ended while connecting and the deadline may already have broken the
		// connection.
		_ = conn.Close()
		return nil, fail("connect", ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	return conn, nil
}

// dialLDAP connects to s and wraps the connection in a go-ldap client, for the service
// connections, probes and checks.
func (s *server) dialLDAP(ctx context.Context, timeout time.Duration) (*ldap.Conn, error) {
	nc, err := s.dial(ctx, timeout)
	if err != nil {
		return nil, err
	}
	return newLDAPConn(nc, timeout), nil
}

func newLDAPConn(nc net.Conn, timeout time.Duration) *ldap.Conn {
	_, isTLS := nc.(*tls.Conn)
	lc := ldap.NewConn(nc, isTLS)
	lc.Start()
	lc.SetTimeout(timeout)
	return lc
}
