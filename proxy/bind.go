package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// binder answers binds: resolve the name, check what the proxy refuses by itself, forward
// the bind to the client's own upstream connection, and record the outcome (identity,
// throttle, password caches) before the client sees it. When no upstream can be reached,
// the credential cache may log the user in (offlineBind).
type binder struct {
	pool      *upstream.Pool
	names     *resolver
	listen    ListenConfig
	log       *slog.Logger
	passwords *passwordCaches
	// authCache skips the upstream for a recent login (cached mode only); nil: off.
	authCache *cache.AuthCache
	// throttle refuses binds of users and addresses that failed too often; nil: off.
	throttle *bindThrottle
	// clients are the accounts the proxy authenticates by itself (clients.go); nil: none.
	clients *Clients
}

// login is a bind on its way: who asks, as whom the upstream knows them, and the
// message that asks it; once forwarded, where the answer goes (Relay) and what it was.
// One allocation holds it all.
type login struct {
	name       string      // the bind name as the client sent it
	user       *cache.User // the synced user it resolved to, or nil
	identity   string      // the DN the session is bound as on success
	upstreamDN string      // the DN the upstream knows the user by
	msg        []byte      // the bind request to send upstream (forward)
	attempt    bindAttempt

	b        *binder
	r        *ldapserver.Request
	w        ldapserver.ResponseWriter
	code     uint16 // the upstream's result code, once answered
	answered bool
}

func (b *binder) bind(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	s, c := r.Session, clientOf(r)
	s.SetAnonymous() // RFC 4511 §4.2.1: a bind first resets the identity, whatever its outcome
	c.loggedIn(false)
	if c.clientAccount() != nil {
		c.forgetIdentity() // drops the service account's connection
	}
	if res := b.refuseEarly(r); res != nil {
		// Refused, or anonymous: the upstream connection must not keep the previous
		// identity either.
		c.forgetIdentity()
		w.WriteResult(res)
		return
	}
	if a := b.clients.match(r.Bind.Name); a != nil {
		b.clientBind(w, r, c, a)
		return
	}
	l := b.resolve(r, c)
	if res := b.check(r, l); res != nil {
		c.forgetIdentity()
		w.WriteResult(res)
		return
	}
	if b.authCache != nil && b.authCache.Check(l.upstreamDN, r.Bind.Password) {
		l.attempt.succeeded()
		s.SetBound(l.identity)
		c.loggedIn(true)
		logSession(b.log, slog.LevelDebug, s, "bind accepted from the cached-authentication cache", "name", l.name)
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
		return
	}
	code, answered, err := b.forward(w, r, c, l)
	switch {
	case err != nil && !answered:
		if r.Context().Err() != nil {
			return
		}
		if errors.Is(err, upstream.ErrUnavailable) && b.passwords.creds != nil {
			b.offlineBind(w, r, l, err)
			return
		}
		logSession(b.log, slog.LevelWarn, s, "bind failed: upstream unavailable", "name", l.name, "err", err)
		w.WriteResult(errorResult(err))
	case code == ldap.LDAPResultSuccess:
		b.passwords.rememberHash(l.user, l.upstreamDN, r.Bind.Password)
	case code == ldap.LDAPResultInvalidCredentials:
		logSession(b.log, slog.LevelInfo, s, "bind failed: invalid credentials", "name", l.name)
	default:
		logSession(b.log, slog.LevelInfo, s, "bind refused by upstream", "name", l.name, "code", code)
	}
}

