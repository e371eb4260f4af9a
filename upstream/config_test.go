package upstream

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/errlist"
)

// testSvcDN is a service account's DN for configurations that are only
// validated.
const testSvcDN = "cn=svc,ou=services," + testBaseDN

func validConfig() Config {
	return Config{URLs: "ldap://127.0.0.1:389", BaseDN: testBaseDN}
}

func TestValidateErrorsNameTheKey(t *testing.T) {
	t.Setenv(PasswordEnv, "")
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no urls", func(c *Config) { c.URLs = " " }, "urls: required"},
		{"bad scheme", func(c *Config) { c.URLs = "ftp://x" }, `urls: "ftp://x": scheme must be ldap or ldaps`},
		{"bad scheme second", func(c *Config) { c.URLs = "ldap://a, http://b" }, `urls: "http://b": scheme must be ldap or ldaps`},
		{"no host", func(c *Config) { c.URLs = "ldap://:389" }, `urls: "ldap://:389": host required`},
		{"bad port", func(c *Config) { c.URLs = "ldap://a:99999" }, `urls: "ldap://a:99999": bad port`},
		{"empty entry", func(c *Config) { c.URLs = "ldap://a,,ldap://b" }, "urls: \"ldap://a,,ldap://b\": empty entry"},
		{"duplicate", func(c *Config) { c.URLs = "ldap://a,ldap://a" }, `urls: "ldap://a": listed twice`},
		{"base dn in url", func(c *Config) { c.URLs = "ldap://a/dc=x" }, `urls: "ldap://a/dc=x": only scheme://host[:port]`},
		{"no base dn", func(c *Config) { c.BaseDN = "" }, "base_dn: required"},
		{"bad base dn", func(c *Config) { c.BaseDN = "not a dn" }, `base_dn: "not a dn"`},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout: must be positive"},
		{"negative pool", func(c *Config) { c.PoolSize = -1 }, "pool_size: must be positive"},
		{"negative retry", func(c *Config) { c.RetryInterval = -1 }, "retry_interval: must be positive"},
		{"key without cert", func(c *Config) { c.ClientKeyFile = "k.pem" }, "client_cert_file: needed with client_key_file"},
		{"cert without key", func(c *Config) { c.ClientCertFile = "c.pem" }, "client_key_file: needed with client_cert_file"},
		{"password without dn", func(c *Config) { c.BindPassword = "s3cret-value" }, "bind_dn: needed with bind_password"},
		{"password file without dn", func(c *Config) { c.BindPasswordFile = "/run/secrets/pw" }, "bind_dn: needed with bind_password_file"},
		{"password twice", func(c *Config) {
			c.BindDN, c.BindPassword, c.BindPasswordFile = testSvcDN, "s3cret-value", "/run/secrets/pw"
		}, "bind_password_file: set together with bind_password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, want it to start with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("Validate() error shows the password: %q", err)
			}
			// New validates too, and stops at the same error before loading anything.
			if _, err := New(c, nil, nil); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("New() = %v, want it to start with %q", err, tt.want)
			}
		})
	}
}

// TestValidateReportsEveryError: a section with several independent mistakes
// reports each of them, not only the first.
func TestValidateReportsEveryError(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"timeout and base_dn", func(c *Config) { c.Timeout, c.BaseDN = -time.Second, "" },
			[]string{"timeout: must be positive", "base_dn: required"}},
		{"urls and pool_size", func(c *Config) { c.URLs, c.PoolSize = "ftp://x", -1 },
			[]string{"pool_size: must be positive", `urls: "ftp://x": scheme must be ldap or ldaps`}},
		{"two bad urls", func(c *Config) { c.URLs = "ftp://x,ldap://a:0" },
			[]string{`urls: "ftp://x": scheme`, `urls: "ldap://a:0": bad port`}},
		{"retry_interval and client key", func(c *Config) { c.RetryInterval, c.ClientKeyFile = -1, "k.pem" },
			[]string{"retry_interval: must be positive", "client_cert_file: needed with client_key_file"}},
		{"both passwords and no bind_dn", func(c *Config) { c.BindPassword, c.BindPasswordFile = "s3cret-value", "/pw" },
			[]string{"bind_password_file: set together with bind_password", "bind_dn: needed with bind_password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			parts := errlist.Flatten(err)
			if len(parts) != len(tt.want) {
				t.Errorf("Validate() reported %d errors, want %d: %q", len(parts), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(parts, func(e error) bool { return strings.HasPrefix(e.Error(), w) }) {
					t.Errorf("Validate() = %q, want an error starting with %q", err, w)
				}
			}
		})
	}
}

