package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// procStat returns a process's CPU time (user + system) and resident memory.
func procStat(t *testing.T, pid int) (cpu time.Duration, rssMiB float64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	rss, _ := strconv.Atoi(f[21])
	return time.Duration(utime+stime) * (time.Second / 100), float64(rss) * float64(os.Getpagesize()) / (1 << 20)
}

// TestManyProxiesCost is a measurement for the README's "Many proxies, one directory":
// N proxies in syncrepl or timestamp mode start at once in front of one slapd, then the
// directory takes 200 modifies at 50 per second; it reports slapd's CPU time and memory
// for each phase. Run with LDAPPROXY_SCALE_PROXIES=20 (and LDAPPROXY_SCALE_USERS,
// default 10000; LDAPPROXY_SCALE_MODE, default syncrepl).
func TestManyProxiesCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LDAPPROXY_SCALE_PROXIES"))
	if n <= 0 {
		t.Skip("a measurement: set LDAPPROXY_SCALE_PROXIES")
	}
	users, _ := strconv.Atoi(os.Getenv("LDAPPROXY_SCALE_USERS"))
	if users <= 0 {
		users = 10000
	}
	mode := os.Getenv("LDAPPROXY_SCALE_MODE")
	if mode == "" {
		mode = "syncrepl"
	}
	up := withSlapd(t, slapdtest.Options{Users: users, Groups: max(5, users/50), Syncprov: true})
	pid := up.PID()
	cpu0, rss0 := procStat(t, pid)
	t.Logf("slapd with %d users: RSS %.0f MiB", users, rss0)

	// Each proxy starts its first sync in the background: they all read at once.
	start := time.Now()
	proxies := make([]*proxy, n)
	for i := range proxies {
		proxies[i] = startProxy(t, config(up, map[string]string{"mode": "cached",
			"sync": fmt.Sprintf("  enabled: true\n  mode: %s\n  poll_interval: 5s\n  interval: 1h", mode)}))
	}
	for _, p := range proxies {
		waitSyncedWithin(t, p, up, 5*time.Minute)
	}
	cpu1, rss1 := procStat(t, pid)
	t.Logf("%d proxies (%s) started at once: all synced after %v; slapd CPU %v, RSS %.0f MiB", n, mode,
		time.Since(start).Round(10*time.Millisecond), (cpu1 - cpu0).Round(10*time.Millisecond), rss1)

	time.Sleep(10 * time.Second)
	cpu2, rss2 := procStat(t, pid)
	t.Logf("10 s idle with %d proxies: slapd CPU %v, RSS %.0f MiB", n, (cpu2 - cpu1).Round(10*time.Millisecond), rss2)

	admin := dial(t, up.URL)
	if err := admin.Bind(up.AdminDN, up.AdminPassword); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		m := ldap.NewModifyRequest(up.UserDN(1+i%users), nil)
		m.Replace("description", []string{fmt.Sprintf("change %d", i)})
		if err := admin.Modify(m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(6 * time.Second) // a poll interval and a little more
	cpu3, rss3 := procStat(t, pid)
	t.Logf("200 modifies at 50/s with %d proxies, and 6 s after: slapd CPU %v, RSS %.0f MiB", n, (cpu3 - cpu2).Round(10*time.Millisecond), rss3)
}

// waitSyncedWithin is waitSynced with a limit of its own.
func waitSyncedWithin(t *testing.T, p *proxy, up *slapdtest.Server, d time.Duration) {
	t.Helper()
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	eventually(t, d, "the first sync to be served", func() bool {
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0001)", []string{"1.1"}, nil))
		return err == nil && len(res.Entries) == 1
	})
}
