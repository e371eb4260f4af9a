package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Kind says what a forwarded request is, which decides how it may be retried and how it
// times out.
type Kind uint8

// Kinds of forwarded requests.
const (
	// KindBind is a simple bind with a password. It is retried once on another
	// connection when its connection breaks: the request carries its own credentials.
	KindBind Kind = iota + 1
	// KindSearch times out only when the server stops sending results, and is retried
	// like KindCompare when nothing had been delivered yet.
	KindSearch
	// KindCompare is retried on a fresh connection when its connection breaks, unless
	// the session is bound as a user (the bind cannot be replayed: passwords are not kept).
	KindCompare
	// KindExtended is never retried: it may have changed something (a password).
	KindExtended
)

var kindNames = [...]string{KindBind: "bind", KindSearch: "search", KindCompare: "compare", KindExtended: "extended"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "other"
}

// Conn is one client session's own upstream connection. User binds happen here, never
// on the service connections, so a user's bind cannot change the identity the proxy
// searches with. Requests are relayed as LDAP messages (see Forward) and may run
// concurrently.
type Conn struct {
	pool *Pool

	mu     sync.Mutex
	wc     *wireConn // nil: a new anonymous connection is dialed on next use
	srv    *server   // the server of the latest connection
	bound  bool      // wc carries a user's bind
	lost   bool      // a user-bound wc broke: requests fail until a bind or Unbind
	closed bool
}

// Server is the URL (as configured) of the server the session is on, for logs.
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
	wc := c.wc
	c.wc, c.closed = nil, true
	c.mu.Unlock()
	if wc != nil {
		wc.close()
	}
	return nil
}

// Unbind forgets the session's identity: the next request runs anonymously. It closes
// the connection (sending an LDAP unbind) and lets the next request dial a fresh one,
// rather than sending an anonymous bind: the identity is gone for certain even if the
// server is unreachable, and Unbind never waits on the network for an answer.
func (c *Conn) Unbind() {
	c.mu.Lock()
	wc := c.wc
	c.wc, c.bound, c.lost = nil, false, false
	c.mu.Unlock()
	if wc != nil {
		wc.close()
	}
}

// Forward sends one client request and hands every response message to fn as it
// arrives, the final one (the operation's result) last. msg is the whole LDAPMessage as
// the client encoded it: its message ID is replaced on the way up, and the responses
// carry the connection's IDs, which the caller replaces with its own. fn runs on the
// connection's reader and must not keep msg after it returns; an error from fn stops
// the request (the server is asked to abandon it) and is returned as is.
//
// When the connection breaks or the server stops answering, the request is retried
// once on a fresh connection (possibly another server) if kind allows it and nothing
// reached fn yet. A session bound as a user cannot be moved: the error then wraps
// ErrConnectionLost until the next bind or Unbind. A successful KindBind makes the
// session user-bound; any other bind result leaves it anonymous (RFC 4511 §4.2.1).
func (c *Conn) Forward(ctx context.Context, kind Kind, msg []byte, fn func(ldapwire.Response) error) error {
	var prior []error
	var skip, avoid []*server
	for attempt := 0; ; attempt++ {
		wc, bound, err := c.session(ctx, kind, skip, avoid, prior)
		if err != nil {
			return fmt.Errorf("upstream %s: %w", kind, err)
		}
		respond := fn
		bindOK := false
		if kind == KindBind {
			respond = func(r ldapwire.Response) error {
				if r.Final {
					bindOK = r.Code == ldap.LDAPResultSuccess
				}
				return fn(r)
			}
		}
		start := time.Now()
		delivered, err := wc.roundTrip(ctx, msg, respond, c.pool.cfg.Timeout, kind == KindSearch)
		c.pool.m.observe(wc.srv.raw, kind.String(), start)
		var ne *netError
		switch {
		case err == nil:
			if kind == KindBind {
				c.setBound(wc, bindOK)
			}
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("upstream %s: %w", kind, ctx.Err())
		case !errors.As(err, &ne):
			return err // fn's own error
		}
		failed := &serverError{server: wc.srv.raw, err: fmt.Errorf("%s: %w", kind, err)}
		prior = append(prior, failed)
		c.forget(wc)
		// A server that got the request and said nothing is hanging: set it aside so
		// the retry does not wait on it again. One that closed the connection may be
		// dying, its port still accepting for a moment, or only restarting: the retry
		// goes to the next server first, and back to this one only if no other
		// answers. A search that delivered results was answering, just slowly.
		switch {
		case errors.Is(err, errTimeout) && !delivered:
			c.pool.markDown(wc.srv, err)
			skip = append(skip, wc.srv)
		default:
			avoid = append(avoid, wc.srv)
		}
		switch {
		case bound && kind != KindBind:
			return fmt.Errorf("%w: %w", ErrConnectionLost, failed)
		case kind == KindExtended || delivered:
			return fmt.Errorf("upstream %s: %w: %w", kind, errBroken, failed)
		case attempt > 0 && !errors.Is(err, errTimeout):
			// The retry's fresh connection was accepted and then closed under the
			// request: a server is there and refuses to answer it (a request over its
			// size limit, say). That is not "no upstream reachable", which would let
			// the caller fall back to cached credentials.
			return fmt.Errorf("upstream %s: %w: %w", kind, errBroken, &listError{errs: prior})
		case attempt > 0:
			return fmt.Errorf("upstream %s: %w", kind, unavailable(prior))
		}
	}
}

