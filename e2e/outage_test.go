package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/passhash"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

const (
	appDN       = "cn=gitlab,ou=apps,dc=example,dc=org"
	appPassword = "gitlab-app-secret"
)

// clientsSection is a `clients:` section with the gitlab account (by hash) and, when
// file is not empty, a wiki account whose password file holds the clear password.
func clientsSection(t *testing.T, file string) string {
	t.Helper()
	h, err := passhash.New([]byte(appPassword))
	if err != nil {
		t.Fatal(err)
	}
	s := fmt.Sprintf("clients:\n  - dn: %q\n    name: gitlab\n    password_hash: %q\n", appDN, h)
	if file != "" {
		if err := os.WriteFile(file, []byte("wiki-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s += fmt.Sprintf("  - dn: \"cn=wiki,ou=apps,dc=example,dc=org\"\n    password_file: %q\n", file)
	}
	return s
}

func whoAmI(t *testing.T, c *ldap.Conn) string {
	t.Helper()
	res, err := c.WhoAmI(nil)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	return res.AuthzID
}

func searchCount(c *ldap.Conn, base, filter string) (int, error) {
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, 0, 0, 0, false, filter, []string{"1.1"}, nil))
	if err != nil {
		return 0, err
	}
	return len(res.Entries), nil
}

// TestClientAccounts: the proxy authenticates `clients:` accounts itself, by hash or
// password file, in any DN spelling or by name, and they keep working with the upstream
// dead. The account does not exist upstream, so a bind that went there would fail.
func TestClientAccounts(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 8, Groups: 2})
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn,
		"top": clientsSection(t, filepath.Join(t.TempDir(), "wiki-password"))})
	p := startProxy(t, cfg)
	waitSynced(t, p, up)

	for _, name := range []string{appDN, "CN=GitLab, OU=Apps,DC=Example,DC=Org", "GITLAB"} {
		c := dial(t, p.URL)
		if err := c.Bind(name, appPassword); err != nil {
			t.Fatalf("bind as %q: %v", name, err)
		}
		if got := whoAmI(t, c); got != "dn:"+appDN {
			t.Errorf("bound as %q: whoami %q, want dn:%s", name, got, appDN)
		}
		if n, err := searchCount(c, up.Suffix, "(uid=user0003)"); n != 1 || err != nil {
			t.Errorf("bound as %q: search: %d entries, %v", name, n, err)
		}
	}
	if code := bindCode(t, p, appDN, "wrong"); code != ldap.LDAPResultInvalidCredentials {
		t.Errorf("wrong password: %d, want 49", code)
	}
	if code := bindCode(t, p, "cn=wiki,ou=apps,dc=example,dc=org", "wiki-secret"); code != 0 {
		t.Errorf("account from a password file: %d", code)
	}
	if strings.Contains(p.logs.String(), appPassword) || strings.Contains(p.logs.String(), "wiki-secret") {
		t.Error("a client account's password is in the logs")
	}

	if err := up.Kill(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.URL)
	if err := c.Bind("gitlab", appPassword); err != nil {
		t.Fatalf("bind with the upstream dead: %v", err)
	}
	if n, err := searchCount(c, up.Suffix, "(uid=user0005)"); n != 1 || err != nil {
		t.Errorf("search with the upstream dead: %d entries, %v", n, err)
	}
	if code := bindCode(t, p, appDN, "wrong"); code != ldap.LDAPResultInvalidCredentials {
		t.Errorf("wrong password with the upstream dead: %d, want 49", code)
	}
}

// peopleSelfOnly lets users read only their own entries under ou=people (the service
// account reads them all); groups stay readable.
var peopleSelfOnly = []string{`access to dn.children="ou=people,SUFFIX" by self read by dn.exact="SERVICE" read by * none`}

