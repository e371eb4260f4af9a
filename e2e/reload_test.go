package e2e

import (
	"context"
	"crypto/tls"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// startProxyFromFile runs the program as `ldapproxy serve` does: the configuration from
// a file, the log level from it in a variable Reload can change.
func startProxyFromFile(t *testing.T, path string) *proxy {
	t.Helper()
	cfg, err := app.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &slapdtest.LockedBuffer{}
	log, level := cfg.Log.NewReloadableLogger(logs)
	a, err := app.New(cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.SetLogLevel(level)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{t: t, app: a, URL: "ldap://" + a.LDAPAddr(), LDAPS: "ldaps://" + a.LDAPSAddr(), HTTP: "http://" + a.HTTPAddr(),
		logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("proxy logs:\n%s", tail(logs.String(), 60))
		}
	})
	return p
}

// TestReload rotates the listener certificate, raises the log level, changes a key that
// needs a restart and writes an invalid file, calling Reload (what SIGHUP does) after
// each, with connections open throughout.
func TestReload(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5})
	pki := newPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	// install issues a certificate and copies it over the files the configuration names,
	// as a certificate manager does; it returns the serial number.
	install := func(t *testing.T, name string) *big.Int {
		t.Helper()
		cert, key, err := pki.IssueServer(name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		for src, dst := range map[string]string{cert: certFile, key: keyFile} {
			data, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(dst, data, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf.SerialNumber
	}
	configPath := filepath.Join(dir, "ldapproxy.yaml")
	writeConfig := func(t *testing.T, urls, level string) {
		t.Helper()
		yaml := config(up, map[string]string{
			"urls":   urls,
			"listen": "  ldaps: 127.0.0.1:0\n  tls:\n    cert_file: " + certFile + "\n    key_file: " + keyFile,
		})
		yaml = strings.Replace(yaml, "level: debug", "level: "+level, 1)
		if err := os.WriteFile(configPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsConf := &tls.Config{RootCAs: pki.CertPool(), ServerName: "127.0.0.1"}
	var running *proxy
	// served dials LDAPS, binds as user 1 and returns the connection and the serial
	// number of the certificate it got.
	served := func(t *testing.T) (*ldap.Conn, *big.Int) {
		t.Helper()
		c := dial(t, running.LDAPS, ldap.DialWithTLSConfig(tlsConf))
		bindAndWhoAmI(t, c, up, 1)
		st, ok := c.TLSConnectionState()
		if !ok {
			t.Fatal("no TLS state")
		}
		return c, st.PeerCertificates[0].SerialNumber
	}
	// stillWorks checks that a connection opened before a reload still answers.
	stillWorks := func(t *testing.T, c *ldap.Conn) {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest(up.UserDN(2), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"uid"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("connection opened before the reload: %v, %v", res, err)
		}
	}

	firstSerial := install(t, "proxy-1")
	writeConfig(t, up.URL, "info")
	running = startProxyFromFile(t, configPath)
	old, serial := served(t)
	if serial.Cmp(firstSerial) != 0 {
		t.Fatalf("serial %x, want the first certificate's %x", serial, firstSerial)
	}
	if strings.Contains(running.logs.String(), `"level":"DEBUG"`) {
		t.Fatal("debug lines at level info")
	}

	var secondSerial *big.Int
	t.Run("certificate rotated and log level raised", func(t *testing.T) {
		secondSerial = install(t, "proxy-2")
		writeConfig(t, up.URL, "debug")
		if err := running.app.Reload(configPath); err != nil {
			t.Fatal(err)
		}
		if _, serial := served(t); serial.Cmp(secondSerial) != 0 {
			t.Errorf("new connection: serial %x, want the rotated certificate's %x", serial, secondSerial)
		}
		// StartTLS on the plain listener takes the new certificate too.
		c := dial(t, running.URL)
		if err := c.StartTLS(tlsConf); err != nil {
			t.Fatal(err)
		}
		if st, _ := c.TLSConnectionState(); st.PeerCertificates[0].SerialNumber.Cmp(secondSerial) != 0 {
			t.Errorf("StartTLS: serial %x, want %x", st.PeerCertificates[0].SerialNumber, secondSerial)
		}
		stillWorks(t, old)
		logs := running.logs.String()
		for _, want := range []string{`"msg":"configuration reloaded"`, "log.level (info → debug)", `CN=proxy-2`, `"level":"DEBUG"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %s", want)
			}
		}
	})

	t.Run("upstream.urls needs a restart", func(t *testing.T) {
		writeConfig(t, "ldap://127.0.0.1:1", "debug") // nothing listens there
		if err := running.app.Reload(configPath); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(running.logs.String(), `"msg":"configuration changes not applied: they need a restart","keys":["upstream.urls"]`) {
			t.Errorf("no warning naming upstream.urls:\n%s", tail(running.logs.String(), 5))
		}
		served(t) // binds still reach the slapd the proxy started with
		stillWorks(t, old)
	})

	t.Run("an invalid file changes nothing", func(t *testing.T) {
		for _, breakIt := range []struct {
			name string
			do   func(t *testing.T)
		}{
			{"a bad value", func(t *testing.T) { writeConfig(t, up.URL, "loud") }},
			{"a key file that is not a key", func(t *testing.T) {
				install(t, "proxy-3")
				writeConfig(t, up.URL, "info")
				if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			breakIt.do(t)
			before := len(running.logs.String())
			if err := running.app.Reload(configPath); err == nil {
				t.Fatalf("%s: Reload succeeded", breakIt.name)
			}
			if !strings.Contains(running.logs.String()[before:], `"msg":"configuration reload failed; the running configuration stays"`) {
				t.Errorf("%s: no error logged", breakIt.name)
			}
			before = len(running.logs.String())
			if _, serial := served(t); serial.Cmp(secondSerial) != 0 {
				t.Errorf("%s: serial %x, want the running certificate's %x", breakIt.name, serial, secondSerial)
			}
			if !strings.Contains(running.logs.String()[before:], `"level":"DEBUG"`) {
				t.Errorf("%s: log level not kept at debug", breakIt.name)
			}
			stillWorks(t, old)
		}
	})
}
