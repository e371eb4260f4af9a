// Package examples holds no code: its tests keep the files of this directory true to the
// proxy. The monitoring kit (grafana-dashboard.json, prometheus-rules.yaml and its unit
// test prometheus-rules.test.yaml) may name only series a real proxy exports, with the
// labels it gives them; the rules pass promtool; the systemd unit passes
// systemd-analyze.
package examples

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"go.yaml.in/yaml/v3"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

const (
	dashboardFile = "grafana-dashboard.json"
	rulesFile     = "prometheus-rules.yaml"
	rulesTestFile = "prometheus-rules.test.yaml"
	unitFile      = "ldapproxy.service"
)

// tool returns the path of a command the tests need; CI installs them with
// scripts/setup-debian.sh, so a missing one fails the test.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (scripts/setup-debian.sh installs it): %v", name, err)
	}
	return p
}

// run runs a command in this directory and returns its combined output and error.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool")
	if out, err := run(t, promtool, "check", "rules", rulesFile); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
	if out, err := run(t, promtool, "test", "rules", rulesTestFile); err != nil {
		t.Errorf("promtool test rules %s: %v\n%s", rulesTestFile, err, out)
	}
}

// The rules file and its unit test, as far as the checks below read them.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		InputSeries []struct {
			Series string `yaml:"series"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			AlertName string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	readYAML(t, rulesFile, &f)
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no alerts", rulesFile)
	}
	return out
}

// TestAlertRules checks what promtool does not: each alert has a severity and the
// annotations an on-call reader needs, and the unit test sees each one both quiet and
// firing.
func TestAlertRules(t *testing.T) {
	var tests ruleTestFile
	readYAML(t, rulesTestFile, &tests)
	if !slices.Equal(tests.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s tests rule_files %v, not %s", rulesTestFile, tests.RuleFiles, rulesFile)
	}
	quiet, firing := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) == 0 {
				quiet[a.AlertName] = true
			} else {
				firing[a.AlertName] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range alertRules(t) {
		if seen[r.Alert] {
			t.Errorf("alert %s: defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, a)
			}
		}
		if !quiet[r.Alert] {
			t.Errorf("alert %s: %s never checks that it stays quiet", r.Alert, rulesTestFile)
		}
		if !firing[r.Alert] {
			t.Errorf("alert %s: %s never checks that it fires", r.Alert, rulesTestFile)
		}
	}
	for name := range firing {
		if !seen[name] {
			t.Errorf("%s tests alert %s, which %s does not define", rulesTestFile, name, rulesFile)
		}
	}
}

// The dashboard, as far as the checks read it.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID        string      `json:"refId"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat"`
		Datasource   *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasource     `json:"datasource"`
}

// query returns the variable's query: a string, or the query field of an object.
func (v variable) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	json.Unmarshal(v.Query, &o)
	return o.Query
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels returns the panels, those of collapsed rows included.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// dsVar is the dashboard's data source variable, which its panels and queries use.
const dsVar = "${DS_PROMETHEUS}"

// TestDashboardLayout checks the dashboard's structure: the data source and the job and
// instance variables, unique panel ids, panels that fit the grid without overlapping,
// and a query in each panel.
func TestDashboardLayout(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard without uid or title")
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["DS_PROMETHEUS"]; v.Type != "datasource" || v.query() != "prometheus" {
		t.Errorf("no Prometheus data source variable DS_PROMETHEUS: %+v", v)
	}
	for _, name := range []string{"job", "instance"} {
		v := vars[name]
		if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != dsVar {
			t.Errorf("variable %s: missing, or not a query of %s: %+v", name, dsVar, v)
		}
	}
	ids := map[int]string{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var placed []rect
	for _, p := range d.allPanels() {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or also used by %q", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, r := range placed {
			if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", p.Title, r.title)
			}
		}
		placed = append(placed, rect{p.Title, g.X, g.Y, g.W, g.H})
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			t.Errorf("panel %q: data source %+v, want %s", p.Title, p.Datasource, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: query %s is empty", p.Title, tg.RefID)
			}
			if tg.Datasource != nil && tg.Datasource.UID != dsVar {
				t.Errorf("panel %q: query %s uses data source %+v, want %s", p.Title, tg.RefID, tg.Datasource, dsVar)
			}
		}
	}
}

