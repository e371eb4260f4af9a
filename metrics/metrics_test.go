package metrics

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: "t"})
	Registerer(reg).MustRegister(c)
	c.Add(3)
	var readyErr error
	for _, pprof := range []bool{false, true} {
		srv := New(Config{Pprof: pprof}, reg, func() error { return readyErr }, slog.New(slog.DiscardHandler))
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		base := "http://" + l.Addr().String()
		get := func(path string) (int, string) {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "ldapproxy_test_total 3") || !strings.Contains(body, "go_goroutines") ||
			strings.Contains(body, "ldapproxy_go_") {
			t.Errorf("/metrics: %d", code)
		}
		if code, _ := get("/healthz"); code != 200 {
			t.Errorf("/healthz: %d", code)
		}
		readyErr = nil
		if code, _ := get("/readyz"); code != 200 {
			t.Errorf("/readyz ready: %d", code)
		}
		readyErr = errors.New("no upstream server reachable")
		if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no upstream server reachable") {
			t.Errorf("/readyz not ready: %d %q", code, body)
		}
		if code, _ := get("/debug/pprof/"); (code == 200) != pprof {
			t.Errorf("/debug/pprof/ with pprof=%v: %d", pprof, code)
		}
		srv.Shutdown(t.Context())
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		listen string
		ok     bool
	}{{"", true}, {"127.0.0.1:9389", true}, {":9389", true}, {"nonsense", false}} {
		c := Config{Listen: tt.listen}
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%q) = %v", tt.listen, err)
		}
	}
}
