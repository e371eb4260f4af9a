package slapdtest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// dial connects to url with short timeouts, so a hung server fails the
// test instead of blocking it.
func dial(t *testing.T, url string, timeout time.Duration, opts ...ldap.DialOpt) (*ldap.Conn, error) {
	t.Helper()
	opts = append(opts, ldap.DialWithDialer(&net.Dialer{Timeout: timeout}))
	c, err := ldap.DialURL(url, opts...)
	if err != nil {
		return nil, err
	}
	c.SetTimeout(timeout)
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func TestBindOverEveryTransport(t *testing.T) {
	s := New(t, Options{TLS: true})
	if s.LDAPSURL == "" || s.PKI == nil {
		t.Fatalf("TLS server without LDAPSURL (%q) or PKI (%v)", s.LDAPSURL, s.PKI)
	}
	tlsConfig := &tls.Config{RootCAs: s.PKI.CertPool()}
	transports := []struct {
		name    string
		connect func(t *testing.T) (*ldap.Conn, error)
	}{
		{"ldap", func(t *testing.T) (*ldap.Conn, error) {
			return dial(t, s.URL, 5*time.Second)
		}},
		{"ldaps", func(t *testing.T) (*ldap.Conn, error) {
			return dial(t, s.LDAPSURL, 5*time.Second, ldap.DialWithTLSConfig(tlsConfig))
		}},
		{"starttls", func(t *testing.T) (*ldap.Conn, error) {
			c, err := dial(t, s.URL, 5*time.Second)
			if err != nil {
				return nil, err
			}
			return c, c.StartTLS(&tls.Config{RootCAs: s.PKI.CertPool(), ServerName: "127.0.0.1"})
		}},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c, err := tr.connect(t)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if err := c.Bind(s.UserDN(3), UserPassword(3)); err != nil {
				t.Fatalf("bind as user 3 with its password: %v", err)
			}
			err = c.Bind(s.UserDN(3), UserPassword(4))
			if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				t.Fatalf("bind with the wrong password: got %v, want result 49", err)
			}
			if err := c.Bind(s.ServiceDN, s.ServicePassword); err != nil {
				t.Fatalf("bind as the service account: %v", err)
			}
			if _, ok := c.TLSConnectionState(); ok != (tr.name != "ldap") {
				t.Fatalf("TLS state %v on %s", ok, tr.name)
			}
		})
	}
}

func TestLDAPSRejectsUnknownCA(t *testing.T) {
	s := New(t, Options{TLS: true})
	other, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, s.LDAPSURL, 5*time.Second, ldap.DialWithTLSConfig(&tls.Config{RootCAs: other.CertPool()}))
	if err == nil {
		t.Fatal("LDAPS verified against a foreign CA")
	}
}

func TestVerifyClients(t *testing.T) {
	s := New(t, Options{VerifyClients: true})
	certFile, keyFile, err := s.PKI.IssueClient("proxy")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	c, err := dial(t, s.LDAPSURL, 5*time.Second, ldap.DialWithTLSConfig(&tls.Config{RootCAs: s.PKI.CertPool()}))
	if err == nil {
		// With TLS 1.3 the server's refusal arrives after the handshake.
		err = c.Bind(s.ServiceDN, s.ServicePassword)
	}
	if err == nil {
		t.Fatal("LDAPS without a client certificate worked")
	}

	c, err = dial(t, s.LDAPSURL, 5*time.Second, ldap.DialWithTLSConfig(&tls.Config{
		RootCAs: s.PKI.CertPool(), Certificates: []tls.Certificate{cert},
	}))
	if err != nil {
		t.Fatalf("LDAPS with a client certificate: %v", err)
	}
	if err := c.Bind(s.ServiceDN, s.ServicePassword); err != nil {
		t.Fatalf("bind over mutual TLS: %v", err)
	}
}

