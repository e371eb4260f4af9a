// Package sambatest runs a real Active Directory domain controller, Samba, for tests:
// a domain EXAMPLE.ORG (NetBIOS EXAMPLE) filled with users, groups and organizational
// units that look like a company's AD.
//
//	dc := sambatest.New(t, sambatest.Options{}) // stopped when the test ends
//	conn, err := dc.Dial(dc.LDAPSURL)
//	err = conn.Bind(dc.User("jsmith").DN, dc.User("jsmith").Password)
//
// Samba's LDAP ports are fixed at 389 and 636, so each server gets an address of its own
// in 127.0.0.0/8, all of which is loopback on Linux. Provisioning a domain takes seconds,
// so it is done, with the sample data, once per Samba version into a template directory
// under os.TempDir(), which every server copies into its own directory before it starts.
//
// It needs samba and samba-tool (Debian: apt-get install samba samba-ad-provision
// samba-dsdb-modules samba-vfs-modules; scripts/setup-debian.sh installs them), and root,
// for the ports below 1024.
package sambatest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

const (
	// Realm is the DNS name of the domain, in capitals.
	Realm = "EXAMPLE.ORG"
	// Domain is the NetBIOS name of the domain, the one in DOMAIN\user.
	Domain = "EXAMPLE"
	// BaseDN is the domain's naming context.
	BaseDN = "DC=example,DC=org"
	// AdminPassword is the password of the domain's Administrator.
	AdminPassword = "Admin-Secret-1!"
	// hostName is the domain controller's name.
	hostName = "dc1"

	// readyTimeout bounds how long Start waits for samba to answer a bind; it starts in
	// about a second on an idle machine.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long Close waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// templateFormat changes whenever the way a template is made changes, so that one
	// made by older code is not reused (the provisioning arguments and the sample data
	// are part of a template's name already).
	templateFormat = "3"
)

// ErrNotInstalled is returned by Start when samba or samba-tool is missing.
var ErrNotInstalled = errors.New("sambatest: samba is not installed (samba, samba-tool)")

var (
	// errAddrInUse reports that another process holds the chosen address's LDAP ports.
	errAddrInUse = errors.New("sambatest: address already in use")
	// errNeedRoot reports that this process may not listen on ports below 1024.
	errNeedRoot = errors.New("sambatest: samba's LDAP ports 389 and 636 need root")
)

// Options describe the server Start makes. The zero value is fine.
type Options struct {
	// Dir holds the server's files; a new temporary directory when empty (New uses
	// t.TempDir()). Close removes it only when Start made it.
	Dir string
	// LogLevel is samba's debug level (-d); 0 prints only errors.
	LogLevel int
}

// Server is a running Samba domain controller.
type Server struct {
	// Dir holds the domain's databases, smb.conf (etc/smb.conf) and the PKI (pki/).
	Dir string
	// Addr is the loopback address samba listens on (port 389 and 636).
	Addr string
	// LDAPURL is ldap://Addr, LDAPSURL ldaps://Addr.
	LDAPURL, LDAPSURL string
	// BaseDN is the domain's naming context, BaseDN.
	BaseDN string
	// AdminDN is the Administrator's DN; its password is AdminPassword.
	AdminDN, AdminPassword string
	// ServiceDN and ServicePassword are those of the service account ServiceAccount, an
	// ordinary user, which reads what any authenticated user may.
	ServiceDN, ServicePassword string
	// PKI holds the CA that issued samba's certificate (for Addr, localhost and the
	// domain controller's DNS name).
	PKI *slapdtest.PKI
	// Users and Groups are the sample data, with their DNs.
	Users  []User
	Groups []Group

	removeDir bool
	logLevel  int
	cmd       *exec.Cmd
	done      chan struct{} // closed when samba has exited
	out       *slapdtest.LockedBuffer
}

// Installed reports whether samba and samba-tool can be found.
func Installed() bool {
	_, err1 := findBinary("samba")
	_, err2 := findBinary("samba-tool")
	return err1 == nil && err2 == nil
}

