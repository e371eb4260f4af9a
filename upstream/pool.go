// Package upstream holds the proxy's connections to the real directory
// servers: a failover pool over the configured URLs (preference order,
// quarantine with back-off, background re-checks, TLS), the service account's
// connections used for searches and sync, and the per-client-session
// connections on which user binds happen, so that a user bind never changes
// the service identity.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Pool is the set of upstream servers with their health, and the idle
// connections bound as the service account. It is safe for concurrent use.
type Pool struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	servers []*server

	mu       sync.Mutex
	idle     []*serviceConn // most recently returned last
	sessions map[*Conn]struct{}
	closed   bool

	// moveBack tells the session mover (moveSessions) that a server is up again, so
	// sessions and idle service connections on less preferred servers move to it.
	moveBack chan struct{}

	ctx     context.Context // ends with Close, and with it any probe in flight
	cancel  context.CancelFunc
	checker sync.WaitGroup // the servers' health probes (watch)

	availMu   sync.Mutex
	available bool // some server is up: what the available gauge and its log lines last said

	password atomic.Pointer[string] // the service password: loaded by New, replaced by UpdateBindPassword
}

// serviceConn is a connection bound as the service account.
type serviceConn struct {
	lc  *ldap.Conn
	srv *server
}

// New builds a pool from a configuration, validating it first (Validate), then
// loading the TLS files and the service password it names: a file that
// cannot be read is an error naming its key (`ca_file: open ...`). It does
// not wait for a server: the proxy must start (and serve from its store)
// while the upstream is down. In the background every server is probed at
// once and then every health_interval (a quarantined one after its back-off,
// if sooner); Close stops the probes.
//
// The metrics are registered on reg unless it is nil, with names without the
// namespace ("upstream_up"): pass metrics.Registerer(registry), which adds it.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Pool, error) {
	servers, err := cfg.check()
	if err != nil {
		return nil, err
	}
	tlsConf, password, err := cfg.load()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		cfg:       cfg,
		log:       logger,
		m:         newMetrics(reg),
		available: true,
		sessions:  map[*Conn]struct{}{},
		moveBack:  make(chan struct{}, 1),
	}
	p.password.Store(&password)
	// Believed up until the first probe, which runs at once: the proxy starts ready, as
	// it did before the probes existed, and a dead server is marked down within a timeout.
	for i, u := range servers {
		p.servers = append(p.servers, newServer(u, i, tlsConf, cfg.StartTLS))
		p.m.setUp(u.raw, true)
	}
	p.m.setAvailable(true)
	if cfg.InsecureSkipVerify {
		p.log.Warn("upstream TLS certificates are not verified (insecure_skip_verify): anyone on the path can read passwords")
	}
	if !cfg.usesTLS(servers) {
		p.log.Warn("upstream connections are not encrypted (no ldaps:// URL, start_tls off): passwords cross the network in clear")
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, s := range p.servers {
		p.checker.Add(1)
		go p.watch(s)
	}
	p.checker.Add(1)
	go p.moveSessions()
	return p, nil
}

// BaseDN is the base of every query sent upstream.
func (p *Pool) BaseDN() string { return p.cfg.BaseDN }

// Healthy reports whether at least one server is up, for readiness checks.
// A server is up once a health probe (connect, service bind, root DSE read)
// was answered, until a probe, a connect or a request to it fails; the first
// probes run right after New.
func (p *Pool) Healthy() bool {
	for _, s := range p.servers {
		if !s.isDown() {
			return true
		}
	}
	return false
}

