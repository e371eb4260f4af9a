package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/gcpolicy"
	dirsync "github.com/ldapproxy/ldapproxy/sync"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// withSyncer opens the upstream pool and, when openStore is set, the store, builds a
// syncer, runs fn and closes everything. Badger allows one process per store: the sync
// command needs it and works while no serve process holds it; mapping preview reads
// the upstream only and leaves the store alone (store is then nil).
func withSyncer(cfg *Config, log *slog.Logger, openStore bool, fn func(*dirsync.Syncer, *cache.Store) error) error {
	pool, err := upstream.New(cfg.Upstream, log.With("component", "upstream"), nil)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	defer pool.Close()
	var store *cache.Store
	if openStore {
		store, err = cache.Open(cfg.Store, log.With("component", "store"), directory.NormalizeDN)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		defer store.Close()
	}
	s, err := dirsync.New(cfg.Sync, pool, store, log.With("component", "sync"), nil)
	if err != nil {
		return fmt.Errorf("sync.mappings: %w", err)
	}
	return fn(s, store)
}

// While ldapproxy sync runs, the collector lets the heap grow by syncHeadroom between
// collections, or by syncMinPercent of the live heap when that is more
// (gcpolicy.Bounded): the records the sync keeps are most of its heap, and Go's default
// lets the heap end at twice them. A first sync of 100,000 users with every attribute
// kept: see docs/performance.md, "Sync".
const (
	syncHeadroom   = 32 << 20
	syncMinPercent = 25
)

// SyncOnce runs one sync and returns the statuses it recorded. The store is closed
// when it ends (CloseSoon), and the collector paced for a heap that the sync fills.
func SyncOnce(ctx context.Context, cfg *Config, log *slog.Logger) ([]cache.Status, error) {
	var status []cache.Status
	err := withSyncer(cfg, log, true, func(s *dirsync.Syncer, store *cache.Store) error {
		store.CloseSoon()
		defer gcpolicy.Bounded(syncHeadroom, syncMinPercent)()
		err := s.Run(ctx)
		status = store.Status()
		return err
	})
	return status, err
}

// Preview maps one upstream entry as a sync would. It does not open the store, so it
// works while serve runs.
func Preview(ctx context.Context, cfg *Config, log *slog.Logger, dn string) (*dirsync.Preview, error) {
	var p *dirsync.Preview
	err := withSyncer(cfg, log, false, func(s *dirsync.Syncer, _ *cache.Store) error {
		var err error
		p, err = s.Preview(ctx, dn)
		return err
	})
	return p, err
}