// findBinary finds a program in PATH or in /usr/sbin, where Debian puts samba and where a
// non-root PATH does not look.
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// Start copies the provisioned domain, sample data included, into opts.Dir, starts samba
// on a loopback address of its own and waits until it answers.
func Start(opts Options) (*Server, error) {
	if !Installed() {
		return nil, ErrNotInstalled
	}
	// Without root, provisioning fails too (it sets the owner of files): say why first.
	if _, err := freeAddr(); err != nil {
		return nil, err
	}
	tmpl, err := template()
	if err != nil {
		return nil, err
	}
	s := newServer(opts.Dir, opts.LogLevel)
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "sambatest-"); err != nil {
			return nil, fmt.Errorf("sambatest: %w", err)
		}
		s.removeDir = true
	}
	if err := copyTree(tmpl, s.Dir); err != nil {
		s.Close()
		return nil, fmt.Errorf("sambatest: copy the template: %w", err)
	}
	if err := s.startOnFreeAddr(); err != nil {
		s.Close()
		return nil, err
	}
	svc := s.User(ServiceAccount)
	s.ServiceDN, s.ServicePassword = svc.DN, svc.Password
	return s, nil
}

// newServer describes the server of the sample domain in dir.
func newServer(dir string, logLevel int) *Server {
	s := &Server{
		Dir:           dir,
		logLevel:      logLevel,
		BaseDN:        BaseDN,
		AdminDN:       "CN=Administrator,CN=Users," + BaseDN,
		AdminPassword: AdminPassword,
		Users:         sampleUsers(),
		Groups:        sampleGroups(),
	}
	s.assignDNs()
	return s
}

// startOnFreeAddr starts samba, on another address whenever another process took the
// one chosen.
func (s *Server) startOnFreeAddr() error {
	for attempt := 0; ; attempt++ {
		err := s.start()
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == 4 {
			return err
		}
	}
}

// start picks an address, writes smb.conf and the certificates for it, starts samba and
// waits until it accepts a bind.
func (s *Server) start() error {
	addr, err := pickAddr()
	if err != nil {
		return err
	}
	s.Addr = addr
	s.LDAPURL = "ldap://" + addr
	s.LDAPSURL = "ldaps://" + addr
	pkiDir := filepath.Join(s.Dir, "pki")
	if err := os.RemoveAll(pkiDir); err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	if s.PKI, err = slapdtest.NewPKI(pkiDir, addr, "localhost", hostName+"."+strings.ToLower(Realm)); err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	conf := filepath.Join(s.Dir, "etc", "smb.conf")
	if err := os.WriteFile(conf, []byte(s.smbConf()), 0o644); err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	for _, d := range []string{"run", "cache"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return fmt.Errorf("sambatest: %w", err)
		}
	}
	return s.launch()
}

// launch starts samba with Dir's smb.conf and waits until it accepts a bind.
func (s *Server) launch() error {
	bin, err := findBinary("samba")
	if err != nil {
		return err
	}
	// -i: foreground, logging to stdout, so that the pid is samba's own; -M single: one
	// process for every service instead of one per connection.
	if s.out == nil {
		s.out = &slapdtest.LockedBuffer{} // one for every run, so that a failed test shows them all
	}
	cmd := exec.Command(bin, "-i", "-M", "single", "-d", fmt.Sprint(s.logLevel), "-s", filepath.Join(s.Dir, "etc", "smb.conf"))
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = sysProcAttr()
	mark := len(s.out.String())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sambatest: start samba: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(); err != nil {
		s.stop()
		printed := s.out.String()[mark:]
		// Another process took a port between freeAddr's check and samba's bind.
		if strings.Contains(printed, "NT_STATUS_ADDRESS_ALREADY_ASSOCIATED") {
			return fmt.Errorf("%w: %s: %v", errAddrInUse, s.Addr, err)
		}
		return fmt.Errorf("%w\nsamba output:\n%s", err, printed)
	}
	return nil
}

// smbConf is the configuration of the server: only the LDAP service (and LDAPS), on
// Addr alone, with simple binds allowed over plain LDAP, every path inside Dir. A
// password stops working the moment it is changed: by default Samba takes the previous
// one for another hour (as Windows does in NTLM logons), in simple binds too.
func (s *Server) smbConf() string {
	d := s.Dir
	return fmt.Sprintf(`[global]
	netbios name = %s
	realm = %s
	workgroup = %s
	server role = active directory domain controller
	server services = ldap
	interfaces = %s/8
	bind interfaces only = yes
	ldap server require strong auth = no
	old password allowed period = 0
	tls enabled = yes
	tls keyfile = %s
	tls certfile = %s
	tls cafile = %s
	idmap_ldb:use rfc2307 = yes
	private dir = %s/private
	binddns dir = %s/bind-dns
	lock directory = %s
	state directory = %s/state
	cache directory = %s/cache
	pid directory = %s/run
	ncalrpc dir = %s/run/ncalrpc
	winbindd socket directory = %s/run/winbindd
	ntp signd socket directory = %s/run/ntp_signd
	log file = %s/log
	panic action =
`, strings.ToUpper(hostName), Realm, Domain, s.Addr, s.PKI.KeyFile, s.PKI.CertFile, s.PKI.CAFile,
		d, d, d, d, d, d, d, d, d, d)
}