// Close stops the background checker and closes the idle service
// connections. Connections in use are closed when given back; Conns from
// Dial belong to their callers.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()

	p.cancel()
	p.checker.Wait()
	for _, sc := range idle {
		p.m.serviceConns.WithLabelValues("idle").Dec()
		_ = sc.lc.Close()
	}
	return nil
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Dial opens a new, unbound connection for one client session, on the most
// preferred server that answers.
func (p *Pool) Dial(ctx context.Context) (*Conn, error) {
	nc, srv, err := p.connect(ctx, nil, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream dial: %w", err)
	}
	c := &Conn{pool: p, wc: newWireConn(nc, srv), srv: srv}
	p.mu.Lock()
	p.sessions[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// forgetSession drops a closed session from the ones the mover looks at.
func (p *Pool) forgetSession(c *Conn) {
	p.mu.Lock()
	delete(p.sessions, c)
	p.mu.Unlock()
}

// moveSessions runs until Close: each time a server comes back up (markUp), the idle
// service connections on less preferred servers are closed, and every idle session on
// one moves to the preferred server that is up (Conn.moveIdle), one after the other so
// that the returning server gets their binds one at a time. Sessions that send requests
// move at their next request anyway; this brings back those that send nothing for
// long, which would otherwise hold their connections on the other server.
func (p *Pool) moveSessions() {
	defer p.checker.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.moveBack:
		}
		p.dropIdleWhere(func(sc *serviceConn) bool { return !p.preferred(sc.srv) })
		if !p.cfg.rebindOnFailover() {
			continue // sessions stay on the server they were opened on
		}
		p.mu.Lock()
		sessions := make([]*Conn, 0, len(p.sessions))
		for c := range p.sessions {
			sessions = append(sessions, c)
		}
		p.mu.Unlock()
		for _, c := range sessions {
			if p.ctx.Err() != nil {
				return
			}
			c.moveIdle(p.ctx)
		}
	}
}

// bindPassword is the service account's current password.
func (p *Pool) bindPassword() string {
	if pw := p.password.Load(); pw != nil {
		return *pw
	}
	return ""
}

// UpdateBindPassword makes new service connections bind with the password of next, a
// configuration whose other keys are ignored: the password is read again from where next
// says (bind_password, bind_password_file, the environment variable), so a rotated
// secret is picked up without a restart. Errors name the key, as New's do; on error the
// password in use stays. Connections already bound stay as they are.
func (p *Pool) UpdateBindPassword(next Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	pw, err := next.loadPassword()
	if err != nil {
		return err
	}
	p.password.Store(&pw)
	return nil
}

