// Package metrics serves the operational HTTP endpoints: Prometheus metrics on /metrics,
// liveness on /healthz and readiness on /readyz. The metrics themselves are declared by
// the packages whose code moves them; this package only exposes them.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the `http:` section of the configuration file.
type Config struct {
	// Listen is the address of the HTTP listener for /metrics, /healthz and /readyz.
	// Default "127.0.0.1:9389"; an explicit empty string turns the listener off.
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ on the same listener, for finding
	// where CPU and memory go under load. Default false: profiles reveal internals.
	Pprof bool `yaml:"pprof"`
}

// DefaultListen is the default address of the metrics listener.
const DefaultListen = "127.0.0.1:9389"

// Validate checks the address.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
	}
	return nil
}

// Namespace is the prefix, followed by an underscore, of every metric the proxy declares
// (ldapproxy_upstream_up, ldapproxy_sync_runs_total, ...). Packages declare their names
// without it and register them on the Registerer below, which adds it.
const Namespace = "ldapproxy"

// Registerer returns the registerer the packages register their metrics on: reg, with
// every name prefixed by Namespace and an underscore. The Go runtime and process
// collectors (go_*, process_*) stay on reg itself, without the prefix.
func Registerer(reg *prometheus.Registry) prometheus.Registerer {
	return prometheus.WrapRegistererWithPrefix(Namespace+"_", reg)
}

// NewRegistry returns a registry with the Go runtime and process collectors, which every
// Prometheus target is expected to expose. Register the proxy's own metrics through
// Registerer(reg).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is the operational HTTP server.
type Server struct {
	srv *http.Server
	log *slog.Logger
}

// New builds the HTTP server. ready reports whether the proxy can serve (nil error) and
// why not otherwise; /readyz answers 503 with that reason.
func New(cfg Config, reg *prometheus.Registry, ready func() error, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute},
		log: log,
	}
}

// Serve serves HTTP on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
