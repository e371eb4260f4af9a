package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/ldapserver"
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
	// Names says how bind names resolve (names.go: bind.netbios_domain).
	Names NamesConfig
	// Served says how the store's objects appear in the served tree.
	Served ServedOptions
	// Version is reported in the root DSE.
	Version string
	Logger  *slog.Logger
	Metrics *Metrics
	// Writeback writes password changes to the upstream (writeback.go); its zero value
	// refuses them.
	Writeback WritebackOptions
	// Credentials, when set (bind.cache_passwords), keeps password hashes for logins
	// while no upstream can be reached.
	Credentials *cache.Credentials
	// AuthCache accepts a bind that succeeded upstream within bind.cached_auth_ttl
	// without asking the upstream again (cached mode only); nil or a zero TTL: off.
	AuthCache *cache.AuthCache
	// OfflineFailures limits failed offline logins per user (bind.offline_failure_limit,
	// offline_failure_window); the zero value turns the limit off.
	OfflineFailures FailureLimit
	// Clients are the `clients:` accounts (clients.go), authenticated by the proxy
	// itself; nil: none.
	Clients *Clients
	// ThrottleMetrics counts binds refused by the bind-failure throttle (throttle.go,
	// configured in Listen and OfflineFailures); nil: not counted.
	ThrottleMetrics *ThrottleMetrics
}

// Handler is the proxy's request chain, built once by NewHandler:
//
//	instrument (metrics, debug log line)
//	  → router (one table: operation, or extended operation name → handler)
//	    → local answers and access rules (root DSE, subschema, WhoAmI, read-only refusals,
//	      "bind first")
//	      → bind (bind.go), cached (cached.go) or direct (direct.go) reads, writeback
//
// Set its ConnContext as the ldapserver.Server's: it gives every client connection the
// proxy's own state (client.go).
type Handler struct {
	root ldapserver.Handler
	// cached is set when searches and compares are answered from the served tree.
	cached bool
	// tree answers searches and compares in cached mode; nil in direct mode.
	tree *cached
}

// Inline is the ldapserver.Server's Inline for this handler: searches and compares are
// answered on the connection's read loop, with no hand-off to another goroutine. In
// cached mode they are answered from the served tree in memory, and a search that goes
// through much of the tree lets the connection read on while it does
// (ldapserver.Detach); in direct mode they are relayed from the client's upstream
// connection, and one that waits for long (a connection to open, an answer that does not
// come within moments) lets the connection read on while it waits (direct.go).
func (h *Handler) Inline(r *ldapserver.Request) bool {
	return r.Op == ldapserver.OpSearch || r.Op == ldapserver.OpCompare
}

// CachedReady reports whether a cached-mode handler answers searches and compares: once
// its served tree serves a synced generation (before, they are unavailable), which is
// after the store has committed it. False in direct mode.
func (h *Handler) CachedReady() bool { return h.tree != nil && h.tree.synced.Load() }

// ServeLDAP answers one request.
func (h *Handler) ServeLDAP(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	h.root.ServeLDAP(w, r)
}

// ConnContext is the ldapserver.Server's ConnContext for this handler.
func (h *Handler) ConnContext(ctx context.Context, s *ldapserver.Session) context.Context {
	return withClient(ctx, s)
}

// NewHandler builds the request chain.
func NewHandler(o Options) *Handler {
	h, _ := newHandler(o, nil)
	return h
}

// newHandler builds the chain; keep, when not nil, hears of password changes instead of
// the password caches (tests).
func newHandler(o Options, keep passwordKeeper) (*Handler, *writeback) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger
	names := newResolver(o)
	acc := newAccess(o.Search.Readers, o.Search.Mode == ModeCached, names, o.Store)
	var tree *cached
	if o.Store != nil {
		tree = newCached(o.Store, o.Served, log)
		tree.access = acc
	}
	pw := &passwordCaches{creds: o.Credentials, auth: o.AuthCache, store: o.Store, log: log}
	binds := &binder{pool: o.Upstream, names: names, listen: o.Listen, log: log, passwords: pw,
		throttle: newBindThrottle(o.Listen, o.OfflineFailures, o.ThrottleMetrics, log), clients: o.Clients}
	if o.Search.Mode == ModeCached {
		// In direct mode every later search needs the user's identity upstream, which only
		// a real upstream bind gives.
		binds.authCache = o.AuthCache
	}
	forward := &direct{pool: o.Upstream, store: o.Store, log: log, access: acc}
	if tree != nil {
		forward.fallback = tree
	}
	var reads reader = forward
	if o.Search.Mode == ModeCached && tree != nil {
		reads = tree
	}
	if keep == nil {
		keep = pw
	}
	wb := newWriteback(o, names, keep)
	loc := &local{opts: o}
	if tree != nil {
		loc.schema = tree.schema
	}

	rt := &router{extended: map[string]ldapserver.Handler{
		ldapserver.OIDWhoAmI:         ldapserver.HandlerFunc(whoAmI),
		ldapserver.OIDPasswordModify: ldapserver.HandlerFunc(wb.passwordModify),
	}}
	rt.ops[ldapserver.OpBind] = ldapserver.HandlerFunc(binds.bind)
	rt.ops[ldapserver.OpSearch] = loc.rootDSEOr(loc.readersOnly(ldapserver.HandlerFunc(reads.search)))
	rt.ops[ldapserver.OpCompare] = loc.readersOnly(ldapserver.HandlerFunc(reads.compare))
	rt.ops[ldapserver.OpModify] = passwordChangesTo(ldapserver.HandlerFunc(wb.modify))
	h := &Handler{root: instrument(rt, o.Metrics, log), cached: reads == reader(tree)}
	if h.cached {
		h.tree = tree
	}
	return h, wb
}

// reader answers searches and compares: the served tree, or the upstream.
type reader interface {
	search(w ldapserver.ResponseWriter, r *ldapserver.Request)
	compare(w ldapserver.ResponseWriter, r *ldapserver.Request)
}

// router sends each request to the handler of its operation, or of its extended
// operation's name. An operation without one is a write: the proxy is read-only.
type router struct {
	ops      [ldapserver.OpExtended + 1]ldapserver.Handler
	extended map[string]ldapserver.Handler
}

func (rt *router) ServeLDAP(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	var h ldapserver.Handler
	switch {
	case r.Op == ldapserver.OpExtended:
		h = rt.extended[r.Extended.Name]
		if h == nil {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultProtocolError, Diagnostic: fmt.Sprintf("unsupported extended operation %s", r.Extended.Name)})
			return
		}
	case int(r.Op) < len(rt.ops):
		h = rt.ops[r.Op]
	}
	if h == nil {
		w.WriteResult(readOnly())
		return
	}
	h.ServeLDAP(w, r)
}

func readOnly() *ldapserver.Result {
	return &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the proxy is read-only"}
}

// passwordChangesTo passes modifies that touch a password attribute to next (the
// writeback, which refuses mixed ones); any other modify is refused as a write.
func passwordChangesTo(next ldapserver.Handler) ldapserver.Handler {
	return ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		for _, c := range r.Modify.Changes {
			if isPasswordAttr(c.Type) {
				next.ServeLDAP(w, r)
				return
			}
		}
		w.WriteResult(readOnly())
	})
}

func isPasswordAttr(t string) bool {
	return strings.EqualFold(t, attrUserPassword) || strings.EqualFold(t, attrUnicodePwd)
}