// exported is what a real proxy's /metrics holds.
type exported struct {
	// series maps each series name, as Prometheus stores it (a histogram's _bucket,
	// _sum and _count), to the names of its labels.
	series map[string]map[string]bool
	// families maps each metric family to its type.
	families map[string]string
}

// parseExposition reads the Prometheus text format.
func parseExposition(text string) (*exported, error) {
	e := &exported{series: map[string]map[string]bool{}, families: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			e.families[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("sample line %q", line)
		}
		name := line[:end]
		labels := e.series[name]
		if labels == nil {
			labels = map[string]bool{}
			e.series[name] = labels
		}
		if line[end] == '{' {
			ms, _, err := readMatchers(line, end)
			if err != nil {
				return nil, fmt.Errorf("sample line %q: %v", line, err)
			}
			for _, m := range ms {
				labels[m.name] = true
			}
		}
	}
	return e, sc.Err()
}

// family returns the metric family a series name belongs to.
func (e *exported) family(series string) string {
	if _, ok := e.families[series]; ok {
		return series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			if typ := e.families[base]; typ == "histogram" || typ == "summary" && suffix != "_bucket" {
				return base
			}
		}
	}
	return ""
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// synthetic are the series Prometheus makes itself for each target, with their labels.
var synthetic = map[string][]string{"up": nil}

// labelsOf returns the label names of a series the proxy exports, or Prometheus makes
// for it, with the target labels; false if there is no such series.
func (e *exported) labelsOf(name string) (map[string]bool, bool) {
	out := map[string]bool{}
	for _, l := range targetLabels {
		out[l] = true
	}
	if ls, ok := synthetic[name]; ok {
		for _, l := range ls {
			out[l] = true
		}
		return out, true
	}
	ls, ok := e.series[name]
	for l := range ls {
		out[l] = true
	}
	return out, ok
}

// check checks an expression (what names where it comes from) against the exported
// series: every series it selects exists, every label it matches on, groups by or
// shows (legends and $labels in annotations) is one that series has. With
// aggregated, a label shown must also be kept by the aggregations (sum by (op) drops
// result): for a legend, whose expression is one aggregation; an alert's annotations
// are compared whole by its unit test. It returns the expression's selectors.
func (e *exported) check(t *testing.T, what, expr string, shown []string, aggregated bool) []selector {
	t.Helper()
	q, err := parsePromQL(expr)
	if err != nil {
		t.Errorf("%s: %v in %s", what, err, expr)
		return nil
	}
	available := map[string]bool{}
	for _, sel := range q.selectors {
		if sel.name == "" {
			t.Errorf("%s: selector without a metric name in %s", what, expr)
			continue
		}
		labels, ok := e.labelsOf(sel.name)
		if !ok {
			t.Errorf("%s: %s is not a series the proxy exports (see its /metrics)", what, sel.name)
			continue
		}
		for l := range labels {
			available[l] = true
		}
		for _, l := range sel.labels() {
			if !labels[l] {
				t.Errorf("%s: %s has no label %q", what, sel.name, l)
			}
		}
	}
	if len(q.selectors) == 0 {
		t.Errorf("%s: selects no series: %s", what, expr)
	}
	for _, l := range slices.Concat(q.by, q.without, q.matching) {
		if !available[l] {
			t.Errorf("%s: groups or matches by %q, which none of its series has", what, l)
		}
	}
	for _, l := range shown {
		switch {
		case aggregated && len(q.by) > 0 && !slices.Contains(q.by, l):
			t.Errorf("%s: shows label %q, which its aggregation by %v drops", what, l, q.by)
		case aggregated && slices.Contains(q.without, l):
			t.Errorf("%s: shows label %q, which its aggregation without %v drops", what, l, q.without)
		case !available[l]:
			t.Errorf("%s: shows label %q, which none of its series has", what, l)
		}
	}
	return q.selectors
}