// clientBind authenticates one of the `clients:` accounts against its hash, without the
// upstream, and subject to the same failed-bind throttle as any bind.
func (b *binder) clientBind(w ldapserver.ResponseWriter, r *ldapserver.Request, c *client, a *clientAccount) {
	s := r.Session
	c.forgetIdentity() // the upstream connection must not keep an earlier identity
	attempt := b.throttle.attempt(a.dn, nil, s)
	if attempt.refused() {
		w.WriteResult(throttledResult())
		return
	}
	ok, err := b.clients.verify(r.Context(), a, r.Bind.Password)
	if err != nil {
		return // the client went away
	}
	if !ok {
		attempt.failed()
		logSession(b.log, slog.LevelInfo, s, "bind failed: invalid credentials for a client account", "name", r.Bind.Name)
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultInvalidCredentials})
		return
	}
	attempt.succeeded()
	s.SetBound(a.dn)
	c.setAccount(a)
	logSession(b.log, slog.LevelDebug, s, "bind accepted: client account", "name", r.Bind.Name)
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// refuseEarly answers the binds the proxy settles from the request alone: a protocol
// version other than 3, SASL, anonymous binds, unauthenticated binds, a password on a
// clear connection that must be encrypted. Success is an anonymous bind. A nil result
// lets the bind go on.
func (b *binder) refuseEarly(r *ldapserver.Request) *ldapserver.Result {
	q := r.Bind
	switch {
	case q.Version != 3:
		return &ldapserver.Result{Code: ldap.LDAPResultProtocolError, Diagnostic: fmt.Sprintf("LDAP version %d is not supported; use 3", q.Version)}
	case q.Mechanism != "":
		return &ldapserver.Result{Code: ldap.LDAPResultAuthMethodNotSupported, Diagnostic: "SASL bind is not supported; use a simple bind"}
	case q.Name == "" && len(q.Password) == 0:
		return &ldapserver.Result{Code: ldap.LDAPResultSuccess}
	case len(q.Password) == 0:
		// An unauthenticated bind (RFC 4513 §5.1.2): a name without a password. Many
		// servers answer it with success, and applications that test a login by binding
		// have let users in with an empty password that way. It is never a login here.
		if !b.listen.AllowAnonymous {
			logSession(b.log, slog.LevelInfo, r.Session, "unauthenticated bind refused", "name", q.Name)
			return &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "unauthenticated bind (name without password) is not allowed"}
		}
		return &ldapserver.Result{Code: ldap.LDAPResultSuccess}
	case q.Name == "":
		return &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "a password without a bind name is not allowed"}
	case b.listen.RequireTLSForBind && r.Session.TLS() == nil:
		return &ldapserver.Result{Code: ldap.LDAPResultConfidentialityRequired, Diagnostic: "binds with a password need TLS: use LDAPS or StartTLS"}
	}
	return nil
}

// resolve finds whom a bind names, in any form the resolver takes (names.go: a DN in any
// spelling, DOMAIN\user, a user name, a UPN, a mail address). A name that resolves binds
// upstream with the DN the upstream knows, and on success the session is bound as the
// user's served DN — what WhoAmI answers, whether the upstream or the credential cache
// let the user in. A name that does not resolve goes upstream as it came.
func (b *binder) resolve(r *ldapserver.Request, c *client) *login {
	q := r.Bind
	l := &login{name: q.Name, identity: q.Name, upstreamDN: q.Name, msg: r.Raw()}
	if u := b.names.bindUser(&c.nobody, q.Name); u != nil {
		l.user, l.identity, l.upstreamDN = u, servedDN(u), u.DN
	}
	l.attempt = b.throttle.attempt(q.Name, l.user, r.Session)
	return l
}

// check refuses a resolved bind the proxy turns down without asking the upstream: a
// disabled account, or a user or address over the failed-bind limit. The throttle is
// asked before anything looks at the password, so a throttled guess reaches neither the
// upstream nor the caches.
func (b *binder) check(r *ldapserver.Request, l *login) *ldapserver.Result {
	if l.user != nil && !l.user.IsActive {
		logSession(b.log, slog.LevelInfo, r.Session, "bind refused: account disabled", "name", l.name)
		return &ldapserver.Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "the account is disabled"}
	}
	if l.attempt.refused() {
		return throttledResult()
	}
	return nil
}