// Reachable reports whether any server accepts a connection now (TCP and TLS), trying
// them as a new connection would.
func (p *Pool) Reachable(ctx context.Context) bool {
	nc, _, err := p.connect(ctx, nil, nil, nil)
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

// connect returns a connection to the first server, in preference order,
// that answers. Quarantined servers are skipped unless every other one
// failed too; then they are tried as well, so a recovered server is found
// without waiting for its re-check. skip are servers that just stopped
// answering a request of this very operation: trying them again at once
// would only wait out another timeout. avoid are servers that just closed a
// connection under this operation's request (a process dying: its port may
// accept a moment longer): they are tried last, once every other server
// failed. prior are the failures that led here, reported together with the
// ones connect meets.
func (p *Pool) connect(ctx context.Context, skip, avoid []*server, prior []error) (net.Conn, *server, error) {
	if p.isClosed() {
		return nil, nil, ErrClosed
	}
	errs := append([]error(nil), prior...)
	var quarantined, later []*server
	for _, s := range p.servers {
		switch {
		case slices.Contains(skip, s):
			continue
		case slices.Contains(avoid, s):
			later = append(later, s)
			continue
		case s.isDown():
			quarantined = append(quarantined, s)
			continue
		}
		lc, err := p.connectTo(ctx, s)
		if err == nil {
			return lc, s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			return nil, nil, givenUp(ctx, errs)
		}
	}
	for _, s := range append(quarantined, later...) {
		if s.isSilent() {
			// It stopped answering: a connect would likely succeed and the request then
			// wait out the timeout. Its probe says when it answers again.
			errs = append(errs, fmt.Errorf("%s: not answering (down until a health probe answers)", s.raw))
			continue
		}
		lc, err := p.connectTo(ctx, s)
		if err == nil {
			return lc, s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			return nil, nil, givenUp(ctx, errs)
		}
	}
	return nil, nil, unavailable(errs)
}

// connectBefore connects to the first server ahead of s in the URL list that is up, for
// a session moving back to a preferred server.
func (p *Pool) connectBefore(ctx context.Context, s *server) (net.Conn, *server, error) {
	var errs []error
	for _, o := range p.servers[:s.index] {
		if o.isDown() {
			continue
		}
		nc, err := p.connectTo(ctx, o)
		if err == nil {
			return nc, o, nil
		}
		errs = append(errs, err)
	}
	return nil, nil, unavailable(errs)
}

// givenUp is the error of a connect whose caller stopped waiting: the
// context's error, not ErrUnavailable, since no server was found wanting.
func givenUp(ctx context.Context, errs []error) error {
	return fmt.Errorf("%w: %w", ctx.Err(), &listError{errs: errs})
}

func (p *Pool) connectTo(ctx context.Context, s *server) (net.Conn, error) {
	start := time.Now()
	lc, err := s.dial(ctx, p.cfg.Timeout)
	p.m.observe(s.raw, "connect", start)
	if err != nil {
		// The caller giving up says nothing about the server.
		if ctx.Err() == nil {
			p.m.connectFailures.WithLabelValues(s.raw).Inc()
			p.markDown(s, err)
		}
		return nil, &serverError{server: s.raw, err: err}
	}
	// A connect alone does not bring a quarantined server back: a hung server's kernel
	// still accepts. Only a probe that is answered does (recheck).
	return lc, nil
}

// markDown puts s in quarantine, or lengthens its quarantine if it already
// was: the back-off doubles from RetryInterval up to a minute. The warning
// is logged on the transition only, not on every failed attempt.
func (p *Pool) markDown(s *server, cause error) {
	s.mu.Lock()
	if s.down && time.Now().Before(s.retryAt) {
		// Clients that tried it while it waits for its re-check say nothing new: only a
		// failed re-check lengthens the back-off, or a burst of failed logins at the
		// moment of a crash would keep a recovered server out for a minute.
		s.mu.Unlock()
		return
	}
	wasDown := s.down
	s.silent = isTimeout(cause)
	if wasDown {
		s.backoff = min(2*s.backoff, max(maxRetryInterval, p.cfg.RetryInterval))
	} else {
		s.down = true
		s.backoff = p.cfg.RetryInterval
	}
	// The probes look at every server at least once per health interval.
	retryIn := min(s.backoff, p.cfg.HealthInterval)
	s.retryAt = time.Now().Add(retryIn)
	s.addrs = nil // resolve again: the records may have changed
	s.mu.Unlock()
	if wasDown {
		return
	}
	// The pool-wide state (gauge and log line) changes before the server's own gauge:
	// whoever sees this server down sees what follows from it.
	p.log.Warn("upstream server down", "server", s.raw, "err", cause, "retry_in", retryIn)
	p.updateAvailable(s)
	p.m.setUp(s.raw, false)
	p.dropIdle(s)
	s.poke()
}

// markUp ends s's quarantine; only an answered probe calls it.
func (p *Pool) markUp(s *server) {
	s.mu.Lock()
	wasDown := s.down
	s.down = false
	s.mu.Unlock()
	if wasDown {
		p.log.Info("upstream server up", "server", s.raw)
		p.updateAvailable(s)
		p.m.setUp(s.raw, true)
		select {
		case p.moveBack <- struct{}{}:
		default:
		}
	}
}

// updateAvailable follows the transitions between "some server is up" and "every
// server is down" after s changed: the available gauge, and one log line for each.
func (p *Pool) updateAvailable(s *server) {
	p.availMu.Lock()
	defer p.availMu.Unlock()
	now := p.Healthy()
	if now == p.available {
		return
	}
	p.available = now
	p.m.setAvailable(now)
	if now {
		p.log.Info("upstream available again: a server answers", "server", s.raw)
	} else {
		p.log.Error("all upstream servers unreachable", "servers", len(p.servers))
	}
}

// watch probes s at once, then whenever it is due (nextProbe), until Close. Each
// server has its own, so a hung one, whose probe waits out the timeout, delays no
// other's.
func (p *Pool) watch(s *server) {
	defer p.checker.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.recheck(s)
		for waiting := true; waiting; {
			timer.Reset(p.nextProbe(s))
			select {
			case <-p.ctx.Done():
				return
			case <-s.wake: // marked down: due again after its back-off
			case <-timer.C:
				waiting = false
			}
		}
	}
}

// nextProbe is how long until s is probed next: a health interval after its last
// probe, or, while it is quarantined, when its back-off ends if that is sooner.
func (p *Pool) nextProbe(s *server) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	due := s.probedAt.Add(p.cfg.HealthInterval)
	if s.down && s.retryAt.Before(due) {
		due = s.retryAt
	}
	return max(time.Until(due), 0)
}

func (p *Pool) recheck(s *server) {
	s.mu.Lock()
	s.probedAt = time.Now()
	s.mu.Unlock()
	err := p.probe(p.ctx, s)
	switch {
	case p.ctx.Err() != nil:
	case err != nil:
		p.m.connectFailures.WithLabelValues(s.raw).Inc()
		p.markDown(s, err)
	default:
		p.markUp(s)
	}
}