var (
	legendLabel     = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	annotationLabel = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
)

func submatches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// liveProxy is a real proxy (internal/app, as `ldapproxy serve` builds it) in front of
// a real slapd, after the work that makes it export its series: a sync, binds that
// succeed and fail, a search and a password change, with a second upstream server
// that is down.
type liveProxy struct {
	HTTPAddr string
	metrics  string
	exported *exported
}

var (
	liveOnce sync.Once
	live     *liveProxy
	liveErr  error
	liveStop func()
)

// TestMain stops the shared proxy after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if liveStop != nil {
		liveStop()
	}
	os.Exit(code)
}

// startLive starts the shared proxy once for the tests that read its metrics.
func startLive(t *testing.T) *liveProxy {
	t.Helper()
	liveOnce.Do(func() { live, liveErr = newLiveProxy() })
	if liveErr != nil {
		t.Fatal(liveErr)
	}
	return live
}

func newLiveProxy() (_ *liveProxy, err error) {
	var stops []func()
	liveStop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	dir, err := os.MkdirTemp("", "ldapproxy-examples-")
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { os.RemoveAll(dir) })
	up, err := slapdtest.Start(slapdtest.Options{Users: 5, Groups: 2, Dir: filepath.Join(dir, "slapd")})
	if err != nil {
		return nil, err
	}
	stops = append(stops, func() { up.Close() })
	down, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// The server that is down comes first, so that connects try it, and fail.
	cfg, err := app.Parse(fmt.Appendf(nil, `listen:
  ldap: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
upstream:
  urls: "ldap://%s,%s"
  bind_dn: %q
  bind_password: %q
  base_dn: %q
  timeout: 3s
  retry_interval: 200ms
search:
  mode: cached
store:
  path: ":memory:"
sync:
  enabled: true
  interval: 1h
bind:
  cache_passwords: true
log:
  level: error
`, down, up.URL, up.ServiceDN, up.ServicePassword, up.Suffix))
	if err != nil {
		return nil, err
	}
	a, err := app.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "examples-test")
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stops = append(stops, func() {
		cancel()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
		}
	})
	p := &liveProxy{HTTPAddr: a.HTTPAddr()}

	synced := func(text string) bool {
		return strings.Contains(text, `ldapproxy_sync_last_success_timestamp_seconds{kind="users"}`) &&
			strings.Contains(text, `ldapproxy_sync_last_success_timestamp_seconds{kind="groups"}`)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		text, err := p.scrape()
		if err != nil {
			return nil, err
		}
		if synced(text) {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the proxy did not sync within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	c, err := ldap.DialURL("ldap://" + a.LDAPAddr())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(up.UserDN(2), "wrong password"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return nil, fmt.Errorf("bind with a wrong password: %v", err)
	}
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		return nil, fmt.Errorf("bind: %v", err)
	}
	if _, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid=user0001)", []string{"cn"}, nil)); err != nil {
		return nil, fmt.Errorf("search: %v", err)
	}
	// password_writeback is off: the proxy refuses the change, and counts it.
	if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), "another-password")); err == nil {
		return nil, errors.New("a password change went through with password_writeback off")
	}
	// A request is counted just after its answer is handed to the writer: wait for the
	// last one's counters.
	counted := func(text string) bool {
		return strings.Contains(text, "ldapproxy_password_writeback_total{") &&
			strings.Contains(text, `ldapproxy_requests_total{op="extended"`)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if p.metrics, err = p.scrape(); err != nil {
			return nil, err
		}
		if counted(p.metrics) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.exported, err = parseExposition(p.metrics); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *liveProxy) scrape() (string, error) {
	resp, err := http.Get("http://" + p.HTTPAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(b), err
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// TestDashboardMetrics checks every query of the dashboard against a real proxy's
// /metrics, and that every ldapproxy_ metric it exports has a panel.
func TestDashboardMetrics(t *testing.T) {
	p := startLive(t)
	d := readDashboard(t)
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesQuery.FindStringSubmatch(v.query())
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(...)", v.Name, v.query())
			continue
		}
		what := "variable " + v.Name
		if m[1] == "" {
			t.Errorf("%s: label_values of every series: name one of the proxy's", what)
			continue
		}
		for _, sel := range p.exported.check(t, what, m[1], []string{m[2]}, false) {
			used[p.exported.family(sel.name)] = true
		}
	}
	for _, pn := range d.allPanels() {
		for _, tg := range pn.Targets {
			what := fmt.Sprintf("panel %q query %s", pn.Title, tg.RefID)
			for _, sel := range p.exported.check(t, what, tg.Expr, submatches(legendLabel, tg.LegendFormat), true) {
				used[p.exported.family(sel.name)] = true
				// Every panel follows the job and instance variables.
				for name, want := range map[string]string{"job": "$job", "instance": "$instance"} {
					if m, ok := sel.matcherOf(name); !ok || m.op != "=~" || m.value != want {
						t.Errorf("%s: %s does not select %s=~%q", what, sel.name, name, want)
					}
				}
			}
		}
	}
	var missing []string
	for f := range p.exported.families {
		if strings.HasPrefix(f, "ldapproxy_") && !used[f] {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	for _, f := range missing {
		t.Errorf("the proxy exports %s, but no panel of %s shows it", f, dashboardFile)
	}
	if t.Failed() {
		t.Logf("the proxy's /metrics:\n%s", p.metrics)
	}
}

// TestAlertRuleMetrics checks the alert rules' expressions and annotations, and the
// series their unit test feeds them, against a real proxy's /metrics.
func TestAlertRuleMetrics(t *testing.T) {
	p := startLive(t)
	for _, r := range alertRules(t) {
		var shown []string
		for _, text := range r.Annotations {
			shown = append(shown, submatches(annotationLabel, text)...)
		}
		p.exported.check(t, "alert "+r.Alert, r.Expr, shown, false)
	}
	var tests ruleTestFile
	readYAML(t, rulesTestFile, &tests)
	for i, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			p.exported.check(t, fmt.Sprintf("%s test %d input series", rulesTestFile, i+1), s.Series, nil, false)
		}
	}
	if t.Failed() {
		t.Logf("the proxy's /metrics:\n%s", p.metrics)
	}
}

