package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/mapping"
	"github.com/ldapproxy/ldapproxy/metrics"
	"github.com/ldapproxy/ldapproxy/proxy"
	dirsync "github.com/ldapproxy/ldapproxy/sync"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// ShutdownTimeout bounds a graceful shutdown: operations still running after it are cut.
const ShutdownTimeout = 30 * time.Second

// App is a running ldapproxy: its listeners, its upstream pool and its HTTP endpoints.
type App struct {
	cfg  *Config
	log  *slog.Logger
	reg  *prometheus.Registry
	pool *upstream.Pool
	// clients are the `clients:` accounts; a reload replaces them.
	clients *proxy.Clients
	store   *cache.Store
	creds   *cache.Credentials
	syncer  *dirsync.Syncer
	handler *proxy.Handler
	ldap    *ldapserver.Server
	http    *metrics.Server
	// reload is what Reload (reload.go) may change while the proxy runs.
	reload reloadState

	ldapL, ldapsL, httpL net.Listener
}

// New builds the parts from a validated configuration. Nothing listens until Start.
func New(cfg *Config, log *slog.Logger, version string) (*App, error) {
	a := &App{cfg: cfg, log: log, reg: metrics.NewRegistry()}
	// reg is what every part registers its metrics on, with names without the namespace
	// ("upstream_up"): it adds "ldapproxy_". a.reg itself holds only the Go runtime and
	// process collectors, and is what /metrics serves.
	reg := metrics.Registerer(a.reg)
	pool, err := upstream.New(cfg.Upstream, log, reg)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	a.pool = pool
	store, err := cache.Open(cfg.Store, log.With("component", "store"), directory.NormalizeDN)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	a.store = store
	if cfg.Sync.Enabled {
		if a.syncer, err = dirsync.New(cfg.Sync, pool, store, log.With("component", "sync"), reg); err != nil {
			a.close()
			return nil, fmt.Errorf("sync.mappings: %w", err)
		}
	}
	tlsConf, err := cfg.Listen.ServerTLS()
	if err != nil {
		a.close()
		return nil, fmt.Errorf("listen.%w", err)
	}
	tlsConf = a.reload.start(cfg, tlsConf) // the listeners take the certificate Reload last loaded
	a.ldap = &ldapserver.Server{
		TLSConfig:      tlsConf,
		MaxConnections: cfg.Listen.MaxConnections,
		IdleTimeout:    cfg.Listen.IdleTimeout,
		WriteTimeout:   cfg.Listen.WriteTimeout,
		MaxMessageSize: cfg.Listen.MaxMessageSize,
		MaxFilterDepth: cfg.Listen.MaxFilterDepth,
		MaxOpsPerConn:  cfg.Listen.MaxOperationsPerConnection,
		Logger:         log.With("component", "frontend"),

		MaxMessageSizeAnonymous:  cfg.Listen.MaxMessageSizeAnonymous,
		MaxPartialBytes:          cfg.Listen.MaxPartialRequestBytes,
		MaxConnectionsPerAddress: *cfg.Listen.MaxConnectionsPerAddress,
		LimitExempt:              cfg.Listen.LimitExempt(),
		ProxyProtocolFrom:        cfg.Listen.ProxyProtocolPeers(),
	}
	m := proxy.NewMetrics(reg, func() float64 { return float64(a.ldap.OpenConnections()) })
	// Built even when cache_passwords is off: it then drops any hashes a previous run
	// stored, so turning the setting off really forgets them.
	if a.creds, err = cache.NewCredentials(store, cfg.Bind.CredentialConfig, reg); err != nil {
		a.close()
		return nil, fmt.Errorf("bind: %w", err)
	}
	var creds *cache.Credentials
	if cfg.Bind.CachePasswords {
		creds = a.creds
	}
	var authCache *cache.AuthCache
	if cfg.Bind.CachedAuthTTL > 0 {
		authCache = cache.NewAuthCache(cfg.Bind.CachedAuthTTL, directory.NormalizeDN)
	}
	if a.clients, err = proxy.LoadClients(cfg.Clients); err != nil {
		a.close()
		return nil, err
	}
	h := proxy.NewHandler(proxy.Options{
		Clients:  a.clients,
		Listen:   cfg.Listen,
		Search:   cfg.Search,
		Upstream: pool,
		Store:    store,
		Names:    cfg.Bind.NamesConfig,
		Served: proxy.ServedOptions{
			BaseDN: cfg.Upstream.BaseDN, NestedGroups: cfg.Sync.NestedGroups, MembershipField: cfg.Sync.MembershipField,
			UserFields: mapping.Fields(cfg.Sync.Mappings.Users), GroupFields: mapping.Fields(cfg.Sync.Mappings.Groups),
			ActiveDirectory: cfg.Sync.Preset == "active-directory",
		},
		Version:         version,
		Logger:          log.With("component", "frontend"),
		Metrics:         m,
		Credentials:     creds,
		AuthCache:       authCache,
		OfflineFailures: proxy.FailureLimit{Limit: cfg.Bind.OfflineFailureLimit, Window: cfg.Bind.OfflineFailureWindow},
		ThrottleMetrics: proxy.NewThrottleMetrics(reg),
		Writeback: proxy.WritebackOptions{
			Config:           cfg.Writeback,
			ActiveDirectory:  cfg.Sync.Preset == "active-directory",
			UpstreamStartTLS: cfg.Upstream.StartTLS,
			Metrics:          proxy.NewWritebackMetrics(reg),
		},
	})
	a.handler, a.ldap.Handler, a.ldap.ConnContext, a.ldap.Inline = h, h, h.ConnContext, h.Inline
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "build_info",
		Help:        "Always 1; the version label names the running build.",
		ConstLabels: prometheus.Labels{"version": version},
	}, func() float64 { return 1 }))
	a.http = metrics.New(cfg.HTTP, a.reg, a.ready, log.With("component", "http"))
	return a, nil
}

