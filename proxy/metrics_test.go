package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
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

// instrument counts each request under the result its client got, through the server's
// own writer (ldapserver.OutcomeReporter): a result written, one written before the
// handler panicked, and `other`, which the server answers for a handler that panicked
// before it answered.
func TestInstrumentCountsEveryOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 0 })
	inner := ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		switch r.Search.BaseDN {
		case "cn=entries":
			w.WriteEntry(&ldapserver.Entry{DN: "cn=a,cn=entries"})
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
		case "cn=answered then panics":
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultNoSuchObject})
			panic("after the answer")
		default:
			panic("before any answer")
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &ldapserver.Server{Handler: instrument(inner, m, slog.New(slog.DiscardHandler)), Logger: slog.New(slog.DiscardHandler)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	lc := dialLDAP(t, ln.Addr().String())
	for base, want := range map[string]uint16{
		"cn=entries":              ldap.LDAPResultSuccess,
		"cn=answered then panics": ldap.LDAPResultNoSuchObject,
		"cn=panics":               ldap.LDAPResultOther,
	} {
		_, err := lc.Search(ldap.NewSearchRequest(base, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
		if got := uint16(ldap.LDAPResultSuccess); err != nil {
			got = uint16(err.(*ldap.Error).ResultCode)
			if got != want {
				t.Errorf("search %q answered %d, want %d", base, got, want)
			}
		}
	}
	// A request is counted once its handler returns, which may be just after its client
	// has the answer: the counts are read again until they are all there (or 10 s).
	var problems []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		problems = searchCounts(t, reg, map[string]float64{"success": 1, "noSuchObject": 1, "other": 1})
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// searchCounts compares requests_total's search series in reg with want (by result), and
// describes each difference.
func searchCounts(t *testing.T, reg *prometheus.Registry, want map[string]float64) (problems []string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] != "search" || mt.GetCounter().GetValue() != want[labels["result"]] {
				problems = append(problems, fmt.Sprintf("requests_total{op=%q,result=%q} = %v, want %v", labels["op"], labels["result"], mt.GetCounter().GetValue(), want[labels["result"]]))
			}
			delete(want, labels["result"])
		}
	}
	if len(want) > 0 {
		problems = append(problems, fmt.Sprintf("search requests not counted, by the result their client got: %v", want))
	}
	return problems
}
