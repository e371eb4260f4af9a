package upstream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus series. Label values are the configured
// URLs, the fixed operation names and the two connection states: never a DN
// or a user name.
type metrics struct {
	up              *prometheus.GaugeVec
	available       prometheus.Gauge
	requestDuration *prometheus.HistogramVec
	connectFailures *prometheus.CounterVec
	serviceConns    *prometheus.GaugeVec
}

// newMetrics builds the pool's metrics and registers them on reg unless it is
// nil. Names are without the namespace: reg adds it (metrics.Registerer), so
// that Prometheus sees ldapproxy_upstream_up and so on.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "upstream_up",
			Help: "Whether the upstream server is believed reachable (1) or is in quarantine (0).",
		}, []string{"server"}),
		available: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "upstream_available",
			Help: "Whether at least one upstream server is up (1), or every one is down (0).",
		}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "upstream_request_duration_seconds",
			Help:    "Duration of requests to the upstream servers, connects included, by server and operation.",
			Buckets: prometheus.DefBuckets,
		}, []string{"server", "op"}),
		connectFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upstream_connect_failures_total",
			Help: "Failed connects (TCP, TLS or StartTLS) to an upstream server.",
		}, []string{"server"}),
		serviceConns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "upstream_service_connections",
			Help: "Connections bound as the service account, by state (idle, in_use).",
		}, []string{"state"}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.available, m.requestDuration, m.connectFailures, m.serviceConns)
	}
	return m
}

// observeKind records a forwarded request of kind k to s: the series of each server and
// kind is looked up once, not on every request.
func (m *metrics) observeKind(s *server, k Kind, elapsed time.Duration) {
	if int(k) >= len(s.durations) {
		m.requestDuration.WithLabelValues(s.raw, k.String()).Observe(elapsed.Seconds())
		return
	}
	o := s.durations[k].Load()
	if o == nil {
		obs := m.requestDuration.WithLabelValues(s.raw, k.String())
		o = &obs
		s.durations[k].Store(o)
	}
	(*o).Observe(elapsed.Seconds())
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

func (m *metrics) setAvailable(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.available.Set(v)
}
