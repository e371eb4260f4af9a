package e2e

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// withSlapd starts one slapd with a few users for a group of subtests.
func withSlapd(t *testing.T, opts slapdtest.Options) *slapdtest.Server {
	t.Helper()
	return slapdtest.New(t, opts)
}

func TestBind(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 20})
	p := startProxy(t, config(up, nil))

	tests := []struct {
		name     string
		dn, pass string
		want     uint16
	}{
		{"user with the right password", up.UserDN(1), slapdtest.UserPassword(1), ldap.LDAPResultSuccess},
		{"service account", up.ServiceDN, up.ServicePassword, ldap.LDAPResultSuccess},
		{"wrong password", up.UserDN(1), "wrong", ldap.LDAPResultInvalidCredentials},
		{"unknown user", "uid=nobody,ou=people," + up.Suffix, "x", ldap.LDAPResultInvalidCredentials},
		{"another user's password", up.UserDN(2), slapdtest.UserPassword(1), ldap.LDAPResultInvalidCredentials},
		{"unauthenticated bind (DN, empty password) is never a login", up.UserDN(1), "", ldap.LDAPResultUnwillingToPerform},
		{"password without a name", "", "x", ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, p.URL)
			var err error
			if tt.pass == "" {
				err = c.UnauthenticatedBind(tt.dn)
			} else {
				err = c.Bind(tt.dn, tt.pass)
			}
			if got := resultCode(err); got != tt.want {
				t.Fatalf("bind %q: result %d (%v), want %d", tt.dn, got, err, tt.want)
			}
		})
	}

	t.Run("rebind on one connection changes the identity", func(t *testing.T) {
		c := dial(t, p.URL)
		for _, i := range []int{1, 2, 3} {
			if err := c.Bind(up.UserDN(i), slapdtest.UserPassword(i)); err != nil {
				t.Fatal(err)
			}
			who, err := c.WhoAmI(nil)
			if err != nil {
				t.Fatal(err)
			}
			if who.AuthzID != "dn:"+up.UserDN(i) {
				t.Fatalf("whoami = %q after binding as %s", who.AuthzID, up.UserDN(i))
			}
		}
		// A failed bind leaves the connection anonymous, not as the previous user.
		if err := c.Bind(up.UserDN(4), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("want 49, got %v", err)
		}
		who, err := c.WhoAmI(nil)
		if err != nil || who.AuthzID != "" {
			t.Fatalf("whoami after a failed bind = %q, %v; want anonymous", who.AuthzID, err)
		}
		_, err = c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0001)", nil, nil))
		if resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
			t.Fatalf("search after a failed bind: %v, want insufficientAccessRights", err)
		}
	})

	t.Run("SASL is refused", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.ExternalBind(); resultCode(err) != ldap.LDAPResultAuthMethodNotSupported {
			t.Fatalf("SASL EXTERNAL bind: %v, want authMethodNotSupported (7)", err)
		}
	})
}

func TestUnauthenticatedBindWithAllowAnonymous(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(up, map[string]string{"listen": "  allow_anonymous: true"}))
	c := dial(t, p.URL)
	if err := c.UnauthenticatedBind(up.UserDN(1)); err != nil {
		t.Fatalf("unauthenticated bind with allow_anonymous: %v", err)
	}
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "" {
		t.Fatalf("whoami = %q, %v; an unauthenticated bind must leave the client anonymous", who.AuthzID, err)
	}
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0002)", []string{"cn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("anonymous search with allow_anonymous: %v, %d entries", err, len(res.Entries))
	}
}

