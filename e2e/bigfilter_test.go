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
// sends, an OR of 10,000 uid values (170 KB: within the limit before bind too), to slapd
// and to the proxy in both modes: the same entries come back from all three.
func TestTenThousandBranchOr(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 300, Groups: 2})
	var b strings.Builder
	b.WriteString("(|")
	for i := range 10000 {
		fmt.Fprintf(&b, "(uid=user%04d)", i*7) // user0000, user0007, ...: 43 of them exist
	}
	b.WriteString(")")
	filter := b.String()
	var want []string
	for i := 0; i*7 <= 300; i++ {
		if i*7 >= 1 {
			want = append(want, strings.ToLower(up.UserDN(i*7)))
		}
	}

	search := func(t *testing.T, url string) []string {
		t.Helper()
		c := dial(t, url)
		c.SetTimeout(30 * time.Second)
		if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, filter, []string{"1.1"}, nil))
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
	direct := search(t, up.URL)
	slices.Sort(want)
	if !slices.Equal(direct, want) {
		t.Fatalf("slapd answered %d entries, want %d", len(direct), len(want))
	}
	for _, mode := range []string{"cached", "direct"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, config(up, map[string]string{"mode": mode, "sync": syncOn}))
			waitSynced(t, p, up)
			if got := search(t, p.URL); !slices.Equal(got, direct) {
				t.Fatalf("the proxy answered %d entries, slapd %d", len(got), len(direct))
			}
		})
	}
}
