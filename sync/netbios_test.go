package sync_test

import (
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// The NetBIOS domain name of down-level bind names (CORP\user0001) is read from the
// crossRef of the base DN's domain in CN=Partitions, and stored with the sync; UPNs
// whose local part is not the sAMAccountName are stored for bind names too.
func TestNetBIOSDomainFromPartitions(t *testing.T) {
	t.Parallel()
	f := &fakeAD{users: 3, rangeSize: 1500, netbios: "CORP"}
	e := serveFake(t, f)
	cfg := config(t, func(c *ldapsync.Config) { c.Preset = "active-directory" })
	set := func(change func()) {
		f.mu.Lock()
		defer f.mu.Unlock()
		change()
	}

	sn := e.sync(cfg)
	if got := sn.NetBIOSDomain(); got != "CORP" {
		t.Fatalf("NetBIOS domain %q, want CORP (the crossRef whose nCName is the base DN's domain)", got)
	}
	u, ok := sn.UserByLoginName(strings.ToLower(fakeUPN(2)))
	if !ok || u.Username != "user0002" || u.Attributes[cache.UPNAttribute] != fakeUPN(2) {
		t.Fatalf("UPN %s: %+v, %v; want user0002", fakeUPN(2), u, ok)
	}

	// A sync that cannot read it keeps the name read before, and still succeeds.
	set(func() { f.failPartitions = true })
	if got := e.sync(cfg).NetBIOSDomain(); got != "CORP" {
		t.Fatalf("after a failed read: %q, want CORP kept", got)
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultSuccess {
		t.Fatalf("a failed read of the NetBIOS name failed the sync: %+v", st)
	}

	set(func() { f.failPartitions, f.netbios = false, "CORPNEW" })
	if got := e.sync(cfg).NetBIOSDomain(); got != "CORPNEW" {
		t.Fatalf("after the domain was renamed: %q, want CORPNEW", got)
	}

	// A directory whose root DSE names no configuration naming context has none.
	set(func() { f.netbios = "" })
	if got := e.sync(cfg).NetBIOSDomain(); got != "" {
		t.Fatalf("without a configuration naming context: %q, want none", got)
	}
}
