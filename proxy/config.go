package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// ListenConfig is the `listen:` section of the configuration file: the client-facing
// listeners and their limits.
type ListenConfig struct {
	// LDAP is the plain-LDAP address; StartTLS is offered there when TLS is configured.
	// Default "127.0.0.1:3389". Empty disables it (then LDAPS must be set).
	LDAP string `yaml:"ldap"`
	// LDAPS is the LDAP-over-TLS address, e.g. "127.0.0.1:3636". Empty: none.
	LDAPS string `yaml:"ldaps"`
	// TLS holds the certificate for StartTLS and LDAPS.
	TLS TLSFiles `yaml:"tls"`
	// RequireTLSForBind refuses simple binds with a password on a connection that is not
	// encrypted, with confidentialityRequired (as Active Directory does).
	RequireTLSForBind bool `yaml:"require_tls_for_bind"`
	// AllowAnonymous lets clients that have not bound search and compare, and turns an
	// unauthenticated bind (a DN with an empty password) into an anonymous one instead of
	// refusing it. Default false.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// MaxConnections caps open client connections. Default 10000.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes connections that send nothing and have nothing in flight for this
	// long. Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout closes a connection whose client stops reading its responses. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxMessageSize bounds one request in bytes. Default 1048576.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxFilterDepth bounds the nesting of search filters. Default 100.
	MaxFilterDepth int `yaml:"max_filter_depth"`
	// MaxOperationsPerConnection bounds operations in flight on one connection. Default 128.
	MaxOperationsPerConnection int `yaml:"max_operations_per_connection"`

	// Bind-failure throttling (throttle.go). Pointers, because 0 turns a throttle off and
	// an absent key means the default.

	// BindFailuresPerUser is how many failed binds (invalidCredentials upstream, or a
	// wrong password at an offline login) of one user within BindFailureWindow make the
	// proxy refuse that user's binds, without asking the upstream, for the rest of the
	// window. A success clears the count. Default 10; 0: off.
	BindFailuresPerUser *int `yaml:"bind_failures_per_user"`
	// BindFailuresPerAddress is the same limit per client IP address, over all users.
	// Default 100; 0: off.
	BindFailuresPerAddress *int `yaml:"bind_failures_per_address"`
	// BindFailureWindow is the period the failures are counted in, from the first one.
	// Default 5m.
	BindFailureWindow time.Duration `yaml:"bind_failure_window"`
}

// TLSFiles names the PEM files of the proxy's own TLS identity.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes the listeners require a client certificate signed by
	// one of these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
}

// SearchConfig is the `search:` section.
type SearchConfig struct {
	// Mode is "cached" (the default): searches and compares are answered from the synced
	// store; or "direct": forwarded to the upstream with the caller's identity and
	// streamed back, answered from the store when no upstream can be reached.
	Mode string `yaml:"mode"`
}

// Search modes.
const (
	ModeDirect = "direct"
	ModeCached = "cached"
)

// Defaults of the listen section.
const (
	DefaultListenLDAP     = "127.0.0.1:3389"
	DefaultMaxConnections = 10000
	DefaultIdleTimeout    = 5 * time.Minute

	DefaultBindFailuresPerUser    = 10
	DefaultBindFailuresPerAddress = 100
	DefaultBindFailureWindow      = 5 * time.Minute
)

