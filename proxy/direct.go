package proxy

import (
	"errors"
	"log/slog"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// direct forwards searches and compares to the client's own upstream connection and
// relays the upstream's responses (entries, references, result, controls) back as bytes.
// Only a failure to reach the upstream is answered by the proxy itself.
type direct struct {
	pool  *upstream.Pool
	store *cache.Store
	log   *slog.Logger
	// fallback answers searches and compares when no upstream can be reached; nil: none.
	fallback reader
	// access says whom the fallback may answer (access.go).
	access *access
}

func (d *direct) search(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	d.forward(w, r, upstream.KindSearch, d.fallbackSearch)
}

func (d *direct) compare(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	d.forward(w, r, upstream.KindCompare, d.fallbackCompare)
}

func (d *direct) fallbackSearch(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	d.fallback.search(w, r)
}

func (d *direct) fallbackCompare(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	d.fallback.compare(w, r)
}

// forward runs on the client connection's read loop (Handler.Inline): most answers come
// within moments, and handing each request to another goroutine cost more than waiting
// for them. A request that waits for long (a connection to open, an answer slow to come)
// detaches, so that the connection reads on (an Abandon of it included) while it waits.
func (d *direct) forward(w ldapserver.ResponseWriter, r *ldapserver.Request, kind upstream.Kind, fallback ldapserver.HandlerFunc) {
	relayed := false
	detacher, _ := w.(upstream.Detacher)
	cl := clientOf(r)
	if !cl.connected() {
		ldapserver.Detach(w)
	}
	conn, err := cl.upstream(r.Context(), d.pool, false)
	if err == nil {
		// The responses go straight to the client's writer: no closure per request.
		var to upstream.Relayer
		if rl, ok := w.(ldapserver.Relayer); ok {
			to = rl
		} else {
			to = upstream.RelayFunc(func(resp ldapwire.Response) error { return relay(w, resp) })
		}
		relayed, err = conn.ForwardTo(r.Context(), kind, r.Raw(), to, detacher)
	}
	if err == nil || r.Context().Err() != nil || errors.Is(err, ldapserver.ErrAbandoned) {
		return
	}
	// What follows may wait on the network (mayFallBack) or go through the served tree.
	ldapserver.Detach(w)
	if !relayed && d.mayFallBack(r, err) {
		logSession(d.log, slog.LevelInfo, r.Session, "upstream unavailable: answering from the synced store", "op", kind.String(), "err", err)
		fallback(w, r)
		return
	}
	logSession(d.log, slog.LevelWarn, r.Session, "request failed: upstream", "op", kind.String(), "err", err)
	w.WriteResult(errorResult(err))
}

// mayFallBack says whether a request the upstream could not answer is answered from the
// store instead: only for the identities the store may answer in the upstream's place
// (`clients:` accounts and search.readers; access.go), only when the store holds a
// synced directory, and only when no upstream can be reached at all. Anyone else gets
// `unavailable`: never an answer the upstream might have refused them, nor an empty one
// a client could take for "no such user". A session that merely lost its connection
// while an upstream still answers gets `unavailable` ("bind again"): fresh data beats a
// stale copy.
func (d *direct) mayFallBack(r *ldapserver.Request, err error) bool {
	if d.fallback == nil || d.store.Snapshot().Generation() == 0 || !upstream.IsUnavailable(err) {
		return false
	}
	if d.access == nil || !d.access.storeMayAnswer(r) {
		return false
	}
	return errors.Is(err, upstream.ErrUnavailable) || !d.pool.Reachable(r.Context())
}

// errorResult turns an error that kept the upstream from answering into the result the
// client gets: `unavailable`, with what went wrong.
func errorResult(err error) *ldapserver.Result {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < 200 { // go-ldap uses 200+ for client-side errors
		res := &ldapserver.Result{Code: le.ResultCode, MatchedDN: le.MatchedDN}
		if le.Err != nil {
			res.Diagnostic = le.Err.Error()
		}
		return res
	}
	if upstream.IsUnavailable(err) {
		return &ldapserver.Result{Code: ldap.LDAPResultUnavailable, Diagnostic: err.Error()}
	}
	return &ldapserver.Result{Code: ldap.LDAPResultOther, Diagnostic: "upstream error: " + err.Error()}
}