// session returns the connection for the next request, dialing a new one if the last
// one was dropped. A bind may always go ahead: it establishes a new identity.
func (c *Conn) session(ctx context.Context, kind Kind, skip, avoid []*server, prior []error) (*wireConn, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false, ErrClosed
	}
	if kind == KindBind {
		c.lost = false
	}
	if c.lost {
		return nil, false, ErrConnectionLost
	}
	if c.wc != nil && c.wc.broken() {
		// Closed by the server (idle timeout, restart) between requests.
		c.wc.close()
		c.wc = nil
		if c.bound && kind != KindBind {
			c.bound, c.lost = false, true
			return nil, false, ErrConnectionLost
		}
	}
	if c.wc == nil {
		nc, srv, err := c.pool.connect(ctx, skip, avoid, prior)
		if err != nil {
			c.bound = false
			return nil, false, err
		}
		c.wc, c.srv, c.bound = newWireConn(nc, srv), srv, false
	}
	return c.wc, c.bound, nil
}

func (c *Conn) setBound(wc *wireConn, bound bool) {
	c.mu.Lock()
	if c.wc == wc {
		c.bound = bound
	}
	c.mu.Unlock()
}

// forget drops wc from the session if it is still the current one; a user-bound session
// is then lost until the next bind or Unbind.
func (c *Conn) forget(wc *wireConn) {
	c.mu.Lock()
	if c.wc == wc {
		c.wc = nil
		if c.bound {
			c.bound, c.lost = false, true
		}
	}
	c.mu.Unlock()
	wc.close()
}

// Bind makes a simple bind as dn on the session, with Forward's retry rule, and returns
// the server's refusal as an *ldap.Error (49 invalid credentials, ...).
func (c *Conn) Bind(ctx context.Context, dn string, password []byte) error {
	if len(password) == 0 {
		// A simple bind with a name and no password is an "unauthenticated bind"
		// (RFC 4513 §5.1.2) that many servers answer with success: it must never pass
		// for a login.
		return ldap.NewError(ldap.LDAPResultUnwillingToPerform, errors.New("unauthenticated bind (empty password) refused"))
	}
	var result error
	err := c.Forward(ctx, KindBind, ldapwire.BindRequest(dn, password), func(r ldapwire.Response) error {
		result = r.Err()
		return nil
	})
	if err != nil {
		return err
	}
	return result
}
