package sambatest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// One server serves every check: they only read and bind.
func TestServer(t *testing.T) {
	start := time.Now()
	dc := New(t, Options{})
	t.Logf("samba ready with sample data after %v on %s", time.Since(start).Round(time.Millisecond), dc.Addr)

	search := func(t *testing.T, conn *ldap.Conn, filter string, attrs ...string) []*ldap.Entry {
		t.Helper()
		res, err := conn.Search(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, filter, attrs, nil))
		if err != nil {
			t.Fatalf("search %s: %v", filter, err)
		}
		return res.Entries
	}

	t.Run("bind as each enabled user over LDAP and LDAPS", func(t *testing.T) {
		for _, u := range dc.Users {
			if u.Disabled || u.Expired {
				continue
			}
			for _, url := range []string{dc.LDAPURL, dc.LDAPSURL} {
				conn, err := dc.Dial(url)
				if err != nil {
					t.Fatal(err)
				}
				err = conn.Bind(u.DN, u.Password)
				conn.Close()
				if err != nil {
					t.Errorf("bind %s over %s: %v", u.SAMAccountName, url, err)
				}
			}
		}
	})

	t.Run("bind names AD takes", func(t *testing.T) {
		jsmith := dc.User("jsmith")
		for _, name := range []string{jsmith.UPN, Domain + `\` + jsmith.SAMAccountName} {
			conn, err := dc.Dial(dc.LDAPURL)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.Bind(name, jsmith.Password); err != nil {
				t.Errorf("bind as %q: %v", name, err)
			}
			conn.Close()
		}
	})

	t.Run("refused binds", func(t *testing.T) {
		cases := []struct{ name, dn, password string }{
			{"wrong password", dc.User("alice").DN, "Wrong-Password-1"},
			{"disabled account", dc.User("carol").DN, dc.User("carol").Password},
			{"expired account", dc.User("dave").DN, dc.User("dave").Password},
		}
		for _, c := range cases {
			conn, err := dc.Dial(dc.LDAPURL)
			if err != nil {
				t.Fatal(err)
			}
			err = conn.Bind(c.dn, c.password)
			conn.Close()
			if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				t.Errorf("%s: bind gave %v, want invalidCredentials (49)", c.name, err)
			}
		}
	})

	t.Run("searches as the service account", func(t *testing.T) {
		conn, err := dc.Dial(dc.LDAPURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Bind(dc.ServiceDN, dc.ServicePassword); err != nil {
			t.Fatal(err)
		}
		alice := dc.User("alice")
		got := search(t, conn, "(sAMAccountName=alice)", "objectGUID", "objectSid", "userPrincipalName", "mail", "memberOf", "uidNumber")
		if len(got) != 1 || !strings.EqualFold(got[0].DN, alice.DN) {
			t.Fatalf("(sAMAccountName=alice): %d entries, want %s", len(got), alice.DN)
		}
		if guid := got[0].GetRawAttributeValue("objectGUID"); len(guid) != 16 {
			t.Errorf("objectGUID is %d bytes, want 16", len(guid))
		}
		if sid := got[0].GetRawAttributeValue("objectSid"); len(sid) != 28 {
			t.Errorf("objectSid is %d bytes, want 28 (a domain account's SID)", len(sid))
		}
		if v := got[0].GetAttributeValue("userPrincipalName"); v != alice.UPN {
			t.Errorf("userPrincipalName %q, want %q", v, alice.UPN)
		}
		if v := got[0].GetAttributeValue("uidNumber"); v != "10001" {
			t.Errorf("uidNumber %q, want 10001", v)
		}
		if m := got[0].GetAttributeValues("memberOf"); len(m) != 1 || !strings.EqualFold(m[0], dc.Group("Engineering").DN) {
			t.Errorf("memberOf %q, want the Engineering group alone", m)
		}

		people := search(t, conn, "(&(objectCategory=person)(objectClass=user))", "sAMAccountName")
		found := map[string]bool{}
		for _, e := range people {
			found[strings.ToLower(e.GetAttributeValue("sAMAccountName"))] = true
		}
		for _, u := range dc.Users {
			if !found[u.SAMAccountName] {
				t.Errorf("(objectCategory=person) misses %s", u.SAMAccountName)
			}
		}

		if got := search(t, conn, "(userPrincipalName=john.smith@example.org)", "sAMAccountName"); len(got) != 1 || got[0].GetAttributeValue("sAMAccountName") != "jsmith" {
			t.Errorf("(userPrincipalName=john.smith@example.org): %d entries, want jsmith", len(got))
		}
		if got := search(t, conn, "(userAccountControl:1.2.840.113556.1.4.803:=2)", "sAMAccountName"); !hasOnly(got, "carol", "Guest", "krbtgt") {
			t.Errorf("disabled accounts: %v, want carol besides Guest and krbtgt", names(got))
		}
		if got := search(t, conn, "(anr=smith)", "sAMAccountName"); !hasOnly(got, "jsmith", "asmithers") {
			t.Errorf("(anr=smith): %v, want jsmith and asmithers", names(got))
		}
		// LDAP_MATCHING_RULE_IN_CHAIN: memberOf finds what is in a group at any depth,
		// member the groups that hold an entry at any depth.
		if got := search(t, conn, "(memberOf:1.2.840.113556.1.4.1941:="+dc.Group("VPN Users").DN+")", "sAMAccountName"); len(got) != 8 {
			t.Errorf("transitive members of VPN Users: %v, want the 6 staff and 2 groups", names(got))
		}
		if got := search(t, conn, "(member:1.2.840.113556.1.4.1941:="+alice.DN+")", "sAMAccountName"); !hasOnly(got, "Engineering", "All Staff", "VPN Users") {
			t.Errorf("groups that hold alice: %v, want Engineering, All Staff and VPN Users", names(got))
		}
	})

	t.Run("the domain lives in the test's directory", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(dc.Dir, "private", "sam.ldb")); err != nil {
			t.Fatal(err)
		}
	})
}

func names(entries []*ldap.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.GetAttributeValue("sAMAccountName"))
	}
	return out
}

// hasOnly reports whether entries are exactly the accounts named.
func hasOnly(entries []*ldap.Entry, want ...string) bool {
	got := map[string]bool{}
	for _, n := range names(entries) {
		got[strings.ToLower(n)] = true
	}
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !got[strings.ToLower(w)] {
			return false
		}
	}
	return true
}

// A port taken between the check and samba's bind makes Start try another address.
func TestStartRetriesTakenAddress(t *testing.T) {
	if !Installed() {
		unavailable(t, ErrNotInstalled)
	}
	taken, err := freeAddr()
	if errors.Is(err, errNeedRoot) {
		unavailable(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(taken, "389"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	calls := 0
	pickAddr = func() (string, error) {
		calls++
		if calls == 1 {
			return taken, nil
		}
		return freeAddr()
	}
	defer func() { pickAddr = freeAddr }()
	dc := New(t, Options{})
	if dc.Addr == taken || calls != 2 {
		t.Fatalf("started on %s after %d picks; %s was taken", dc.Addr, calls, taken)
	}
}

// Stop and Kill take the server away; Restart brings it back on the same address with
// the same data.
func TestStopKillRestart(t *testing.T) {
	dc := New(t, Options{})
	alice := dc.User("alice")
	bind := func() error {
		conn, err := dc.Dial(dc.LDAPURL)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Bind(alice.DN, alice.Password)
	}
	for _, down := range []struct {
		name string
		do   func() error
	}{{"Stop", dc.Stop}, {"Kill", dc.Kill}} {
		if err := down.do(); err != nil {
			t.Fatalf("%s: %v", down.name, err)
		}
		if err := bind(); err == nil {
			t.Fatalf("after %s: a bind succeeded", down.name)
		}
		if err := dc.Restart(); err != nil {
			t.Fatalf("Restart after %s: %v", down.name, err)
		}
		if err := bind(); err != nil {
			t.Fatalf("alice's bind after %s and Restart: %v", down.name, err)
		}
	}
}
