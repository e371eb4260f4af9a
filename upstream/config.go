package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// PasswordEnv is the environment variable read for the service account's
// password when neither bind_password nor bind_password_file is set, so a
// secret can come from the orchestrator without being written to a file.
const PasswordEnv = "LDAPPROXY_UPSTREAM_BIND_PASSWORD"

// Defaults applied by Validate to keys left empty.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultPoolSize      = 4
	DefaultRetryInterval = time.Second
	// DefaultHealthInterval is how often every server is probed in the background.
	DefaultHealthInterval = 10 * time.Second
	// maxRetryInterval caps the quarantine back-off so a dead server is
	// looked at again at least once a minute.
	maxRetryInterval = time.Minute
)

// Config is the `upstream:` section of the configuration file.
//
// Example:
//
//	upstream:
//	  urls: "ldaps://ldap1.example.org,ldaps://ldap2.example.org"
//	  ca_file: /etc/ldapproxy/upstream-ca.pem
//	  bind_dn: "cn=svc,dc=example,dc=org"   # or svc@example.org
//	  bind_password_file: /run/secrets/upstream-password
//	  base_dn: "dc=example,dc=org"
//	  timeout: 5s
type Config struct {
	// URLs lists the directory servers, comma-separated, most preferred
	// first: "ldap://a,ldaps://b:636". Required. Default ports 389/636.
	URLs string `yaml:"urls"`
	// StartTLS upgrades ldap:// connections with StartTLS right after
	// connecting; a failed upgrade counts as a failed connect.
	StartTLS bool `yaml:"start_tls"`
	// CAFile is a PEM bundle of the CAs that sign the servers'
	// certificates. Empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile are a PEM certificate and key for
	// mutual TLS; both or neither.
	ClientCertFile string `yaml:"client_cert_file"`
	// ClientKeyFile is the key of ClientCertFile.
	ClientKeyFile string `yaml:"client_key_file"`
	// InsecureSkipVerify accepts any server certificate. Only for tests and
	// emergencies; New logs a warning when it is set.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// BindDN is the service account: a DN, or a user@domain UPN that is
	// passed unchanged (Active Directory accepts UPNs as bind names).
	// Empty: the service connections stay anonymous.
	BindDN string `yaml:"bind_dn"`
	// BindPassword is the service account's password. Never logged.
	BindPassword string `yaml:"bind_password"`
	// BindPasswordFile names a file holding the password (a trailing
	// newline is dropped). Used when BindPassword is empty; when both are
	// empty, the environment variable LDAPPROXY_UPSTREAM_BIND_PASSWORD.
	BindPasswordFile string `yaml:"bind_password_file"`
	// BaseDN is the base of every query the proxy sends. Required.
	BaseDN string `yaml:"base_dn"`
	// Timeout bounds each connect (TCP and TLS) and each request,
	// including a whole streamed search. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is how many idle service connections are kept open.
	// Default 4.
	PoolSize int `yaml:"pool_size"`
	// RetryInterval is the first quarantine back-off of a dead server; it
	// doubles with each failed re-check up to one minute. Default 1s.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// HealthInterval is how often every server is probed in the background: connect,
	// bind as the service account (anonymous without bind_dn), read the root DSE, all
	// within Timeout. A server counts as up only once such a probe is answered, so the
	// up metric follows the servers within one interval even with no client traffic. A
	// quarantined server is probed after its back-off, and at least this often.
	// Default 10s.
	HealthInterval time.Duration `yaml:"health_interval"`
	// RebindOnFailover keeps a session's bind credential in memory, sealed with a
	// per-process random key, for the session connection's lifetime, so that a session
	// whose server dies is bound again on the next server without the client noticing,
	// and an idle session moves back to the preferred server when it returns. false:
	// such a session fails with ErrConnectionLost until the client binds again, and
	// sessions stay on the server they were opened on, as before the option existed.
	// Default (nil) true; Validate sets it.
	RebindOnFailover *bool `yaml:"rebind_on_failover"`
}

