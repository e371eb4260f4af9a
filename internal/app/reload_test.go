package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func TestChangedKeys(t *testing.T) {
	base := minimal + "sync:\n  mappings:\n    users: []\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"same file", base, nil},
		{"missing list and empty list", minimal, nil},
		{"log level", base + "log:\n  level: debug\n", []string{"log.level"}},
		{"upstream urls and timeout", strings.Replace(base, "ldap://127.0.0.1:1389\"", "ldap://127.0.0.1:1390\"\n  timeout: 9s", 1),
			[]string{"upstream.urls", "upstream.timeout"}},
		{"mappings", base + "    groups: [{name: g, field: name, expression: 'dn'}]\n", []string{"sync.mappings.groups"}},
		{"inline bind section", base + "bind:\n  cache_passwords: true\n  cached_auth_ttl: 1m\n", []string{"bind.cache_passwords", "bind.cached_auth_ttl"}},
		{"inline top-level key", base + "password_writeback: true\n", []string{"password_writeback"}},
		{"listen", base + "listen:\n  ldap: 127.0.0.1:4389\n  allow_anonymous: true\n", []string{"listen.ldap", "listen.allow_anonymous"}},
	}
	old, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := changedKeys(old, next); !slices.Equal(got, tt.want) {
				t.Errorf("changed keys %q, want %q", got, tt.want)
			}
		})
	}
}

// reloadFixture is a configuration file on disk with TLS files and a password file
// that tests rewrite in place, as an operator rotating them would.
type reloadFixture struct {
	pki                    *slapdtest.PKI
	cert, key, secret, dir string
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	pki, err := slapdtest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &reloadFixture{pki: pki, dir: t.TempDir()}
	f.cert, f.key = filepath.Join(f.dir, "proxy.crt"), filepath.Join(f.dir, "proxy.key")
	f.secret = filepath.Join(f.dir, "password")
	f.rotate(t, "first")
	writeFile(t, f.secret, "secret-1\n")
	return f
}

// rotate issues a new certificate and copies it over the configured files.
func (f *reloadFixture) rotate(t *testing.T, name string) {
	t.Helper()
	cert, key, err := f.pki.IssueServer(name, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{cert: f.cert, key: f.key} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dst, string(data))
	}
}

// yaml is a configuration using the fixture's files, with extra lines appended.
func (f *reloadFixture) yaml(extra string) string {
	return fmt.Sprintf(`listen:
  ldap: 127.0.0.1:0
  tls: {cert_file: %q, key_file: %q}
http:
  listen: ""
upstream:
  urls: "ldap://127.0.0.1:1"
  base_dn: "dc=example,dc=org"
  bind_dn: "cn=svc,dc=example,dc=org"
  bind_password_file: %q
search:
  mode: direct
store:
  path: ":memory:"
sync:
  enabled: false
%s`, f.cert, f.key, f.secret, extra)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloadPlan(t *testing.T) {
	f := newReloadFixture(t)
	tests := []struct {
		name         string
		before       func(t *testing.T) // changes files on disk
		yaml         string
		noLevelVar   bool
		wantChanged  []string // prefixes of the descriptions
		wantRestart  []string
		wantNewCerts bool
	}{
		{name: "nothing changed", yaml: f.yaml("")},
		{name: "log level", yaml: f.yaml("log: {level: debug}\n"), wantChanged: []string{"log.level (info → debug)"}},
		{name: "log level without a level variable", yaml: f.yaml("log: {level: debug}\n"), noLevelVar: true, wantRestart: []string{"log.level"}},
		{name: "certificate rotated in place", before: func(t *testing.T) { f.rotate(t, "second") }, yaml: f.yaml(""),
			wantChanged: []string{`listen.tls certificate (subject "CN=second"`}, wantNewCerts: true},
		{name: "client CA added", yaml: strings.Replace(f.yaml(""), "key_file:", fmt.Sprintf("client_ca_file: %q, key_file:", f.pki.CAFile), 1),
			wantChanged: []string{"listen.tls.client_ca_file"}, wantNewCerts: true},
		{name: "TLS turned off", yaml: strings.Replace(f.yaml(""), fmt.Sprintf("  tls: {cert_file: %q, key_file: %q}\n", f.cert, f.key), "", 1),
			wantRestart: []string{"listen.tls.cert_file", "listen.tls.key_file"}},
		{name: "upstream urls and sync", yaml: strings.Replace(strings.Replace(f.yaml(""), "127.0.0.1:1\"", "127.0.0.1:2\"", 1), "enabled: false", "enabled: true", 1),
			wantRestart: []string{"upstream.urls", "sync.enabled"}},
		{name: "service password file rewritten", before: func(t *testing.T) { writeFile(t, f.secret, "secret-2\n") }, yaml: f.yaml(""),
			wantChanged: []string{"upstream service password"}},
		{name: "listen.ldap and log level", yaml: strings.Replace(f.yaml("log: {level: warn}\n"), "127.0.0.1:0", "127.0.0.1:4389", 1),
			wantChanged: []string{"log.level (info → warn)"}, wantRestart: []string{"listen.ldap"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.rotate(t, "first")
			writeFile(t, f.secret, "secret-1\n")
			running, err := Parse([]byte(f.yaml("")))
			if err != nil {
				t.Fatal(err)
			}
			conf, err := running.Listen.ServerTLS()
			if err != nil {
				t.Fatal(err)
			}
			s := &reloadState{}
			if !tt.noLevelVar {
				s.level = new(slog.LevelVar)
			}
			s.start(running, conf)
			if tt.before != nil {
				tt.before(t)
			}
			next, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			p, err := s.plan(running, next)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.changed) != len(tt.wantChanged) {
				t.Errorf("changed %q, want %q", p.changed, tt.wantChanged)
			}
			for i := range min(len(p.changed), len(tt.wantChanged)) {
				if !strings.HasPrefix(p.changed[i], tt.wantChanged[i]) {
					t.Errorf("changed %q, want %q", p.changed, tt.wantChanged)
				}
			}
			if !slices.Equal(p.restart, tt.wantRestart) {
				t.Errorf("restart %q, want %q", p.restart, tt.wantRestart)
			}
			if (p.tls != nil) != tt.wantNewCerts {
				t.Errorf("new TLS configuration: %v, want %v", p.tls != nil, tt.wantNewCerts)
			}
			if p.setLevel != (len(tt.wantChanged) > 0 && strings.HasPrefix(tt.wantChanged[0], "log.level")) {
				t.Errorf("setLevel = %v", p.setLevel)
			}
		})
	}
}