// TestDirectModeStoreAnswersOnlyReaders: in direct mode the store answers, while no
// upstream can, only `clients:` accounts and search.readers; a user whom the upstream
// lets read only its own entry gets `unavailable`, never the synced directory and never
// an empty answer.
func TestDirectModeStoreAnswersOnlyReaders(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 20, Groups: 2, Access: peopleSelfOnly})
	cfg := config(up, map[string]string{"mode": "direct", "sync": syncOn,
		"search": fmt.Sprintf("  readers: [%q]", up.ServiceDN), "top": clientsSection(t, "")})
	p := startProxy(t, cfg)
	waitSynced(t, p, up)
	// In direct mode the search above is the upstream's: the store must have committed
	// the first sync before the upstream dies.
	eventually(t, 20*time.Second, "the first sync committed", func() bool {
		return scrapeValue(t, p, `ldapproxy_sync_runs_total{kind="users",result="success"}`) == "1"
	})

	people := "ou=people," + up.Suffix
	bound := func(dn, pw string) *ldap.Conn {
		c := dial(t, p.URL)
		if err := c.Bind(dn, pw); err != nil {
			t.Fatalf("bind as %s: %v", dn, err)
		}
		return c
	}
	user, svc, app := bound(up.UserDN(2), slapdtest.UserPassword(2)), bound(up.ServiceDN, up.ServicePassword), bound(appDN, appPassword)
	for _, c := range []struct {
		name string
		conn *ldap.Conn
		want int
	}{{"user", user, 1}, {"service account", svc, 20}, {"client account (upstream as the service account)", app, 20}} {
		if n, err := searchCount(c.conn, people, "(objectClass=inetOrgPerson)"); n != c.want || err != nil {
			t.Fatalf("%s, upstream up: %d entries, %v; want %d", c.name, n, err, c.want)
		}
	}

	if err := up.Kill(); err != nil {
		t.Fatal(err)
	}
	if n, err := searchCount(user, people, "(objectClass=inetOrgPerson)"); resultCode(err) != ldap.LDAPResultUnavailable {
		t.Errorf("restricted user, upstream dead: %d entries, %v; want unavailable (52)", n, err)
	}
	for _, c := range []struct {
		name string
		conn *ldap.Conn
	}{{"reader", svc}, {"client account", app}, {"client account on a new connection", bound(appDN, appPassword)}} {
		if n, err := searchCount(c.conn, people, "(objectClass=inetOrgPerson)"); n != 20 || err != nil {
			t.Errorf("%s, upstream dead: %d entries, %v; want the 20 from the store", c.name, n, err)
		}
	}
	if !strings.Contains(p.logs.String(), "upstream unavailable: answering from the synced store") {
		t.Error("no log line for answers from the store")
	}
}

