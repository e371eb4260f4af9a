package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
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
	// MaxMessageSize bounds one request in bytes once the client has bound. Default 1048576.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxMessageSizeAnonymous bounds one request in bytes before the client has bound (or
	// while it is bound anonymously), as OpenLDAP's sockbuf_max_incoming. Default 262144.
	MaxMessageSizeAnonymous int `yaml:"max_message_size_anonymous"`
	// MaxPartialRequestBytes caps the memory held by large requests (over 16 KiB) still
	// arriving or waiting to be decoded, over all connections; a connection whose request
	// would pass it is closed with busy. Default 16777216.
	MaxPartialRequestBytes int `yaml:"max_partial_request_bytes"`
	// MaxConnectionsPerAddress caps the open connections of one client address, loopback
	// and ThrottleExempt networks excepted. Default 1000; 0: no limit.
	MaxConnectionsPerAddress *int `yaml:"max_connections_per_address"`
	// ThrottleExempt lists networks (CIDRs, or single addresses) exempt, like loopback
	// always is, from the per-address bind-failure limit and the per-address connection
	// cap: addresses that many clients share, such as an application server's.
	ThrottleExempt []string `yaml:"throttle_exempt"`
	// ProxyProtocol makes the listeners read a PROXY protocol header (v1 or v2) from the
	// peers in ProxyProtocolFrom, whose source address then stands for the client in
	// throttles, limits and logs. Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// ProxyProtocolFrom lists the load balancers (CIDRs or addresses) trusted to send the
	// header; required with ProxyProtocol.
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`
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
	// Readers are the identities and groups that may read the whole synced directory:
	// DNs (of a user, of a `clients:` account, of any identity, or of a synced group,
	// whose members, nested ones included, are then readers), or user names in any form
	// a bind accepts. Any other identity reads only its own entry and its groups from the
	// store. Empty (the default): in cached mode every bound identity reads everything;
	// in direct mode the store answers only `clients:` accounts (and listed readers) when
	// no upstream can be reached.
	Readers []string `yaml:"readers"`
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

	DefaultMaxConnectionsPerAddress = 1000

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
	if c.MaxMessageSizeAnonymous == 0 {
		c.MaxMessageSizeAnonymous = min(ldapserver.DefaultMaxMessageSizeAnonymous, c.MaxMessageSize)
	}
	if c.MaxPartialRequestBytes == 0 {
		c.MaxPartialRequestBytes = ldapserver.DefaultMaxPartialBytes
	}
	if c.MaxConnectionsPerAddress == nil {
		c.MaxConnectionsPerAddress = new(DefaultMaxConnectionsPerAddress)
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
		{"max_message_size_anonymous", int64(c.MaxMessageSizeAnonymous)},
		{"max_partial_request_bytes", int64(c.MaxPartialRequestBytes)},
		{"max_connections_per_address", int64(*c.MaxConnectionsPerAddress)},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", n.key))
		}
	}
	if c.MaxMessageSize > 0 && c.MaxMessageSize < 1024 {
		errs = append(errs, fmt.Errorf("max_message_size: %d is too small to carry a bind (minimum 1024)", c.MaxMessageSize))
	}
	if c.MaxMessageSizeAnonymous > 0 && c.MaxMessageSizeAnonymous < 1024 {
		errs = append(errs, fmt.Errorf("max_message_size_anonymous: %d is too small to carry a bind (minimum 1024)", c.MaxMessageSizeAnonymous))
	}
	if c.MaxMessageSizeAnonymous > c.MaxMessageSize {
		errs = append(errs, fmt.Errorf("max_message_size_anonymous: %d is more than max_message_size (%d)", c.MaxMessageSizeAnonymous, c.MaxMessageSize))
	}
	if c.MaxPartialRequestBytes > 0 && c.MaxPartialRequestBytes < c.MaxMessageSize {
		errs = append(errs, fmt.Errorf("max_partial_request_bytes: %d is less than max_message_size (%d): no large request could arrive", c.MaxPartialRequestBytes, c.MaxMessageSize))
	}
	if _, err := parsePrefixes(c.ThrottleExempt); err != nil {
		errs = append(errs, fmt.Errorf("throttle_exempt: %w", err))
	}
	if _, err := parsePrefixes(c.ProxyProtocolFrom); err != nil {
		errs = append(errs, fmt.Errorf("proxy_protocol_from: %w", err))
	}
	if c.ProxyProtocol && len(c.ProxyProtocolFrom) == 0 {
		errs = append(errs, errors.New("proxy_protocol_from: required with proxy_protocol: the load balancers trusted to name their clients"))
	}
	if !c.ProxyProtocol && len(c.ProxyProtocolFrom) > 0 {
		errs = append(errs, errors.New("proxy_protocol_from: set, but proxy_protocol is false"))
	}
	return errors.Join(errs...)
}

// loopback is exempt from the per-address limits: in a sidecar every client is there.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// LimitExempt is the networks the per-address limits (bind failures, connections) do
// not apply to: loopback and ThrottleExempt.
func (c *ListenConfig) LimitExempt() []netip.Prefix {
	p, _ := parsePrefixes(c.ThrottleExempt)
	return append(slices.Clone(loopback), p...)
}

// ProxyProtocolPeers is the balancers trusted to send a PROXY protocol header; nil when
// the protocol is off.
func (c *ListenConfig) ProxyProtocolPeers() []netip.Prefix {
	if !c.ProxyProtocol {
		return nil
	}
	p, _ := parsePrefixes(c.ProxyProtocolFrom)
	return p
}

// parsePrefixes parses CIDRs and single addresses (a /32 or /128), reporting every bad one.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an IP address", s))
	}
	return out, errors.Join(errs...)
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
	var errs []error
	for i, r := range c.Readers {
		if strings.TrimSpace(r) == "" {
			errs = append(errs, fmt.Errorf("readers[%d]: empty", i))
		} else if strings.Contains(r, "=") {
			if _, err := ldap.ParseDN(r); err != nil {
				errs = append(errs, fmt.Errorf("readers[%d]: %q is not a DN: %v", i, r, err))
			}
		}
	}
	return errors.Join(errs...)
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
	// ResetIdentities are the identities that may set other users' passwords through the
	// proxy; the service account then does it for them, so it needs the right to. Each is
	// named in any form a bind name takes — a DN (upstream or served, any spelling), a
	// user name, UPN, mail address or DOMAIN\user of a synced user — and matches the
	// client whose bind resolves to the same identity (names.go, identityDN). Default
	// none: users change only their own password.
	ResetIdentities []string `yaml:"password_reset_identities"`
}

// Validate checks that each reset identity names someone: not empty, and a DN when it
// looks like one (holds "="). Errors name the key.
func (c *WritebackConfig) Validate() error {
	var errs []error
	for i, name := range c.ResetIdentities {
		if strings.TrimSpace(name) == "" {
			errs = append(errs, fmt.Errorf("password_reset_identities[%d]: empty name", i))
			continue
		}
		if dn := strings.TrimPrefix(name, "dn:"); strings.Contains(dn, "=") {
			if _, err := ldap.ParseDN(dn); err != nil {
				errs = append(errs, fmt.Errorf("password_reset_identities[%d]: %q is not a DN: %w", i, name, err))
			}
		}
	}
	return errors.Join(errs...)
}