// TestDashboardOnPrometheus runs a Prometheus server that scrapes the real proxy and
// loads the alert rules, and asks it every query of the dashboard, with the variables
// filled in as Grafana would: each must be valid PromQL and return series. It also
// checks that the server evaluates every rule without an error.
func TestDashboardOnPrometheus(t *testing.T) {
	p := startLive(t)
	prom := startPrometheus(t, p.HTTPAddr)
	d := readDashboard(t)
	// Grafana puts a single value into a regular expression quoted, within a PromQL
	// string: 127\\.0\\.0\\.1:9389.
	instance := strings.ReplaceAll(regexp.QuoteMeta(p.HTTPAddr), `\`, `\\`)
	vars := strings.NewReplacer("${job}", "ldapproxy", "$job", "ldapproxy",
		"${instance}", instance, "$instance", instance,
		"$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h")

	type check struct{ what, expr string }
	var queries []check
	for _, pn := range d.allPanels() {
		for _, tg := range pn.Targets {
			queries = append(queries, check{fmt.Sprintf("panel %q query %s", pn.Title, tg.RefID), vars.Replace(tg.Expr)})
		}
	}
	var series []check
	for _, v := range d.Templating.List {
		if m := labelValuesQuery.FindStringSubmatch(v.query()); m != nil && v.Type == "query" {
			series = append(series, check{"variable " + v.Name, vars.Replace(m[1]) + "\x00" + m[2]})
		}
	}
	// The series appear with the first scrapes; rates need two. Queries are asked
	// until each has answered with data once, or the time is up.
	pending := map[string]string{}
	for _, q := range queries {
		pending[q.what] = "not asked"
	}
	for _, s := range series {
		pending[s.what] = "not asked"
	}
	pending["rules"] = "not evaluated"
	deadline := time.Now().Add(60 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		for _, q := range queries {
			if _, ok := pending[q.what]; !ok {
				continue
			}
			n, err := prom.query(q.expr)
			switch {
			case err != nil:
				t.Errorf("%s: %v\n%s", q.what, err, q.expr)
				delete(pending, q.what)
			case n > 0 || errorFiltered(q.expr):
				delete(pending, q.what)
			default:
				pending[q.what] = "no series for " + q.expr
			}
		}
		for _, s := range series {
			if _, ok := pending[s.what]; !ok {
				continue
			}
			match, label, _ := strings.Cut(s.expr, "\x00")
			values, err := prom.labelValues(match, label)
			switch {
			case err != nil:
				t.Errorf("%s: %v", s.what, err)
				delete(pending, s.what)
			case len(values) > 0:
				delete(pending, s.what)
			default:
				pending[s.what] = fmt.Sprintf("no values of %s in %s", label, match)
			}
		}
		if _, ok := pending["rules"]; ok {
			switch msg, err := prom.rulesHealth(); {
			case err != nil:
				t.Error(err)
				delete(pending, "rules")
			case msg == "":
				delete(pending, "rules")
			default:
				pending["rules"] = msg
			}
		}
	}
	var left []string
	for what, why := range pending {
		left = append(left, what+": "+why)
	}
	sort.Strings(left)
	for _, l := range left {
		t.Error(l)
	}
	if t.Failed() {
		t.Logf("prometheus output:\n%s", prom.output())
	}
}

// errorFiltered says whether expr selects only error results, and so rightly returns
// nothing from a proxy that has answered no request with an error.
func errorFiltered(expr string) bool {
	return strings.Contains(expr, `result=~"operationsError|`)
}

// promServer is a Prometheus server started by a test.
type promServer struct {
	url string
	out *slapdtest.LockedBuffer
}

func (p *promServer) output() string { return p.out.String() }

// startPrometheus runs Prometheus (Debian's prometheus package, which brings promtool)
// on loopback, scraping target every second and loading the alert rules, until the test
// ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := tool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: ldapproxy
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The port is picked free, then taken by Prometheus; another process may take it
	// in between, so a start that fails is tried again on another port.
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		srv := &promServer{url: "http://" + addr, out: &slapdtest.LockedBuffer{}}
		cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = srv.out, srv.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		if srv.waitReady(exited, 30*time.Second) {
			t.Cleanup(stop)
			return srv
		}
		stop()
		if attempt == 3 {
			t.Fatalf("prometheus did not start:\n%s", srv.output())
		}
	}
}