// ready is the /readyz check. In cached mode the proxy can serve once its served tree
// holds a synced directory to answer searches from (binds wait for an upstream, or use
// the offline logins); before the first sync, and while the tree of the first sync the
// store committed is still being made, it answers searches with unavailable, and is
// not ready. In direct mode it can serve when an upstream server answers.
func (a *App) ready() error {
	if a.cfg.Search.Mode == proxy.ModeCached {
		if a.handler.CachedReady() {
			return nil
		}
		return errors.New("cached mode: the first sync has not finished, or its served tree is being built")
	}
	if a.pool.Healthy() {
		return nil
	}
	return errors.New("no upstream server reachable")
}

// close releases what New opened.
func (a *App) close() {
	if a.creds != nil {
		a.creds.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
	a.pool.Close()
}

// Start opens the listeners. A listener that cannot be opened is an error naming its key.
func (a *App) Start() error {
	var err error
	if addr := a.cfg.Listen.LDAP; addr != "" {
		if a.ldapL, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen.ldap: %w", err)
		}
	}
	if addr := a.cfg.Listen.LDAPS; addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			a.closeListeners()
			return fmt.Errorf("listen.ldaps: %w", err)
		}
		a.ldapsL = l
	}
	if addr := a.cfg.HTTP.Listen; addr != "" {
		if a.httpL, err = net.Listen("tcp", addr); err != nil {
			a.closeListeners()
			return fmt.Errorf("http.listen: %w", err)
		}
	}
	return nil
}

func (a *App) closeListeners() {
	for _, l := range []net.Listener{a.ldapL, a.ldapsL, a.httpL} {
		if l != nil {
			l.Close()
		}
	}
}

// LDAPAddr is the plain listener's address ("" when off); useful with port 0 in tests.
func (a *App) LDAPAddr() string { return addr(a.ldapL) }

// LDAPSAddr is the LDAPS listener's address, or "".
func (a *App) LDAPSAddr() string { return addr(a.ldapsL) }

// HTTPAddr is the metrics listener's address, or "".
func (a *App) HTTPAddr() string { return addr(a.httpL) }

func addr(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Run serves until ctx is cancelled, then shuts down gracefully: listeners close, the
// operations in flight finish (up to ShutdownTimeout), connections close.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	serve := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, ldapserver.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if a.ldapL != nil {
		serve(func() error { return a.ldap.Serve(a.ldapL) })
	}
	if a.ldapsL != nil {
		serve(func() error { return a.ldap.ServeTLS(a.ldapsL) })
	}
	if a.httpL != nil {
		serve(func() error { return a.http.Serve(a.httpL) })
	}
	syncCtx, stopSync := context.WithCancel(ctx)
	syncDone := make(chan struct{})
	go func() {
		defer close(syncDone)
		if a.syncer != nil {
			a.syncer.Loop(syncCtx)
		}
	}()
	a.log.Info("ldapproxy serving", "ldap", a.LDAPAddr(), "ldaps", a.LDAPSAddr(), "http", a.HTTPAddr(),
		"upstream", a.cfg.Upstream.URLs, "search_mode", a.cfg.Search.Mode)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down: finishing requests in flight", "timeout", ShutdownTimeout)
	case runErr = <-errc:
		a.log.Error("listener failed; shutting down", "err", runErr)
	}
	stopSync()
	<-syncDone
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := a.ldap.Shutdown(sctx); err != nil {
		a.log.Warn("shutdown cut operations short", "err", err)
	}
	if err := a.http.Shutdown(sctx); err != nil {
		a.log.Warn("metrics server shutdown", "err", err)
	}
	a.closeListeners()
	wg.Wait()
	a.close()
	a.log.Info("ldapproxy stopped")
	return runErr
}

// Registry exposes the metrics registry (tests read metrics from it).
func (a *App) Registry() *prometheus.Registry { return a.reg }
