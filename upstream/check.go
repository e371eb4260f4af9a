package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// CheckResult is what `ldapproxy check` reports for one server: the steps
// that worked, then the first error, so an operator sees how far it got.
type CheckResult struct {
	Server string   // the URL as configured
	Err    error    // nil when every step worked
	Steps  []string // e.g. "connect ok", "tls ok (TLS 1.3, verified)", "service bind ok", "base DN readable"
}

// Check tests every server on its own, without failover: connect, TLS, the
// service bind and reading the base DN, saying which step failed and why,
// with a hint for the mistakes people make most (the wrong CA, a host the
// certificate does not list, ldaps:// on a plain port and the reverse).
func (p *Pool) Check(ctx context.Context) []CheckResult {
	results := make([]CheckResult, 0, len(p.servers))
	for _, s := range p.servers {
		results = append(results, p.checkServer(ctx, s))
	}
	return results
}

func (p *Pool) checkServer(ctx context.Context, s *server) CheckResult {
	r := CheckResult{Server: s.raw}
	lc, err := s.dialLDAP(ctx, p.cfg.Timeout)
	if err != nil {
		var se *stageError
		if errors.As(err, &se) && (se.stage == "tls" || se.stage == "starttls") {
			r.Steps = append(r.Steps, "connect ok")
		}
		r.Err = p.explain(ctx, s, err, false)
		return r
	}
	defer lc.Close()
	r.Steps = append(r.Steps, "connect ok")
	state, secure := lc.TLSConnectionState()
	// A connection in clear that the server drops at the first request may be
	// a plain client on a TLS-only port.
	droppedInClear := func(err error) bool { return !secure && brokenConn(err, lc) }
	if secure {
		verified := "verified"
		if len(state.VerifiedChains) == 0 {
			verified = "NOT verified: insecure_skip_verify"
		}
		kind := "tls"
		if s.startTLS {
			kind = "starttls"
		}
		r.Steps = append(r.Steps, fmt.Sprintf("%s ok (%s, %s)", kind, tls.VersionName(state.Version), verified))
	} else {
		r.Steps = append(r.Steps, "no tls (passwords cross the network in clear)")
	}
	if p.cfg.BindDN != "" {
		if err := p.serviceBind(ctx, lc, s); err != nil {
			r.Err = p.explain(ctx, s, err, droppedInClear(err))
			return r
		}
		r.Steps = append(r.Steps, "service bind ok")
	} else {
		r.Steps = append(r.Steps, "anonymous (no bind_dn)")
	}
	req := ldap.NewSearchRequest(p.cfg.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	err = withContext(ctx, lc, func() error {
		_, err := lc.Search(req)
		return err
	})
	if err != nil {
		r.Err = p.explain(ctx, s, fmt.Errorf("read base DN %q: %w", p.cfg.BaseDN, err), droppedInClear(err))
		return r
	}
	r.Steps = append(r.Steps, "base DN readable")
	return r
}

// Hints for a server that does not speak what the URL says.
const (
	hintPlainLDAP = "the server speaks plain LDAP: use ldap:// (with start_tls) or the LDAPS port"
	hintTLS       = "the server expects TLS: use ldaps://"
)

// checkError is a failed check step with what else was found out about it
// (the chain verified on its own when the host did not match) and what to
// do about it.
type checkError struct {
	err   error
	also  []error  // further problems, each reachable with errors.Is/As
	hints []string // what to do, in the order of the problems
}

func (e *checkError) Error() string {
	var b strings.Builder
	b.WriteString(e.err.Error())
	for _, a := range e.also {
		b.WriteString("; ")
		b.WriteString(a.Error())
	}
	if len(e.hints) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(e.hints, "; "))
		b.WriteString(")")
	}
	return b.String()
}

func (e *checkError) Unwrap() []error { return append([]error{e.err}, e.also...) }

