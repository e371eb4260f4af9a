package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// Options wires the proxy's request handling to the rest of the program.
type Options struct {
	Listen   ListenConfig
	Search   SearchConfig
	Upstream *upstream.Pool
	// Store is the synced directory: cached searches answer from it, bind names are
	// resolved through it, and direct mode falls back to it. Nil: none of that.
	Store *cache.Store
	// Served says how the store's objects appear in the served tree.
	Served ServedOptions
	// Version is reported in the root DSE.
	Version string
	Logger  *slog.Logger
	Metrics *Metrics
	// Writeback writes password changes to the upstream (passwd.go); its zero value
	// refuses them.
	Writeback WritebackOptions
	// Credentials, when set (bind.cache_passwords), keeps password hashes for logins
	// while no upstream can be reached.
	Credentials *cache.Credentials
	// AuthCache accepts a bind that succeeded upstream within bind.cached_auth_ttl
	// without asking the upstream again (cached mode only); nil or a zero TTL: off.
	AuthCache *cache.AuthCache
	// ThrottleMetrics counts binds refused by the bind-failure throttle (throttle.go,
	// configured in Listen); nil: not counted.
	ThrottleMetrics *ThrottleMetrics
}

// NewHandler builds the request chain: metrics and logging, then access rules and the
// answers the proxy gives itself (root DSE, WhoAmI, refusals), then the backend that asks
// the upstream.
func NewHandler(o Options) Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	backend := &direct{pool: o.Upstream, store: o.Store, listen: o.Listen, log: o.Logger, creds: o.Credentials,
		throttle: newBindThrottle(o.Listen, o.ThrottleMetrics, o.Logger)}
	if o.Search.Mode == ModeCached {
		// In direct mode every later search needs the user's identity upstream, which only
		// a real upstream bind gives.
		backend.authCache = o.AuthCache
	}
	var next Handler = backend
	if o.Store != nil {
		c := newCached(o.Store, o.Served, o.Logger)
		backend.fallback = c
		backend.served = c
		if o.Search.Mode == ModeCached {
			next = &split{bind: backend, read: c}
		}
	}
	local := &local{next: next, opts: o, passwd: newWriteback(o, backend)}
	return instrument(local, o.Metrics, o.Logger)
}

// local answers what the proxy knows by itself and enforces who may do what before a
// request reaches the upstream.
type local struct {
	next   Handler
	opts   Options
	passwd *writeback
}

