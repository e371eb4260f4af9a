package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// newPKI makes a throw-away CA (with a server certificate for the loopback names) for one
// test.
func newPKI(t testing.TB) *slapdtest.PKI {
	t.Helper()
	pki, err := slapdtest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

// listenTLS returns the `listen:` lines that give the proxy an LDAPS listener and StartTLS
// with a certificate from pki, plus any extra lines (indented like the section).
func listenTLS(t testing.TB, pki *slapdtest.PKI, extra ...string) string {
	t.Helper()
	cert, key, err := pki.IssueServer("proxy", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"  ldaps: 127.0.0.1:0",
		"  tls:",
		fmt.Sprintf("    cert_file: %q", cert),
		fmt.Sprintf("    key_file: %q", key),
	}
	return strings.Join(append(lines, extra...), "\n")
}

// tlsTool runs an OpenLDAP command-line tool like tool, but with the LDAPTLS_* settings in
// env in force: tool sets LDAPNOINIT, which makes libldap ignore the environment as well as
// the configuration files. HOME and the working directory are an empty directory so that
// no ldaprc is read; the system ldap.conf is, but env overrides it.
func tlsTool(t testing.TB, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = home
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LDAP") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(append(cmd.Env, "HOME="+home), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// whoami runs ldapwhoami as user i of up against url and returns its output and exit code.
func whoami(t testing.TB, up *slapdtest.Server, i int, env []string, url string, extra ...string) (string, int) {
	t.Helper()
	args := append([]string{"-x", "-H", url, "-D", up.UserDN(i), "-w", slapdtest.UserPassword(i)}, extra...)
	return tlsTool(t, env, "ldapwhoami", args...)
}

// wantWhoami fails the test unless ldapwhoami succeeded and named user i.
func wantWhoami(t testing.TB, up *slapdtest.Server, i int, out string, code int) {
	t.Helper()
	if want := "dn:" + up.UserDN(i); code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("ldapwhoami: exit %d, %q; want exit 0, %q", code, out, want)
	}
}

// bindAndWhoAmI binds c as user i of up and checks that the proxy reports that identity.
func bindAndWhoAmI(t testing.TB, c *ldap.Conn, up *slapdtest.Server, i int) {
	t.Helper()
	if err := c.Bind(up.UserDN(i), slapdtest.UserPassword(i)); err != nil {
		t.Fatalf("bind as %s: %v", up.UserDN(i), err)
	}
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+up.UserDN(i) {
		t.Fatalf("whoami after bind = %q, %v; want dn:%s", who.AuthzID, err, up.UserDN(i))
	}
}

func TestTLSListenerLDAPS(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	pki := newPKI(t)
	p := startProxy(t, config(up, map[string]string{"listen": listenTLS(t, pki)}))
	if p.LDAPS == "" {
		t.Fatal("no LDAPS listener although listen.ldaps is set")
	}
	other := newPKI(t)

	t.Run("ldapwhoami trusting the proxy's CA", func(t *testing.T) {
		out, code := whoami(t, up, 1, []string{"LDAPTLS_CACERT=" + pki.CAFile, "LDAPTLS_REQCERT=demand"}, p.LDAPS)
		wantWhoami(t, up, 1, out, code)
	})

	t.Run("ldapwhoami trusting another CA fails", func(t *testing.T) {
		out, code := whoami(t, up, 1, []string{"LDAPTLS_CACERT=" + other.CAFile, "LDAPTLS_REQCERT=demand"}, p.LDAPS)
		if code == 0 || strings.Contains(out, "dn:") {
			t.Fatalf("ldapwhoami with a CA that did not sign the proxy's certificate: exit %d, %q; want a failure", code, out)
		}
	})

	t.Run("go-ldap over LDAPS", func(t *testing.T) {
		c := dial(t, p.LDAPS, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pki.CertPool(), ServerName: "localhost"}))
		bindAndWhoAmI(t, c, up, 2)
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0003)", []string{"mail"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("search over LDAPS: %v", err)
		}
		state, ok := c.TLSConnectionState()
		if !ok || state.Version < tls.VersionTLS12 {
			t.Fatalf("TLS state %v, %x; want TLS 1.2 or later", ok, state.Version)
		}
		// StartTLS inside TLS is an error, not a second handshake.
		if _, err := c.Extended(ldap.NewExtendedRequest("1.3.6.1.4.1.1466.20037", nil)); resultCode(err) != ldap.LDAPResultOperationsError {
			t.Fatalf("StartTLS on LDAPS: %v, want operationsError (1)", err)
		}
	})

	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		c, err := ldap.DialURL(p.LDAPS, ldap.DialWithTLSConfig(&tls.Config{
			RootCAs: pki.CertPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
		}))
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.1 handshake succeeded; the minimum is TLS 1.2")
		}
	})
}

