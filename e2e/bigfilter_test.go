package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestTenThousandBranchOr sends what an application that fetches many users at once
// sends, an OR of 10,000 uid values (170 KB: within the limit before bind too), and ORs
// of 10,000 items as dense as filter items get (substrings and negations on a one-letter
// attribute: 4 BER elements in 10 bytes, 2 in 5), to slapd and to the proxy in both
// modes: the same users come back from all three.
func TestTenThousandBranchOr(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 300, Groups: 2})
	or := func(item func(i int) string) string {
		var b strings.Builder
		b.WriteString("(|")
		for i := range 10000 {
			b.WriteString(item(i))
		}
		b.WriteString("(uid=user0007))")
		return b.String()
	}
	filters := map[string]string{
		"uid values": or(func(i int) string { return fmt.Sprintf("(uid=user%04d)", i*7) }), // user0000, user0007, ...: 43 of them exist
		"substrings": or(func(i int) string { return fmt.Sprintf("(l=*%c*)", 'a'+i%26) }),
		"negations":  or(func(i int) string { return fmt.Sprintf("(!(%c=*))", "lc"[i%2]) }),
	}
	proxies := map[string]*proxy{}
	for _, mode := range []string{"cached", "direct"} {
		// slapd takes seconds over 10,000 substring branches on a busy machine; the test
		// is about the answers, so the proxy waits for them as long as the client does.
		cfg := strings.Replace(config(up, map[string]string{"mode": mode, "sync": syncOn}), "timeout: 3s", "timeout: 30s", 1)
		p := startProxy(t, cfg)
		waitSynced(t, p, up)
		proxies[mode] = p
	}
	search := func(t *testing.T, url, filter string) []string {
		t.Helper()
		c := dial(t, url)
		c.SetTimeout(30 * time.Second)
		if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := c.Search(ldap.NewSearchRequest(up.PeopleDN, ldap.ScopeSingleLevel, 0, 0, 0, false, filter, []string{"1.1"}, nil))
		if err != nil {
			t.Fatalf("%d-byte filter: %v", len(filter), err)
		}
		t.Logf("%s: %d entries in %v", url, len(res.Entries), time.Since(start))
		var dns []string
		for _, e := range res.Entries {
			dns = append(dns, strings.ToLower(e.DN))
		}
		slices.Sort(dns)
		return dns
	}
	for name, filter := range filters {
		t.Run(name, func(t *testing.T) {
			direct := search(t, up.URL, filter)
			if len(direct) == 0 {
				t.Fatal("slapd found nothing: the filter tests nothing")
			}
			for mode, p := range proxies {
				if got := search(t, p.URL, filter); !slices.Equal(got, direct) {
					t.Fatalf("%s mode: the proxy answered %d entries, slapd %d", mode, len(got), len(direct))
				}
			}
		})
	}
}