func TestSearch(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 30, Groups: 3, ExtraLDIF: fmt.Sprintf(`
dn: ou=elsewhere,%[1]s
objectClass: referral
objectClass: extensibleObject
ou: elsewhere
ref: ldap://other.example.org/ou=elsewhere,%[1]s
`, slapdtest.DefaultSuffix)})
	p := startProxy(t, config(up, nil))

	t.Run("anonymous search is refused", func(t *testing.T) {
		c := dial(t, p.URL)
		_, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0001)", nil, nil))
		if resultCode(err) != ldap.LDAPResultInsufficientAccessRights {
			t.Fatalf("got %v, want insufficientAccessRights (50)", err)
		}
	})

	t.Run("bound user searches with its own identity", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
			t.Fatal(err)
		}
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(&(objectClass=inetOrgPerson)(uid=user000*))", []string{"uid", "mail", "userPassword"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Entries) != 9 {
			t.Fatalf("got %d entries, want 9 (user0001..user0009)", len(res.Entries))
		}
		for _, e := range res.Entries {
			if e.GetAttributeValue("mail") == "" {
				t.Errorf("%s has no mail", e.DN)
			}
			// slapd's ACL lets no one but the user read userPassword; through the proxy a
			// user sees its own and nobody else's, exactly as upstream.
			if pw := e.GetAttributeValue("userPassword"); pw != "" && e.DN != up.UserDN(1) {
				t.Errorf("%s: another user's userPassword was served", e.DN)
			}
		}
	})

	t.Run("base, one and subtree scopes", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			base  string
			scope int
			want  int
		}{
			{up.UserDN(3), ldap.ScopeBaseObject, 1},
			{up.PeopleDN, ldap.ScopeSingleLevel, 30},
			{up.GroupsDN, ldap.ScopeWholeSubtree, 4}, // ou=groups itself and 3 groups
		} {
			res, err := c.Search(ldap.NewSearchRequest(tt.base, tt.scope, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
			if err != nil || len(res.Entries) != tt.want {
				t.Errorf("scope %d under %s: %d entries, %v; want %d", tt.scope, tt.base, len(res.Entries), err, tt.want)
			}
		}
		_, err := c.Search(ldap.NewSearchRequest("ou=missing,"+up.Suffix, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil))
		if resultCode(err) != ldap.LDAPResultNoSuchObject {
			t.Errorf("missing base: %v, want noSuchObject (32)", err)
		}
	})

	t.Run("size limit", func(t *testing.T) {
		out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.URL, "-D", up.ServiceDN, "-w", up.ServicePassword,
			"-b", up.PeopleDN, "-z", "5", "(objectClass=inetOrgPerson)", "dn")
		if code != 4 {
			t.Fatalf("ldapsearch -z 5: exit %d, want 4 (sizeLimitExceeded)\n%s", code, out)
		}
		if n := strings.Count(out, "dn: "); n != 5 {
			t.Fatalf("got %d entries before sizeLimitExceeded, want 5", n)
		}
	})

	t.Run("referrals are passed through", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
			t.Fatal(err)
		}
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(ou=*)", []string{"ou"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		want := "ldap://other.example.org/ou=elsewhere," + up.Suffix
		found := false
		for _, r := range res.Referrals {
			found = found || strings.HasPrefix(r, want)
		}
		if !found {
			t.Fatalf("referrals = %q, want one starting with %q", res.Referrals, want)
		}
		// A base search on the referral object itself answers with the referral result.
		_, err = c.Search(ldap.NewSearchRequest("ou=elsewhere,"+up.Suffix, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", nil, nil))
		if resultCode(err) != ldap.LDAPResultReferral {
			t.Fatalf("base search on a referral: %v, want referral (10)", err)
		}
	})

	t.Run("ldapsearch and ldapwhoami", func(t *testing.T) {
		out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.URL, "-D", up.UserDN(2), "-w", slapdtest.UserPassword(2),
			"-b", up.Suffix, "(uid=user0007)", "mail", "cn")
		if code != 0 || !strings.Contains(out, "dn: "+up.UserDN(7)) || !strings.Contains(out, "mail: user0007@example.org") {
			t.Fatalf("ldapsearch: exit %d\n%s", code, out)
		}
		out, code = tool(t, nil, "ldapwhoami", "-x", "-H", p.URL, "-D", up.UserDN(2), "-w", slapdtest.UserPassword(2))
		if code != 0 || strings.TrimSpace(out) != "dn:"+up.UserDN(2) {
			t.Fatalf("ldapwhoami: exit %d, %q", code, out)
		}
		out, code = tool(t, nil, "ldapwhoami", "-x", "-H", p.URL)
		if code != 0 || strings.TrimSpace(out) != "anonymous" {
			t.Fatalf("anonymous ldapwhoami: exit %d, %q", code, out)
		}
		out, code = tool(t, nil, "ldapwhoami", "-x", "-H", p.URL, "-D", up.UserDN(2), "-w", "wrong")
		if code != 49 {
			t.Fatalf("ldapwhoami with a wrong password: exit %d, want 49\n%s", code, out)
		}
	})

	t.Run("ldapcompare", func(t *testing.T) {
		args := []string{"-x", "-H", p.URL, "-D", up.UserDN(3), "-w", slapdtest.UserPassword(3), up.UserDN(5)}
		if out, code := tool(t, nil, "ldapcompare", append(args, "mail:user0005@example.org")...); code != 6 || !strings.Contains(out, "TRUE") {
			t.Fatalf("ldapcompare true: exit %d %q, want 6 (compareTrue)", code, out)
		}
		if out, code := tool(t, nil, "ldapcompare", append(args, "mail:someone@example.org")...); code != 5 || !strings.Contains(out, "FALSE") {
			t.Fatalf("ldapcompare false: exit %d %q, want 5 (compareFalse)", code, out)
		}
		if out, code := tool(t, nil, "ldapcompare", "-x", "-H", p.URL, up.UserDN(5), "mail:user0005@example.org"); code != 50 {
			t.Fatalf("anonymous ldapcompare: exit %d %q, want 50", code, out)
		}
	})

	t.Run("root DSE is served locally without a bind", func(t *testing.T) {
		out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.URL, "-b", "", "-s", "base", "+")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		for _, want := range []string{"namingContexts: " + up.Suffix, "supportedLDAPVersion: 3", "supportedControl: 1.2.840.113556.1.4.319",
			"supportedExtension: 1.3.6.1.4.1.4203.1.11.3", "vendorName: ldapproxy"} {
			if !strings.Contains(out, want) {
				t.Errorf("root DSE lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("writes are refused", func(t *testing.T) {
		c := dial(t, p.URL)
		if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
			t.Fatal(err)
		}
		mod := ldap.NewModifyRequest(up.UserDN(1), nil)
		mod.Replace("mail", []string{"changed@example.org"})
		if err := c.Modify(mod); resultCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("modify: %v, want unwillingToPerform", err)
		}
		if err := c.Del(ldap.NewDelRequest(up.UserDN(9), nil)); resultCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("delete: %v, want unwillingToPerform", err)
		}
		add := ldap.NewAddRequest("uid=new,"+up.PeopleDN, nil)
		add.Attribute("objectClass", []string{"account"})
		if err := c.Add(add); resultCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("add: %v, want unwillingToPerform", err)
		}
		if err := c.ModifyDN(ldap.NewModifyDNRequest(up.UserDN(9), "uid=renamed", true, "")); resultCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("modify DN: %v, want unwillingToPerform", err)
		}
		if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), "new-password-1")); resultCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Errorf("password modify: %v, want unwillingToPerform", err)
		}
		if _, err := c.Extended(ldap.NewExtendedRequest("1.2.3.4.5", nil)); resultCode(err) != ldap.LDAPResultProtocolError {
			t.Errorf("unknown extended operation: %v, want protocolError", err)
		}
		// Nothing changed upstream.
		admin := up.Conn(t)
		res, err := admin.Search(ldap.NewSearchRequest(up.UserDN(1), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"mail"}, nil))
		if err != nil || res.Entries[0].GetAttributeValue("mail") != "user0001@example.org" {
			t.Fatalf("upstream entry changed: %v", err)
		}
	})
}