// waitReady polls until samba accepts the Administrator's bind over LDAP.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		// A bind in flight is abandoned when samba exits: whoever else holds the port
		// may accept the connection and never answer.
		bound := make(chan error, 1)
		go func() {
			conn, err := ldap.DialURL(s.LDAPURL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
			if err == nil {
				conn.SetTimeout(5 * time.Second)
				err = conn.Bind(s.AdminDN, s.AdminPassword)
				conn.Close()
			}
			bound <- err
		}()
		var err error
		select {
		case <-s.done:
			return fmt.Errorf("sambatest: samba exited: %v", s.cmd.ProcessState)
		case err = <-bound:
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sambatest: samba not ready after %v: %w", readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pickAddr chooses the address of each start; a variable so that a test can hand out
// one that is taken.
var pickAddr = freeAddr

// freeAddr picks a random address in 127.0.0.0/8, away from 127.0.0.1 and the usual
// 127.0.x.y, whose LDAP ports are free.
func freeAddr() (string, error) {
	var lastErr error
	for range 20 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		addr := fmt.Sprintf("127.%d.%d.%d", 100+b[0]%100, b[1], 2+b[2]%250)
		lastErr = nil
		for _, port := range []string{"389", "636"} {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, port))
			if err != nil {
				lastErr = err
				break
			}
			l.Close()
		}
		if lastErr == nil {
			return addr, nil
		}
		if errors.Is(lastErr, syscall.EACCES) {
			return "", fmt.Errorf("%w: %v", errNeedRoot, lastErr)
		}
	}
	return "", fmt.Errorf("sambatest: no free loopback address: %w", lastErr)
}

// TLSConfig trusts the PKI's CA.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.PKI.CertPool(), MinVersion: tls.VersionTLS12}
}

// Dial connects to url (LDAPURL or LDAPSURL), trusting the PKI for ldaps; the
// connection is not bound.
func (s *Server) Dial(url string) (*ldap.Conn, error) {
	conn, err := ldap.DialURL(url, ldap.DialWithTLSConfig(s.TLSConfig()),
		ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("sambatest: dial %s: %w", url, err)
	}
	conn.SetTimeout(30 * time.Second)
	return conn, nil
}

// User returns the sample user whose sAMAccountName is name; it panics on an unknown
// name, which is a mistake in the test.
func (s *Server) User(name string) User {
	for _, u := range s.Users {
		if strings.EqualFold(u.SAMAccountName, name) {
			return u
		}
	}
	panic("sambatest: no sample user " + name)
}

// Group returns the sample group called name; it panics on an unknown name.
func (s *Server) Group(name string) Group {
	for _, g := range s.Groups {
		if strings.EqualFold(g.Name, name) {
			return g
		}
	}
	panic("sambatest: no sample group " + name)
}

// Output returns what samba has printed.
func (s *Server) Output() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// stop ends samba: SIGTERM to its process group, SIGKILL after stopTimeout.
func (s *Server) stop() error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	select {
	case <-s.done:
		return nil
	default:
	}
	signalGroup(s.cmd.Process, syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(stopTimeout):
	}
	signalGroup(s.cmd.Process, syscall.SIGKILL)
	<-s.done
	return fmt.Errorf("sambatest: samba (pid %d) ignored SIGTERM for %v", s.cmd.Process.Pid, stopTimeout)
}

// Stop ends samba (SIGTERM, SIGKILL after 10 s), as a domain controller shut down for
// maintenance; Restart brings it back.
func (s *Server) Stop() error { return s.stop() }

// Kill ends samba with SIGKILL, as a crash; Restart brings it back.
func (s *Server) Kill() error {
	if s.cmd == nil {
		return nil
	}
	signalGroup(s.cmd.Process, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
	return nil
}

// Restart starts samba again after Stop or Kill, on the same address with the same data,
// and waits until it answers.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("sambatest: samba is running")
	}
	return s.launch()
}

// Close stops samba and removes Dir if Start made it.
func (s *Server) Close() error {
	err := s.stop()
	if s.removeDir {
		if rerr := os.RemoveAll(s.Dir); rerr != nil && err == nil {
			err = fmt.Errorf("sambatest: %w", rerr)
		}
	}
	return err
}

