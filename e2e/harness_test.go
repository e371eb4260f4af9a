// Package e2e tests the whole proxy: the real program (internal/app) in front of a real
// OpenLDAP slapd, or of a Samba Active Directory domain controller, driven by go-ldap and
// by the OpenLDAP command-line tools.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// proxy is a running ldapproxy for one test.
type proxy struct {
	t     testing.TB
	app   *app.App
	URL   string // ldap://127.0.0.1:PORT
	LDAPS string // ldaps://..., when configured
	HTTP  string // http://127.0.0.1:PORT
	logs  *slapdtest.LockedBuffer
	stop  context.CancelFunc
	done  chan error
}

// config returns the YAML for a proxy in front of up, with extra lines appended to
// sections by name ("listen", "upstream", ...).
func config(up *slapdtest.Server, extra map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen:\n  ldap: 127.0.0.1:0\n%s\n", extra["listen"])
	fmt.Fprintf(&b, "http:\n  listen: 127.0.0.1:0\n")
	urls := up.URL
	if u, ok := extra["urls"]; ok {
		urls = u
	}
	fmt.Fprintf(&b, "upstream:\n  urls: %q\n  bind_dn: %q\n  bind_password: %q\n  base_dn: %q\n  timeout: 3s\n  retry_interval: 200ms\n%s\n",
		urls, up.ServiceDN, up.ServicePassword, up.Suffix, extra["upstream"])
	mode := "direct"
	if m, ok := extra["mode"]; ok {
		mode = m
	}
	fmt.Fprintf(&b, "search:\n  mode: %s\n%s\n", mode, extra["search"])
	fmt.Fprintf(&b, "store:\n  path: \":memory:\"\n")
	syncSection := "  enabled: false"
	if v, ok := extra["sync"]; ok {
		syncSection = v
	}
	fmt.Fprintf(&b, "sync:\n%s\n", syncSection)
	fmt.Fprintf(&b, "log:\n  level: debug\n  format: json\n")
	b.WriteString(extra["top"]) // top-level sections: clients:, bind:, ...
	return b.String()
}

// startProxy runs the program with the given configuration text until the test ends.
func startProxy(t testing.TB, yaml string) *proxy {
	t.Helper()
	cfg, err := app.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	logs := &slapdtest.LockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{t: t, app: a, URL: "ldap://" + a.LDAPAddr(), HTTP: "http://" + a.HTTPAddr(), logs: logs, stop: cancel, done: make(chan error, 1)}
	if a.LDAPSAddr() != "" {
		p.LDAPS = "ldaps://" + a.LDAPSAddr()
	}
	go func() { p.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("proxy logs:\n%s", tail(logs.String(), 60))
		}
	})
	return p
}

// Stop shuts the proxy down gracefully and waits for it.
func (p *proxy) Stop() error {
	p.stop()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(40 * time.Second):
		p.t.Error("proxy did not stop within 40s")
		return nil
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// dial connects a go-ldap client to url.
func dial(t testing.TB, url string, opts ...ldap.DialOpt) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

// resultCode returns the LDAP result code of err (0 for nil).
func resultCode(err error) uint16 {
	if err == nil {
		return 0
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode
	}
	return 0xffff
}

// tool runs an OpenLDAP command-line tool with a bounded time and returns its combined
// output and exit code.
func tool(t testing.TB, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "LDAPNOINIT=1"), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// scrape returns the proxy's /metrics text.
func (p *proxy) scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(p.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// get returns the status code and body of an HTTP endpoint of the proxy.
func (p *proxy) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(p.HTTP + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// settleWithin bounds a wait for something a test sets up or that must happen
// eventually, as opposed to a figure the test checks: long enough for a loaded machine.
const settleWithin = 20 * time.Second

// loggedBindDuration returns how long the proxy took, by its own measure, to answer the
// first bind as dn logged after the first from bytes of its log.
func (p *proxy) loggedBindDuration(t testing.TB, from int, dn string) time.Duration {
	t.Helper()
	return p.loggedDuration(t, from, fmt.Sprintf(`"op":"bind","name":%q`, dn))
}

// loggedDuration returns how long the proxy took, by its own measure, to answer the first
// request logged after the first from bytes of its log whose fields, after the message
// ID, begin with request (JSON text). A loaded machine delays the test's own view of an
// answer more. The request log line is written just after the answer, so it waits for it.
func (p *proxy) loggedDuration(t testing.TB, from int, request string) time.Duration {
	t.Helper()
	line := regexp.MustCompile(`"msg":"request".*"msgid":\d+,` + regexp.QuoteMeta(request) + `.*"duration":(\d+)`)
	var m []string
	eventually(t, settleWithin, "the request log line of "+request, func() bool {
		m = line.FindStringSubmatch(p.logs.String()[from:])
		return m != nil
	})
	d, err := time.ParseDuration(m[1] + "ns")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
