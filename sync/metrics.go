package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the syncer's; kind is "users" or "groups", result "success" or "failed".
type metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	objects     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

// newMetrics builds the syncer's metrics and registers them on reg unless it is nil.
// Names are without the namespace: reg adds it (metrics.Registerer), so that Prometheus
// sees ldapproxy_sync_runs_total and so on.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_runs_total", Help: "Sync runs, by object kind and result.",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sync_duration_seconds", Help: "Duration of sync runs, by object kind.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"kind"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sync_objects", Help: "Objects stored by the last successful sync, by kind.",
		}, []string{"kind"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sync_last_success_timestamp_seconds", Help: "When the last successful sync of each kind ended (Unix time).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.objects, m.lastSuccess)
	}
	return m
}

// observe records one run of kind. start is zero for a run that failed before it could
// be timed as a whole.
func (m *metrics) observe(kind, result string, start time.Time, objects int) {
	m.runs.WithLabelValues(kind, result).Inc()
	if !start.IsZero() {
		m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
	if result == "success" {
		m.objects.WithLabelValues(kind).Set(float64(objects))
		m.lastSuccess.WithLabelValues(kind).SetToCurrentTime()
	}
}