// probe does what a session needs of s, within one upstream timeout: connect (and
// TLS), bind as the service account (when there is one), read the root DSE. Any LDAP
// answer, even a refusal (a wrong service password is a configuration error, not a
// dead server), shows the server is serving; a TCP accept alone does not (a hung
// server accepts and never answers), nor does a bind that is not answered in time.
func (p *Pool) probe(ctx context.Context, s *server) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	lc, err := s.dialLDAP(ctx, p.cfg.Timeout)
	if err != nil {
		return err
	}
	defer lc.Close()
	answered := func(stage string, err error) error {
		switch {
		case errors.Is(err, context.DeadlineExceeded), isLDAPTimeout(err):
			return &stageError{stage: stage, err: fmt.Errorf("%w (%v)", errTimeout, p.cfg.Timeout)}
		case brokenConn(err, lc):
			return &stageError{stage: stage, err: err}
		}
		return nil
	}
	if dn := p.cfg.BindDN; dn != "" {
		err := withContext(ctx, lc, func() error { return lc.Bind(dn, p.bindPassword()) })
		if err := answered("health check bind", err); err != nil {
			return err
		}
	}
	req := ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	err = withContext(ctx, lc, func() error {
		_, err := lc.Search(req)
		return err
	})
	return answered("health check", err)
}

// preferred reports whether no server ahead of s in the URL list is up, so
// a connection on s is where a new one would go too.
func (p *Pool) preferred(s *server) bool {
	for _, o := range p.servers[:s.index] {
		if !o.isDown() {
			return false
		}
	}
	return true
}

// WithService runs fn on a connection bound as the service account
// (anonymous when bind_dn is empty), taken from the idle ones or opened and
// bound for the call. If fn fails because the connection broke, fn runs once
// more on a fresh connection, which may be on another server. op names the
// operation in the request duration metric; use a fixed word ("search",
// "sync", ...), never anything from a request.
func (p *Pool) WithService(ctx context.Context, op string, fn func(*ldap.Conn) error) error {
	return p.withService(ctx, op, true, fn)
}

// WithServiceStream is WithService for a call that holds the connection for as long as
// it lasts (a persistent search): it is not timed in the request duration metric, where
// one sample of hours would stand among requests of milliseconds, and the connection
// is closed afterwards rather than kept idle (fn may have changed its timeout).
func (p *Pool) WithServiceStream(ctx context.Context, op string, fn func(*ldap.Conn) error) error {
	return p.withService(ctx, op, false, func(lc *ldap.Conn) error {
		defer lc.Close()
		return fn(lc)
	})
}

func (p *Pool) withService(ctx context.Context, op string, timed bool, fn func(*ldap.Conn) error) error {
	var prior []error
	var skip, avoid []*server
	for attempt := 0; ; attempt++ {
		sc, err := p.takeService(ctx, attempt == 0, skip, avoid, prior)
		if err != nil {
			return fmt.Errorf("upstream %s: %w", op, err)
		}
		start := time.Now()
		err = withContext(ctx, sc.lc, func() error { return fn(sc.lc) })
		if timed {
			p.m.observe(sc.srv.raw, op, start)
		}
		broken := ctx.Err() == nil && brokenConn(err, sc.lc)
		unresponsive := broken && !sc.lc.IsClosing()
		p.putService(sc, broken)
		if !broken {
			return err
		}
		prior = append(prior, &serverError{server: sc.srv.raw, err: fmt.Errorf("%s: %w", op, err)})
		if attempt > 0 {
			return fmt.Errorf("upstream %s: %w", op, unavailable(prior))
		}
		if unresponsive {
			p.markDown(sc.srv, err)
			skip = append(skip, sc.srv)
		} else {
			avoid = append(avoid, sc.srv) // the retry goes to the next server first
		}
	}
}