// templateOnce guards the template of this process.
var templateOnce struct {
	sync.Once
	dir string
	err error
}

// template returns the directory of a freshly provisioned domain. It is kept under
// os.TempDir(), named after the Samba version and the provisioning arguments, and
// reused by later test runs; a template for another version is removed.
func template() (string, error) {
	templateOnce.Do(func() { templateOnce.dir, templateOnce.err = makeTemplate() })
	return templateOnce.dir, templateOnce.err
}

func makeTemplate() (string, error) {
	samba, err := findBinary("samba")
	if err != nil {
		return "", err
	}
	tool, err := findBinary("samba-tool")
	if err != nil {
		return "", err
	}
	version, err := exec.Command(samba, "-V").Output()
	if err != nil {
		return "", fmt.Errorf("sambatest: samba -V: %w", err)
	}
	args := []string{"domain", "provision", "--server-role=dc", "--use-rfc2307",
		"--realm=" + Realm, "--domain=" + Domain, "--host-name=" + hostName,
		"--adminpass=" + AdminPassword, "--dns-backend=NONE",
		// Provisioning reads the interfaces to find the host's address.
		"--option=interfaces = 127.0.0.1/8", "--option=bind interfaces only = yes"}
	data := fmt.Sprintf("%+v %+v", sampleUsers(), sampleGroups())
	sum := sha256.Sum256([]byte(templateFormat + "\x00" + string(version) + "\x00" + strings.Join(args, "\x00") + "\x00" + data))
	key := hex.EncodeToString(sum[:8])
	parent := filepath.Join(os.TempDir(), fmt.Sprintf("ldapproxy-sambatest-%d", os.Getuid()))
	dir := filepath.Join(parent, key)
	removeStale(parent, key)
	if _, err := os.Stat(filepath.Join(dir, "private", "sam.ldb")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("sambatest: %w", err)
	}
	// Test binaries that start at once (go test ./...) wait for the first one's template
	// rather than each provisioning on the same cores.
	unlock, err := lockFile(filepath.Join(parent, "lock"))
	if err != nil {
		return "", fmt.Errorf("sambatest: lock the template: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "private", "sam.ldb")); err == nil {
		return dir, nil
	}
	work, err := os.MkdirTemp(parent, "provision-")
	if err != nil {
		return "", fmt.Errorf("sambatest: %w", err)
	}
	defer os.RemoveAll(work)
	cmd := exec.Command(tool, append(args, "--targetdir="+work)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("sambatest: samba-tool domain provision: %w\n%s", err, tail(out.String(), 40))
	}
	if err := fillTemplate(work); err != nil {
		return "", err
	}
	// Where there is no lock, another test binary may have made the same template
	// meanwhile; the rename then fails and its template is as good as ours.
	if err := os.Rename(work, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "private", "sam.ldb")); serr != nil {
			return "", fmt.Errorf("sambatest: keep the template: %w", err)
		}
	}
	return dir, nil
}

// fillTemplate runs samba once on a freshly provisioned domain in dir to add the sample
// data, which every server copied from it then has.
func fillTemplate(dir string) error {
	s := newServer(dir, 0)
	if err := s.startOnFreeAddr(); err != nil {
		return err
	}
	err := func() error {
		conn, err := s.Dial(s.LDAPSURL)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.Bind(s.AdminDN, s.AdminPassword); err != nil {
			return fmt.Errorf("sambatest: bind as Administrator over LDAPS: %w", err)
		}
		if err := s.fill(conn); err != nil {
			return fmt.Errorf("sambatest: sample data: %w\nsamba output:\n%s", err, tail(s.Output(), 40))
		}
		return nil
	}()
	if serr := s.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	// What belonged to this one run: each server makes its own.
	for _, d := range []string{"pki", "run", "cache", "log", "msg.lock", "msg.sock", "names.tdb", filepath.Join("etc", "smb.conf")} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return fmt.Errorf("sambatest: %w", err)
		}
	}
	return nil
}

// removeStale removes, from parent, the templates of other Samba versions or other code
// and the work directories of killed runs, once they are an hour old: a test binary of
// older code may still be copying from its template.
func removeStale(parent, key string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != key && e.Name() != "lock" && time.Since(modTime(e)) > time.Hour {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

func modTime(e os.DirEntry) time.Time {
	fi, err := e.Info()
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// copyTree copies the regular files and directories of src into dst, keeping their modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return nil // sockets and the like belong to a running samba
		}
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
