package upstream

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testSlapd is a real OpenLDAP server in a temporary directory, with the
// entries of testLDIF. It can be stopped, paused and started again on the
// same ports, which the failover tests need.
type testSlapd struct {
	t       *testing.T
	dir     string
	conf    string
	port    int
	tlsPort int // 0: no ldaps:// listener

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	stderr bytes.Buffer
}

const testLDIF = `dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: cn=svc,dc=example,dc=org
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc
userPassword: svcpw

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Liddell
mail: alice@example.org
userPassword: alicepw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
userPassword: bobpw
`

const (
	testBaseDN   = "dc=example,dc=org"
	testSvcDN    = "cn=svc,dc=example,dc=org"
	testAliceDN  = "uid=alice,ou=people,dc=example,dc=org"
	testAlicePW  = "alicepw"
	testSvcPW    = "svcpw"
	slapdBinary  = "/usr/sbin/slapd"
	slapaddBin   = "/usr/sbin/slapadd"
	slapdStartBy = 10 * time.Second
)

// startSlapd starts a slapd; with pki, it also listens for ldaps:// and
// offers StartTLS with pki's server certificate.
func startSlapd(t *testing.T, pki *testPKI) *testSlapd {
	t.Helper()
	if _, err := os.Stat(slapdBinary); err != nil {
		t.Skipf("slapd not installed: %v", err)
	}
	dir := t.TempDir()
	s := &testSlapd{t: t, dir: dir, conf: filepath.Join(dir, "slapd.conf"), port: freePort(t)}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	var tlsConf string
	if pki != nil {
		s.tlsPort = freePort(t)
		tlsConf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			pki.caFile, pki.certFile, pki.keyFile)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
%[2]s
database mdb
maxsize 10485760
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw secret
directory %[1]s/db
access to attrs=userPassword by anonymous auth by * none
access to * by * read
`, dir, tlsConf)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ldif := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldif, []byte(testLDIF), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapaddBin, "-f", s.conf, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testSlapd) url() string      { return "ldap://127.0.0.1:" + strconv.Itoa(s.port) }
func (s *testSlapd) ldapsURL() string { return "ldaps://127.0.0.1:" + strconv.Itoa(s.tlsPort) }

// start runs slapd in the foreground (-d 0) and waits, bounded, until it
// accepts connections.
func (s *testSlapd) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	listen := s.url() + "/"
	if s.tlsPort != 0 {
		listen += " " + s.ldapsURL() + "/"
	}
	s.stderr.Reset()
	cmd := exec.Command(slapdBinary, "-f", s.conf, "-h", listen, "-d", "0")
	cmd.Stderr = &s.stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start slapd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(slapdStartBy)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("slapd exited at start: %s", s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd not listening after %v: %s", slapdStartBy, s.stderr.String())
		}
	}
}

// stop kills slapd (as a crash would) and waits until it is gone.
func (s *testSlapd) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("slapd pid %d did not exit", s.cmd.Process.Pid)
	}
	s.cmd = nil
}

// pause freezes slapd: connections stay open and nothing is answered, like a
// hung server. stop (or the cleanup) ends it.
func (s *testSlapd) pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("pause slapd: %v", err)
	}
	// The signal is delivered asynchronously: wait until the kernel reports
	// every thread stopped, or a request sent now could still be answered.
	deadline := time.Now().Add(5 * time.Second)
	for !allThreadsStopped(s.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd pid %d did not stop", s.cmd.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allThreadsStopped(pid int) bool {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false
	}
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		// The state follows the parenthesised command name.
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// closedURL is an ldap:// URL on which nothing listens.
func closedURL(t *testing.T) string {
	return "ldap://127.0.0.1:" + strconv.Itoa(freePort(t))
}

// hangingServer accepts TCP connections and never answers: a hung
// directory, or a firewall that lets the handshake through.
func hangingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// testPKI is a CA and a server certificate for 127.0.0.1 and localhost,
// written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
	serverCert                tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ldapproxy test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey := newKey(t)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"),
		keyFile:  filepath.Join(dir, "server.key"),
	}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	writePEM(t, p.certFile, "CERTIFICATE", srvDER)
	writePEM(t, p.keyFile, "PRIVATE KEY", keyDER)
	p.serverCert, err = tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
