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
)

// testSvcDN is a service account's DN for configurations that are only
// validated.
const testSvcDN = "cn=svc,ou=services," + testBaseDN

func validConfig() Config {
	return Config{URLs: "ldap://127.0.0.1:389", BaseDN: testBaseDN}
}

func TestValidateErrorsNameTheKey(t *testing.T) {
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
		{"bad client cert", func(c *Config) { c.ClientCertFile, c.ClientKeyFile = notPEM, notPEM }, "client_cert_file: "},
		{"missing ca", func(c *Config) { c.CAFile = filepath.Join(dir, "nope.pem") }, "ca_file: open "},
		{"ca not pem", func(c *Config) { c.CAFile = notPEM }, "ca_file: " + notPEM + ": no PEM certificate found"},
		{"dn without password", func(c *Config) { c.BindDN = testSvcDN }, "bind_password: needed with bind_dn"},
		{"password without dn", func(c *Config) { c.BindPassword = "s3cret-value" }, "bind_dn: needed with bind_password"},
		{"password twice", func(c *Config) {
			c.BindDN, c.BindPassword, c.BindPasswordFile = testSvcDN, "s3cret-value", emptyPW
		}, "bind_password_file: set together with bind_password"},
		{"missing password file", func(c *Config) {
			c.BindDN, c.BindPasswordFile = testSvcDN, filepath.Join(dir, "nope")
		}, "bind_password_file: open "},
		{"empty password file", func(c *Config) { c.BindDN, c.BindPasswordFile = testSvcDN, emptyPW }, "bind_password_file: " + emptyPW + ": empty"},
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
	if got := c.resolved.servers; !slices.Equal(got, want) {
		t.Errorf("servers = %+v, want %+v", got, want)
	}
	if c.resolved.tls.MinVersion < 0x0303 {
		t.Errorf("TLS MinVersion = %#x, want at least TLS 1.2", c.resolved.tls.MinVersion)
	}
	// Validate runs again when New is handed a validated config.
	if err := c.Validate(); err != nil {
		t.Errorf("second Validate: %v", err)
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
			c.URLs, c.BaseDN, c.BindDN = "ldap://a", testBaseDN, testSvcDN
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.resolved.password != tt.want {
				t.Errorf("password = %q, want %q", c.resolved.password, tt.want)
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