// explain adds to a failed check step on s what went wrong in terms of the
// configuration. Go's certificate verification stops at the first problem and
// checks the host before the chain, so a certificate that lacks the URL's
// host is verified again without the host, to tell a wrong CA as well. A
// connection that broke during the TLS handshake or the first LDAP exchange
// is probed the other way (plain LDAP for ldaps://, TLS for ldap://), to tell
// a URL that points at the other kind of port. droppedInClear says that a
// connection without TLS broke at its first requests.
func (p *Pool) explain(ctx context.Context, s *server, err error, droppedInClear bool) error {
	ce := &checkError{err: err}
	var cve *tls.CertificateVerificationError
	var stage *stageError
	errors.As(err, &stage)
	switch {
	case errors.As(err, &cve):
		ce.also, ce.hints = certificateProblems(cve, s.tls)
	case ctx.Err() != nil:
	case s.ldaps && stage != nil && stage.stage == "tls":
		if p.speaksPlainLDAP(ctx, s) {
			ce.hints = append(ce.hints, hintPlainLDAP)
		}
	case !s.ldaps && (stage != nil && stage.stage == "starttls" || droppedInClear):
		// StartTLS, or the service bind or first search in clear, on a listener
		// that expects a TLS handshake.
		if p.speaksTLS(ctx, s) {
			ce.hints = append(ce.hints, hintTLS)
		}
	}
	if len(ce.also) == 0 && len(ce.hints) == 0 {
		return err
	}
	return ce
}

// certificateProblems names what is wrong with the server's certificate
// beyond the error Go reported, and the hints for all of it.
func certificateProblems(cve *tls.CertificateVerificationError, conf *tls.Config) (also []error, hints []string) {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	isHost := errors.As(cve.Err, &host)
	if isHost && len(cve.UnverifiedCertificates) > 0 {
		// Verify the chain on its own, as Go would have after the host.
		leaf := cve.UnverifiedCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cve.UnverifiedCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: conf.RootCAs, Intermediates: inter}); err != nil {
			also = append(also, fmt.Errorf("the chain does not verify either: %w", err))
		}
	}
	if errors.As(cve.Err, &unknown) || len(also) > 0 && errors.As(also[0], &unknown) {
		hint := "set ca_file to the CA that signed the server's certificate"
		if unknown.Cert != nil {
			hint += fmt.Sprintf(", issuer %q", unknown.Cert.Issuer.String())
		}
		hints = append(hints, hint)
	}
	if isHost {
		hint := "the host in urls must be a name the certificate lists"
		if names := certificateNames(host.Certificate); names != "" {
			hint += ": " + names
		}
		hints = append(hints, hint)
	}
	return also, hints
}

// certificateNames lists the names and addresses a server certificate is
// valid for.
func certificateNames(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return strings.Join(names, ", ")
}

// probeAddr is the address of s that the check dialled: the one in use.
func (s *server) probeAddr(ctx context.Context) (string, bool) {
	addrs, err := s.addresses(ctx)
	if err != nil || len(addrs) == 0 {
		return "", false
	}
	return s.addrFor(addrs[0]), true
}

// speaksPlainLDAP reports whether s answers a StartTLS request in clear: an
// LDAP response, whatever its result, means a plain LDAP listener.
func (p *Pool) speaksPlainLDAP(ctx context.Context, s *server) bool {
	addr, ok := s.probeAddr(ctx)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write(ldapwire.StartTLSRequest()); err != nil {
		return false
	}
	msg, err := ldapwire.ReadFrame(bufio.NewReader(nc), 1<<16, nil)
	if err != nil {
		return false
	}
	_, err = ldapwire.ParseResponse(msg)
	return err == nil
}

// speaksTLS reports whether s takes part in a TLS handshake at once: it
// completes one, or answers with a TLS alert (a protocol version or cipher it
// refuses). The certificate is not verified: only whether s expects TLS
// matters here, and nothing is sent on the connection.
func (p *Pool) speaksTLS(ctx context.Context, s *server) bool {
	addr, ok := s.probeAddr(ctx)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{ServerName: s.host, InsecureSkipVerify: true}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var oe *net.OpError
		return errors.As(err, &oe) && oe.Op == "remote error"
	}
	_ = nc.Close()
	return true
}
