package upstream

import (
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// newPKI makes a CA, with a server certificate for 127.0.0.1, ::1 and
// localhost, in a temporary directory.
func newPKI(t *testing.T) *slapdtest.PKI {
	t.Helper()
	pki, err := slapdtest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

func TestLDAPS(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{TLS: true})
	pki := srv.PKI
	wrong := newPKI(t)
	u, err := url.Parse(srv.LDAPSURL)
	if err != nil {
		t.Fatal(err)
	}
	localhostURL := "ldaps://localhost:" + u.Port()

	t.Run("right CA", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.LDAPSURL, CAFile: pki.CAFile, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
			t.Fatal(err)
		}
		res := p.Check(t.Context())[0]
		if res.Err != nil || len(res.Steps) < 2 || !strings.HasPrefix(res.Steps[1], "tls ok (TLS 1.") || !strings.HasSuffix(res.Steps[1], ", verified)") {
			t.Errorf("Check = %+v, want a verified TLS step", res)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.LDAPSURL, CAFile: wrong.CAFile})
		_, err := p.Dial(t.Context())
		if !IsUnavailable(err) || !strings.Contains(err.Error(), "tls: ") || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("Dial with the wrong CA = %v, want a TLS verification failure", err)
		}
		res := p.Check(t.Context())[0]
		if res.Err == nil || !strings.Contains(res.Err.Error(), "set ca_file") || strings.Join(res.Steps, "|") != "connect ok" {
			t.Errorf("Check = %+v, want connect ok then a TLS error with a hint", res)
		}
	})
	t.Run("system roots", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.LDAPSURL})
		if _, err := p.Dial(t.Context()); err == nil {
			t.Error("Dial verified a private CA's certificate against the system roots")
		}
	})
	t.Run("insecure skip verify", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.LDAPSURL, CAFile: wrong.CAFile, InsecureSkipVerify: true})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if !strings.Contains(p.logs.String(), "insecure_skip_verify") {
			t.Error("insecure_skip_verify was not warned about")
		}
		if res := p.Check(t.Context())[0]; len(res.Steps) < 2 || !strings.Contains(res.Steps[1], "NOT verified") {
			t.Errorf("Check = %+v, want the TLS step to say it is not verified", res)
		}
	})
	t.Run("host name verified", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: localhostURL, CAFile: pki.CAFile})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatalf("Dial %s: %v", localhostURL, err)
		}
		defer c.Close()
		if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSNIIsTheURLHost dials a name that resolves to an IP and checks the
// server saw the name: TLS 1.3 servers pick their certificate by it.
func TestSNIIsTheURLHost(t *testing.T) {
	pki := newPKI(t)
	serverCert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var names []string
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			mu.Lock()
			names = append(names, hello.ServerName)
			mu.Unlock()
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Finish the handshake, then hang up.
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())

	p := newTestPool(t, Config{URLs: "ldaps://localhost:" + port, CAFile: pki.CAFile})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(names) == 0 {
		t.Fatal("no TLS handshake reached the server")
	}
	for _, n := range names {
		if n != "localhost" {
			t.Errorf("SNI = %q, want localhost", n)
		}
	}
}

func TestStartTLS(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{TLS: true})
	pki := srv.PKI

	t.Run("right CA", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.URL, StartTLS: true, CAFile: pki.CAFile})
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tc, ok := c.wc.nc.(*tls.Conn); !ok || !tc.ConnectionState().HandshakeComplete {
			t.Fatal("connection is not encrypted after StartTLS")
		}
		if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(p.logs.String(), "not encrypted") {
			t.Error("warned about clear-text connections with start_tls on")
		}
		res := p.Check(t.Context())[0]
		if res.Err != nil || len(res.Steps) < 2 || !strings.HasPrefix(res.Steps[1], "starttls ok (TLS 1.") {
			t.Errorf("Check = %+v, want a StartTLS step", res)
		}
	})
	t.Run("wrong CA", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.URL, StartTLS: true, CAFile: newPKI(t).CAFile})
		_, err := p.Dial(t.Context())
		if !IsUnavailable(err) || !strings.Contains(err.Error(), "starttls: ") {
			t.Errorf("Dial with the wrong CA = %v, want a StartTLS failure", err)
		}
	})
	t.Run("plain warns", func(t *testing.T) {
		p := newTestPool(t, Config{URLs: srv.URL})
		if !strings.Contains(p.logs.String(), "not encrypted") {
			t.Error("no warning about clear-text connections")
		}
	})
}
