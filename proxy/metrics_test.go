package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// Each operation and result lands in its own series, however often it is counted, and
// a request without a result counts as abandoned.
func TestMetricsRecord(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	for range 3 {
		m.record(ldapserver.OpBind, 0, time.Millisecond)
	}
	m.record(ldapserver.OpBind, 49, time.Millisecond)
	m.record(ldapserver.OpSearch, 0, time.Millisecond)
	m.record(ldapserver.OpSearch, abandonedCode, time.Millisecond)
	m.record(ldapserver.OpSearch, 4711, time.Millisecond)
	for range 2 { // the last code counted by index, and the first past them
		m.record(ldapserver.OpSearch, tableCodes-1, time.Millisecond)
		m.record(ldapserver.OpSearch, tableCodes, time.Millisecond)
	}
	want := map[[2]string]float64{
		{"bind", "success"}: 3, {"bind", "invalidCredentials"}: 1,
		{"search", "success"}: 1, {"search", "abandoned"}: 1, {"search", "code_4711"}: 1,
		{"search", "code_127"}: 2, {"search", "code_128"}: 2,
	}
	durations := map[string]uint64{"bind": 4, "search": 7}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "requests_total":
				key := [2]string{labels["op"], labels["result"]}
				if got := mt.GetCounter().GetValue(); got != want[key] {
					t.Errorf("requests_total%v = %v, want %v", key, got, want[key])
				}
				delete(want, key)
			case "request_duration_seconds":
				if got := mt.GetHistogram().GetSampleCount(); got != durations[labels["op"]] {
					t.Errorf("request_duration_seconds{op=%q} count %d, want %d", labels["op"], got, durations[labels["op"]])
				}
				delete(durations, labels["op"])
			}
		}
	}
	if len(want) > 0 || len(durations) > 0 {
		t.Errorf("series missing: %v %v", want, durations)
	}
}