func (h *local) ServeLDAP(w ResponseWriter, r *Request) {
	switch r.Op {
	case OpBind:
		h.next.ServeLDAP(w, r)
	case OpSearch:
		if isRootDSE(r.Search) {
			h.rootDSE(w, r)
			return
		}
		if !h.mayRead(w, r) {
			return
		}
		h.next.ServeLDAP(w, r)
	case OpCompare:
		if !h.mayRead(w, r) {
			return
		}
		h.next.ServeLDAP(w, r)
	case OpExtended:
		h.extended(w, r)
	case OpModify:
		if isPasswordChange(r.Modify) {
			h.passwd.modify(w, r)
			return
		}
		w.WriteResult(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the proxy is read-only"})
	default: // add, delete, modify DN
		w.WriteResult(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the proxy is read-only"})
	}
}

// mayRead refuses reads from clients that have not authenticated, unless anonymous
// access is on. It writes the refusal itself.
func (h *local) mayRead(w ResponseWriter, r *Request) bool {
	if r.Session.Authenticated() || h.opts.Listen.AllowAnonymous {
		return true
	}
	w.WriteResult(&Result{Code: ldap.LDAPResultInsufficientAccessRights, Diagnostic: "bind first: anonymous access is not allowed"})
	return false
}

func (h *local) extended(w ResponseWriter, r *Request) {
	switch r.Extended.Name {
	case OIDWhoAmI:
		// RFC 4532: "dn:<DN>" for a bound client, an empty authzId for an anonymous one.
		id := ""
		if r.Session.Authenticated() {
			id = "dn:" + r.Session.BoundDN()
		}
		w.WriteResult(&Result{Code: ldap.LDAPResultSuccess, ResponseValue: []byte(id), HasValue: true})
	case OIDPasswordModify:
		h.passwd.passwordModify(w, r)
	default:
		w.WriteResult(&Result{Code: ldap.LDAPResultProtocolError, Diagnostic: fmt.Sprintf("unsupported extended operation %s", r.Extended.Name)})
	}
}

func isPasswordChange(m *ModifyRequest) bool {
	for _, c := range m.Changes {
		if strings.EqualFold(c.Type, "userPassword") || strings.EqualFold(c.Type, "unicodePwd") {
			return true
		}
	}
	return false
}

// direct forwards binds, searches and compares to the upstream. Each client connection
// gets its own upstream connection, opened on first use: the client's bind happens there,
// so every later search runs upstream with the client's own identity and access rights,
// and paged-results cookies stay valid (servers tie them to the connection).
type direct struct {
	pool   *upstream.Pool
	store  *cache.Store // nil: bind names are not resolved
	listen ListenConfig
	log    *slog.Logger
	// fallback answers searches and compares when no upstream can be reached.
	fallback Handler
	// served is the served tree, which resolves DNs however they are spelled.
	served *cached
	// creds checks offline logins; authCache skips the upstream for a recent login.
	creds     *cache.Credentials
	authCache *cache.AuthCache
	// throttle refuses binds of users and addresses that failed too often; nil: off.
	throttle *bindThrottle
}

// cachedLoginKey marks a session whose login the proxy accepted without an upstream bind
// (offline, or from the cached-authentication cache): its upstream connection does not
// carry the user's identity, so nothing may be forwarded on it as the user.
type cachedLoginKey struct{}

// errCachedLogin is returned for such sessions; it reads as "upstream connection lost".
var errCachedLogin = fmt.Errorf("%w (the login was accepted without the directory)", upstream.ErrConnectionLost)

type sessionConnKey struct{}

// sessionConn holds a client connection's upstream connection.
type sessionConn struct {
	mu   sync.Mutex
	conn *upstream.Conn
}

func (h *direct) conn(r *Request) (*upstream.Conn, error) {
	s := r.Session
	if cached, _ := s.Value(cachedLoginKey{}).(bool); cached && r.Op != OpBind {
		return nil, errCachedLogin
	}
	sc, _ := s.Value(sessionConnKey{}).(*sessionConn)
	if sc == nil {
		fresh := &sessionConn{}
		actual, loaded := s.LoadOrStore(sessionConnKey{}, fresh)
		if !loaded {
			s.OnClose(fresh.close)
		}
		sc = actual.(*sessionConn)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.conn == nil {
		c, err := h.pool.Dial(r.Context())
		if err != nil {
			return nil, err
		}
		sc.conn = c
	}
	return sc.conn, nil
}

func (sc *sessionConn) close() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.conn != nil {
		sc.conn.Close()
		sc.conn = nil
	}
}

func (h *direct) ServeLDAP(w ResponseWriter, r *Request) {
	switch r.Op {
	case OpBind:
		h.bind(w, r)
	case OpSearch:
		h.search(w, r)
	case OpCompare:
		h.compare(w, r)
	default:
		w.WriteResult(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "operation not supported"})
	}
}

func (h *direct) bind(w ResponseWriter, r *Request) {
	b := r.Bind
	s := r.Session
	s.SetAnonymous() // RFC 4511 §4.2.1: a bind first resets the identity, whatever its outcome
	s.SetValue(cachedLoginKey{}, false)
	refuse := func(res *Result) {
		// The upstream connection must not keep the previous identity either.
		h.forgetUpstreamIdentity(s)
		w.WriteResult(res)
	}
	switch {
	case b.Version != 3:
		refuse(&Result{Code: ldap.LDAPResultProtocolError, Diagnostic: fmt.Sprintf("LDAP version %d is not supported; use 3", b.Version)})
		return
	case b.Mechanism != "":
		refuse(&Result{Code: ldap.LDAPResultAuthMethodNotSupported, Diagnostic: "SASL bind is not supported; use a simple bind"})
		return
	case b.Name == "" && len(b.Password) == 0:
		h.forgetUpstreamIdentity(s)
		w.WriteResult(&Result{Code: ldap.LDAPResultSuccess})
		return
	case len(b.Password) == 0:
		// An unauthenticated bind (RFC 4513 §5.1.2): a name without a password. Many
		// servers answer it with success, and applications that test a login by binding
		// have let users in with an empty password that way. It is never a login here.
		if !h.listen.AllowAnonymous {
			h.log.Info("unauthenticated bind refused", "conn", s.ID, "name", b.Name)
			refuse(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "unauthenticated bind (name without password) is not allowed"})
			return
		}
		h.forgetUpstreamIdentity(s)
		w.WriteResult(&Result{Code: ldap.LDAPResultSuccess})
		return
	case b.Name == "":
		refuse(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "a password without a bind name is not allowed"})
		return
	case h.listen.RequireTLSForBind && s.TLS() == nil:
		refuse(&Result{Code: ldap.LDAPResultConfidentialityRequired, Diagnostic: "binds with a password need TLS: use LDAPS or StartTLS"})
		return
	}
	msg, identity, upstreamDN := r.Raw(), b.Name, b.Name
	u := h.resolve(b.Name)
	if u != nil {
		if !u.IsActive {
			h.log.Info("bind refused: account disabled", "conn", s.ID, "name", b.Name)
			refuse(&Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "the account is disabled"})
			return
		}
		identity, upstreamDN = servedDN(u), u.DN
		if u.DN != b.Name {
			// A user name, a UPN or the DN the user has in the served tree: bind upstream
			// with the DN the upstream knows.
			msg = upstream.BindMessage(u.DN, b.Password)
		}
	}
	// Bind-failure throttle (throttle.go): checked before anything looks at the password,
	// so a throttled guess reaches neither the upstream nor the caches.
	attempt := h.throttle.attempt(b.Name, u, s.RemoteAddr)
	if attempt.refused() {
		refuse(throttledResult())
		return
	}
	if h.authCache != nil && h.authCache.Check(upstreamDN, b.Password) {
		attempt.succeeded()
		s.SetBound(identity)
		s.SetValue(cachedLoginKey{}, true)
		h.log.Debug("bind accepted from the cached-authentication cache", "conn", s.ID, "name", b.Name)
		w.WriteResult(&Result{Code: ldap.LDAPResultSuccess})
		return
	}
	var code uint16
	answered := false
	c, err := h.conn(r)
	if err == nil {
		err = c.Forward(r.Context(), upstream.KindBind, msg, func(m []byte) error {
			if _, rc, final, err := ldapwire.Response(m); err == nil && final {
				code, answered = rc, true
				// Everything the outcome changes is done before the client can see it:
				// a client that retries at once on another connection must meet the new
				// throttle count and no stale cached password.
				switch rc {
				case ldap.LDAPResultSuccess:
					s.SetBound(identity)
					attempt.succeeded()
					if h.authCache != nil {
						h.authCache.Remember(upstreamDN, b.Password)
					}
				case ldap.LDAPResultInvalidCredentials:
					attempt.failed()
					// The upstream is always believed: whatever the proxy remembered of
					// this user's password is wrong now.
					if h.authCache != nil {
						h.authCache.Forget(upstreamDN)
					}
					if h.creds != nil && u != nil {
						h.creds.Forget(u.ID)
					}
				}
			}
			return w.Relay(m)
		})
	}
	switch {
	case err != nil && !answered:
		if r.Context().Err() != nil {
			return
		}
		if errors.Is(err, upstream.ErrUnavailable) && h.creds != nil {
			h.offlineBind(w, r, u, identity, err, &attempt)
			return
		}
		h.log.Warn("bind failed: upstream unavailable", "conn", s.ID, "name", b.Name, "err", err)
		w.WriteResult(errorResult(err))
	case code == ldap.LDAPResultSuccess:
		if h.creds != nil && u != nil {
			if err := h.creds.Remember(u, b.Password); err != nil {
				h.log.Debug("password hash not updated", "conn", s.ID, "name", b.Name, "err", err)
			}
		}
	case code == ldap.LDAPResultInvalidCredentials:
		h.log.Info("bind failed: invalid credentials", "conn", s.ID, "name", b.Name)
	default:
		h.log.Info("bind refused by upstream", "conn", s.ID, "name", b.Name, "code", code)
	}
}

