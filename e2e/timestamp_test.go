package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestTimestampThroughProxy: with sync.mode timestamp in front of slapd without syncprov
// (refint and memberof keep the member values and memberOf), an add, a modify, a rename and a membership change
// are served by the proxy within one poll interval, a renamed user keeps its memberOf,
// and a delete is served at the next reconciliation.
func TestTimestampThroughProxy(t *testing.T) {
	const poll = 500 * time.Millisecond
	up := withSlapd(t, slapdtest.Options{Users: 50, Groups: 5, RefInt: true, MemberOf: true})
	p := startProxy(t, config(up, map[string]string{"mode": "cached",
		"sync": "  enabled: true\n  mode: timestamp\n  interval: 1h\n  poll_interval: 500ms\n  full_interval: 4s"}))
	waitSynced(t, p, up)
	c := dial(t, p.URL)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	admin := up.Conn(t)
	byFilter := func(filter string, attrs ...string) *ldap.SearchRequest {
		return ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, filter, append(attrs, "1.1"), nil)
	}
	// One poll, and room for a loaded test machine: the poll's own timing is measured in
	// sync/ (TestTimestampChanges).
	within := poll + 3*time.Second

	add := ldap.NewAddRequest("uid=fresh,ou=people,"+up.Suffix, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"fresh"})
	add.Attribute("cn", []string{"Fresh"})
	add.Attribute("sn", []string{"Fresh"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	t.Logf("add: %v", visibleThroughProxy(t, c, within, "add", byFilter("(uid=fresh)"), func(es []*ldap.Entry) bool { return len(es) == 1 }))

	mod := ldap.NewModifyRequest(up.UserDN(2), nil)
	mod.Replace("mail", []string{"changed@example.org"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	t.Logf("modify: %v", visibleThroughProxy(t, c, within, "modify", byFilter("(mail=changed@example.org)"), func(es []*ldap.Entry) bool { return len(es) == 1 }))

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
	t.Logf("rename: %v", visibleThroughProxy(t, c, within, "rename", byFilter("(uid=renamed)", "memberOf"), func(es []*ldap.Entry) bool {
		if len(es) == 1 {
			renamed = es[0].GetAttributeValues("memberOf")
		}
		return len(es) == 1 && slices.Equal(lower(renamed), lower(groups))
	}))

	gmod := ldap.NewModifyRequest(up.GroupDN(5), nil)
	gmod.Add("member", []string{"uid=fresh,ou=people," + up.Suffix})
	if err := admin.Modify(gmod); err != nil {
		t.Fatal(err)
	}
	t.Logf("membership: %v", visibleThroughProxy(t, c, within, "membership", byFilter("(uid=fresh)", "memberOf"), func(es []*ldap.Entry) bool {
		return len(es) == 1 && len(es[0].GetAttributeValues("memberOf")) == 1
	}))

	if err := admin.Del(ldap.NewDelRequest(up.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}
	t.Logf("delete (reconciliation every 4s): %v", visibleThroughProxy(t, c, 8*time.Second, "delete", byFilter("(uid=user0003)"), func(es []*ldap.Entry) bool { return len(es) == 0 }))
	if v := scrapeValue(t, p, `ldapproxy_sync_changes_total{kind="users",op="add"}`); v != "1" {
		t.Errorf("users added: %s, want 1", v)
	}
}
