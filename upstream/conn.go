package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
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
	// KindCompare is retried on a fresh connection when its connection breaks; a session
	// bound as a user is bound again there first, with its kept credential, or is lost
	// without one (Config.RebindOnFailover off). A compare of a password attribute goes
	// out as a secret request, as a bind does.
	KindCompare
	// KindExtended is never retried: it may have changed something (a password). Like
	// a bind, it goes out as a secret request (wireConn.roundTrip): the password changes
	// that use it (Password Modify, a modify of the password attribute) carry passwords
	// in clear, and no copy of them stays in the connection's buffers.
	KindExtended
)

var kindNames = [...]string{KindBind: "bind", KindSearch: "search", KindCompare: "compare", KindExtended: "extended"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "other"
}

// pagingHold is how long after a paged search's last page that left a cookie a
// session stays on its server rather than moving back to the preferred one: servers
// tie the cookie to the connection. A client that reads on sends its next page within
// moments; one that never asks for the rest lets the session move after this.
const pagingHold = 5 * time.Minute

// Conn is one client session's own upstream connection. User binds happen here, never
// on the service connections, so a user's bind cannot change the identity the proxy
// searches with. Requests are relayed as LDAP messages (see Forward) and may run
// concurrently.
//
// With Config.RebindOnFailover, a successful simple bind is kept sealed (see
// sealedCredential) for as long as the session keeps that identity: when the server
// dies, the session is bound again on the next server and the request retried, and an
// idle session moves back to the preferred server when that returns. Unbind, Close and
// any new bind drop it.
type Conn struct {
	pool *Pool

	mu       sync.Mutex
	wc       *wireConn         // nil: a new connection is dialed (and bound again, with cred) on next use
	srv      *server           // the server of the latest connection
	bound    bool              // wc carries the session's bind
	cred     *sealedCredential // the session's bind while it lasts, to bind again elsewhere; nil: none kept
	lost     bool              // a user-bound wc broke and cannot be bound again: requests fail until a bind or Unbind
	closed   bool
	inFlight int       // requests sent on the session and not yet answered
	pagedAt  time.Time // when a paged search last left a cookie; zero: none outstanding
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

// Close ends the session's upstream connection and drops its credential.
func (c *Conn) Close() error {
	c.mu.Lock()
	wc := c.wc
	c.wc, c.closed = nil, true
	c.dropCredential()
	c.mu.Unlock()
	c.pool.forgetSession(c)
	if wc != nil {
		wc.close()
	}
	return nil
}

// moveIdle moves the session to the preferred server, as its next request would, if it
// has nothing in flight and is on a less preferred server: the pool calls it when a
// server comes back (Pool.moveSessions). moveBack says when a session stays.
func (c *Conn) moveIdle(ctx context.Context) {
	var stale *wireConn
	c.mu.Lock()
	if !c.closed && !c.lost && c.wc != nil && c.inFlight == 0 && !c.wc.broken() && !c.pool.preferred(c.srv) {
		stale = c.moveBack(ctx, 0, false, nil)
	}
	c.mu.Unlock()
	if stale != nil {
		stale.close()
	}
}

// Unbind forgets the session's identity, and the credential kept for it: the next
// request runs anonymously. It closes the connection (sending an LDAP unbind) and lets
// the next request dial a fresh one, rather than sending an anonymous bind: the identity
// is gone for certain even if the server is unreachable, and Unbind never waits on the
// network for an answer.
func (c *Conn) Unbind() {
	c.mu.Lock()
	wc := c.wc
	c.wc, c.bound, c.lost = nil, false, false
	c.dropCredential()
	c.pagedAt = time.Time{}
	c.mu.Unlock()
	if wc != nil {
		wc.close()
	}
}

// dropCredential wipes the kept credential; c.mu is held.
func (c *Conn) dropCredential() {
	c.cred.wipe()
	c.cred = nil
}

// Forward sends one client request and hands every response message to fn as it
// arrives, the final one (the operation's result) last. msg is the whole LDAPMessage as
// the client encoded it: its message ID is replaced on the way up, and the responses
// carry the connection's IDs, which the caller replaces with its own. fn runs on
// whichever goroutine reads the connection (usually the caller's own; another request's
// of the session, or a reader goroutine, when several are in flight) and must not keep
// msg after it returns; an error from fn stops the request (the server is asked to
// abandon it) and is returned as is. So does a panic in fn, recovered where it ran,
// returned as an error whose log value holds the stack: the goroutine fn ran on may be
// another request's, which goes on.
//
// When the connection breaks or the server stops answering, the request is retried
// once on a fresh connection (possibly another server) if kind allows it and nothing
// reached fn yet. A session bound as a user is first bound again there with its kept
// credential; without one (RebindOnFailover off), or when the server refuses it (a
// password changed meanwhile), the error wraps ErrConnectionLost until the next bind or
// Unbind. A successful KindBind makes the session user-bound, and keeps its credential;
// any other bind result leaves it anonymous (RFC 4511 §4.2.1).
func (c *Conn) Forward(ctx context.Context, kind Kind, msg []byte, fn func(ldapwire.Response) error) error {
	_, err := c.forward(ctx, kind, msg, RelayFunc(fn), nil)
	return err
}

// Relayer takes the response messages of a forwarded request (ForwardTo), as Forward's
// fn does. ldapserver's ResponseWriters that relay have its method.
type Relayer interface {
	Relay(resp ldapwire.Response) error
}

// RelayFunc adapts a function to Relayer.
type RelayFunc func(resp ldapwire.Response) error

// Relay calls f(resp).
func (f RelayFunc) Relay(resp ldapwire.Response) error { return f(resp) }

// Detacher is a caller that holds something up while its request waits (the read loop
// of the client connection the request came on, which reads nothing else meanwhile) and
// can let go of it: see ForwardTo. Detach may be called more than once.
type Detacher interface{ Detach() }

// ForwardTo is Forward with the responses handed to to: a caller that relays them to a
// writer of its own (a client's ResponseWriter, or a value it allocates anyway) needs no
// closure around it, which would cost each request an allocation. delivered reports
// whether to was given any response, also when err is not nil.
//
// d, when not nil, is for a request answered on its client connection's read loop:
// d.Detach is called, from the caller's goroutine, as soon as the request turns out to
// wait for long — a connection to open (and bind) first, no answer within watchAfter,
// or another request of the session reading the answers — so that the client's next
// requests, an Abandon of this one included, are read while it goes on. Most requests,
// answered within moments on an open connection, never call it.
func (c *Conn) ForwardTo(ctx context.Context, kind Kind, msg []byte, to Relayer, d Detacher) (delivered bool, err error) {
	return c.forward(ctx, kind, msg, to, d)
}

func (c *Conn) forward(ctx context.Context, kind Kind, msg []byte, to Relayer, d Detacher) (bool, error) {
	cred := c.newIdentity(kind, msg)
	secret := carriesPassword(kind, msg)
	stay := false // the request continues a paged search: the session must not move
	if kind == KindSearch {
		cookie, _ := ldapwire.PagedCookie(msg)
		stay = len(cookie) > 0
	}
	var prior []error
	var skip, avoid []*server
	idleChecked := false
	for attempt := 0; ; attempt++ {
		wc, bound, err := c.session(ctx, kind, stay, skip, avoid, prior, d)
		if err != nil {
			cred.wipe()
			return false, fmt.Errorf("upstream %s: %w", kind, err)
		}
		respond := responder{to: to}
		if kind == KindBind || kind == KindSearch {
			respond.sess, respond.kind, respond.cred = c, kind, cred
		}
		start := time.Now()
		// An extended operation is never sent twice, so it must not go out on a
		// connection the server has closed: that is looked at first, unless the
		// connection answered a moment ago (answeredRecently).
		check := kind == KindExtended || !wc.answeredWithin(start, answeredRecently)
		delivered, err := wc.roundTrip(ctx, msg, respond, start, c.pool.cfg.Timeout, kind == KindSearch, secret, check, d)
		end := time.Now()
		c.pool.m.observeKind(wc.srv, kind, end.Sub(start))
		c.finished()
		switch {
		case err == nil:
			wc.answered(end)
			return delivered, nil
		case ctx.Err() != nil:
			return delivered, fmt.Errorf("upstream %s: %w", kind, ctx.Err())
		case !isNetError(err):
			return delivered, err // to's own error
		case errors.Is(err, errClosedIdle) && !idleChecked:
			// Closed by the server between requests, found just now: nothing was
			// sent, and the session goes on as session() does with such a connection.
			idleChecked = true
			attempt--
			continue
		}
		failed := &serverError{server: wc.srv.raw, err: fmt.Errorf("%s: %w", kind, err)}
		prior = append(prior, failed)
		rebindable := c.forget(wc)
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
		case bound && kind != KindBind && !rebindable:
			return delivered, fmt.Errorf("%w: %w", ErrConnectionLost, failed)
		case kind == KindExtended || delivered:
			return delivered, fmt.Errorf("upstream %s: %w: %w", kind, errBroken, failed)
		case attempt > 0 && !errors.Is(err, errTimeout):
			// The retry's fresh connection was accepted and then closed under the
			// request: a server is there and refuses to answer it (a request over its
			// size limit, say). That is not "no upstream reachable", which would let
			// the caller fall back to cached credentials.
			return false, fmt.Errorf("upstream %s: %w: %w", kind, errBroken, &listError{errs: prior})
		case attempt > 0:
			return false, fmt.Errorf("upstream %s: %w", kind, unavailable(prior))
		}
	}
}

