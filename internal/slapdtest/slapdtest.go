// Package slapdtest runs a real OpenLDAP slapd on loopback ports for tests,
// benchmarks and the demo.
//
// Start writes a slapd.conf into a directory, loads sample data with
// slapadd (fast enough for 100,000 users) and starts slapd in the foreground
// as a child process, so the server is always stopped by its pid:
//
//	srv, err := slapdtest.Start(slapdtest.Options{Users: 1000, TLS: true})
//	if err != nil { ... }
//	defer srv.Close()
//	conn, err := ldap.DialURL(srv.URL)
//	err = conn.Bind(srv.UserDN(1), slapdtest.UserPassword(1))
//
// Tests use New, which fails the test with slapd's output when it cannot
// start and stops slapd when the test ends. Stop, Kill, Start, Pause and
// Resume simulate an upstream that goes away, crashes, comes back on the
// same ports with the same data, or hangs.
//
// It needs slapd and slapadd (Debian: apt-get install slapd ldap-utils).
package slapdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"
)

const (
	// DefaultSuffix is the naming context when Options.Suffix is empty.
	DefaultSuffix = "dc=example,dc=org"
	// AdminPassword is the rootpw of every server.
	AdminPassword = "admin-secret"
	// ServicePassword is the password of the service account.
	ServicePassword = "svc-secret"
	// PolicyMinLength is the minimum password length the default password
	// policy enforces when Options.PasswordPolicy is set.
	PolicyMinLength = 8

	defaultUsers  = 20
	defaultGroups = 5

	// readyTimeout bounds how long Start waits for slapd to answer a bind.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

var (
	errNotRunning = errors.New("slapdtest: slapd is not running")
	errAddrInUse  = errors.New("slapdtest: port already in use")
)

// Options describe the server Start makes. The zero value is a plain-LDAP
// server with 20 users and 5 groups under dc=example,dc=org.
type Options struct {
	// Suffix is the naming context; default DefaultSuffix. Its first RDN
	// must be dc=, o= or ou=.
	Suffix string
	// Users is the number of sample users uid=user0001… in ou=people
	// (inetOrgPerson and posixAccount), each with password UserPassword(i)
	// stored as {SSHA}. 0 means 20; negative means none.
	Users int
	// Groups is the number of sample groups cn=group001… in ou=groups
	// (groupOfNames). 0 means 5; negative means none. User i is a member of
	// group (i-1)%Groups+1, every tenth user also of the last group, and
	// group001 has group002 as a member (nesting). It may not exceed Users,
	// because a groupOfNames needs a member.
	Groups int
	// TLS adds an ldaps:// listener and StartTLS, with certificates from a
	// fresh PKI in Dir/pki.
	TLS bool
	// VerifyClients makes slapd demand a client certificate signed by the
	// PKI's CA on every TLS session (TLSVerifyClient demand). It implies TLS.
	VerifyClients bool
	// MemberOf loads the memberof overlay; the sample data then carries
	// memberOf on users and on group002.
	MemberOf bool
	// RefInt loads the refint overlay for member (and memberOf with MemberOf): a
	// modrdn of an entry rewrites the member values that name it, and a delete
	// removes them, as Active Directory does with its links.
	RefInt bool
	// PasswordPolicy loads the ppolicy overlay with a default policy
	// (cn=default,ou=policies,<suffix>) that rejects passwords shorter than
	// PolicyMinLength and sets pwdChangedTime on each change.
	PasswordPolicy bool
	// Syncprov loads the syncprov overlay on the database (RFC 4533 Content
	// Synchronization: syncrepl consumers, refreshOnly and refreshAndPersist), with a
	// checkpoint, a session log of 10,000 changes (so a consumer that resumes gets
	// deletes in a delete phase rather than a present phase) and entryCSN indexed.
	Syncprov bool
	// SyncprovNoSessionLog leaves the session log out: a consumer that resumes from a
	// cookie then gets a present phase (every unchanged entry named present, the
	// changed ones whole; the deleted ones are those not named).
	SyncprovNoSessionLog bool
	// ExtraLDIF is appended to the generated data and loaded with it; it
	// may use the generated entries as parents.
	ExtraLDIF string
	// Schemas names schema files of the OpenLDAP schema directory, without
	// ".schema", that slapd includes after core, cosine, inetorgperson and
	// nis: e.g. "msuser" for Active Directory's user and group classes
	// (sAMAccountName, objectGUID, objectSid, userAccountControl,
	// pwdLastSet, memberOf). msuser defines memberOf as an ordinary
	// attribute, so leave MemberOf off with it.
	Schemas []string
	// ExtraSchema is the text of a schema file in slapd.conf syntax
	// (attributetype and objectclass directives), written to Dir and included
	// after Schemas: a test's own attribute types and classes, e.g. a
	// case-exact string, an integer with an ordering rule, an octet string.
	ExtraSchema string
	// Access holds slapd `access to` directives, applied after the rule that guards
	// userPassword and before the final "access to * by * read"; e.g. a rule that lets
	// users read only their own entries. "SUFFIX" and "SERVICE" in them are replaced by
	// the suffix and the service account's DN.
	Access []string
	// SizeLimit is the value of the global sizelimit directive; default
	// "unlimited". "size.soft=10 size.hard=10 size.prtotal=unlimited" makes
	// an unpaged search stop after 10 entries (sizeLimitExceeded) while a
	// paged one with pages of up to 10 still returns everything; the admin
	// (the rootdn) is never limited.
	SizeLimit string
	// IdleTimeout makes slapd close a client connection that has been idle for
	// that long (the idletimeout directive: whole seconds, rounded up; slapd looks
	// at its connections about every half of it). Over TLS, slapd sends a
	// close_notify before it closes. Default: never.
	IdleTimeout time.Duration
	// Dir holds the configuration, database, PKI and LDIF; its db
	// subdirectory is recreated. Default: a new temporary directory that
	// Close removes.
	Dir string
	// Logf, when set, receives slapd's output line by line and progress
	// messages.
	Logf func(format string, args ...any)
}

// Server is a running (or stopped) slapd with its data directory. Its
// methods are safe for concurrent use.
type Server struct {
	// Dir is the directory holding slapd.conf, the database and the PKI.
	Dir string
	// URL is the plain LDAP listener, "ldap://127.0.0.1:PORT".
	URL string
	// LDAPSURL is the LDAPS listener; empty without TLS.
	LDAPSURL string
	// Suffix is the naming context.
	Suffix string
	// PeopleDN and GroupsDN are ou=people and ou=groups under Suffix.
	PeopleDN, GroupsDN string
	// AdminDN and AdminPassword are the rootdn (cn=admin,<suffix>), which
	// bypasses every access control.
	AdminDN, AdminPassword string
	// ServiceDN and ServicePassword are the proxy's service account
	// (cn=svc,ou=services,<suffix>), which reads everything but passwords.
	ServiceDN, ServicePassword string
	// Users and Groups are the numbers of sample users and groups loaded.
	Users, Groups int
	// PKI made the server's certificate; nil without TLS.
	PKI *PKI

	inst      installation
	logf      func(format string, args ...any)
	removeDir bool
	out       *output

	mu     sync.Mutex
	proc   *process // nil while slapd is not running
	paused bool
}

// process is one run of slapd.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// Start creates the directory, configuration and data for opts, loads the
// data with slapadd and starts slapd on free loopback ports. It returns once
// slapd answers an anonymous bind; on failure, slapd's output is part of the
// error and nothing is left running.
func Start(opts Options) (*Server, error) {
	inst, err := findInstallation()
	if err != nil {
		return nil, err
	}
	s, err := newServer(inst, opts)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && s.removeDir {
			os.RemoveAll(s.Dir)
		}
	}()
	if opts.TLS || opts.VerifyClients {
		if s.PKI, err = NewPKI(filepath.Join(s.Dir, "pki")); err != nil {
			return nil, fmt.Errorf("slapdtest: %w", err)
		}
	}
	if err := s.writeConfig(opts); err != nil {
		return nil, fmt.Errorf("slapdtest: write config: %w", err)
	}
	if err := s.load(opts); err != nil {
		return nil, err
	}
	// Another process may take a port between our probe and slapd's bind;
	// pick new ports then.
	for attempt := 1; ; attempt++ {
		if err := s.choosePorts(opts.TLS || opts.VerifyClients); err != nil {
			return nil, err
		}
		err := s.Start()
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

func newServer(inst installation, opts Options) (*Server, error) {
	s := &Server{
		Suffix:          opts.Suffix,
		AdminPassword:   AdminPassword,
		ServicePassword: ServicePassword,
		Users:           count(opts.Users, defaultUsers),
		Groups:          count(opts.Groups, defaultGroups),
		inst:            inst,
		logf:            opts.Logf,
	}
	if s.Suffix == "" {
		s.Suffix = DefaultSuffix
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if s.Groups > s.Users {
		return nil, fmt.Errorf("slapdtest: Groups (%d) exceeds Users (%d): every group needs a member", s.Groups, s.Users)
	}
	s.PeopleDN = "ou=people," + s.Suffix
	s.GroupsDN = "ou=groups," + s.Suffix
	s.AdminDN = "cn=admin," + s.Suffix
	s.ServiceDN = "cn=svc," + s.servicesDN()
	s.out = &output{logf: s.logf}

	s.Dir = opts.Dir
	if s.Dir == "" {
		dir, err := os.MkdirTemp("", "slapdtest-")
		if err != nil {
			return nil, fmt.Errorf("slapdtest: %w", err)
		}
		s.Dir, s.removeDir = dir, true
	} else if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("slapdtest: %w", err)
	}
	return s, nil
}

// count turns an Options count into a number: 0 is the default, negative
// is none.
func count(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// load writes data.ldif and loads it into a fresh database with slapadd,
// which is much faster than adding entries over LDAP.
func (s *Server) load(opts Options) error {
	begin := time.Now()
	db := filepath.Join(s.Dir, "db")
	if err := os.RemoveAll(db); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	if err := os.MkdirAll(db, 0o700); err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	ldifFile := filepath.Join(s.Dir, "data.ldif")
	f, err := os.Create(ldifFile)
	if err != nil {
		return fmt.Errorf("slapdtest: %w", err)
	}
	err = s.writeData(f, opts)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("slapdtest: write data: %w", err)
	}
	generated := time.Since(begin)
	// -q skips consistency checks that cost most of slapadd's time.
	out, err := exec.Command(s.inst.slapadd, "-q", "-f", s.confFile(), "-l", ldifFile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("slapdtest: slapadd: %w\n%s", err, out)
	}
	s.logf("slapdtest: %d users, %d groups: LDIF in %v, slapadd in %v",
		s.Users, s.Groups, generated.Round(time.Millisecond), (time.Since(begin) - generated).Round(time.Millisecond))
	return nil
}

// choosePorts picks free loopback ports by letting the kernel choose.
func (s *Server) choosePorts(tls bool) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	s.URL = "ldap://" + addr
	if tls {
		if addr, err = freeAddr(); err != nil {
			return err
		}
		s.LDAPSURL = "ldaps://" + addr
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("slapdtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts slapd again after Stop or Kill, on the same ports and with
// the same data, and waits until it answers.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.proc != nil {
		s.mu.Unlock()
		return errors.New("slapdtest: slapd is already running")
	}
	// A killed slapd leaves its pid file behind.
	if err := os.Remove(s.pidFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.mu.Unlock()
		return fmt.Errorf("slapdtest: %w", err)
	}
	listen := s.URL + "/"
	if s.LDAPSURL != "" {
		listen += " " + s.LDAPSURL + "/"
	}
	// Any -d keeps slapd in the foreground so that its pid is ours; "none"
	// prints only errors, where -d 0 would hide even configuration errors.
	cmd := exec.Command(s.inst.slapd, "-f", s.confFile(), "-h", listen, "-d", "none")
	mark := s.out.mark()
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("slapdtest: start slapd: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc, s.paused = p, false
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		s.halt(p, false)
		out := s.out.since(mark)
		if strings.Contains(out, "Address already in use") {
			err = fmt.Errorf("%w: %w", errAddrInUse, err)
		}
		return fmt.Errorf("slapdtest: slapd on %s did not become ready: %w\nslapd output:\n%s", listen, err, out)
	}
	s.logf("slapdtest: slapd pid %d serving %s", cmd.Process.Pid, listen)
	return nil
}

// Ready waits until slapd answers an anonymous bind on URL, slapd exits, or
// ctx ends.
func (s *Server) Ready(ctx context.Context) error {
	for {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p == nil {
			return errNotRunning
		}
		select {
		case <-p.done:
			return fmt.Errorf("slapd exited: %v", p.err)
		default:
		}
		err := s.probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probe dials URL and binds anonymously, within ctx's deadline and at most
// a second.
func (s *Server) probe(ctx context.Context) error {
	timeout := time.Second
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < timeout {
		timeout = time.Until(deadline)
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: timeout}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(timeout)
	return c.UnauthenticatedBind("")
}

// Stop shuts slapd down with SIGTERM, waiting up to 10 seconds before
// SIGKILL. Stopping a stopped server does nothing.
func (s *Server) Stop() error { return s.halt(nil, true) }

// Kill ends slapd with SIGKILL, as a crash would.
func (s *Server) Kill() error { return s.halt(nil, false) }

// halt ends the running process, or only p when p is not nil (so that a
// failed Start never ends a process another call started).
func (s *Server) halt(p *process, graceful bool) error {
	s.mu.Lock()
	if p != nil && p != s.proc {
		s.mu.Unlock()
		return nil
	}
	p, paused := s.proc, s.paused
	s.proc, s.paused = nil, false
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	if !graceful {
		_ = p.cmd.Process.Kill() // fails only when it has exited already
		<-p.done
		return nil
	}
	if paused {
		// A stopped process does not act on SIGTERM until continued.
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("slapdtest: slapd ignored SIGTERM for %v and was killed", stopTimeout)
	}
}

// Pause freezes slapd with SIGSTOP: the kernel still accepts connections,
// but nothing is answered, like a hung upstream.
// It returns once every slapd thread has stopped.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// PID is the running slapd's process ID (0 when it is not running): for measurements of
// its CPU time and memory under /proc.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Resume lets a paused slapd run again with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return errNotRunning
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("slapdtest: signal slapd: %w", err)
	}
	s.paused = paused
	if paused {
		return waitStopped(s.proc.cmd.Process.Pid, 5*time.Second)
	}
	return nil
}

// Close stops slapd and removes Dir if Start created it.
func (s *Server) Close() error {
	err := s.Stop()
	if s.removeDir {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// Output returns everything slapd has written to stdout and stderr since
// Start, across restarts.
func (s *Server) Output() string { return s.out.since(0) }

// Dial connects to URL and binds as the admin, for tests that change data.
// Operations time out after 30 seconds, so a paused server cannot hang a
// test for ever.
func (s *Server) Dial() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("slapdtest: dial %s: %w", s.URL, err)
	}
	c.SetTimeout(30 * time.Second)
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		c.Close()
		return nil, fmt.Errorf("slapdtest: bind as %s: %w", s.AdminDN, err)
	}
	return c, nil
}

func (s *Server) confFile() string   { return filepath.Join(s.Dir, "slapd.conf") }
func (s *Server) pidFile() string    { return filepath.Join(s.Dir, "slapd.pid") }
func (s *Server) servicesDN() string { return "ou=services," + s.Suffix }
func (s *Server) policyDN() string   { return "cn=default,ou=policies," + s.Suffix }

// output collects slapd's output for error messages and passes complete
// lines to logf.
type output struct {
	logf func(format string, args ...any)

	mu      sync.Mutex
	buf     []byte
	partial []byte // the start of a line not yet passed to logf
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.logf("slapd: %s", o.partial[:i])
		o.partial = o.partial[i+1:]
	}
	return len(p), nil
}

// mark returns the current length of the output, for since.
func (o *output) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.buf)
}

func (o *output) since(mark int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf[mark:])
}
