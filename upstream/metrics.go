package upstream

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series. Label values are the configured
// URLs, the fixed operation names and the two connection states: never a DN
// or a user name.
type metrics struct {
	up              *prometheus.GaugeVec
	requestDuration *prometheus.HistogramVec
	connectFailures *prometheus.CounterVec
	serviceConns    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		up: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ldapproxy_upstream_up",
			Help: "Whether the upstream server is believed reachable (1) or is in quarantine (0).",
		}, []string{"server"})),
		requestDuration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ldapproxy_upstream_request_duration_seconds",
			Help:    "Duration of requests to the upstream servers, connects included, by server and operation.",
			Buckets: prometheus.DefBuckets,
		}, []string{"server", "op"})),
		connectFailures: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ldapproxy_upstream_connect_failures_total",
			Help: "Failed connects (TCP, TLS or StartTLS) to an upstream server.",
		}, []string{"server"})),
		serviceConns: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ldapproxy_upstream_service_connections",
			Help: "Connections bound as the service account, by state (idle, in_use).",
		}, []string{"state"})),
	}
	return m
}

// register adopts an already registered collector of the same name, so a
// configuration reload can build a new Pool on the same registry while the
// old one drains.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash with another package's metric: a programming error
	}
	return c
}

func (m *metrics) observe(server, op string, start time.Time) {
	m.requestDuration.WithLabelValues(server, op).Observe(time.Since(start).Seconds())
}

func (m *metrics) setUp(server string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(server).Set(v)
}