// TestReload runs Reload on an app that was built but not started: an invalid file
// changes nothing; a valid one sets the level and the certificate new handshakes get.
func TestReload(t *testing.T) {
	f := newReloadFixture(t)
	path := filepath.Join(f.dir, "ldapproxy.yaml")
	writeFile(t, path, f.yaml(""))
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &slapdtest.LockedBuffer{} // the upstream pool logs from its own goroutine
	log, level := cfg.Log.NewReloadableLogger(logs)
	a, err := New(cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	a.SetLogLevel(level)
	serial := func() string {
		t.Helper()
		conf, err := a.ldap.TLSConfig.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	first := serial()

	f.rotate(t, "second")
	writeFile(t, path, f.yaml("log: {level: loud}\n"))
	if err := a.Reload(path); err == nil {
		t.Fatal("Reload of an invalid file succeeded")
	}
	if level.Level() != slog.LevelInfo || serial() != first {
		t.Errorf("after a failed reload: level %v, certificate %s; want info and the first certificate", level.Level(), serial())
	}
	if !strings.Contains(logs.String(), "configuration reload failed") {
		t.Errorf("no error logged:\n%s", logs.String())
	}

	writeFile(t, path, f.yaml("log: {level: debug}\n"))
	if err := a.Reload(path); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug || serial() == first {
		t.Errorf("after reload: level %v, certificate %s; want debug and a new certificate", level.Level(), serial())
	}
	if !strings.Contains(logs.String(), `"msg":"configuration reloaded"`) || !strings.Contains(logs.String(), "CN=second") {
		t.Errorf("reload not logged with what changed:\n%s", logs.String())
	}

	// The running configuration now holds debug: reloading the same file changes nothing.
	before := len(logs.String())
	if err := a.Reload(path); err != nil {
		t.Fatal(err)
	}
	if tail := logs.String()[before:]; !strings.Contains(tail, `"changed":[]`) {
		t.Errorf("second reload of the same file: %s", tail)
	}

	// Raised to warn: the reload is still logged, and info lines stop after it.
	writeFile(t, path, f.yaml("log: {level: warn}\n"))
	before = len(logs.String())
	if err := a.Reload(path); err != nil {
		t.Fatal(err)
	}
	if tail := logs.String()[before:]; !strings.Contains(tail, "log.level (debug → warn)") || level.Level() != slog.LevelWarn {
		t.Errorf("reload to warn: level %v, logged %s", level.Level(), tail)
	}

	// The password file is read by the reload, not by Load: one that is gone fails the
	// reload with its key, and nothing changes.
	if err := os.Remove(f.secret); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, f.yaml("log: {level: error}\n"))
	if err := a.Reload(path); err == nil || !strings.HasPrefix(err.Error(), "upstream.bind_password_file: open ") {
		t.Errorf("Reload with the password file gone: %v, want an upstream.bind_password_file error", err)
	}
	if level.Level() != slog.LevelWarn {
		t.Errorf("after a failed reload: level %v, want warn", level.Level())
	}
}