// newIdentity drops the session's kept credential when a bind starts a new identity,
// whatever it was, and returns the bind's own, sealed, when the session keeps one
// (Config.RebindOnFailover); nil for any other request.
func (c *Conn) newIdentity(kind Kind, msg []byte) *sealedCredential {
	if kind != KindBind {
		return nil
	}
	c.mu.Lock()
	c.dropCredential()
	c.mu.Unlock()
	if !c.pool.cfg.rebindOnFailover() {
		return nil
	}
	return sealCredential(msg)
}

// carriesPassword reports whether a request of kind carries a password in clear, and so
// goes out as a secret request (wireConn.roundTrip), leaving no copy behind: a bind, a
// password change (KindExtended), and a compare of a password attribute, which asserts
// a password as a bind does.
func carriesPassword(kind Kind, msg []byte) bool {
	switch kind {
	case KindBind, KindExtended:
		return true
	case KindCompare:
		attr, _ := ldapwire.CompareAttribute(msg)
		if i := bytes.IndexByte(attr, ';'); i >= 0 {
			attr = attr[:i] // options: userPassword;binary
		}
		for _, name := range passwordAttributes {
			if strings.EqualFold(string(attr), name) {
				return true
			}
		}
	}
	return false
}

// passwordAttributes are the attributes that hold passwords, by name and OID.
var passwordAttributes = [...]string{"userPassword", "2.5.4.35", "unicodePwd", "1.2.840.113556.1.4.90"}