func TestSampleData(t *testing.T) {
	s := New(t, Options{Users: 25, Groups: 4})
	c := s.Conn(t)
	count := func(base, filter string) int {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil))
		if err != nil {
			t.Fatalf("search %s under %s: %v", filter, base, err)
		}
		return len(res.Entries)
	}
	if n := count(s.PeopleDN, "(objectClass=inetOrgPerson)"); n != 25 {
		t.Errorf("%d users, want 25", n)
	}
	if n := count(s.GroupsDN, "(objectClass=groupOfNames)"); n != 4 {
		t.Errorf("%d groups, want 4", n)
	}
	if n := count(s.Suffix, "(uid="+UserName(7)+")"); n != 1 {
		t.Errorf("%d entries for %s, want 1", n, UserName(7))
	}
	for i := 1; i <= 25; i++ {
		groups := s.UserGroups(i)
		if len(groups) == 0 {
			t.Errorf("user %d is in no group", i)
		}
		for g := 1; g <= 4; g++ {
			n := count(s.GroupDN(g), "(member="+s.UserDN(i)+")")
			if want := slices.Contains(groups, g); (n == 1) != want {
				t.Errorf("user %d in group %d: %v, UserGroups says %v", i, g, n == 1, want)
			}
		}
	}
	if n := count(s.GroupDN(1), "(member="+s.GroupDN(2)+")"); n != 1 {
		t.Error("group002 is not a member of group001")
	}

	res, err := c.Search(ldap.NewSearchRequest(s.UserDN(12), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"cn", "mail", "uidNumber", "userPassword"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	e := res.Entries[0]
	if got := e.GetAttributeValue("mail"); got != "user0012@example.org" {
		t.Errorf("mail %q", got)
	}
	if got := e.GetAttributeValue("cn"); got != "User 0012" {
		t.Errorf("cn %q", got)
	}
	if got := e.GetAttributeValue("userPassword"); !strings.HasPrefix(got, "{SSHA}") {
		t.Errorf("userPassword %q, want {SSHA}", got)
	}

	// The service account reads users, but not their passwords.
	svc, err := dial(t, s.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Bind(s.ServiceDN, s.ServicePassword); err != nil {
		t.Fatal(err)
	}
	res, err = svc.Search(ldap.NewSearchRequest(s.UserDN(12), ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"uid", "userPassword"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Entries[0]; e.GetAttributeValue("uid") != UserName(12) || e.GetAttributeValue("userPassword") != "" {
		t.Errorf("service account sees uid %q and userPassword %q", e.GetAttributeValue("uid"), e.GetAttributeValue("userPassword"))
	}
}

func TestOverlays(t *testing.T) {
	s := New(t, Options{Users: 10, Groups: 3, MemberOf: true, PasswordPolicy: true})
	c := s.Conn(t)
	attrs := func(dn string, names ...string) *ldap.Entry {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", names, nil))
		if err != nil {
			t.Fatalf("read %s: %v", dn, err)
		}
		return res.Entries[0]
	}
	want := []string{s.GroupDN(1), s.GroupDN(3)} // user 10: group (10-1)%3+1 and, as a tenth user, the last
	if got := attrs(s.UserDN(10), "memberOf").GetAttributeValues("memberOf"); !slices.Equal(got, want) {
		t.Errorf("memberOf of user 10 = %v, want %v", got, want)
	}
	if got := attrs(s.GroupDN(2), "memberOf").GetAttributeValues("memberOf"); !slices.Equal(got, []string{s.GroupDN(1)}) {
		t.Errorf("memberOf of group002 = %v", got)
	}
	before := attrs(s.UserDN(1), "pwdChangedTime").GetAttributeValue("pwdChangedTime")
	if before == "" {
		t.Error("loaded user has no pwdChangedTime")
	}

	// The overlay keeps memberOf up to date.
	mod := ldap.NewModifyRequest(s.GroupDN(2), nil)
	mod.Add("member", []string{s.UserDN(1)})
	if err := c.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if got := attrs(s.UserDN(1), "memberOf").GetAttributeValues("memberOf"); !slices.Contains(got, s.GroupDN(2)) {
		t.Errorf("memberOf after adding user 1 to group002 = %v", got)
	}

	u, err := dial(t, s.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Bind(s.UserDN(1), UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	_, err = u.PasswordModify(ldap.NewPasswordModifyRequest("", UserPassword(1), "short"))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) {
		t.Errorf("short password: got %v, want constraintViolation", err)
	}
	time.Sleep(1100 * time.Millisecond) // pwdChangedTime has a resolution of one second
	if _, err := u.PasswordModify(ldap.NewPasswordModifyRequest("", UserPassword(1), "a-longer-one")); err != nil {
		t.Fatalf("change own password: %v", err)
	}
	if after := attrs(s.UserDN(1), "pwdChangedTime").GetAttributeValue("pwdChangedTime"); after == before {
		t.Errorf("pwdChangedTime still %q after a change", after)
	}
	if err := u.Bind(s.UserDN(1), "a-longer-one"); err != nil {
		t.Errorf("bind with the new password: %v", err)
	}
}

func TestRestartKeepsPortsAndData(t *testing.T) {
	s := New(t, Options{TLS: true})
	url, ldapsURL := s.URL, s.LDAPSURL
	c := s.Conn(t)
	add := ldap.NewAddRequest("uid=added,"+s.PeopleDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("cn", []string{"Added"})
	add.Attribute("sn", []string{"Added"})
	add.Attribute("userPassword", []string{"added-secret"})
	if err := c.Add(add); err != nil {
		t.Fatal(err)
	}

	for _, end := range []struct {
		name string
		stop func() error
	}{{"kill", s.Kill}, {"stop", s.Stop}} {
		if err := end.stop(); err != nil {
			t.Fatalf("%s: %v", end.name, err)
		}
		if _, err := dial(t, s.URL, time.Second); err == nil {
			t.Fatalf("after %s, %s still accepts connections", end.name, s.URL)
		}
		if err := s.Start(); err != nil {
			t.Fatalf("start after %s: %v", end.name, err)
		}
		if s.URL != url || s.LDAPSURL != ldapsURL {
			t.Fatalf("after %s, listening on %s %s, want %s %s", end.name, s.URL, s.LDAPSURL, url, ldapsURL)
		}
		u, err := dial(t, s.URL, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.Bind("uid=added,"+s.PeopleDN, "added-secret"); err != nil {
			t.Fatalf("after %s, the added entry cannot bind: %v", end.name, err)
		}
	}
	if err := s.Start(); err == nil {
		t.Error("second Start of a running server succeeded")
	}
}

func TestPauseHangsAndResumeRecovers(t *testing.T) {
	s := New(t, Options{})
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	c, err := dial(t, s.URL, 300*time.Millisecond)
	if err == nil {
		err = c.Bind(s.UserDN(1), UserPassword(1))
	}
	if err == nil {
		t.Fatal("bind to a paused server succeeded")
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("paused server took %v to fail a bind with a 300ms timeout", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready on a paused server: %v", err)
	}

	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	c, err = dial(t, s.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(s.UserDN(1), UserPassword(1)); err != nil {
		t.Fatalf("bind after Resume: %v", err)
	}

	// Stop must also end a server that is paused.
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("stop a paused server: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"bad extra LDIF", Options{ExtraLDIF: "dn: cn=x,ou=nowhere,dc=other\nobjectClass: device\ncn: x\n"}, "slapadd"},
		{"more groups than users", Options{Users: 2, Groups: 3}, "every group needs a member"},
		{"bad suffix", Options{Suffix: "cn=oops"}, "first RDN"},
		{"unknown schema", Options{Schemas: []string{"no-such-schema"}}, "no-such-schema"},
		{"schema path", Options{Schemas: []string{"../schema/msuser"}}, "without .schema"},
		{"bad size limit", Options{SizeLimit: "size.soft=lots"}, "slapd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = t.TempDir()
			s, err := Start(tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadTenThousandUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 10,000 users")
	}
	begin := time.Now()
	s := New(t, Options{Users: 10000, Groups: 20, Logf: t.Logf})
	t.Logf("Start with 10,000 users took %v", time.Since(begin).Round(time.Millisecond))

	// The service account, not the rootdn, so that size limits apply.
	c, err := dial(t, s.URL, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(s.ServiceDN, s.ServicePassword); err != nil {
		t.Fatal(err)
	}
	req := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(s.PeopleDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=inetOrgPerson)", []string{"uid"}, nil)
	}
	res, err := c.SearchWithPaging(req(), 500) // adds its control to the request
	if err != nil {
		t.Fatalf("paged search: %v", err)
	}
	if len(res.Entries) != 10000 {
		t.Fatalf("paged search found %d users, want 10000", len(res.Entries))
	}
	res, err = c.Search(req())
	if err != nil {
		t.Fatalf("unpaged search: %v", err)
	}
	if len(res.Entries) != 10000 {
		t.Fatalf("unpaged search found %d users, want 10000", len(res.Entries))
	}
}

func TestSSHA(t *testing.T) {
	h := SSHA("secret")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "{SSHA}"))
	if !strings.HasPrefix(h, "{SSHA}") || err != nil || len(raw) != sha1.Size+8 {
		t.Fatalf("SSHA(secret) = %q", h)
	}
	sum := sha1.Sum(append([]byte("secret"), raw[sha1.Size:]...))
	if !bytes.Equal(sum[:], raw[:sha1.Size]) {
		t.Fatalf("SSHA(secret) = %q does not hash secret with its salt", h)
	}
	if SSHA("secret") == h {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestRestartOnTakenPort(t *testing.T) {
	s := New(t, Options{})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", strings.TrimPrefix(s.URL, "ldap://"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	l.Close()
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start on a taken port: %v, want slapd's bind error", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start once the port is free: %v", err)
	}
}

func TestSchemasAndSizeLimit(t *testing.T) {
	guid := []byte{0: 0x10, 15: 0xff}
	ad := "dn: CN=Alice,OU=people,dc=example,dc=org\n" +
		"objectClass: user\nobjectClass: extensibleObject\ncn: Alice\nsn: Alice\nsAMAccountName: alice\nuserAccountControl: 512\n" +
		"pwdLastSet: 133497216000000000\ninstanceType: 4\nnTSecurityDescriptor:: AQAEgA==\n" +
		"objectCategory: CN=Person,CN=Schema,CN=Configuration,dc=example,dc=org\n" +
		"objectGUID:: " + base64.StdEncoding.EncodeToString(guid) + "\n"
	s := New(t, Options{Users: 25, Schemas: []string{"msuser"}, SizeLimit: "size.soft=10 size.hard=10 size.prtotal=unlimited", ExtraLDIF: ad})

	c, err := dial(t, s.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(s.ServiceDN, s.ServicePassword); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(s.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(objectClass=user)(sAMAccountName=*))", []string{"objectGUID", "userAccountControl"}, nil))
	if err != nil {
		t.Fatalf("search with msuser's attributes: %v", err)
	}
	if len(res.Entries) != 1 || !bytes.Equal(res.Entries[0].GetRawAttributeValue("objectGUID"), guid) {
		t.Fatalf("AD-shaped entry: got %d entries, %v", len(res.Entries), res.Entries)
	}

	people := func() *ldap.SearchRequest {
		return ldap.NewSearchRequest(s.PeopleDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=inetOrgPerson)", []string{"uid"}, nil)
	}
	res, err = c.Search(people())
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || res == nil || len(res.Entries) != 10 {
		t.Fatalf("unpaged search as the service account: %v (%d entries), want sizeLimitExceeded after 10", err, entries(res))
	}
	res, err = c.SearchWithPaging(people(), 7)
	if err != nil || len(res.Entries) != 25 {
		t.Fatalf("paged search as the service account: %v (%d entries), want all 25", err, entries(res))
	}
	res, err = s.Conn(t).Search(people())
	if err != nil || len(res.Entries) != 25 {
		t.Fatalf("unpaged search as the admin: %v (%d entries), want all 25", err, entries(res))
	}
}

func entries(res *ldap.SearchResult) int {
	if res == nil {
		return 0
	}
	return len(res.Entries)
}
