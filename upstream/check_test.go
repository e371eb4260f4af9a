package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// tlsListener serves certFile/keyFile on a loopback port: each connection
// finishes its handshake and is closed. It returns the port.
func tlsListener(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			})
		}
	})
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestCheckCertificateProblems: Go checks the host before the chain, so a
// certificate that lacks the URL's IP and is signed by another CA failed
// with "no IP SANs" alone; check verifies the chain on its own and reports
// both, each with its hint.
func TestCheckCertificateProblems(t *testing.T) {
	named, err := slapdtest.NewPKI(t.TempDir(), "ldap.example.test") // a DNS SAN only
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	port := tlsListener(t, named.CertFile, named.KeyFile)
	ipURL := "ldaps://127.0.0.1:" + port

	t.Run("wrong CA and no IP SAN", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: ipURL, CAFile: other.CAFile})
		res := p.Check(t.Context())[0]
		if res.Err == nil {
			t.Fatal("check passed")
		}
		msg := res.Err.Error()
		for _, want := range []string{"doesn't contain any IP SANs", "certificate signed by unknown authority",
			"set ca_file to the CA that signed the server's certificate", "the host in urls must be a name the certificate lists: ldap.example.test"} {
			if !strings.Contains(msg, want) {
				t.Errorf("check error lacks %q: %s", want, msg)
			}
		}
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		if !errors.As(res.Err, &unknown) || !errors.As(res.Err, &host) {
			t.Errorf("check error %v does not wrap both an UnknownAuthorityError and a HostnameError", res.Err)
		}
		if strings.Count(msg, "tls: ") != 1 {
			t.Errorf(`check error says "tls: " other than once: %s`, msg)
		}
		if strings.Join(res.Steps, "|") != "connect ok" {
			t.Errorf("steps = %v, want connect ok", res.Steps)
		}
	})
	t.Run("right CA and no IP SAN", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: ipURL, CAFile: named.CAFile})
		res := p.Check(t.Context())[0]
		if res.Err == nil || !strings.Contains(res.Err.Error(), "the host in urls must be a name the certificate lists: ldap.example.test") {
			t.Fatalf("check error = %v, want the host hint", res.Err)
		}
		if msg := res.Err.Error(); strings.Contains(msg, "unknown authority") || strings.Contains(msg, "ca_file") || strings.Contains(msg, "chain") {
			t.Errorf("check blames the CA although it is right: %s", msg)
		}
	})
	t.Run("wrong CA only", func(t *testing.T) {
		plain := newPKI(t) // 127.0.0.1 is in this certificate
		port := tlsListener(t, plain.CertFile, plain.KeyFile)
		p := newTestPool(t, Config{URLs: "ldaps://127.0.0.1:" + port, CAFile: other.CAFile})
		res := p.Check(t.Context())[0]
		if res.Err == nil || !strings.Contains(res.Err.Error(), "unknown authority") || !strings.Contains(res.Err.Error(), "set ca_file") ||
			strings.Contains(res.Err.Error(), "urls must be") {
			t.Fatalf("check error = %v, want the CA hint alone", res.Err)
		}
	})
}

// TestStageErrorSaysTLSOnce: crypto/tls starts its messages with "tls: ",
// which the stage name repeated.
func TestStageErrorSaysTLSOnce(t *testing.T) {
	pki := newPKI(t)
	p := newTestPool(t, Config{URLs: "ldaps://127.0.0.1:" + tlsListener(t, pki.CertFile, pki.KeyFile)}) // system roots
	_, err := p.Dial(t.Context())
	if err == nil || strings.Contains(err.Error(), "tls: tls:") || !strings.Contains(err.Error(), "tls: failed to verify certificate") {
		t.Fatalf("Dial = %v, want one tls: prefix", err)
	}
}

// TestCheckWrongPort: a URL whose scheme does not match the port (ldaps://
// on the plain port, ldap:// with or without StartTLS on the LDAPS port)
// fails with a hint instead of a bare EOF or connection reset.
func TestCheckWrongPort(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{TLS: true})
	plain, _ := url.Parse(srv.URL)
	ldaps, _ := url.Parse(srv.LDAPSURL)
	onLDAPS := "ldap://" + ldaps.Host
	tests := []struct {
		name string
		cfg  Config
		hint string
	}{
		{"ldaps on the plain port", Config{URLs: "ldaps://" + plain.Host, CAFile: srv.PKI.CAFile}, hintPlainLDAP},
		{"StartTLS on the LDAPS port", Config{URLs: onLDAPS, StartTLS: true, CAFile: srv.PKI.CAFile}, hintTLS},
		{"clear bind on the LDAPS port", Config{URLs: onLDAPS, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword}, hintTLS},
		{"clear anonymous search on the LDAPS port", Config{URLs: onLDAPS}, hintTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(t, tt.cfg)
			res := p.Check(t.Context())[0]
			if res.Err == nil || !strings.Contains(res.Err.Error(), "("+tt.hint+")") {
				t.Fatalf("check = %+v, want the hint %q", res, tt.hint)
			}
		})
	}
	// The right URLs get no hint; a wrong password is not a wrong port.
	for _, cfg := range []Config{
		{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: "wrong"},
		{URLs: srv.LDAPSURL, CAFile: srv.PKI.CAFile, BindDN: srv.ServiceDN, BindPassword: "wrong"},
	} {
		res := newTestPool(t, cfg).Check(t.Context())[0]
		if res.Err == nil || strings.Contains(res.Err.Error(), hintTLS) || strings.Contains(res.Err.Error(), hintPlainLDAP) {
			t.Errorf("check of %s with a wrong password = %v, want an error without a port hint", cfg.URLs, res.Err)
		}
	}
}