// Validate fills in defaults and checks the section. Errors name the key.
func (c *ListenConfig) Validate() error {
	var errs []error
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = ldapserver.DefaultWriteTimeout
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = ldapserver.DefaultMaxMessageSize
	}
	if c.MaxFilterDepth == 0 {
		c.MaxFilterDepth = ldapserver.DefaultMaxFilterDepth
	}
	if c.MaxOperationsPerConnection == 0 {
		c.MaxOperationsPerConnection = ldapserver.DefaultMaxOpsPerConn
	}
	// Bind-failure throttling: an absent count takes its default; 0 stays 0 (off).
	if c.BindFailuresPerUser == nil {
		c.BindFailuresPerUser = new(DefaultBindFailuresPerUser)
	}
	if c.BindFailuresPerAddress == nil {
		c.BindFailuresPerAddress = new(DefaultBindFailuresPerAddress)
	}
	if c.BindFailureWindow == 0 {
		c.BindFailureWindow = DefaultBindFailureWindow
	}
	for _, a := range []struct {
		key, addr string
	}{{"ldap", c.LDAP}, {"ldaps", c.LDAPS}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", a.key, a.addr, err))
		}
	}
	if c.LDAP == "" && c.LDAPS == "" {
		errs = append(errs, errors.New("ldap: one of ldap or ldaps must be set"))
	}
	if c.LDAPS != "" && c.TLS.CertFile == "" {
		errs = append(errs, errors.New("tls.cert_file: needed for ldaps"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls.key_file: cert_file and key_file go together"))
	}
	if c.TLS.ClientCAFile != "" && c.TLS.CertFile == "" {
		errs = append(errs, errors.New("tls.client_ca_file: needs tls.cert_file"))
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"max_connections", int64(c.MaxConnections)}, {"idle_timeout", int64(c.IdleTimeout)},
		{"write_timeout", int64(c.WriteTimeout)}, {"max_message_size", int64(c.MaxMessageSize)},
		{"max_filter_depth", int64(c.MaxFilterDepth)}, {"max_operations_per_connection", int64(c.MaxOperationsPerConnection)},
		{"bind_failures_per_user", int64(*c.BindFailuresPerUser)}, {"bind_failures_per_address", int64(*c.BindFailuresPerAddress)},
		{"bind_failure_window", int64(c.BindFailureWindow)},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", n.key))
		}
	}
	if c.MaxMessageSize > 0 && c.MaxMessageSize < 1024 {
		errs = append(errs, fmt.Errorf("max_message_size: %d is too small to carry a bind (minimum 1024)", c.MaxMessageSize))
	}
	return errors.Join(errs...)
}

// ServerTLS loads the TLS identity; nil when none is configured. Minimum TLS 1.2. It
// reads the files: it is called once, when the server is built (and again by a reload),
// never by Validate.
func (c *ListenConfig) ServerTLS() (*tls.Config, error) {
	if c.TLS.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.TLS.ClientCAFile != "" {
		pem, err := os.ReadFile(c.TLS.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.client_ca_file: %s holds no PEM certificate", c.TLS.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Validate fills in the default mode and checks it.
func (c *SearchConfig) Validate() error {
	switch c.Mode {
	case "":
		c.Mode = ModeCached
	case ModeDirect, ModeCached:
	default:
		return fmt.Errorf("mode: %q is not one of direct, cached", c.Mode)
	}
	return nil
}

// WritebackConfig is the password writeback part of the configuration file: two
// top-level keys (see writeback.go).
//
// Example:
//
//	password_writeback: true
//	password_reset_identities:
//	  - cn=helpdesk,ou=services,dc=example,dc=org
type WritebackConfig struct {
	// Enabled writes password changes sent to the proxy to the upstream. Default false:
	// they are refused with unwillingToPerform.
	Enabled bool `yaml:"password_writeback"`
	// ResetIdentities are the bound DNs that may set other users' passwords through the
	// proxy; the service account then does it for them, so it needs the right to. Compared
	// as normalised DNs with the DN the client bound as and, for a synced user, its
	// upstream and served DNs. Default none: users change only their own password.
	ResetIdentities []string `yaml:"password_reset_identities"`
}

// Validate checks that each reset identity is a DN. Errors name the key.
func (c *WritebackConfig) Validate() error {
	var errs []error
	for i, dn := range c.ResetIdentities {
		if strings.TrimSpace(dn) == "" {
			errs = append(errs, fmt.Errorf("password_reset_identities[%d]: empty DN", i))
			continue
		}
		if _, err := ldap.ParseDN(dn); err != nil {
			errs = append(errs, fmt.Errorf("password_reset_identities[%d]: %q is not a DN: %w", i, dn, err))
		}
	}
	return errors.Join(errs...)
}