// isNetError reports whether err is a failure of the connection itself (netError).
func isNetError(err error) bool {
	var ne *netError
	return errors.As(err, &ne)
}

// session returns the connection for the next request, dialing a new one (and binding
// it again with the kept credential) if the last one was dropped, and counts the request
// in flight until finished. A bind may always go ahead: it establishes a new identity.
// An idle session on a less preferred server moves back to the preferred one first,
// unless stay says the request continues a paged search. d, when not nil, is detached
// before a connection is opened.
func (c *Conn) session(ctx context.Context, kind Kind, stay bool, skip, avoid []*server, prior []error, d Detacher) (*wireConn, bool, error) {
	// Connections set aside are closed after c.mu is released: closing waits for the
	// connection's reader, which may be waiting for c.mu to record a response.
	var stale *wireConn
	defer func() {
		if stale != nil {
			stale.close()
		}
	}()
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
		stale, c.wc = c.wc, nil
		if c.bound && kind != KindBind {
			c.bound = false
			if c.cred == nil {
				c.lost = true
				return nil, false, ErrConnectionLost
			}
		}
	}
	if c.wc != nil && c.inFlight == 0 && c.pool.cfg.rebindOnFailover() && !c.pool.preferred(c.srv) {
		stale = c.moveBack(ctx, kind, stay, d)
	}
	if c.wc == nil {
		if d != nil {
			d.Detach()
		}
		wc, bound, err := c.dial(ctx, kind, skip, avoid, prior)
		if err != nil {
			c.bound = false
			return nil, false, err
		}
		c.wc, c.srv, c.bound = wc, wc.srv, bound
	}
	c.inFlight++
	return c.wc, c.bound, nil
}