// forward sends the bind on the client's upstream connection and relays the answer.
// Everything the outcome changes is recorded before the client can see it: a client
// that retries at once on another connection must meet the new throttle count and no
// stale cached password.
func (b *binder) forward(w ldapserver.ResponseWriter, r *ldapserver.Request, c *client, l *login) (code uint16, answered bool, err error) {
	conn, err := c.upstream(r.Context(), b.pool, true)
	if err != nil {
		return 0, false, err
	}
	l.b, l.r, l.w = b, r, w
	if l.upstreamDN != r.Bind.Name {
		// The name resolved to a user the upstream knows by another DN: the bind goes as
		// a request naming it, made here and cleared once sent (the upstream connection
		// copies what it keeps), so that no copy of the password outlives the bind.
		l.msg = ldapwire.BindRequest(l.upstreamDN, r.Bind.Password)
		defer clear(l.msg)
	}
	_, err = conn.ForwardTo(r.Context(), upstream.KindBind, l.msg, l, nil)
	return l.code, l.answered, err
}

// Relay records the upstream's answer to the bind (binder.record), then relays it.
func (l *login) Relay(resp ldapwire.Response) error {
	if resp.Final {
		l.code, l.answered = resp.Code, true
		l.b.record(l.r, l, resp.Code)
	}
	return relay(l.w, resp)
}

// record applies an upstream's answer to a bind.
func (b *binder) record(r *ldapserver.Request, l *login, code uint16) {
	switch code {
	case ldap.LDAPResultSuccess:
		r.Session.SetBound(l.identity)
		l.attempt.succeeded()
		if b.authCache != nil {
			b.authCache.Remember(l.upstreamDN, r.Bind.Password)
		}
	case ldap.LDAPResultInvalidCredentials:
		l.attempt.failed()
		b.passwords.forget(l.upstreamDN, l.user)
	}
}

// offlineBind checks a bind against the credential cache; it runs only when no upstream
// server could be reached at all (an upstream that answers is always believed). A synced
// user is checked against the hash kept by its ID, after what the directory itself would
// refuse (disabled, locked, expired, ...: the user's Account); any other name against the
// hash kept by the DN it names, if it names one (an application's own account that
// logged in before). A match logs in as the same identity an upstream success gives;
// anything else is invalidCredentials, with the reason in the log.
func (b *binder) offlineBind(w ldapserver.ResponseWriter, r *ldapserver.Request, l *login, cause error) {
	s := r.Session
	if !l.attempt.offlineStart() {
		b.passwords.creds.Throttled()
		logSession(b.log, slog.LevelWarn, s, "offline login refused", "name", l.name, "reason", cache.ErrOfflineThrottled)
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "no upstream server reachable; the cached credentials do not match"})
		return
	}
	var (
		ok     bool
		reason error
	)
	if l.user != nil {
		ok, reason = b.passwords.creds.Verify(r.Context(), l.user, r.Bind.Password)
	} else {
		ok, reason = b.passwords.creds.VerifyDN(r.Context(), l.upstreamDN, r.Bind.Password)
	}
	l.attempt.offlineEnd(ok, errors.Is(reason, context.Canceled) || errors.Is(reason, context.DeadlineExceeded))
	if errors.Is(reason, cache.ErrOfflineWrongPassword) {
		l.attempt.failed() // only a checked, wrong password: not a missing or expired hash
	}
	if !ok {
		logSession(b.log, slog.LevelWarn, s, "offline login refused", "name", l.name, "reason", reason, "upstream", cause)
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "no upstream server reachable; the cached credentials do not match"})
		return
	}
	l.attempt.succeeded()
	s.SetBound(l.identity)
	clientOf(r).loggedIn(true)
	logSession(b.log, slog.LevelWarn, s, "offline login: accepted from the credential cache while no upstream server is reachable", "name", l.name)
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// relay passes an upstream response to the client as it came.
func relay(w ldapserver.ResponseWriter, resp ldapwire.Response) error {
	rl, ok := w.(ldapserver.Relayer)
	if !ok {
		return errors.New("proxy: the response writer cannot relay upstream responses")
	}
	return rl.Relay(resp)
}
