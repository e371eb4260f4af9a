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

	// Syncrepl mode's.
	changes   *prometheus.CounterVec
	connected prometheus.Gauge
	lag       prometheus.Histogram
	reloads   *prometheus.CounterVec
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
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_changes_total", Help: "Changes a change stream (syncrepl, timestamp polls) applied to the store, by object kind and operation (add, modify, delete, rename).",
		}, []string{"kind", "op"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sync_stream_connected", Help: "1 while the change stream (syncrepl) is connected to the upstream, or timestamp polls succeed, else 0.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sync_lag_seconds", Help: "From an upstream change (its entryCSN time, else its modifyTimestamp) to the commit that makes it visible through the proxy, for adds, modifies and renames pushed by the change stream or read by a poll.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sync_stream_full_reads_total", Help: "Full reads in syncrepl and timestamp modes, by reason: full (no cookie or mark stored, or the reconciliation every full_interval), refresh_required (the upstream could not resume from the cookie).",
		}, []string{"reason"}),
	}
	// The label values are few and known: each series exists from the start, at 0.
	for _, kind := range []string{"users", "groups"} {
		for _, op := range []string{"add", "modify", "delete", "rename"} {
			m.changes.WithLabelValues(kind, op)
		}
	}
	for _, reason := range []string{"full", "refresh_required"} {
		m.reloads.WithLabelValues(reason)
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.objects, m.lastSuccess, m.changes, m.connected, m.lag, m.reloads)
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