// takeService returns an idle service connection (when reuse is set) or a
// new one, bound as the service account. A server that accepts the
// connection but fails the bind on the network is treated like one that
// refused the connect: quarantined, and the next one tried.
func (p *Pool) takeService(ctx context.Context, reuse bool, skip, avoid []*server, prior []error) (*serviceConn, error) {
	if reuse {
		if sc := p.takeIdle(); sc != nil {
			return sc, nil
		}
	}
	for {
		nc, srv, err := p.connect(ctx, skip, avoid, prior)
		if err != nil {
			return nil, err
		}
		lc := newLDAPConn(nc, p.cfg.Timeout)
		if err := p.serviceBind(ctx, lc, srv); err != nil {
			broken := ctx.Err() == nil && brokenConn(err, lc)
			_ = lc.Close()
			if !broken {
				return nil, err
			}
			p.m.connectFailures.WithLabelValues(srv.raw).Inc()
			p.markDown(srv, err)
			prior = append(prior, &serverError{server: srv.raw, err: err})
			skip = append(skip, srv)
			continue
		}
		p.m.serviceConns.WithLabelValues("in_use").Inc()
		return &serviceConn{lc: lc, srv: srv}, nil
	}
}

func (p *Pool) serviceBind(ctx context.Context, lc *ldap.Conn, srv *server) error {
	dn := p.cfg.BindDN
	if dn == "" {
		return nil
	}
	start := time.Now()
	err := withContext(ctx, lc, func() error { return lc.Bind(dn, p.bindPassword()) })
	p.m.observe(srv.raw, "bind", start)
	switch {
	case err == nil:
		return nil
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		// Not a reason to fail over: every server shares the account, so
		// this is a configuration error.
		return fmt.Errorf("service bind as %s: invalid credentials (check bind_dn and its password): %w", dn, err)
	default:
		return fmt.Errorf("service bind as %s: %w", dn, err)
	}
}

func (p *Pool) takeIdle() *serviceConn {
	var stale []*serviceConn
	defer func() {
		for _, sc := range stale {
			_ = sc.lc.Close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		sc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.m.serviceConns.WithLabelValues("idle").Dec()
		// A connection the server closed, or one on a less preferred
		// server while a better one is back, is not worth keeping.
		if sc.lc.IsClosing() || !p.preferred(sc.srv) {
			stale = append(stale, sc)
			continue
		}
		p.m.serviceConns.WithLabelValues("in_use").Inc()
		return sc
	}
	return nil
}

func (p *Pool) putService(sc *serviceConn, broken bool) {
	p.mu.Lock()
	p.m.serviceConns.WithLabelValues("in_use").Dec()
	keep := !broken && !p.closed && !sc.lc.IsClosing() && len(p.idle) < p.cfg.PoolSize && p.preferred(sc.srv)
	if keep {
		p.idle = append(p.idle, sc)
		p.m.serviceConns.WithLabelValues("idle").Inc()
	}
	p.mu.Unlock()
	if !keep {
		_ = sc.lc.Close()
	}
}

// dropIdle closes the idle service connections on s: when s stopped
// answering, they would each cost a timeout to find out.
func (p *Pool) dropIdle(s *server) {
	p.dropIdleWhere(func(sc *serviceConn) bool { return sc.srv == s })
}

// dropIdleWhere closes the idle service connections that drop says to.
func (p *Pool) dropIdleWhere(drop func(*serviceConn) bool) {
	p.mu.Lock()
	var dropped []*serviceConn
	kept := p.idle[:0]
	for _, sc := range p.idle {
		if drop(sc) {
			dropped = append(dropped, sc)
			p.m.serviceConns.WithLabelValues("idle").Dec()
		} else {
			kept = append(kept, sc)
		}
	}
	p.idle = kept
	p.mu.Unlock()
	for _, sc := range dropped {
		_ = sc.lc.Close()
	}
}

// withContext runs op on lc and closes lc if ctx ends first: go-ldap's Bind,
// Compare and Extended take no context, and closing the connection is the
// only way to stop waiting for them. A closed lc is then seen by IsClosing.
func withContext(ctx context.Context, lc *ldap.Conn, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = lc.Close()
		close(closed)
	})
	err := op()
	if !stop() {
		<-closed
		if err != nil {
			return ctx.Err()
		}
	}
	return err
}

// isTimeout reports whether err says that a server did not answer in time: the pool's
// own deadline, a network timeout, or go-ldap's request timeout (SetTimeout), which
// fires at the same moment as the pool's and may come first.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() ||
		isLDAPTimeout(err)
}

// isLDAPTimeout reports whether err is go-ldap's "no response within the timeout" (a
// network error whose message says so: go-ldap has no sentinel for it).
func isLDAPTimeout(err error) bool {
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode == ldap.ErrorNetwork && le.Err != nil &&
		strings.Contains(le.Err.Error(), "timed out")
}