func TestTLSStartTLS(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	pki := newPKI(t)
	p := startProxy(t, config(up, map[string]string{"listen": listenTLS(t, pki)}))

	t.Run("ldapwhoami -ZZ", func(t *testing.T) {
		out, code := whoami(t, up, 1, []string{"LDAPTLS_CACERT=" + pki.CAFile, "LDAPTLS_REQCERT=demand"}, p.URL, "-ZZ")
		wantWhoami(t, up, 1, out, code)
	})

	t.Run("ldapwhoami -ZZ trusting another CA fails", func(t *testing.T) {
		other := newPKI(t)
		out, code := whoami(t, up, 1, []string{"LDAPTLS_CACERT=" + other.CAFile, "LDAPTLS_REQCERT=demand"}, p.URL, "-ZZ")
		if code == 0 || strings.Contains(out, "dn:") {
			t.Fatalf("exit %d, %q; want a failure", code, out)
		}
	})

	t.Run("go-ldap StartTLS then bind", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.StartTLS(&tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1"}); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
		if _, ok := c.TLSConnectionState(); !ok {
			t.Fatal("no TLS after StartTLS")
		}
		bindAndWhoAmI(t, c, up, 2)
		res, err := c.Search(ldap.NewSearchRequest(up.UserDN(4), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"uid"}, nil))
		if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("uid") != "user0004" {
			t.Fatalf("search after StartTLS: %v", err)
		}
	})

	t.Run("StartTLS without a certificate configured", func(t *testing.T) {
		plain := startProxy(t, config(up, nil))
		c := dial(t, plain.URL)
		err := c.StartTLS(&tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1"})
		if resultCode(err) != ldap.LDAPResultProtocolError {
			t.Fatalf("StartTLS on a proxy without TLS: %v, want protocolError (2)", err)
		}
		// The refusal is an LDAP result: the connection stays usable in clear text. (go-ldap
		// stops reading after a refused StartTLS, so ldapwhoami -Z, which carries on
		// without TLS, shows it.)
		out, code := whoami(t, up, 3, nil, plain.URL, "-Z")
		if code != 0 || !strings.Contains(out, "Protocol error") || !strings.HasSuffix(out, "dn:"+up.UserDN(3)+"\n") {
			t.Fatalf("ldapwhoami -Z on a proxy without TLS: exit %d, %q; want the StartTLS refusal, then the bind in clear text", code, out)
		}
		if out, code := whoami(t, up, 3, nil, plain.URL, "-ZZ"); code == 0 {
			t.Fatalf("ldapwhoami -ZZ on a proxy without TLS: exit 0, %q; want a failure", out)
		}
	})
}

func TestTLSRequireForBind(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	pki := newPKI(t)
	p := startProxy(t, config(up, map[string]string{"listen": listenTLS(t, pki, "  require_tls_for_bind: true")}))
	trust := []string{"LDAPTLS_CACERT=" + pki.CAFile, "LDAPTLS_REQCERT=demand"}

	t.Run("clear-text simple bind is refused", func(t *testing.T) {
		c := dial(t, p.URL)
		err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1))
		if resultCode(err) != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("clear-text bind: %v, want confidentialityRequired (13)", err)
		}
		who, err := c.WhoAmI(nil)
		if err != nil || who.AuthzID != "" {
			t.Fatalf("whoami after the refused bind = %q, %v; want anonymous", who.AuthzID, err)
		}
		out, code := whoami(t, up, 1, nil, p.URL)
		if code != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("clear-text ldapwhoami: exit %d, want 13\n%s", code, out)
		}
	})

	t.Run("the same bind after StartTLS", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); resultCode(err) != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("clear-text bind: %v, want 13", err)
		}
		if err := c.StartTLS(&tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1"}); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
		bindAndWhoAmI(t, c, up, 1)
		out, code := whoami(t, up, 1, trust, p.URL, "-ZZ")
		wantWhoami(t, up, 1, out, code)
	})

	t.Run("LDAPS bind", func(t *testing.T) {
		c := dial(t, p.LDAPS, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1"}))
		bindAndWhoAmI(t, c, up, 2)
		out, code := whoami(t, up, 2, trust, p.LDAPS)
		wantWhoami(t, up, 2, out, code)
	})

	t.Run("anonymous bind in clear text still works", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.UnauthenticatedBind(""); err != nil {
			t.Fatalf("anonymous bind: %v", err)
		}
		out, code := tlsTool(t, nil, "ldapwhoami", "-x", "-H", p.URL)
		if code != 0 || strings.TrimSpace(out) != "anonymous" {
			t.Fatalf("anonymous ldapwhoami: exit %d, %q", code, out)
		}
	})
}

