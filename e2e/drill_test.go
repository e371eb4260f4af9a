package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// appFlow is what an application does for one login, on one fresh connection: bind as
// its own account, find the user, bind as the user, bind back, read the user's groups.
// It returns the first step that failed, or nil.
func appFlow(p *proxy, up *slapdtest.Server, user int) error {
	c, err := ldap.DialURL(p.URL, ldap.DialWithDialer(nil))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetTimeout(20 * time.Second)
	if err := c.Bind(appDN, appPassword); err != nil {
		return fmt.Errorf("application bind: %w", err)
	}
	res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		fmt.Sprintf("(&(objectClass=inetOrgPerson)(uid=user%04d))", user), []string{"cn", "mail"}, nil))
	if err != nil || len(res.Entries) != 1 {
		return fmt.Errorf("user search: %v (%d entries)", err, len(res.Entries))
	}
	dn := res.Entries[0].DN
	if err := c.Bind(dn, slapdtest.UserPassword(user)); err != nil {
		return fmt.Errorf("user bind: %w", err)
	}
	if err := c.Bind(appDN, appPassword); err != nil {
		return fmt.Errorf("application bind back: %w", err)
	}
	res, err = c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		fmt.Sprintf("(&(objectClass=groupOfNames)(member=%s))", ldap.EscapeFilter(dn)), []string{"cn"}, nil))
	if err != nil || len(res.Entries) == 0 {
		return fmt.Errorf("group search: %v (%d entries)", err, len(res.Entries))
	}
	return nil
}

// TestOutageDrill: with the upstream dead, then hung (SIGSTOP), fresh connections run
// the whole application flow, in both search modes, for users who logged in before the
// outage; a user of direct mode whom the upstream lets read only its own entry gets
// nothing from the store. The upstream timeout is the harness's (3s): the four
// subtests run side by side, and on a loaded machine a shorter one had the live
// upstream taken for unreachable before the outage.
func TestOutageDrill(t *testing.T) {
	const users, logins = 12, 6 // users 1..logins log in before the outage
	for _, mode := range []string{"cached", "direct"} {
		for _, outage := range []string{"dead", "hung"} {
			t.Run(mode+"/"+outage, func(t *testing.T) {
				t.Parallel()
				up := withSlapd(t, slapdtest.Options{Users: users, Groups: 3, Access: peopleSelfOnly})
				cfg := config(up, map[string]string{"mode": mode, "sync": syncOn, "top": clientsSection(t, "") +
					"bind:\n  cache_passwords: true\n  offline_max_age: 1h\n"})
				p := startProxy(t, cfg)
				c := dial(t, p.URL)
				if err := c.Bind(appDN, appPassword); err != nil {
					t.Fatal(err)
				}
				eventually(t, 20*time.Second, "the first sync", func() bool {
					return strings.Contains(p.scrape(t), `ldapproxy_sync_runs_total{kind="groups",result="success"} 1`)
				})
				for i := 1; i <= logins; i++ {
					if err := appFlow(p, up, i); err != nil {
						t.Fatalf("user %d, upstream up: %v", i, err)
					}
				}
				eventually(t, 20*time.Second, "the logins' hashes stored", func() bool {
					return scrapeValue(t, p, "ldapproxy_credential_cache_entries") == fmt.Sprint(logins)
				})
				restricted := dial(t, p.URL)
				if err := restricted.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
					t.Fatal(err)
				}

				if outage == "dead" {
					if err := up.Kill(); err != nil {
						t.Fatal(err)
					}
				} else {
					if err := up.Pause(); err != nil {
						t.Fatal(err)
					}
					defer up.Resume()
				}
				ok := 0
				for i := 1; i <= logins; i++ {
					if err := appFlow(p, up, i); err != nil {
						t.Errorf("user %d, upstream %s: %v", i, outage, err)
						continue
					}
					ok++
				}
				t.Logf("%s mode, upstream %s: %d of %d application flows succeeded", mode, outage, ok, logins)
				// A user who never logged in has no cached credentials.
				if err := appFlow(p, up, logins+1); err == nil || !strings.Contains(err.Error(), "user bind") {
					t.Errorf("a user never seen before: %v, want the user bind refused", err)
				}
				if mode == "direct" {
					n, err := searchCount(restricted, "ou=people,"+up.Suffix, "(objectClass=inetOrgPerson)")
					if resultCode(err) != ldap.LDAPResultUnavailable {
						t.Errorf("restricted user, upstream %s: %d entries, %v; want unavailable", outage, n, err)
					}
				}
			})
		}
	}
}