// serverURL is one parsed entry of Config.URLs.
type serverURL struct {
	raw   string // as configured: the metric label and what logs show
	host  string // host name or IP literal, also the TLS server name
	port  string
	ldaps bool
}

// Validate fills in defaults and checks the section's syntax: the URLs,
// base_dn, the durations, that the client certificate and key go together and
// that at most one password source is set. It reads no file and no
// environment variable: New loads the TLS files and the password. Every
// mistake is reported (errors.Join), each with the key that holds it.
// Calling it again is harmless.
func (c *Config) Validate() error {
	_, err := c.check()
	return err
}

// check is Validate, returning the parsed URLs as well.
func (c *Config) check() ([]serverURL, error) {
	var errs []error
	positive := func(key string, v *time.Duration, def time.Duration) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: must be positive", key))
		}
	}
	positive("timeout", &c.Timeout, DefaultTimeout)
	switch {
	case c.PoolSize == 0:
		c.PoolSize = DefaultPoolSize
	case c.PoolSize < 0:
		errs = append(errs, errors.New("pool_size: must be positive"))
	}
	positive("retry_interval", &c.RetryInterval, DefaultRetryInterval)
	positive("health_interval", &c.HealthInterval, DefaultHealthInterval)
	if c.RebindOnFailover == nil {
		on := true
		c.RebindOnFailover = &on
	}

	servers, err := parseURLs(c.URLs)
	if err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(c.BaseDN) == "" {
		errs = append(errs, errors.New("base_dn: required"))
	} else if _, err := ldap.ParseDN(c.BaseDN); err != nil {
		errs = append(errs, fmt.Errorf("base_dn: %q: %w", c.BaseDN, err))
	}
	switch {
	case c.ClientCertFile != "" && c.ClientKeyFile == "":
		errs = append(errs, errors.New("client_key_file: needed with client_cert_file"))
	case c.ClientCertFile == "" && c.ClientKeyFile != "":
		errs = append(errs, errors.New("client_cert_file: needed with client_key_file"))
	}
	// Never put the password itself into an error: errors end up in logs.
	if c.BindPassword != "" && c.BindPasswordFile != "" {
		errs = append(errs, errors.New("bind_password_file: set together with bind_password; use one of them"))
	}
	if c.BindDN == "" {
		switch {
		case c.BindPassword != "":
			errs = append(errs, errors.New("bind_dn: needed with bind_password"))
		case c.BindPasswordFile != "":
			errs = append(errs, errors.New("bind_dn: needed with bind_password_file"))
		}
	}
	return servers, errors.Join(errs...)
}

// parseURLs parses the urls key, reporting every bad entry.
func parseURLs(list string) ([]serverURL, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("urls: required")
	}
	var out []serverURL
	var errs []error
	seen := map[string]bool{}
	empty := false
	for raw := range strings.SplitSeq(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			if !empty {
				errs = append(errs, fmt.Errorf("urls: %q: empty entry", list))
			}
			empty = true
			continue
		}
		s, err := parseURL(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("urls: %q: %w", raw, err))
		case seen[raw]:
			errs = append(errs, fmt.Errorf("urls: %q: listed twice", raw))
		default:
			out = append(out, s)
		}
		seen[raw] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func parseURL(raw string) (serverURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL again; its innermost error is
		// the useful part.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return serverURL{}, err
	}
	s := serverURL{raw: raw, host: u.Hostname(), port: u.Port()}
	switch strings.ToLower(u.Scheme) {
	case "ldap":
		if s.port == "" {
			s.port = ldap.DefaultLdapPort
		}
	case "ldaps":
		s.ldaps = true
		if s.port == "" {
			s.port = ldap.DefaultLdapsPort
		}
	default:
		return serverURL{}, errors.New("scheme must be ldap or ldaps")
	}
	if s.host == "" {
		return serverURL{}, errors.New("host required")
	}
	if n, err := strconv.Atoi(s.port); err != nil || n < 1 || n > 65535 {
		return serverURL{}, fmt.Errorf("bad port %q", s.port)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		// An LDAP URL's DN, attributes and filter parts have no meaning
		// here; base_dn is the place for the base.
		return serverURL{}, errors.New("only scheme://host[:port] is allowed")
	}
	return s, nil
}