// TestPagedSearch10000 is the paged-results case end to end: ldapsearch pages through
// 10,000 users, 500 at a time, over the proxy.
func TestPagedSearch10000(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 10,000 users")
	}
	up := withSlapd(t, slapdtest.Options{Users: 10000, Groups: 10})
	p := startProxy(t, config(up, map[string]string{"listen": "  max_operations_per_connection: 4"}))
	out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-H", p.URL, "-D", up.ServiceDN, "-w", up.ServicePassword,
		"-b", up.PeopleDN, "-E", "pr=500/noprompt", "(objectClass=inetOrgPerson)", "uid")
	if code != 0 {
		t.Fatalf("ldapsearch: exit %d\n%s", code, tail(out, 10))
	}
	if n := len(regexp.MustCompile(`(?m)^dn: uid=user\d+,`).FindAllString(out, -1)); n != 10000 {
		t.Fatalf("got %d entries, want 10000", n)
	}
	// The same with go-ldap's paging helper.
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(up.PeopleDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, nil), 777)
	if err != nil || len(res.Entries) != 10000 {
		t.Fatalf("SearchWithPaging: %d entries, %v", len(res.Entries), err)
	}
}

// TestDirectSearchWaitingLetsTheConnectionReadOn: a forwarded search is answered on its
// connection's read loop, which reads nothing else while it runs; one whose answer does
// not come at once must let the connection read on. With the upstream hung, a WhoAmI
// sent on the same connection behind the waiting search is answered, and an Abandon of
// the search is read and ends it at once; once the upstream answers again, the
// connection goes on.
func TestDirectSearchWaitingLetsTheConnectionReadOn(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(up, nil))
	c := dial(t, p.URL)
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	search := ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0002)", []string{"uid"}, nil)
	if _, err := c.Search(search); err != nil { // the session's connection is open and bound
		t.Fatal(err)
	}
	// Abandon is sent on a connection of its own: go-ldap does not send one.
	raw, err := net.Dial("tcp", strings.TrimPrefix(p.URL, "ldap://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rd := bufio.NewReader(raw)
	exchange := func(msg []byte) {
		t.Helper()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := raw.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := ldapwire.ReadFrame(rd, 1<<20, nil); err != nil {
			t.Fatal(err)
		}
	}
	exchange(ldapwire.BindRequest(up.UserDN(1), []byte(slapdtest.UserPassword(1))))
	exchange(rawSearch(2, up.Suffix, "(uid=user0003)"))

	pauseUntilHung(t, up)
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Search(search)
		waiting <- err
	}()
	time.Sleep(100 * time.Millisecond) // the search has gone out and waits
	start := time.Now()
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+up.UserDN(1) {
		t.Fatalf("whoami behind a waiting search: %+v, %v", who, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("whoami behind a waiting search took %v: the connection did not read on", d)
	}

	if _, err := raw.Write(rawSearch(3, up.Suffix, "(uid=user0004)")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := raw.Write(ldapwire.AbandonRequest(4, 3)); err != nil {
		t.Fatal(err)
	}
	// Ended by the Abandon, not by the upstream timeout (3s) nor by the upstream: the
	// search is never answered, and it ended sooner than the timeout by the proxy's own
	// measure (a loaded machine may delay the test's view of it).
	abandoned := regexp.MustCompile(`"msg":"request".*"msgid":3,.*"result":"abandoned".*"duration":(\d+)`)
	var m []string
	eventually(t, settleWithin, "the search to end as abandoned", func() bool {
		m = abandoned.FindStringSubmatch(p.logs.String())
		return m != nil
	})
	if !strings.Contains(p.scrape(t), `ldapproxy_requests_total{op="search",result="abandoned"} 1`) {
		t.Error("the abandoned search is not counted as abandoned")
	}
	if d, _ := time.ParseDuration(m[1] + "ns"); d >= 3*time.Second {
		t.Errorf("the abandoned search ended %v after it began, at the upstream timeout (3s), not at once", d)
	}

	if err := up.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil {
		t.Fatalf("the search that waited: %v", err)
	}
	res, err := c.Search(search)
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("search after the upstream answers again: %v entries, %v", res, err)
	}
}

// rawSearch encodes a subtree search of base for filter under message ID id.
func rawSearch(id int64, base, filter string) []byte {
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		panic(err)
	}
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.ScopeWholeSubtree), ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.NeverDerefAliases), ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	req.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	req.AppendChild(f)
	req.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
	msg.AppendChild(req)
	return msg.Bytes()
}
