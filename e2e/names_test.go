package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// namesLDIF adds, beside the sample users: jsmith, whose mail and userPrincipalName
// (msuser schema) have a local part other than its uid, as an AD user's often do; the
// helpdesk account; and two users who share one mail address.
func namesLDIF(peopleDN string) string {
	var b strings.Builder
	entry := func(uid, cn, extra string) {
		fmt.Fprintf(&b, "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nobjectClass: extensibleObject\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n%s\n",
			uid, peopleDN, uid, cn, cn, slapdtest.SSHA("pass-"+uid), extra)
	}
	entry("jsmith", "John Smith", "mail: john.smith@example.org\nuserPrincipalName: john.smith@corp.example.com\n")
	entry("helpdesk", "Help Desk", "mail: helpdesk@example.org\n")
	entry("twin1", "Twin One", "mail: twins@example.org\n")
	entry("twin2", "Twin Two", "mail: twins@example.org\n")
	return b.String()
}

// Every form of bind name resolves to the user's DN: it binds upstream as that DN,
// WhoAmI answers it, an offline login (cache_passwords, slapd stopped) takes the same
// forms, and so do password_reset_identities and search.readers. A name two users share
// resolves to nobody.
func TestBindNameForms(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1, Schemas: []string{"msuser"},
		ExtraLDIF: namesLDIF("ou=people," + slapdtest.DefaultSuffix)})
	jsmith := "uid=jsmith," + up.PeopleDN
	// The readers are listed by a down-level name and by a UPN, and bind by other forms.
	cfg := config(up, map[string]string{"mode": "cached", "search": `  readers: ['EXAMPLE\HelpDesk', 'John.Smith@corp.example.com']`, "sync": syncOn + `
  mappings:
    users:
      - name: upn
        field: attributes.upn
        expression: 'list_flatten(ldap.userPrincipalName)'`})
	// slapd lets only its admin write another user's password: resets need it as the
	// service account.
	cfg = strings.Replace(cfg, fmt.Sprintf("bind_dn: %q", up.ServiceDN), fmt.Sprintf("bind_dn: %q", up.AdminDN), 1)
	cfg = strings.Replace(cfg, fmt.Sprintf("bind_password: %q", up.ServicePassword), fmt.Sprintf("bind_password: %q", up.AdminPassword), 1)
	cfg += "bind:\n  cache_passwords: true\n  netbios_domain: EXAMPLE\n"
	cfg += "password_writeback: true\npassword_reset_identities:\n  - 'example\\HelpDesk'\n"
	p := startProxy(t, cfg)
	// Waited for without a bind, whose hash would be cached too.
	eventually(t, 20*time.Second, "the first sync", func() bool {
		return scrapeValue(t, p, `ldapproxy_sync_runs_total{kind="users",result="success"}`) == "1"
	})

	forms := []struct{ name, bind string }{
		{"DN", jsmith},
		{"DN in another spelling", "UID=JSmith , OU=People, " + strings.ToUpper(up.Suffix)},
		{"DN with an OID type", "0.9.2342.19200300.100.1.1=jsmith," + up.PeopleDN},
		{"user name", "jsmith"},
		{"user name, any case", "JSMITH"},
		{"UPN whose local part is not the uid", "john.smith@corp.example.com"},
		{"UPN, any case", "John.Smith@CORP.example.com"},
		{"mail whose local part is not the uid", "john.smith@example.org"},
		{"down-level name", `EXAMPLE\jsmith`},
		{"down-level name, any case", `example\JSmith`},
	}
	// bindAs binds a fresh connection and checks the result and, on success, WhoAmI.
	bindAs := func(t *testing.T, name, password string, want uint16) {
		t.Helper()
		c := dial(t, p.URL)
		if code := resultCode(c.Bind(name, password)); code != want {
			t.Fatalf("bind %q: code %d, want %d", name, code, want)
		}
		if want != 0 {
			return
		}
		who, err := c.WhoAmI(nil)
		if err != nil || !strings.EqualFold(who.AuthzID, "dn:"+jsmith) {
			t.Fatalf("bind %q: whoami %q, %v; want dn:%s", name, who.AuthzID, err, jsmith)
		}
	}
	// notResolved are names the proxy must not give to anyone: they go upstream as they
	// came, and slapd, which takes DNs only, refuses them.
	notResolved := []struct{ name, bind, password string }{
		{"another NetBIOS domain", `OTHER\jsmith`, "pass-jsmith"},
		{"the DNS domain instead of the NetBIOS one", `example.org\jsmith`, "pass-jsmith"},
		{"a mail two users share, one's password", "twins@example.org", "pass-twin1"},
	}

	t.Run("online", func(t *testing.T) {
		for _, f := range forms {
			t.Run(f.name, func(t *testing.T) { bindAs(t, f.bind, "pass-jsmith", 0) })
		}
		// Another user's: a refusal drops jsmith's cached hash, needed offline below.
		t.Run("wrong password", func(t *testing.T) {
			c := dial(t, p.URL)
			if code := resultCode(c.Bind(`EXAMPLE\twin1`, "wrong")); code != ldap.LDAPResultInvalidCredentials {
				t.Fatalf("wrong password: code %d, want 49", code)
			}
			if code := resultCode(c.Bind(`EXAMPLE\twin1`, "pass-twin1")); code != 0 {
				t.Fatalf("right password after a wrong one: code %d", code)
			}
		})
		for _, n := range notResolved {
			t.Run(n.name, func(t *testing.T) {
				if code := resultCode(dial(t, p.URL).Bind(n.bind, n.password)); code == 0 {
					t.Fatalf("bind %q succeeded", n.bind)
				}
			})
		}
		if !strings.Contains(p.logs.String(), `"name":"EXAMPLE\\jsmith"`) {
			t.Error("no log line names the bind as the client sent it")
		}
	})

	// The logins above stored hashes (in the background): jsmith's and twin1's.
	eventually(t, settleWithin, "the hashes of jsmith and twin1", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "2"
	})

	// reads is what a fresh connection bound as name reads of the whole suffix.
	reads := func(t *testing.T, name, password string) []string {
		t.Helper()
		c := dial(t, p.URL)
		if err := c.Bind(name, password); err != nil {
			t.Fatalf("bind %q: %v", name, err)
		}
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil {
			t.Fatalf("search bound as %q: %v", name, err)
		}
		var dns []string
		for _, e := range res.Entries {
			dns = append(dns, strings.ToLower(e.DN))
		}
		return dns
	}
	// readers checks that the listed identities, bound by any form, read all the synced
	// users, and that an identity not listed reads its own entry only.
	readers := func(t *testing.T) {
		for _, r := range []struct{ who, bind, password string }{
			{"listed as a down-level name, bound by mail", "helpdesk@example.org", "pass-helpdesk"},
			{"listed by its UPN, bound as a down-level name", `example\JSMITH`, "pass-jsmith"},
			{"listed by its UPN, bound by DN", jsmith, "pass-jsmith"},
		} {
			if n := len(reads(t, r.bind, r.password)); n < 3+4 {
				t.Errorf("%s: %d entries, want the whole directory", r.who, n)
			}
		}
		twin1 := strings.ToLower("uid=twin1," + up.PeopleDN)
		if got := reads(t, `EXAMPLE\twin1`, "pass-twin1"); strings.Join(got, " ") != twin1 {
			t.Errorf("not listed: %q, want only its own entry %s", got, twin1)
		}
	}
	t.Run("search.readers", readers)

	t.Run("password_reset_identities", func(t *testing.T) {
		// The helpdesk, listed as example\HelpDesk, binds by its mail address and resets
		// user0002's password, naming the user by its down-level name.
		c := dial(t, p.URL)
		if err := c.Bind("helpdesk@example.org", "pass-helpdesk"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PasswordModify(ldap.NewPasswordModifyRequest(`EXAMPLE\user0002`, "", "reset-secret-2")); err != nil {
			t.Fatalf("reset by a listed identity: %v", err)
		}
		if code := upstreamBind(t, up, up.UserDN(2), "reset-secret-2"); code != 0 {
			t.Fatalf("slapd refuses the reset password: %d", code)
		}
		// jsmith, bound by its UPN, is not listed.
		c = dial(t, p.URL)
		if err := c.Bind("john.smith@corp.example.com", "pass-jsmith"); err != nil {
			t.Fatal(err)
		}
		_, err := c.PasswordModify(ldap.NewPasswordModifyRequest(`EXAMPLE\user0003`, "", "reset-secret-3"))
		if code := resultCode(err); code != ldap.LDAPResultInsufficientAccessRights {
			t.Fatalf("reset by an identity not listed: %v, want insufficientAccessRights", err)
		}
		if code := upstreamBind(t, up, up.UserDN(3), slapdtest.UserPassword(3)); code != 0 {
			t.Fatalf("user0003's password changed: %d", code)
		}
	})

	// Hashed in the background: the helpdesk's password, and user0002's new one, which
	// the reset through the proxy stored (besides jsmith's and twin1's).
	eventually(t, settleWithin, "the helpdesk's hash and user0002's too", func() bool {
		return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == "4"
	})
	if err := up.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("offline", func(t *testing.T) {
		for _, f := range forms {
			t.Run(f.name, func(t *testing.T) { bindAs(t, f.bind, "pass-jsmith", 0) })
		}
		t.Run("wrong password", func(t *testing.T) {
			bindAs(t, "john.smith@example.org", "wrong", ldap.LDAPResultInvalidCredentials)
		})
		t.Run("search.readers", readers)
		for _, n := range notResolved {
			t.Run(n.name, func(t *testing.T) {
				bindAs(t, n.bind, n.password, ldap.LDAPResultInvalidCredentials)
			})
		}
	})
	// The forms, and the four binds of search.readers.
	if v := scrapeValue(t, p, `ldapproxy_offline_logins_total{result="success"}`); v != fmt.Sprint(len(forms)+4) {
		t.Errorf("offline successes counted %q, want %d", v, len(forms)+4)
	}
}
