package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// commits counts the syncs the proxy's served tree has taken in: each logs whether it
// changed the tree.
func (p *proxy) commits() int {
	l := p.logs.String()
	return strings.Count(l, `"msg":"served tree updated"`) + strings.Count(l, `"msg":"served tree unchanged"`)
}

// TestPagedSearchAcrossSyncs pages through 240+ users five at a time while the proxy
// syncs every 50ms and users are added, deleted, renamed and modified upstream between
// pages, with at least one sync taken in between every two pages: no page fails, no
// entry comes twice, every user present and unchanged throughout comes exactly once.
// It runs paged searches until 100 syncs have happened during them (the figure in
// the README), then checks that syncs with nothing to change leave the served tree
// alone and a cookie made before them still works.
func TestPagedSearchAcrossSyncs(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 240, Groups: 4})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": "  enabled: true\n  interval: 50ms"}))
	waitSynced(t, p, up)
	admin := up.Conn(t)
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}

	// upstreamUsers lists the users slapd holds now, by lower-case DN.
	upstreamUsers := func() map[string]bool {
		res, err := admin.Search(ldap.NewSearchRequest(up.PeopleDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(objectClass=inetOrgPerson)", []string{"1.1"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range res.Entries {
			out[strings.ToLower(e.DN)] = true
		}
		return out
	}
	next := 0
	var originals []string
	for i := 1; i <= 240; i++ {
		originals = append(originals, up.UserDN(i))
	}
	// change makes one change upstream and returns the DN it touched.
	change := func(step int) string {
		next++
		switch step % 4 {
		case 0:
			dn := fmt.Sprintf("uid=extra%d,%s", next, up.PeopleDN)
			add := ldap.NewAddRequest(dn, nil)
			add.Attribute("objectClass", []string{"inetOrgPerson"})
			add.Attribute("uid", []string{fmt.Sprintf("extra%d", next)})
			add.Attribute("cn", []string{"Extra"})
			add.Attribute("sn", []string{"Extra"})
			if err := admin.Add(add); err != nil {
				t.Fatal(err)
			}
			return dn
		}
		dn := originals[0]
		originals = originals[1:]
		switch step % 4 {
		case 1:
			if err := admin.Del(ldap.NewDelRequest(dn, nil)); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := admin.ModifyDN(ldap.NewModifyDNRequest(dn, fmt.Sprintf("uid=renamed%d", next), true, "")); err != nil {
				t.Fatal(err)
			}
		default:
			m := ldap.NewModifyRequest(dn, nil)
			m.Replace("mail", []string{fmt.Sprintf("changed%d@example.org", next)})
			if err := admin.Modify(m); err != nil {
				t.Fatal(err)
			}
		}
		return dn
	}
	req := func(cookie []byte) *ldap.SearchRequest {
		paging := ldap.NewControlPaging(5)
		paging.SetCookie(cookie)
		return ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=inetOrgPerson)", []string{"uid"}, []ldap.Control{paging})
	}
	cookieOf := func(res *ldap.SearchResult) []byte {
		if ctl, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); ok {
			return ctl.Cookie
		}
		return nil
	}

	start := p.commits()
	searches, pages, step := 0, 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	for p.commits()-start < 100 && time.Now().Before(deadline) {
		searches++
		throughout := upstreamUsers()
		seen := map[string]int{}
		var cookie []byte
		for {
			res, err := c.Search(req(cookie))
			if err != nil {
				t.Fatalf("paged search %d, page %d, after %d syncs: %v", searches, pages, p.commits()-start, err)
			}
			pages++
			for _, e := range res.Entries {
				seen[strings.ToLower(e.DN)]++
			}
			if cookie = cookieOf(res); len(cookie) == 0 {
				break
			}
			delete(throughout, strings.ToLower(change(step)))
			step++
			before := p.commits()
			eventually(t, settleWithin, "a sync between two pages", func() bool { return p.commits() > before })
		}
		for dn, n := range seen {
			if n != 1 {
				t.Errorf("paged search %d: %s returned %d times", searches, dn, n)
			}
		}
		for dn := range throughout {
			if seen[dn] != 1 {
				t.Errorf("paged search %d: %s, present throughout, returned %d times", searches, dn, seen[dn])
			}
		}
	}
	syncs := p.commits() - start
	if syncs < 100 {
		t.Fatalf("only %d syncs in 3 minutes", syncs)
	}
	t.Logf("%d paged searches (%d pages) across %d syncs: none failed", searches, pages, syncs)
	if strings.Contains(p.logs.String(), "cannot apply") {
		t.Errorf("a sync's changes did not apply to the served tree:\n%s", tail(p.logs.String(), 20))
	}

	// Syncs that find nothing changed leave the served tree alone, and a cookie from
	// before them is good after them.
	res, err := c.Search(req(nil))
	if err != nil {
		t.Fatal(err)
	}
	cookie := cookieOf(res)
	before := p.commits()
	eventually(t, settleWithin, "three more syncs", func() bool { return p.commits() >= before+3 })
	if l := p.logs.String(); !strings.HasPrefix(l[strings.LastIndex(l, `"msg":"served tree`):], `"msg":"served tree unchanged"`) {
		t.Errorf("the last sync changed the served tree:\n%s", tail(l, 5))
	}
	if res, err := c.Search(req(cookie)); err != nil || len(res.Entries) != 5 {
		t.Errorf("the cookie made before the syncs: %v", err)
	}
}