// TestValidateReadsNothing: Validate checks syntax only; the files and the
// environment variable are read by New.
func TestValidateReadsNothing(t *testing.T) {
	t.Setenv(PasswordEnv, "")
	missing := filepath.Join(t.TempDir(), "missing")
	c := validConfig()
	c.CAFile, c.ClientCertFile, c.ClientKeyFile = missing, missing, missing
	c.BindDN, c.BindPasswordFile = testSvcDN, missing
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() read a file: %v", err)
	}
	c.BindPasswordFile = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() looked at %s: %v", PasswordEnv, err)
	}
	// New reads them, and reports every file it could not load.
	c.BindPasswordFile = missing
	_, err := New(c, nil, nil)
	for _, key := range []string{"ca_file: open ", "client_cert_file: open ", "bind_password_file: open "} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("New() = %v, want an error with %q", err, key)
		}
	}
}

// TestNewLoadErrorsNameTheKey: the files and the password are loaded by New,
// and a problem with them stops it with an error naming the key.
func TestNewLoadErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyPW := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyPW, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PasswordEnv, "")

	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"bad client cert", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = notPEM, notPEM }, "client_cert_file: "},
		{"missing ca", func(c *Config) { c.CAFile = filepath.Join(dir, "nope.pem") }, "ca_file: open "},
		{"ca not pem", func(c *Config) { c.CAFile = notPEM }, "ca_file: " + notPEM + ": no PEM certificate found"},
		{"dn without password", func(c *Config) { c.BindDN = testSvcDN }, "bind_password: needed with bind_dn"},
		{"missing password file", func(c *Config) {
			c.BindDN, c.BindPasswordFile = testSvcDN, filepath.Join(dir, "nope")
		}, "bind_password_file: open "},
		{"empty password file", func(c *Config) { c.BindDN, c.BindPasswordFile = testSvcDN, emptyPW }, "bind_password_file: " + emptyPW + ": empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v; the files are New's to read", err)
			}
			p, err := New(c, nil, nil)
			if err == nil {
				p.Close()
				t.Fatalf("New() = nil error, want error containing %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("New() = %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

func TestValidateDefaultsAndURLs(t *testing.T) {
	c := Config{URLs: "ldap://a.example.org, LDAPS://b.example.org ,ldap://[::1]:3389", BaseDN: testBaseDN}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != DefaultTimeout || c.PoolSize != DefaultPoolSize || c.RetryInterval != DefaultRetryInterval {
		t.Errorf("defaults not filled: %+v", c)
	}
	want := []serverURL{
		{raw: "ldap://a.example.org", host: "a.example.org", port: "389"},
		{raw: "LDAPS://b.example.org", host: "b.example.org", port: "636", ldaps: true},
		{raw: "ldap://[::1]:3389", host: "::1", port: "3389"},
	}
	before := c
	servers, err := c.check() // what New does first: Validate again
	if err != nil {
		t.Errorf("second Validate: %v", err)
	}
	if c != before {
		t.Errorf("second Validate changed the config: %+v, was %+v", c, before)
	}
	if !slices.Equal(servers, want) {
		t.Errorf("servers = %+v, want %+v", servers, want)
	}
	tlsConf, err := c.loadTLS()
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf.MinVersion < 0x0303 {
		t.Errorf("TLS MinVersion = %#x, want at least TLS 1.2", tlsConf.MinVersion)
	}
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		env  string
		want string
	}{
		{"inline", Config{BindPassword: "inline"}, "from-env", "inline"},
		{"file, newline trimmed", Config{BindPasswordFile: file}, "from-env", "from-file"},
		{"env", Config{}, "from-env", "from-env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PasswordEnv, tt.env)
			c := tt.cfg
			c.URLs, c.BaseDN, c.BindDN = "ldap://127.0.0.1:1", testBaseDN, testSvcDN
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			_, pw, err := c.load()
			if err != nil {
				t.Fatal(err)
			}
			if pw != tt.want {
				t.Errorf("password = %q, want %q", pw, tt.want)
			}
			p, err := New(c, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if got := p.bindPassword(); got != tt.want {
				t.Errorf("pool's password = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigNeverLogsThePassword(t *testing.T) {
	c := validConfig()
	c.BindDN, c.BindPassword = testSvcDN, "s3cret-value"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "upstream", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "upstream", c)
	fmt.Fprintf(&buf, "%v %+v %s", c, c, c)
	out := buf.String()
	if strings.Contains(out, "s3cret-value") {
		t.Fatalf("password logged: %s", out)
	}
	if !strings.Contains(out, testSvcDN) || !strings.Contains(out, "[redacted]") {
		t.Errorf("log lacks the bind DN or the redaction mark: %s", out)
	}
}