// offlineBind checks a bind against the credential cache; it runs only when no upstream
// server could be reached at all (an upstream that answers is always believed). A match
// logs in; anything else is invalidCredentials.
func (h *direct) offlineBind(w ResponseWriter, r *Request, u *cache.User, identity string, cause error, attempt *bindAttempt) {
	s := r.Session
	if u == nil {
		h.log.Warn("offline login refused: user not in the store", "conn", s.ID, "name", r.Bind.Name, "upstream", cause)
		w.WriteResult(&Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "no upstream server reachable, and no cached credentials for this user"})
		return
	}
	ok, reason := h.creds.Verify(r.Context(), u, r.Bind.Password)
	if errors.Is(reason, cache.ErrOfflineWrongPassword) {
		attempt.failed() // only a checked, wrong password: not a missing or expired hash
	}
	if !ok {
		h.log.Warn("offline login refused", "conn", s.ID, "name", r.Bind.Name, "reason", reason)
		w.WriteResult(&Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "no upstream server reachable; the cached credentials do not match"})
		return
	}
	attempt.succeeded()
	s.SetBound(identity)
	s.SetValue(cachedLoginKey{}, true)
	h.log.Warn("offline login: accepted from the credential cache while no upstream server is reachable", "conn", s.ID, "name", r.Bind.Name)
	w.WriteResult(&Result{Code: ldap.LDAPResultSuccess})
}