func TestTLSClientCertificates(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5})
	pki := newPKI(t)
	p := startProxy(t, config(up, map[string]string{"listen": listenTLS(t, pki, fmt.Sprintf("    client_ca_file: %q", pki.CAFile))}))
	cert, key, err := pki.IssueClient("app")
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	otherCert, otherKey, err := other.IssueClient("intruder")
	if err != nil {
		t.Fatal(err)
	}
	trust := []string{"LDAPTLS_CACERT=" + pki.CAFile, "LDAPTLS_REQCERT=demand"}
	withCert := append([]string{"LDAPTLS_CERT=" + cert, "LDAPTLS_KEY=" + key}, trust...)
	withOtherCert := append([]string{"LDAPTLS_CERT=" + otherCert, "LDAPTLS_KEY=" + otherKey}, trust...)

	tests := []struct {
		name   string
		env    []string
		url    string
		extra  []string
		wantOK bool
	}{
		{"LDAPS without a client certificate", trust, p.LDAPS, nil, false},
		{"LDAPS with a certificate from the client CA", withCert, p.LDAPS, nil, true},
		{"LDAPS with a certificate from another CA", withOtherCert, p.LDAPS, nil, false},
		{"StartTLS without a client certificate", trust, p.URL, []string{"-ZZ"}, false},
		{"StartTLS with a certificate from the client CA", withCert, p.URL, []string{"-ZZ"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := whoami(t, up, 1, tt.env, tt.url, tt.extra...)
			if tt.wantOK {
				wantWhoami(t, up, 1, out, code)
			} else if code == 0 || strings.Contains(out, "dn:") {
				t.Fatalf("exit %d, %q; want a failure", code, out)
			}
		})
	}

	t.Run("go-ldap with a client certificate", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c := dial(t, p.LDAPS, ldap.DialWithTLSConfig(&tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{pair}}))
		bindAndWhoAmI(t, c, up, 3)
	})
}

// proxyBind binds as user i through the proxy at url and reads the user's own entry,
// returning the first error.
func proxyBind(t testing.TB, url string, up *slapdtest.Server, i int) error {
	t.Helper()
	c := dial(t, url)
	if err := c.Bind(up.UserDN(i), slapdtest.UserPassword(i)); err != nil {
		return err
	}
	res, err := c.Search(ldap.NewSearchRequest(up.UserDN(i), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"uid"}, nil))
	if err != nil {
		return err
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("uid") != slapdtest.UserName(i) {
		return fmt.Errorf("search for the bound user's own entry returned %d entries", len(res.Entries))
	}
	return nil
}

// urlPort returns the port of an ldap:// or ldaps:// URL.
func urlPort(url string) string {
	return url[strings.LastIndex(url, ":")+1:]
}

