package examples

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// A small reader of PromQL, enough to find which series and labels an expression
// names; whether it is valid PromQL is for Prometheus to say (promtool, and the
// Prometheus server in TestDashboardOnPrometheus).

// matcher is one label matcher of a selector: name op "value".
type matcher struct{ name, op, value string }

// selector is a series selector: a metric name and its label matchers.
type selector struct {
	name     string
	matchers []matcher
}

// query is what an expression names.
type query struct {
	selectors []selector
	// by and without are the label names of the aggregations' grouping clauses; on
	// and ignoring those of the vector matchings (group_left and group_right too).
	by, without, matching []string
}

// labels returns the names of the labels the selectors match on.
func (s selector) labels() []string {
	var out []string
	for _, m := range s.matchers {
		out = append(out, m.name)
	}
	return out
}

// matcherOf returns the selector's matcher of label name.
func (s selector) matcherOf(name string) (matcher, bool) {
	for _, m := range s.matchers {
		if m.name == name {
			return m, true
		}
	}
	return matcher{}, false
}

var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// aggregations may be followed by their grouping clause instead of a parenthesis.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// readString reads the quoted string at s[i] and returns its contents (escapes kept
// as written) and the index after it.
func readString(s string, i int) (string, int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return s[i+1 : j], j + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated string at %d", i)
}

// readMatchers reads the {...} at s[i].
func readMatchers(s string, i int) ([]matcher, int, error) {
	var out []matcher
	i++
	for {
		i = skipSpace(s, i)
		if i < len(s) && s[i] == ',' {
			i = skipSpace(s, i+1)
		}
		if i >= len(s) {
			return nil, 0, fmt.Errorf("unterminated label matchers")
		}
		if s[i] == '}' {
			return out, i + 1, nil
		}
		var m matcher
		switch {
		case isIdentStart(s[i]):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			m.name, i = s[i:j], j
		case s[i] == '"':
			name, j, err := readString(s, i)
			if err != nil {
				return nil, 0, err
			}
			m.name, i = name, j
		default:
			return nil, 0, fmt.Errorf("unexpected %q in label matchers at %d", s[i], i)
		}
		i = skipSpace(s, i)
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[i:], op) {
				m.op, i = op, i+len(op)
				break
			}
		}
		if m.op == "" {
			return nil, 0, fmt.Errorf("label %s without an operator", m.name)
		}
		i = skipSpace(s, i)
		if i >= len(s) || strings.IndexByte("\"'`", s[i]) < 0 {
			return nil, 0, fmt.Errorf("label %s without a quoted value", m.name)
		}
		v, j, err := readString(s, i)
		if err != nil {
			return nil, 0, err
		}
		m.value, i = v, j
		out = append(out, m)
	}
}

// parsePromQL finds the selectors and grouping labels of a PromQL expression, which
// may hold Grafana variables ($job, ${job}, $__rate_interval).
func parsePromQL(s string) (query, error) {
	var q query
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.IndexByte(" \t\r\n", c) >= 0:
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			_, j, err := readString(s, i)
			if err != nil {
				return q, err
			}
			i = j
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return q, fmt.Errorf("unterminated range at %d", i)
			}
			i += j + 1
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				j := strings.IndexByte(s[i:], '}')
				if j < 0 {
					return q, fmt.Errorf("unterminated variable at %d", i)
				}
				i += j + 1
			} else {
				for i < len(s) && isIdent(s[i]) {
					i++
				}
			}
		case c == '{': // a selector without a metric name
			ms, j, err := readMatchers(s, i)
			if err != nil {
				return q, err
			}
			q.selectors = append(q.selectors, selector{matchers: ms})
			i = j
		case '0' <= c && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word, k := s[i:j], skipSpace(s, j)
			switch {
			case groupingKeywords[word]:
				i = j
				if k < len(s) && s[k] == '(' {
					end := strings.IndexByte(s[k:], ')')
					if end < 0 {
						return q, fmt.Errorf("unterminated %s list", word)
					}
					var names []string
					for _, n := range strings.Split(s[k+1:k+end], ",") {
						if n = strings.TrimSpace(n); n != "" {
							names = append(names, n)
						}
					}
					switch word {
					case "by":
						q.by = append(q.by, names...)
					case "without":
						q.without = append(q.without, names...)
					default:
						q.matching = append(q.matching, names...)
					}
					i = k + end + 1
				}
			case promqlKeywords[word], aggregations[word]:
				i = j
			case k < len(s) && s[k] == '(': // a function or an aggregation
				i = j
			default:
				sel := selector{name: word}
				i = j
				if k < len(s) && s[k] == '{' {
					ms, end, err := readMatchers(s, k)
					if err != nil {
						return q, err
					}
					sel.matchers, i = ms, end
				}
				q.selectors = append(q.selectors, sel)
			}
		default:
			i++
		}
	}
	return q, nil
}

// labelValuesQuery splits a Grafana label_values(selector, label) or
// label_values(label) variable query.
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(?:(.*?)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

func TestParsePromQL(t *testing.T) {
	q, err := parsePromQL(`histogram_quantile(0.99, sum by (le, op) (rate(ldapproxy_request_duration_seconds_bucket{job=~"$job", op!="x\"}"}[$__rate_interval] offset 5m)))
		/ on (instance) group_left (version) ldapproxy_build_info > bool 0.5 unless sum without (result) (up) # comment ldapproxy_nothing
		or {__name__="other"} and time() - x:y:z @ start()`)
	if err != nil {
		t.Fatal(err)
	}
	want := query{
		selectors: []selector{
			{name: "ldapproxy_request_duration_seconds_bucket", matchers: []matcher{{"job", "=~", "$job"}, {"op", "!=", `x\"}`}}},
			{name: "ldapproxy_build_info"},
			{name: "up"},
			{matchers: []matcher{{"__name__", "=", "other"}}},
			{name: "x:y:z"},
		},
		by:       []string{"le", "op"},
		without:  []string{"result"},
		matching: []string{"instance", "version"},
	}
	if !reflect.DeepEqual(q, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", q, want)
	}
	for _, bad := range []string{`a{b="c"`, `a{b}`, `a{b=c}`, `rate(a[5m)`, `a{b="c}`} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if m := labelValuesQuery.FindStringSubmatch(`label_values(ldapproxy_build_info{job=~"$job"}, instance)`); m == nil || m[1] != `ldapproxy_build_info{job=~"$job"}` || m[2] != "instance" {
		t.Errorf("label_values with a selector: %q", m)
	}
	if m := labelValuesQuery.FindStringSubmatch(`label_values(job)`); m == nil || m[1] != "" || m[2] != "job" {
		t.Errorf("label_values of a label: %q", m)
	}
}
