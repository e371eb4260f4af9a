package proxy

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// cached answers searches and compares from the synced store. It keeps the served tree
// of the store's latest generation and builds a new one whenever a sync commits, so a
// search always sees one complete generation.
type cached struct {
	store *cache.Store
	opts  ServedOptions
	log   *slog.Logger
	tree  atomic.Pointer[Tree]
}

func newCached(store *cache.Store, opts ServedOptions, log *slog.Logger) *cached {
	c := &cached{store: store, opts: opts, log: log}
	c.rebuild(store.Snapshot())
	store.OnCommit(c.rebuild)
	return c
}

// rebuild makes the served tree of a snapshot. On an error the previous tree stays.
func (c *cached) rebuild(sn *cache.Snapshot) {
	start := time.Now()
	entries := ServedEntries(sn, c.opts)
	t, err := NewTree([]string{c.opts.BaseDN}, entries)
	if err != nil {
		c.log.Error("cannot build the served tree; keeping the previous one", "generation", sn.Generation(), "err", err)
		return
	}
	c.tree.Store(t)
	c.log.Info("served tree ready", "generation", sn.Generation(), "entries", len(entries), "took", time.Since(start).Round(time.Millisecond))
}

func (c *cached) ServeLDAP(w ResponseWriter, r *Request) {
	t := c.tree.Load()
	switch r.Op {
	case OpSearch:
		t.Search(w, r)
	case OpCompare:
		t.Compare(w, r)
	default:
		w.WriteResult(&Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "operation not supported"})
	}
}

// split sends binds to one handler and reads to another (cached mode: binds upstream,
// searches and compares from the store).
type split struct {
	bind, read Handler
}

func (s *split) ServeLDAP(w ResponseWriter, r *Request) {
	if r.Op == OpBind {
		s.bind.ServeLDAP(w, r)
		return
	}
	s.read.ServeLDAP(w, r)
}
