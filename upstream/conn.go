package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Conn is one client session's own upstream connection. User binds happen
// here, never on the service connections, so a user's bind cannot change
// the identity the proxy searches with. Requests may run concurrently;
// Bind waits for the connection to be free of reconnects.
type Conn struct {
	pool *Pool

	mu     sync.Mutex
	lc     *ldap.Conn // nil: a new anonymous connection is dialed on next use
	srv    *server
	bound  bool // lc carries a user's bind
	lost   bool // a user-bound lc broke: requests fail until Bind or Unbind
	closed bool
}

// Server is the URL (as configured) of the server the session is on, for
// logs.
func (c *Conn) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv == nil {
		return ""
	}
	return c.srv.raw
}

// Close ends the session's upstream connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	lc := c.lc
	c.lc, c.closed = nil, true
	c.mu.Unlock()
	if lc != nil {
		return lc.Close()
	}
	return nil
}

// Unbind forgets the session's identity: the next request runs anonymously.
// It closes the connection (sending an LDAP unbind) and lets the next
// request dial a fresh one, rather than sending an anonymous bind: the
// identity is gone for certain even if the server is unreachable, and
// Unbind never waits on the network for an answer.
func (c *Conn) Unbind() {
	c.mu.Lock()
	lc := c.lc
	c.lc, c.bound, c.lost = nil, false, false
	c.mu.Unlock()
	if lc != nil {
		_ = lc.Unbind()
	}
}

