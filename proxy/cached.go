package proxy

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// cached answers searches and compares from the synced store. It feeds the directory
// engine the served entries of the store's latest generation (served.go) and builds a
// new tree whenever a sync commits, so a search always sees one complete generation.
type cached struct {
	store *cache.Store
	opts  ServedOptions
	log   *slog.Logger
	tree  atomic.Pointer[directory.Tree]
	// access limits what each session sees (access.go); nil: everything.
	access *access
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
	t, err := directory.NewTree([]string{c.opts.BaseDN}, entries)
	if err != nil {
		c.log.Error("cannot build the served tree; keeping the previous one", "generation", sn.Generation(), "err", err)
		return
	}
	c.tree.Store(t)
	c.log.Info("served tree ready", "generation", sn.Generation(), "entries", len(entries), "took", time.Since(start).Round(time.Millisecond))
}

func (c *cached) search(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	t := c.tree.Load()
	res := t.SearchWithin(r.Context(), r.Search, r.Controls, c.within(t, r), func(e *directory.Entry) error { return w.WriteEntry(e) })
	if res != nil {
		w.WriteResult(res)
	}
}

func (c *cached) compare(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	t := c.tree.Load()
	w.WriteResult(t.CompareWithin(r.Compare, c.within(t, r)))
}

// within is the part of t the session of r may read; nil: all of it.
func (c *cached) within(t *directory.Tree, r *ldapserver.Request) *directory.Within {
	if c.access == nil {
		return nil
	}
	v := c.access.viewOf(r)
	if v.all {
		return nil
	}
	return t.Within(v.dns)
}