// waitReady waits until the server answers /-/ready, and reports false if it exits or
// does not answer in time.
func (p *promServer) waitReady(exited <-chan struct{}, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true
		}
	}
	return false
}

// api asks the HTTP API and decodes the data of its answer into v.
func (p *promServer) api(path string, params url.Values, v any) error {
	resp, err := http.Get(p.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("%s: %s: %v", path, resp.Status, err)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s", answer.Error)
	}
	return json.Unmarshal(answer.Data, v)
}

// query runs an instant query and returns the number of series it answered.
func (p *promServer) query(expr string) (int, error) {
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.api("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return 0, err
	}
	if data.ResultType != "vector" {
		return 0, fmt.Errorf("result of type %s, not an instant vector", data.ResultType)
	}
	return len(data.Result), nil
}

// labelValues returns the values of label among the series match selects, as
// Grafana's label_values(match, label) does.
func (p *promServer) labelValues(match, label string) ([]string, error) {
	var values []string
	err := p.api("/api/v1/label/"+label+"/values", url.Values{"match[]": {match}}, &values)
	return values, err
}

// rulesHealth returns "" when every rule has been evaluated without an error, and
// what is not so otherwise.
func (p *promServer) rulesHealth() (string, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", nil, &data); err != nil {
		return "", err
	}
	var bad []string
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("rule %s: %s %s", r.Name, r.Health, r.LastError))
			}
		}
	}
	if n == 0 {
		return "no rules loaded", nil
	}
	return strings.Join(bad, "; "), nil
}
