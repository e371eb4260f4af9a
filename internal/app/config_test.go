package app

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/errlist"
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

// TestValidateReportsEveryError: a section with several independent mistakes reports
// each of them, with its key path, not only the first.
func TestValidateReportsEveryError(t *testing.T) {
	tests := []struct {
		name     string
		validate func() error
		want     []string
	}{
		{"bind: credential cache and cached_auth_ttl", func() error {
			c := BindConfig{CredentialConfig: cache.CredentialConfig{OfflineMaxAge: -time.Hour}, CachedAuthTTL: -time.Second}
			return c.Validate()
		}, []string{"offline_max_age: ", "cached_auth_ttl: must not be negative"}},
		{"log: level and format", func() error {
			c := LogConfig{Level: "loud", Format: "xml"}
			return c.Validate()
		}, []string{`level: "loud"`, `format: "xml"`}},
		{"top level: http and log", func() error {
			_, err := Parse([]byte(minimal + "http:\n  listen: nonsense\nlog:\n  format: xml\n"))
			return err
		}, []string{`http.listen: "nonsense"`, `log.format: "xml"`}},
		{"top level: two upstream keys", func() error {
			_, err := Parse([]byte("upstream:\n  urls: ftp://x\n  timeout: -1s\n  base_dn: dc=x\n"))
			return err
		}, []string{"upstream.timeout: must be positive", `upstream.urls: "ftp://x"`}},
		{"top level: bind and sync", func() error {
			_, err := Parse([]byte(minimal + "bind:\n  cached_auth_ttl: -1s\n  argon2: {time: 1000}\nsync:\n  interval: -1s\n  page_size: -1\n"))
			return err
		}, []string{"bind.cached_auth_ttl: ", "bind.argon2.time: ", "sync.interval: ", "sync.page_size: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.validate()
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			parts := errlist.Flatten(err)
			if len(parts) != len(tt.want) {
				t.Errorf("%d errors, want %d: %q", len(parts), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(parts, func(e error) bool { return strings.HasPrefix(e.Error(), w) }) {
					t.Errorf("error %q has no part starting with %q", err, w)
				}
			}
		})
	}
}

// TestNewLoadErrorsNameTheKey: Validate reads no file; the files a configuration names
// are loaded when the app is built, and one that does not load stops New with an error
// naming its key.
func TestNewLoadErrorsNameTheKey(t *testing.T) {
	t.Setenv("LDAPPROXY_UPSTREAM_BIND_PASSWORD", "")
	missing := filepath.Join(t.TempDir(), "nonexistent")
	// config is a configuration that validates, with extra lines in listen: and upstream:.
	config := func(listen, upstream string) string {
		return fmt.Sprintf(`listen:
  ldap: 127.0.0.1:0
%shttp:
  listen: ""
upstream:
  urls: "ldap://127.0.0.1:1"
  base_dn: "dc=example,dc=org"
%ssearch:
  mode: direct
store:
  path: ":memory:"
sync:
  enabled: false
`, listen, upstream)
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"listen certificate", config(fmt.Sprintf("  tls: {cert_file: %q, key_file: %q}\n", missing, missing), ""),
			"listen.tls.cert_file: open "},
		{"upstream CA", config("", fmt.Sprintf("  ca_file: %q\n", missing)), "upstream: ca_file: open "},
		{"upstream password file", config("", fmt.Sprintf("  bind_dn: cn=svc\n  bind_password_file: %q\n", missing)),
			"upstream: bind_password_file: open "},
		{"upstream password nowhere", config("", "  bind_dn: cn=svc\n"), "upstream: bind_password: needed with bind_dn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse read a file: %v", err)
			}
			a, err := New(cfg, slog.New(slog.DiscardHandler), "test")
			if err == nil {
				a.close()
				t.Fatalf("New accepted the configuration, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("New() = %q, want it to start with %q", err, tt.want)
			}
		})
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

func TestParseRejectsDuplicateKeys(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"two upstream blocks", minimal + "upstream:\n  urls: \"ldap://127.0.0.1:2389\"\n  base_dn: \"dc=other\"\n",
			"upstream: line 5: key already given at line 2"},
		{"a key twice in a section", minimal + "listen:\n  ldap: \"127.0.0.1:1\"\n  ldap: \"127.0.0.1:2\"\n",
			"listen.ldap: line 7: key already given at line 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseURLsAsList(t *testing.T) {
	cfg, err := Parse([]byte("upstream:\n  urls:\n    - ldaps://dc1.example.org\n    - ldap://dc2.example.org:3268\n  base_dn: dc=example,dc=org\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.URLs != "ldaps://dc1.example.org,ldap://dc2.example.org:3268" {
		t.Fatalf("urls = %q", cfg.Upstream.URLs)
	}
	for _, bad := range []string{"    - ldap://a,ldap://b\n", "    - [ldap://a]\n", "    - \n"} {
		if _, err := Parse([]byte("upstream:\n  urls:\n" + bad + "  base_dn: dc=example,dc=org\n")); err == nil || !strings.Contains(err.Error(), "upstream.urls[0]") {
			t.Errorf("urls list %q: err = %v", bad, err)
		}
	}
}

func TestLogDurationsAreReadable(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf strings.Builder
		c := LogConfig{Level: "info", Format: format}
		l, _ := c.NewReloadableLogger(&buf)
		l.Warn("upstream server down", "retry_in", time.Second, "took", 1500*time.Millisecond, "count", 3)
		out := buf.String()
		want := []string{`"retry_in":"1s"`, `"took":"1.5s"`, `"count":3`}
		if format == "text" {
			want = []string{"retry_in=1s", "took=1.5s", "count=3"}
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %q lacks %s", format, out, w)
			}
		}
	}
}
