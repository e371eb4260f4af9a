package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
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

// SyncOnce runs one sync and returns the statuses it recorded. The store is closed when
// it ends (CloseSoon).
func SyncOnce(ctx context.Context, cfg *Config, log *slog.Logger) ([]cache.Status, error) {
	var status []cache.Status
	err := withSyncer(cfg, log, true, func(s *dirsync.Syncer, store *cache.Store) error {
		store.CloseSoon()
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