// mayFallBack says whether a request the upstream could not answer is answered from the
// store instead: only when the store holds a synced directory, and only when no upstream
// can be reached at all. A session that merely lost its connection while an upstream
// still answers gets `unavailable` ("bind again"): fresh data beats a stale copy.
func (h *direct) mayFallBack(r *Request, err error) bool {
	if h.fallback == nil || h.store.Snapshot().Generation() == 0 || !upstream.IsUnavailable(err) {
		return false
	}
	return errors.Is(err, upstream.ErrUnavailable) || !h.pool.Reachable(r.Context())
}

// resolve finds the synced user a bind name stands for: a DN (upstream or served), a
// user name, or a user@domain UPN (matched against the user's mapped upn or mail). It
// returns nil when the store does not know the name; the bind then goes upstream as it
// came, and the upstream decides.
func (h *direct) resolve(name string) *cache.User {
	if h.store == nil {
		return nil
	}
	sn := h.store.Snapshot()
	if strings.Contains(name, "=") {
		if u, ok := sn.UserByPath(name); ok {
			return u
		}
		if u, ok := sn.UserByDN(name); ok {
			return u
		}
		// The directory accepts other spellings of a DN (OID attribute types, escaped
		// insignificant spaces): match it the way the upstream would, through the served
		// tree, so that no spelling escapes the disabled-account check or the throttle.
		if h.served != nil {
			if t := h.served.tree.Load(); t != nil {
				if canon, ok := t.Lookup(name); ok {
					if u, ok := sn.UserByPath(canon); ok {
						return u
					}
				}
			}
		}
		return nil
	}
	if u, ok := sn.UserByUsername(name); ok {
		return u
	}
	if local, _, ok := strings.Cut(name, "@"); ok {
		if u, ok := sn.UserByUsername(local); ok &&
			(strings.EqualFold(attrString(u.Attributes["upn"]), name) || strings.EqualFold(u.Email, name)) {
			return u
		}
	}
	return nil
}

// servedDN is the DN a user has in the served tree.
func servedDN(u *cache.User) string {
	if u.Path != "" {
		return u.Path
	}
	return u.DN
}

// forgetUpstreamIdentity makes the session's upstream connection anonymous again after
// the client became anonymous, so that nothing is read later with an identity the
// client gave up.
func (h *direct) forgetUpstreamIdentity(s *Session) {
	if sc, ok := s.Value(sessionConnKey{}).(*sessionConn); ok {
		sc.mu.Lock()
		if sc.conn != nil {
			sc.conn.Unbind()
		}
		sc.mu.Unlock()
	}
}

func (h *direct) search(w ResponseWriter, r *Request) {
	h.forward(w, r, upstream.KindSearch)
}

func (h *direct) compare(w ResponseWriter, r *Request) {
	h.forward(w, r, upstream.KindCompare)
}

// forward relays a request to the session's upstream connection and the upstream's
// responses (entries, references, result, controls) back, as bytes. Only a failure to
// reach the upstream is answered by the proxy itself.
func (h *direct) forward(w ResponseWriter, r *Request, kind upstream.Kind) {
	relayed := false
	c, err := h.conn(r)
	if err == nil {
		err = c.Forward(r.Context(), kind, r.Raw(), func(m []byte) error {
			relayed = true
			return w.Relay(m)
		})
	}
	if err == nil || r.Context().Err() != nil || errors.Is(err, errAbandoned) {
		return
	}
	if !relayed && h.mayFallBack(r, err) {
		h.log.Info("upstream unavailable: answering from the synced store", "conn", r.Session.ID, "op", kind.String(), "err", err)
		h.fallback.ServeLDAP(w, r)
		return
	}
	h.log.Warn("request failed: upstream", "conn", r.Session.ID, "op", kind.String(), "err", err)
	w.WriteResult(errorResult(err))
}

// errorResult turns an error that kept the upstream from answering into the result the
// client gets: `unavailable`, with what went wrong.
func errorResult(err error) *Result {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < 200 { // go-ldap uses 200+ for client-side errors
		res := &Result{Code: le.ResultCode, MatchedDN: le.MatchedDN}
		if le.Err != nil {
			res.Diagnostic = le.Err.Error()
		}
		return res
	}
	if upstream.IsUnavailable(err) {
		return &Result{Code: ldap.LDAPResultUnavailable, Diagnostic: err.Error()}
	}
	return &Result{Code: ldap.LDAPResultOther, Diagnostic: "upstream error: " + err.Error()}
}