// TestReadersCachedMode: with search.readers set, in cached mode, members of a listed
// group (nested members too) read everything; other users read their own entry and their
// groups; an identity neither listed nor synced reads nothing.
func TestReadersCachedMode(t *testing.T) {
	// Users 1, 4, 7 are in group001, 2, 5, 8 in group002, 3, 6 in group003; group001
	// has group002 as a member.
	up := withSlapd(t, slapdtest.Options{Users: 8, Groups: 3})
	group1 := "cn=group001,ou=groups," + up.Suffix
	cfg := config(up, map[string]string{"mode": "cached", "sync": syncOn,
		"search": fmt.Sprintf("  readers: [%q, %q]", group1, appDN), "top": clientsSection(t, "")})
	p := startProxy(t, cfg)
	c := dial(t, p.URL)
	if err := c.Bind(appDN, appPassword); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the first sync to be served", func() bool {
		n, _ := searchCount(c, up.Suffix, "(uid=user0001)")
		return n == 1
	})
	all, err := searchCount(c, up.Suffix, "(objectClass=*)")
	if err != nil || all < 8+3 {
		t.Fatalf("client account: %d entries, %v", all, err)
	}
	for _, tc := range []struct {
		who  string
		dn   string
		pw   string
		want []string // entries of (objectClass=*) over the suffix, or nil for all
	}{
		{"member of group001", up.UserDN(4), slapdtest.UserPassword(4), nil},
		{"member of group002, nested in group001", up.UserDN(5), slapdtest.UserPassword(5), nil},
		{"member of group003 only", up.UserDN(3), slapdtest.UserPassword(3), []string{up.UserDN(3), "cn=group003,ou=groups," + up.Suffix}},
		{"not synced, not listed", up.ServiceDN, up.ServicePassword, []string{}},
	} {
		u := dial(t, p.URL)
		if err := u.Bind(tc.dn, tc.pw); err != nil {
			t.Fatalf("%s: bind: %v", tc.who, err)
		}
		res, err := u.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil {
			t.Fatalf("%s: %v", tc.who, err)
		}
		var got []string
		for _, e := range res.Entries {
			got = append(got, strings.ToLower(e.DN))
		}
		if tc.want == nil {
			if len(got) != all {
				t.Errorf("%s: %d entries, want all %d", tc.who, len(got), all)
			}
			continue
		}
		if strings.Join(got, " ") != strings.ToLower(strings.Join(tc.want, " ")) {
			t.Errorf("%s: %q, want %q", tc.who, got, tc.want)
		}
		// Another user's entry: not there for a compare either.
		if _, err := u.Compare(up.UserDN(1), "uid", "user0001"); resultCode(err) != ldap.LDAPResultNoSuchObject {
			t.Errorf("%s: compare of another user's entry: %v, want noSuchObject", tc.who, err)
		}
	}
}

// TestClientAccountsReload: a reload picks up a new clients: list and a rewritten
// password file (a rotated secret); a session bound before keeps its account; a bad
// list is refused as a whole and the running one stays.
func TestClientAccountsReload(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3, Groups: 1})
	dir := t.TempDir()
	wikiFile, path := filepath.Join(dir, "wiki-password"), filepath.Join(dir, "ldapproxy.yaml")
	section := clientsSection(t, wikiFile) // gitlab by hash, wiki from the file: wiki-secret
	write := func(clients string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(config(up, map[string]string{"mode": "direct", "top": clients})), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(section)
	p := startProxyFromFile(t, path)
	const wikiDN = "cn=wiki,ou=apps,dc=example,dc=org"
	before := dial(t, p.URL)
	if err := before.Bind(appDN, appPassword); err != nil {
		t.Fatal(err)
	}

	// The wiki's secret is rotated in its file; gitlab leaves the list.
	if err := os.WriteFile(wikiFile, []byte("wiki-secret-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(fmt.Sprintf("clients:\n  - dn: %q\n    password_file: %q\n", wikiDN, wikiFile))
	if err := p.app.Reload(path); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.logs.String(), `clients (1 accounts)`) {
		t.Error("the reload does not say that the clients changed")
	}
	for _, c := range []struct {
		dn, pw string
		want   uint16
	}{
		{wikiDN, "wiki-secret-2", 0},
		{wikiDN, "wiki-secret", ldap.LDAPResultInvalidCredentials},
		// gitlab is no account any more: its bind goes upstream, which does not know it.
		{appDN, appPassword, ldap.LDAPResultInvalidCredentials},
	} {
		if code := bindCode(t, p, c.dn, c.pw); code != c.want {
			t.Errorf("after the reload, bind as %s / %s: %d, want %d", c.dn, c.pw, code, c.want)
		}
	}
	if got := whoAmI(t, before); got != "dn:"+appDN {
		t.Errorf("a session bound before the reload: whoami %q", got)
	}

	// A list that does not load is refused whole.
	write(fmt.Sprintf("clients:\n  - dn: %q\n    password_file: %q\n", wikiDN, filepath.Join(dir, "missing")))
	if err := p.app.Reload(path); err == nil {
		t.Fatal("a reload with a missing password file succeeded")
	}
	if code := bindCode(t, p, wikiDN, "wiki-secret-2"); code != 0 {
		t.Errorf("after a failed reload, the running accounts changed: %d", code)
	}
}