// load reads what the section names: the TLS files and the service password
// (inline, from bind_password_file or from the environment variable). New
// calls it once, when the pool is built; every problem is reported with its
// key.
func (c *Config) load() (*tls.Config, string, error) {
	tlsConf, tlsErr := c.loadTLS()
	password, pwErr := c.loadPassword()
	if err := errors.Join(tlsErr, pwErr); err != nil {
		return nil, "", err
	}
	return tlsConf, password, nil
}

// loadTLS builds the TLS configuration from the CA and client certificate
// files. The result has no ServerName: each server sets its own.
func (c *Config) loadTLS() (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // explicit option, warned about in New
	}
	var errs []error
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ca_file: %w", err))
		case !pool.AppendCertsFromPEM(pem):
			errs = append(errs, fmt.Errorf("ca_file: %s: no PEM certificate found", c.CAFile))
		default:
			conf.RootCAs = pool
		}
	}
	if c.ClientCertFile != "" && c.ClientKeyFile != "" { // Validate reports one without the other
		cert, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("client_cert_file: %w", err))
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return conf, nil
}

// loadPassword returns the service account's password: bind_password, else
// the contents of bind_password_file, else the environment variable. It
// never puts the password itself into an error: errors end up in logs.
func (c *Config) loadPassword() (string, error) {
	password := c.BindPassword
	if c.BindPasswordFile != "" && password == "" {
		b, err := os.ReadFile(c.BindPasswordFile)
		if err != nil {
			return "", fmt.Errorf("bind_password_file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return "", fmt.Errorf("bind_password_file: %s: empty", c.BindPasswordFile)
		}
	}
	if password == "" && c.BindDN != "" {
		password = os.Getenv(PasswordEnv)
	}
	if c.BindDN != "" && password == "" {
		// A bind with a name and no password is an unauthenticated bind
		// (RFC 4513 §5.1.2): many servers accept it as anonymous, so the
		// service account would silently have no rights.
		return "", fmt.Errorf("bind_password: needed with bind_dn (or bind_password_file, or %s)", PasswordEnv)
	}
	return password, nil
}

// usesTLS tells whether any connection to servers is encrypted, for the
// start-up warning about passwords in clear text.
func (c *Config) usesTLS(servers []serverURL) bool {
	for _, s := range servers {
		if s.ldaps || c.StartTLS {
			return true
		}
	}
	return false
}

// LogValue lets the section be logged whole without its password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("urls", c.URLs),
		slog.Bool("start_tls", c.StartTLS),
		slog.String("ca_file", c.CAFile),
		slog.String("client_cert_file", c.ClientCertFile),
		slog.String("client_key_file", c.ClientKeyFile),
		slog.Bool("insecure_skip_verify", c.InsecureSkipVerify),
		slog.String("bind_dn", c.BindDN),
		slog.String("bind_password", redact(c.BindPassword)),
		slog.String("bind_password_file", c.BindPasswordFile),
		slog.String("base_dn", c.BaseDN),
		slog.Duration("timeout", c.Timeout),
		slog.Int("pool_size", c.PoolSize),
		slog.Duration("retry_interval", c.RetryInterval),
		slog.Duration("health_interval", c.HealthInterval),
		slog.Bool("rebind_on_failover", c.rebindOnFailover()),
	)
}

// String keeps fmt's %v and %+v from printing the password.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%v", a.Key, a.Value)
	}
	b.WriteString("}")
	return b.String()
}

// rebindOnFailover is RebindOnFailover with its default.
func (c *Config) rebindOnFailover() bool {
	return c.RebindOnFailover == nil || *c.RebindOnFailover
}

func redact(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// addrFor joins a resolved address with the server's port.
func (s serverURL) addrFor(ip string) string {
	return net.JoinHostPort(ip, s.port)
}