// Bind makes a simple bind as dn. If the connection breaks or times out,
// Bind reconnects through the pool (another server if this one is now in
// quarantine) and tries once more. An answer of the server (49 invalid
// credentials, ...) is returned as the *ldap.Error it is, never retried.
// A Bind also recovers a session whose user-bound connection was lost.
func (c *Conn) Bind(ctx context.Context, dn string, password []byte) error {
	if len(password) == 0 {
		// A simple bind with a name and no password is an
		// "unauthenticated bind" (RFC 4513 §5.1.2) that many servers
		// answer with success: it must never pass for a login.
		return ldap.NewError(ldap.LDAPResultUnwillingToPerform, errors.New("unauthenticated bind (empty password) refused"))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.lost = false
	var prior []error
	var skip []*server
	for attempt := 0; ; attempt++ {
		if c.lc != nil && c.lc.IsClosing() {
			c.lc = nil
		}
		if c.lc == nil {
			lc, srv, err := c.pool.connect(ctx, skip, prior)
			if err != nil {
				c.bound = false
				return fmt.Errorf("upstream bind: %w", err)
			}
			c.lc, c.srv = lc, srv
		}
		lc, srv := c.lc, c.srv
		start := time.Now()
		err := withContext(ctx, lc, func() error { return lc.Bind(dn, string(password)) })
		c.pool.m.observe(srv.raw, "bind", start)
		switch {
		case err == nil:
			c.bound = true
			return nil
		case ctx.Err() != nil:
			c.bound = false
			return fmt.Errorf("upstream bind: %w", err)
		case !brokenConn(err, lc):
			// RFC 4511 §4.2.1: after a failed bind the connection is
			// anonymous.
			c.bound = false
			return err
		}
		c.bound = false
		c.lc = nil
		prior = append(prior, &serverError{server: srv.raw, err: fmt.Errorf("bind: %w", err)})
		if s := c.pool.abandon(lc, srv, err, true); s != nil {
			skip = append(skip, s)
		}
		if attempt > 0 {
			return fmt.Errorf("upstream bind: %w", unavailable(prior))
		}
	}
}

// Search runs req and calls fn for each entry, referral or intermediate
// response as it arrives (read r.Entry(), r.Referral(), r.Controls()).
// When the connection breaks before anything reached fn and the session is
// anonymous, the search runs once more on a fresh connection. A session
// bound as a user cannot be moved (its password is not kept): the error
// then wraps ErrConnectionLost. An error from fn stops the search and is
// returned as is.
func (c *Conn) Search(ctx context.Context, req *ldap.SearchRequest, fn func(r ldap.Response) error) error {
	var fnErr error
	err := c.do(ctx, "search", true, func(lc *ldap.Conn) (bool, error) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		delivered := false
		r := lc.SearchAsync(sctx, req, 64)
		for r.Next() {
			delivered = true
			if fnErr = fn(r); fnErr != nil {
				return true, nil
			}
		}
		if err := r.Err(); err != nil {
			return delivered, err
		}
		// SearchAsync ends silently when ctx ends: the results are then
		// incomplete.
		return delivered, ctx.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Compare asks whether dn's attr holds value, with Search's retry rule.
func (c *Conn) Compare(ctx context.Context, dn, attr, value string) (bool, error) {
	var ok bool
	err := c.do(ctx, "compare", true, func(lc *ldap.Conn) (bool, error) {
		return false, withContext(ctx, lc, func() error {
			var err error
			ok, err = lc.Compare(dn, attr, value)
			return err
		})
	})
	return ok, err
}

// Extended sends an extended request. It is never retried: it may have
// changed something (a password) before the connection broke.
func (c *Conn) Extended(ctx context.Context, req *ldap.ExtendedRequest) (*ldap.ExtendedResponse, error) {
	var resp *ldap.ExtendedResponse
	err := c.do(ctx, "extended", false, func(lc *ldap.Conn) (bool, error) {
		return false, withContext(ctx, lc, func() error {
			var err error
			resp, err = lc.Extended(req)
			return err
		})
	})
	return resp, err
}

// do runs one request with the session's retry rule. call reports whether
// anything reached the caller before it failed: a request that delivered
// results cannot be repeated without repeating them.
func (c *Conn) do(ctx context.Context, op string, retry bool, call func(*ldap.Conn) (bool, error)) error {
	var prior []error
	var skip []*server
	for attempt := 0; ; attempt++ {
		lc, srv, bound, err := c.session(ctx, skip, prior)
		if err != nil {
			return fmt.Errorf("upstream %s: %w", op, err)
		}
		start := time.Now()
		delivered, err := call(lc)
		c.pool.m.observe(srv.raw, op, start)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			if lc.IsClosing() {
				c.forget(lc)
			}
			return fmt.Errorf("upstream %s: %w", op, ctx.Err())
		case !brokenConn(err, lc):
			return err
		}
		failed := &serverError{server: srv.raw, err: fmt.Errorf("%s: %w", op, err)}
		prior = append(prior, failed)
		c.forget(lc)
		// A search that delivered results was answering: it timed out
		// because it is long (or its client slow), not because the
		// server hangs.
		if s := c.pool.abandon(lc, srv, err, !delivered); s != nil {
			skip = append(skip, s)
		}
		switch {
		case bound:
			return fmt.Errorf("%w: %w", ErrConnectionLost, failed)
		case !retry || delivered:
			return fmt.Errorf("upstream %s: %w: %w", op, errBroken, failed)
		case attempt > 0:
			return fmt.Errorf("upstream %s: %w", op, unavailable(prior))
		}
	}
}

// session returns the connection for the next request, dialing a new
// anonymous one if the last one was dropped while anonymous.
func (c *Conn) session(ctx context.Context, skip []*server, prior []error) (*ldap.Conn, *server, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, nil, false, ErrClosed
	case c.lost:
		return nil, nil, false, ErrConnectionLost
	}
	if c.lc != nil && c.lc.IsClosing() {
		// Closed by the server (idle timeout, restart) between requests.
		_ = c.lc.Close()
		c.lc = nil
		if c.bound {
			c.bound, c.lost = false, true
			return nil, nil, false, ErrConnectionLost
		}
	}
	if c.lc == nil {
		lc, srv, err := c.pool.connect(ctx, skip, prior)
		if err != nil {
			return nil, nil, false, err
		}
		c.lc, c.srv = lc, srv
	}
	return c.lc, c.srv, c.bound, nil
}

// forget drops lc from the session if it is still the current one; a
// user-bound session is then lost until the next Bind or Unbind.
func (c *Conn) forget(lc *ldap.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lc != lc {
		return
	}
	c.lc = nil
	if c.bound {
		c.bound, c.lost = false, true
	}
}

// abandon closes a connection that broke under a request. If it broke by
// timing out while still open and suspect is set (nothing came back), the
// server stopped answering: it is quarantined and returned, so the retry
// does not wait on it again. A connection the server closed says less (an
// idle timeout, a restart): the retry's connect finds out whether the
// server is still there.
func (p *Pool) abandon(lc *ldap.Conn, srv *server, cause error, suspect bool) *server {
	unresponsive := !lc.IsClosing()
	_ = lc.Close()
	if !unresponsive || !suspect {
		return nil
	}
	p.markDown(srv, cause)
	return srv
}
