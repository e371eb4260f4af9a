package app

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const minimal = `
upstream:
  urls: "ldap://127.0.0.1:1389"
  base_dn: "dc=example,dc=org"
`

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.LDAP != "127.0.0.1:3389" || cfg.HTTP.Listen != "127.0.0.1:9389" {
		t.Errorf("listeners = %q, %q; want the documented defaults", cfg.Listen.LDAP, cfg.HTTP.Listen)
	}
	if cfg.Listen.IdleTimeout != 5*time.Minute || cfg.Listen.MaxConnections != 10000 {
		t.Errorf("idle_timeout=%v max_connections=%d; want 5m and 10000", cfg.Listen.IdleTimeout, cfg.Listen.MaxConnections)
	}
	if cfg.Upstream.Timeout != 5*time.Second {
		t.Errorf("upstream.timeout = %v, want 5s", cfg.Upstream.Timeout)
	}
	if cfg.Search.Mode != "cached" || cfg.Log.Level != "info" || cfg.Log.Format != "json" {
		t.Errorf("search.mode=%q log=%q/%q", cfg.Search.Mode, cfg.Log.Level, cfg.Log.Format)
	}
}

func TestParseEmptyStringTurnsListenerOff(t *testing.T) {
	cfg, err := Parse([]byte(minimal + "http:\n  listen: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "" {
		t.Errorf("http.listen = %q, want off", cfg.HTTP.Listen)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", minimal + "lsiten: {}\n", []string{"lsiten: line", "unknown key", `did you mean "listen"`}},
		{"unknown nested key", minimal + "listen:\n  idle_timout: 5m\n", []string{"listen.idle_timout", `did you mean "idle_timeout"`}},
		{"bad duration", "upstream:\n  urls: ldap://a\n  base_dn: dc=x\n  timeout: soon\n", []string{"upstream.timeout", `"soon" is not a duration`}},
		{"duration without unit", "upstream:\n  urls: ldap://a\n  base_dn: dc=x\n  timeout: 5\n", []string{"upstream.timeout", "is not a duration"}},
		{"bad bool", minimal + "listen:\n  allow_anonymous: perhaps\n", []string{"listen.allow_anonymous", "true or false"}},
		{"bad int", minimal + "listen:\n  max_connections: many\n", []string{"listen.max_connections", "an integer"}},
		{"negative", minimal + "listen:\n  max_connections: -1\n", []string{"listen.max_connections: must not be negative"}},
		{"section not a mapping", minimal + "listen: 3389\n", []string{"listen: line", "expected a mapping"}},
		{"bad search mode", minimal + "search:\n  mode: psychic\n", []string{"search.mode", "psychic"}},
		{"bad sync preset", minimal + "sync:\n  preset: novell\n", []string{"sync.preset", "novell"}},
		{"bad membership field", minimal + "sync:\n  membership_field: owner\n", []string{"sync.membership_field"}},
		{"bad user filter", minimal + "sync:\n  user_filter: \"(uid=x\"\n", []string{"sync.user_filter"}},
		{"bad mapping field", minimal + "sync:\n  mappings:\n    users:\n      - {name: m, field: emial, expression: \"1\"}\n", []string{"sync.mappings.users[0].field", "emial"}},
		{"unknown mapping key", minimal + "sync:\n  mappings:\n    users:\n      - {name: m, feld: email, expression: \"1\"}\n", []string{"sync.mappings.users[0].feld", "unknown key"}},
		{"bad user path", minimal + "sync:\n  user_path: \"uid={user},{base_dn}\"\n", []string{"sync.user_path"}},
		{"store path is a file", minimal + "store:\n  path: /etc/passwd\n", []string{"store.path", "not a directory"}},
		{"bad log level", minimal + "log:\n  level: loud\n", []string{"log.level", "loud"}},
		{"bad log format", minimal + "log:\n  format: xml\n", []string{"log.format", "xml"}},
		{"missing urls", "upstream:\n  base_dn: dc=x\n", []string{"upstream.urls"}},
		{"bad url scheme", "upstream:\n  urls: ftp://x\n  base_dn: dc=x\n", []string{"upstream.urls", "ftp"}},
		{"ldaps without cert", minimal + "listen:\n  ldaps: 127.0.0.1:3636\n", []string{"listen.tls.cert_file"}},
		{"listen not host:port", minimal + "listen:\n  ldap: nonsense\n", []string{"listen.ldap", "nonsense"}},
		{"missing cert file", minimal + "listen:\n  tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}\n", []string{"listen.tls.cert_file", "nonexistent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseSeveralErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(minimal + "listen:\n  max_connections: x\n  idle_timeout: y\n"))
	if err == nil || !strings.Contains(err.Error(), "max_connections") || !strings.Contains(err.Error(), "idle_timeout") {
		t.Fatalf("want both keys named, got %v", err)
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	const secret = "Sup3r-s3cret-value"
	_, err := Parse([]byte("upstream:\n  urls: ftp://x\n  base_dn: dc=x\n  bind_password: " + secret + "\n  bind_password_file: /x\n"))
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// TestExampleDocumentsEveryKey keeps examples/ldapproxy.yaml complete: every key the
// program accepts appears there, and the file itself is a valid configuration.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../examples/ldapproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LDAPPROXY_UPSTREAM_BIND_PASSWORD", "from-env")
	if _, err := Parse(data); err != nil {
		t.Fatalf("the example configuration is invalid: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range keyPaths(reflect.TypeOf(Config{}), "") {
		if !hasPath(doc, strings.Split(path, ".")) {
			t.Errorf("examples/ldapproxy.yaml does not document %s", path)
		}
	}
}

func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for name, idx := range yamlFields(t) {
		f := t.FieldByIndex(idx)
		p := join(prefix, name)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			out = append(out, keyPaths(f.Type, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func hasPath(m map[string]any, path []string) bool {
	v, ok := m[path[0]]
	if !ok {
		return false
	}
	if len(path) == 1 {
		return true
	}
	sub, ok := v.(map[string]any)
	return ok && hasPath(sub, path[1:])
}