func TestUpstreamTLS(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5, TLS: true})
	wrong := newPKI(t)
	caFile := fmt.Sprintf("  ca_file: %q", up.PKI.CAFile)
	wrongCA := fmt.Sprintf("  ca_file: %q", wrong.CAFile)

	tests := []struct {
		name     string
		urls     string
		upstream string
		wantCode uint16
		wantDiag string // part of the diagnostic of a failed bind
	}{
		{"ldaps with the CA", up.LDAPSURL, caFile, ldap.LDAPResultSuccess, ""},
		{"StartTLS with the CA", up.URL, caFile + "\n  start_tls: true", ldap.LDAPResultSuccess, ""},
		{"ldaps to a name the certificate lists", "ldaps://localhost:" + urlPort(up.LDAPSURL), caFile, ldap.LDAPResultSuccess, ""},
		{"ldaps with another CA", up.LDAPSURL, wrongCA, ldap.LDAPResultUnavailable, "certificate"},
		{"StartTLS with another CA", up.URL, wrongCA + "\n  start_tls: true", ldap.LDAPResultUnavailable, "certificate"},
		{"ldaps with the system roots", up.LDAPSURL, "", ldap.LDAPResultUnavailable, "certificate"},
		{"insecure_skip_verify accepts any certificate", up.LDAPSURL, wrongCA + "\n  insecure_skip_verify: true", ldap.LDAPResultSuccess, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, config(up, map[string]string{"urls": tt.urls, "upstream": tt.upstream}))
			logged := len(p.logs.String())
			err := proxyBind(t, p.URL, up, 1)
			if got := resultCode(err); got != tt.wantCode {
				t.Fatalf("bind through the proxy: result %d (%v), want %d", got, err, tt.wantCode)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantDiag) {
				t.Fatalf("diagnostic %q does not mention %q", err, tt.wantDiag)
			}
			if d := p.loggedBindDuration(t, logged, up.UserDN(1)); d > 4*time.Second {
				t.Fatalf("took %v; a TLS failure must not wait for a timeout", d)
			}
			if strings.Contains(tt.upstream, "insecure_skip_verify: true") && !strings.Contains(p.logs.String(), "insecure_skip_verify") {
				t.Fatal("insecure_skip_verify was not warned about in the logs")
			}
		})
	}

	// The host of the URL is what the certificate is verified against: with a certificate
	// for localhost only, ldaps://localhost works and ldaps://127.0.0.1 does not.
	t.Run("the URL's host is verified", func(t *testing.T) {
		if _, _, err := up.PKI.IssueServer("server", "localhost"); err != nil {
			t.Fatal(err)
		}
		if err := up.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := up.Start(); err != nil {
			t.Fatal(err)
		}
		byName := startProxy(t, config(up, map[string]string{"urls": "ldaps://localhost:" + urlPort(up.LDAPSURL), "upstream": caFile}))
		if err := proxyBind(t, byName.URL, up, 2); err != nil {
			t.Fatalf("ldaps://localhost with a certificate for localhost: %v", err)
		}
		byIP := startProxy(t, config(up, map[string]string{"urls": up.LDAPSURL, "upstream": caFile}))
		err := proxyBind(t, byIP.URL, up, 2)
		if resultCode(err) != ldap.LDAPResultUnavailable || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("ldaps://127.0.0.1 with a certificate for localhost only: %v; want unavailable (52) naming the certificate", err)
		}
	})
}

func TestUpstreamMutualTLS(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 5, VerifyClients: true})
	cert, key, err := up.PKI.IssueClient("proxy")
	if err != nil {
		t.Fatal(err)
	}
	caFile := fmt.Sprintf("  ca_file: %q", up.PKI.CAFile)
	clientCert := fmt.Sprintf("\n  client_cert_file: %q\n  client_key_file: %q", cert, key)

	tests := []struct {
		name     string
		urls     string
		upstream string
		wantCode uint16
	}{
		{"ldaps with a client certificate", up.LDAPSURL, caFile + clientCert, ldap.LDAPResultSuccess},
		{"StartTLS with a client certificate", up.URL, caFile + clientCert + "\n  start_tls: true", ldap.LDAPResultSuccess},
		{"ldaps without a client certificate", up.LDAPSURL, caFile, ldap.LDAPResultUnavailable},
		{"StartTLS without a client certificate", up.URL, caFile + "\n  start_tls: true", ldap.LDAPResultUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, config(up, map[string]string{"urls": tt.urls, "upstream": tt.upstream}))
			logged := len(p.logs.String())
			err := proxyBind(t, p.URL, up, 1)
			if got := resultCode(err); got != tt.wantCode {
				t.Fatalf("bind through the proxy: result %d (%v), want %d", got, err, tt.wantCode)
			}
			if d := p.loggedBindDuration(t, logged, up.UserDN(1)); d > 4*time.Second {
				t.Fatalf("took %v; a refused client certificate must not wait for a timeout", d)
			}
			if err != nil {
				t.Logf("diagnostic: %v", err)
			}
		})
	}
}