// finished counts a request out of flight.
func (c *Conn) finished() {
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
}

// dial opens the session's next connection, on the first server that answers, and binds
// it with the kept credential unless kind is a bind (which brings its own). A server
// whose connection fails the bind on the network is set aside and the next one tried;
// one that refuses the credential ends the session's identity: the error then wraps
// ErrConnectionLost, as if no credential had been kept. c.mu is held.
func (c *Conn) dial(ctx context.Context, kind Kind, skip, avoid []*server, prior []error) (*wireConn, bool, error) {
	rebind := kind != KindBind && c.cred != nil
	for {
		nc, srv, err := c.pool.connect(ctx, skip, avoid, prior)
		if err != nil {
			return nil, false, err
		}
		wc := newWireConn(nc, srv)
		if !rebind {
			return wc, false, nil
		}
		err = c.rebind(ctx, wc)
		if err == nil {
			c.pool.log.Debug("upstream session bound again after its connection was lost", "server", srv.raw)
			return wc, true, nil
		}
		wc.close()
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			c.dropCredential()
			c.lost = true
			return nil, false, fmt.Errorf("%w (binding again on %s was refused: %v)", ErrConnectionLost, srv.raw, refused.err)
		case ctx.Err() != nil:
			return nil, false, ctx.Err()
		}
		prior = append(prior, &serverError{server: srv.raw, err: fmt.Errorf("bind again: %w", err)})
		if errors.Is(err, errTimeout) {
			c.pool.markDown(srv, err)
		}
		skip = append(skip, srv)
	}
}

// moveBack moves an idle session to a more preferred server that is up again, bound
// again with its kept credential, and returns the connection it leaves (nil when it
// stays). A session stays where it is while a paged search has left a cookie there
// (servers tie cookies to their connection), when it is bound without a kept credential,
// and when no better server answers now. A server that refuses the credential (a
// password changed since the bind) is not a reason to drop a connection that still
// works: the session stays, without the credential, so it will not survive a failover.
// d, when not nil, is detached before a connection is opened. c.mu is held.
func (c *Conn) moveBack(ctx context.Context, kind Kind, stay bool, d Detacher) *wireConn {
	if kind == KindBind {
		// The identity is about to change anyway: a fresh connection, where new ones go.
		old := c.wc
		c.wc, c.bound = nil, false
		return old
	}
	paging := !c.pagedAt.IsZero() && time.Since(c.pagedAt) < pagingHold
	if stay || paging || c.bound && c.cred == nil {
		return nil
	}
	if d != nil {
		d.Detach()
	}
	nc, srv, err := c.pool.connectBefore(ctx, c.srv)
	if err != nil {
		return nil
	}
	wc := newWireConn(nc, srv)
	if c.bound {
		if err := c.rebind(ctx, wc); err != nil {
			wc.close()
			switch {
			case errors.As(err, new(*refusedError)):
				c.dropCredential()
			case ctx.Err() == nil:
				// Up for its probe, yet not answering a bind: set it aside until the
				// probe says otherwise, or every request of every idle session would
				// wait on it.
				c.pool.markDown(srv, err)
			}
			return nil
		}
	}
	c.pool.log.Debug("upstream session moved back to a preferred server", "server", srv.raw, "from", c.srv.raw)
	old := c.wc
	c.wc, c.srv = wc, srv
	c.pagedAt = time.Time{}
	return old
}

