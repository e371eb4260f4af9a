package sync_test

import (
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/metrics"
)

// metricValue returns the value of the sample of family name whose labels are labels
// (name=value pairs), and whether there is one.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	reg := prometheus.NewRegistry()
	s := e.syncer(config(t, nil), metrics.Registerer(reg)) // as the app registers them

	type sample struct {
		name   string
		labels []string
		want   float64
	}
	check := func(when string, samples ...sample) {
		t.Helper()
		for _, s := range samples {
			got, ok := metricValue(t, reg, s.name, s.labels...)
			if !ok && s.want != 0 || got != s.want {
				t.Errorf("%s: %s%v = %v (present %v), want %v", when, s.name, s.labels, got, ok, s.want)
			}
		}
	}
	runs := func(kind, result string, want float64) sample {
		return sample{"ldapproxy_sync_runs_total", []string{"kind", kind, "result", result}, want}
	}
	objects := func(kind string, want float64) sample {
		return sample{"ldapproxy_sync_objects", []string{"kind", kind}, want}
	}
	durations := func(kind string, want float64) sample {
		return sample{"ldapproxy_sync_duration_seconds", []string{"kind", kind}, want}
	}
	lastSuccess := func(kind string) float64 {
		v, _ := metricValue(t, reg, "ldapproxy_sync_last_success_timestamp_seconds", "kind", kind)
		return v
	}

	before := float64(time.Now().Unix())
	e.run(s)
	check("after a good sync",
		runs("users", "success", 1), runs("groups", "success", 1), runs("users", "failed", 0), runs("groups", "failed", 0),
		objects("users", 20), objects("groups", 5), durations("users", 1), durations("groups", 1))
	first := map[string]float64{}
	for _, kind := range []string{"users", "groups"} {
		first[kind] = lastSuccess(kind)
		if first[kind] < before || first[kind] > float64(time.Now().Unix()+1) {
			t.Errorf("last success of %s at %v, want between %v and now", kind, first[kind], before)
		}
	}

	// A failed sync counts as failed and leaves the objects and the last success alone.
	if err := e.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := runErr(s); err == nil {
		t.Fatal("sync with slapd stopped succeeded")
	}
	check("after a failed sync",
		runs("users", "success", 1), runs("groups", "success", 1), runs("users", "failed", 1), runs("groups", "failed", 1),
		objects("users", 20), objects("groups", 5))
	for _, kind := range []string{"users", "groups"} {
		if got := lastSuccess(kind); got != first[kind] {
			t.Errorf("last success of %s moved to %v by a failed sync", kind, got)
		}
	}

	// The next good sync sees one user fewer.
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Conn(t).Del(ldap.NewDelRequest(e.srv.UserDN(20), nil)); err != nil {
		t.Fatal(err)
	}
	e.run(s)
	check("after the next good sync",
		runs("users", "success", 2), runs("groups", "success", 2), runs("users", "failed", 1),
		objects("users", 19), objects("groups", 5), durations("users", 2))
	if got := lastSuccess("users"); got <= first["users"] {
		t.Errorf("last success of users %v did not move on from %v", got, first["users"])
	}
}
