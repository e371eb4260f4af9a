package sync_test

import (
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// The domain names of down-level (CORP\user0001) and implicit-UPN bind names are read
// from the crossRef of the base DN's domain in CN=Partitions, and stored with the sync;
// UPNs whose local part is not the sAMAccountName are stored for bind names too.
func TestDomainFromPartitions(t *testing.T) {
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
	if got, want := sn.Domain(), (cache.Domain{NetBIOS: "CORP", DNS: "corp.example"}); got != want {
		t.Fatalf("domain %+v, want %+v (the crossRef whose nCName is the base DN's domain)", got, want)
	}
	u, ok := sn.UserByLoginName(strings.ToLower(fakeUPN(2)))
	if !ok || u.Username != "user0002" || u.Attributes[cache.UPNAttribute] != fakeUPN(2) {
		t.Fatalf("UPN %s: %+v, %v; want user0002", fakeUPN(2), u, ok)
	}
	if u, ok := sn.UserByLoginName("user0003@CORP.example"); !ok || u.Username != "user0003" {
		t.Fatalf("implicit UPN user0003@corp.example: %+v, %v; want user0003", u, ok)
	}

	// A sync that cannot read it keeps the names read before, and still succeeds.
	set(func() { f.failPartitions = true })
	if got := e.sync(cfg).Domain(); got.NetBIOS != "CORP" {
		t.Fatalf("after a failed read: %+v, want CORP kept", got)
	}
	if st := e.status(cache.KindUsers); st.Result != cache.ResultSuccess {
		t.Fatalf("a failed read of the domain names failed the sync: %+v", st)
	}

	set(func() { f.failPartitions, f.netbios = false, "CORPNEW" })
	if got := e.sync(cfg).Domain(); got.NetBIOS != "CORPNEW" {
		t.Fatalf("after the domain was renamed: %+v, want CORPNEW", got)
	}

	// A directory whose root DSE names no configuration naming context has none.
	set(func() { f.netbios = "" })
	if got := e.sync(cfg).Domain(); got != (cache.Domain{}) {
		t.Fatalf("without a configuration naming context: %+v, want none", got)
	}
}