// refusedError is a server's answer other than success to a session's bind again.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }

// rebind binds wc with the kept credential. The bind request exists in clear only while
// it is sent. c.mu is held.
func (c *Conn) rebind(ctx context.Context, wc *wireConn) error {
	msg, err := c.cred.bindRequest()
	if err != nil {
		return &refusedError{err: err}
	}
	defer clear(msg)
	var refusal error
	start := time.Now()
	_, err = wc.roundTrip(ctx, msg, responder{to: RelayFunc(func(r ldapwire.Response) error {
		if r.Final {
			refusal = r.Err()
		}
		return nil
	})}, start, c.pool.cfg.Timeout, false, true, true, nil)
	c.pool.m.observeKind(wc.srv, KindBind, time.Since(start))
	switch {
	case err != nil:
		return err
	case refusal != nil:
		return &refusedError{err: refusal}
	}
	return nil
}

// final notes what the final response r on wc to a request of kind tells the session: a
// bind's outcome (setBound, with the bind's credential cred), or whether a search left a
// paged-results cookie (notePaging).
func (c *Conn) final(wc *wireConn, kind Kind, cred *sealedCredential, r ldapwire.Response) {
	switch kind {
	case KindBind:
		c.setBound(wc, r.Code == ldap.LDAPResultSuccess, cred)
	case KindSearch:
		c.notePaging(wc, r.Msg)
	}
}

// setBound records a bind's answer on wc: bound (keeping cred, which may be nil) on
// success, anonymous otherwise.
func (c *Conn) setBound(wc *wireConn, ok bool, cred *sealedCredential) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wc != wc || !ok {
		cred.wipe()
		if c.wc == wc {
			c.bound = false
		}
		return
	}
	c.bound = true
	c.dropCredential()
	c.cred = cred
	c.pagedAt = time.Time{}
}

// PasswordChanged tells the session that it changed its own password to password, so
// that binding again after a failover uses the new one rather than failing with the old
// (and counting against the account's lockout). nil, when the new password is not known,
// drops the kept credential: the session will not survive a failover.
func (c *Conn) PasswordChanged(password []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cred == nil {
		return
	}
	msg, err := c.cred.bindRequest()
	c.dropCredential()
	if err != nil || len(password) == 0 {
		return
	}
	defer clear(msg)
	dn, _, _ := ldapwire.SimpleBind(msg)
	next := ldapwire.BindRequest(dn, password)
	defer clear(next)
	c.cred = sealCredential(next)
}

// notePaging records whether a search's final response on wc left a paged-results
// cookie, which ties the session to wc's server until the search is read to its end.
func (c *Conn) notePaging(wc *wireConn, final []byte) {
	cookie, paged := ldapwire.PagedCookie(final)
	if !paged {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wc != wc {
		return
	}
	if len(cookie) > 0 {
		c.pagedAt = time.Now()
	} else {
		c.pagedAt = time.Time{}
	}
}

// forget drops wc from the session if it is still the current one, and reports whether
// the session can be bound again elsewhere: a user-bound session without a kept
// credential is lost until the next bind or Unbind.
func (c *Conn) forget(wc *wireConn) (rebindable bool) {
	c.mu.Lock()
	if c.wc == wc {
		c.wc = nil
		if c.bound {
			c.bound = false
			c.lost = c.cred == nil
		}
	}
	rebindable = c.cred != nil
	c.mu.Unlock()
	wc.close()
	return rebindable
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
	msg := ldapwire.BindRequest(dn, password)
	defer clear(msg)
	err := c.Forward(ctx, KindBind, msg, func(r ldapwire.Response) error {
		result = r.Err()
		return nil
	})
	if err != nil {
		return err
	}
	return result
}
