package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// syncreplOn is a sync section for syncrepl mode; the interval would only matter in
// full mode.
const syncreplOn = "  enabled: true\n  mode: auto\n  interval: 1h"

// visibleThroughProxy polls the proxy with search until ok holds for its entries, and
// fails the test after within; it returns how long it took.
func visibleThroughProxy(t *testing.T, c *ldap.Conn, within time.Duration, what string, search *ldap.SearchRequest, ok func([]*ldap.Entry) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		res, err := c.Search(search)
		if err == nil && ok(res.Entries) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s not visible through the proxy within %v (last: %v)", what, within, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSyncreplThroughProxy: with sync.mode auto in front of slapd with syncprov, adds,
// modifies, renames and deletes upstream are served by the proxy within a second, and a
// renamed user keeps its memberOf.
func TestSyncreplThroughProxy(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 50, Groups: 5, Syncprov: true, MemberOf: true})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": syncreplOn}))
	waitSynced(t, p, up)
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	admin := up.Conn(t)
	byFilter := func(filter string, attrs ...string) *ldap.SearchRequest {
		return ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, filter, append(attrs, "1.1"), nil)
	}
	eventually(t, settleWithin, "the stream to connect", func() bool {
		return scrapeValue(t, p, "ldapproxy_sync_stream_connected") == "1"
	})

	add := ldap.NewAddRequest("uid=fresh,ou=people,"+up.Suffix, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"fresh"})
	add.Attribute("cn", []string{"Fresh"})
	add.Attribute("sn", []string{"Fresh"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	took := visibleThroughProxy(t, c, time.Second, "add", byFilter("(uid=fresh)"), func(es []*ldap.Entry) bool { return len(es) == 1 })
	t.Logf("add: %v", took)

	mod := ldap.NewModifyRequest(up.UserDN(2), nil)
	mod.Replace("mail", []string{"changed@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	took = visibleThroughProxy(t, c, time.Second, "modify", byFilter("(mail=changed@example.org)"), func(es []*ldap.Entry) bool { return len(es) == 1 })
	t.Logf("modify: %v", took)

	res, err := c.Search(byFilter("(uid=user0001)", "memberOf"))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("user0001: %v", err)
	}
	groups := res.Entries[0].GetAttributeValues("memberOf")
	if len(groups) == 0 {
		t.Fatal("user0001 is in no group")
	}
	if err := admin.ModifyDN(ldap.NewModifyDNRequest(up.UserDN(1), "uid=renamed", true, "")); err != nil {
		t.Fatal(err)
	}
	var renamed []string
	took = visibleThroughProxy(t, c, time.Second, "rename", byFilter("(uid=renamed)", "memberOf"), func(es []*ldap.Entry) bool {
		if len(es) == 1 {
			renamed = es[0].GetAttributeValues("memberOf")
		}
		return len(es) == 1
	})
	t.Logf("rename: %v", took)
	if !slices.Equal(lower(renamed), lower(groups)) {
		t.Fatalf("renamed user's memberOf %v, was %v", renamed, groups)
	}

	if err := admin.Del(ldap.NewDelRequest(up.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}
	took = visibleThroughProxy(t, c, time.Second, "delete", byFilter("(uid=user0003)"), func(es []*ldap.Entry) bool { return len(es) == 0 })
	t.Logf("delete: %v", took)
}

// envInt reads a size from the environment, for measuring at other sizes.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestSyncreplLatency measures how soon an upstream modify is served by the proxy:
// modifies at 50 per second, each polled for through the proxy (every 2 ms) from the
// moment slapd answered it. LDAPPROXY_SYNCREPL_USERS and LDAPPROXY_SYNCREPL_CHANGES
// change the size (defaults 1,000 users and 200 changes).
//
// What is bounded is how long a change was seen not to be served: until the start of
// the last search that did not find it (the search that found it may have waited on a
// loaded machine, which says nothing of when the change was served). The bound, at the
// 99th percentile, is a second plus the 99th percentile of the searches' own round
// trips: a machine loaded enough to make a search through the proxy take that long
// takes at least as long to read and commit a change. On an idle machine the searches
// take a millisecond or two, and the bound is the second that changes show within. A
// machine busy enough to stall the stream's reader or the store's commit for a second,
// while the searches go on, can still miss it once: a measurement over the bound is made
// again, and the test fails when the second is over it too.
func TestSyncreplLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("makes changes for several seconds")
	}
	users, changes := envInt("LDAPPROXY_SYNCREPL_USERS", 1000), envInt("LDAPPROXY_SYNCREPL_CHANGES", 200)
	up := withSlapd(t, slapdtest.Options{Users: users, Groups: max(5, users/50), Syncprov: true})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": syncreplOn + "\n  page_size: 1000"}))
	waitSynced(t, p, up)
	eventually(t, 60*time.Second, "the stream to connect", func() bool {
		return scrapeValue(t, p, "ldapproxy_sync_stream_connected") == "1"
	})
	conns := make([]*ldap.Conn, 8)
	for i := range conns {
		conns[i] = dial(t, p.URL)
		if err := conns[i].Bind(up.ServiceDN, up.ServicePassword); err != nil {
			t.Fatal(err)
		}
	}
	admin := up.Conn(t)
	for round := 1; ; round++ {
		u, bound := measureSyncreplLatency(t, up, admin, conns, users, changes, round)
		if u <= bound {
			return
		}
		if round == 2 {
			t.Errorf("p99 %v: a change not served for longer than %v (a second, and the searches' p99) after slapd answered, in two measurements", u, bound)
			return
		}
		t.Logf("p99 %v: a change not served for longer than %v (a second, and the searches' p99) after slapd answered; measuring again", u, bound)
	}
}

// measureSyncreplLatency makes changes modifies at 50 per second (mail values of round
// round) and polls for each through conns; it logs the figures and returns the 99th
// percentile of how long a change was seen not served, and the bound for it.
func measureSyncreplLatency(t *testing.T, up *slapdtest.Server, admin *ldap.Conn, conns []*ldap.Conn, users, changes, round int) (unseenP99, bound time.Duration) {
	t.Helper()
	// lat: from slapd's answer to the end of the search that found the change; unseen:
	// to the start of the last search that did not (0 when the first found it).
	lat, unseen := make([]time.Duration, changes), make([]time.Duration, changes)
	var (
		mu         sync.Mutex
		roundTrips []time.Duration
	)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / 50)
	defer tick.Stop()
	for k := range changes {
		<-tick.C
		i := 1 + (k*7919)%users
		value := fmt.Sprintf("change-%d-%d@example.org", round, k)
		mod := ldap.NewModifyRequest(up.UserDN(i), nil)
		mod.Replace("mail", []string{value})
		if err := admin.Modify(mod); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		wg.Add(1)
		go func(c *ldap.Conn, dn string) {
			defer wg.Done()
			req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, 0, 0, 0, false, "(mail="+value+")", []string{"1.1"}, nil)
			for time.Since(done) < 10*time.Second {
				start := time.Since(done)
				res, err := c.Search(req)
				end := time.Since(done)
				mu.Lock()
				roundTrips = append(roundTrips, end-start)
				mu.Unlock()
				switch {
				case err == nil && len(res.Entries) == 1:
					lat[k] = end
					return
				case err == nil:
					unseen[k] = start
				}
				time.Sleep(2 * time.Millisecond)
			}
			lat[k] = -1
		}(conns[k%len(conns)], up.UserDN(i))
	}
	wg.Wait()
	if slices.Contains(lat, -1) {
		t.Fatal("a change was not visible through the proxy within 10 s")
	}
	pct := func(d []time.Duration, q float64) time.Duration {
		slices.Sort(d)
		return d[int(q*float64(len(d)-1))].Round(time.Millisecond)
	}
	t.Logf("%d users, %d modifies at 50/s: visible through the proxy p50 %v, p99 %v, max %v; not served p50 %v, p99 %v, max %v; %d searches p50 %v, p99 %v",
		users, changes, pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1), pct(unseen, 0.5), pct(unseen, 0.99), pct(unseen, 1),
		len(roundTrips), pct(roundTrips, 0.5), pct(roundTrips, 0.99))
	return pct(unseen, 0.99), time.Second + pct(roundTrips, 0.99)
}
