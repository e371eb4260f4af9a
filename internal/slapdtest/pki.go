package slapdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certLifetime is long enough for a demo left running for weeks; these
// certificates never leave the test machine.
const certLifetime = 5 * 365 * 24 * time.Hour

// defaultHosts are the names a server certificate covers when none are given.
var defaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// PKI is a throw-away certificate authority with files on disk, for slapd,
// for the proxy's own listeners and for client certificates in tests.
type PKI struct {
	// Dir holds every file the PKI writes.
	Dir string
	// CAFile is the PEM CA certificate that verifies every certificate issued here.
	CAFile string
	// CertFile and KeyFile are the server certificate and key made by NewPKI.
	CertFile, KeyFile string

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewPKI creates a CA in dir and issues a server certificate named "server"
// for hosts (IP SANs for IP addresses, DNS SANs otherwise; 127.0.0.1, ::1
// and localhost when hosts is empty).
func NewPKI(dir string, hosts ...string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "slapdtest CA", Organization: []string{"ldapproxy tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki ca certificate: %w", err)
	}
	p := &PKI{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), caCert: cert, caKey: key}
	if err := writePEM(p.CAFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	p.CertFile, p.KeyFile, err = p.IssueServer("server", hosts...)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// CertPool returns a pool holding the CA certificate, for tls.Config.RootCAs
// or ClientCAs.
func (p *PKI) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return pool
}

// IssueServer issues a server certificate for hosts (the defaults of NewPKI
// when empty) and writes it to <Dir>/<name>.crt and <Dir>/<name>.key.
func (p *PKI) IssueServer(name string, hosts ...string) (certFile, keyFile string, err error) {
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return p.issue(name, tmpl)
}

// IssueClient issues a client certificate whose subject CN is name and
// writes it to <Dir>/<name>.crt and <Dir>/<name>.key.
func (p *PKI) IssueClient(name string) (certFile, keyFile string, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return p.issue(name, tmpl)
}

// issue completes tmpl, signs it with the CA and writes certificate and key.
func (p *PKI) issue(name string, tmpl *x509.Certificate) (certFile, keyFile string, err error) {
	if name == "" || name == "ca" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", "", fmt.Errorf("pki: certificate name %q is not a usable file name", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("pki %s key: %w", name, err)
	}
	tmpl.SerialNumber, err = newSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(certLifetime)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", fmt.Errorf("pki %s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("pki %s key: %w", name, err)
	}
	certFile = filepath.Join(p.Dir, name+".crt")
	keyFile = filepath.Join(p.Dir, name+".key")
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki serial: %w", err)
	}
	return serial, nil
}

func writePEM(path, blockType string, der []byte, perm os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pki write %s: %w", filepath.Base(path), err)
	}
	return nil
}
