package e2e

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// sync.extra mirrors further entries as they are (here netgroups and an automount map
// of the nis schema): the same searches get the same answers from slapd and the proxy
// in cached mode, an extra set's own base entry replaces the container the proxy would
// make, and a change upstream shows after the next sync.
func TestExtraSets(t *testing.T) {
	const ldif = `
dn: ou=netgroups,dc=example,dc=org
objectClass: organizationalUnit
ou: netgroups

dn: cn=admins,ou=netgroups,dc=example,dc=org
objectClass: nisNetgroup
cn: admins
nisNetgroupTriple: (db1,user0001,example.org)
nisNetgroupTriple: (,user0002,)
description: administrators

dn: cn=everyone,ou=netgroups,dc=example,dc=org
objectClass: nisNetgroup
cn: everyone
memberNisNetgroup: admins
nisNetgroupTriple: (,user0003,)

dn: ou=automount,dc=example,dc=org
objectClass: organizationalUnit
ou: automount
description: automount maps

dn: nisMapName=auto.master,ou=automount,dc=example,dc=org
objectClass: nisMap
nisMapName: auto.master

dn: cn=/home,nisMapName=auto.master,ou=automount,dc=example,dc=org
objectClass: nisObject
cn: /home
nisMapEntry: auto.home
nisMapName: auto.master
`
	up := withSlapd(t, slapdtest.Options{Users: 10, Groups: 2, ExtraLDIF: ldif})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": `  enabled: true
  interval: 1s
  extra:
    - name: netgroups
      base_dn: ou=netgroups
      filter: (objectClass=nisNetgroup)
      scope: one
    - name: automount
      base_dn: ou=automount`}))
	waitSynced(t, p, up)

	direct, proxied := asService(t, up, up.URL), asService(t, up, p.URL)
	search := func(base string, scope int, filter string, attrs ...string) *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	}
	// What SSSD and autofs ask.
	netgroup := search(up.Suffix, ldap.ScopeWholeSubtree, "(&(cn=admins)(objectclass=nisNetgroup))",
		"cn", "memberNisNetgroup", "nisNetgroupTriple", "modifyTimestamp", "entryUUID")
	if a := sameAnswer(t, "netgroup by name", direct, proxied, netgroup, 0); len(a.entries) != 1 {
		t.Fatalf("slapd found %d netgroups", len(a.entries))
	}
	sameAnswer(t, "every netgroup", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree, "(objectClass=nisNetgroup)"), 0)
	sameAnswer(t, "automount maps", direct, proxied, search("ou=automount,"+up.Suffix, ldap.ScopeWholeSubtree, "(objectClass=*)", "*", "+"), 0,
		"entrydn", "subschemasubentry", "hassubordinates", "entrycsn")
	sameAnswer(t, "map entries", direct, proxied, search("nisMapName=auto.master,ou=automount,"+up.Suffix, ldap.ScopeSingleLevel,
		"(&(objectclass=nisObject)(cn=*))", "cn", "nisMapEntry"), 0)

	// A netgroup added and one deleted upstream: the next sync shows both.
	admin := dial(t, up.URL)
	if err := admin.Bind(up.AdminDN, up.AdminPassword); err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest("cn=ops,ou=netgroups,"+up.Suffix, nil)
	add.Attribute("objectClass", []string{"nisNetgroup"})
	add.Attribute("cn", []string{"ops"})
	add.Attribute("nisNetgroupTriple", []string{"(,user0004,)"})
	if err := admin.Add(add); err != nil {
		t.Fatal(err)
	}
	if err := admin.Del(ldap.NewDelRequest("cn=everyone,ou=netgroups,"+up.Suffix, nil)); err != nil {
		t.Fatal(err)
	}
	all := search(up.Suffix, ldap.ScopeWholeSubtree, "(objectClass=nisNetgroup)", "cn")
	eventually(t, settleWithin, "the netgroup changes to be served", func() bool {
		a := ask(proxied, all, 0)
		return a.entries["cn=ops,ou=netgroups,dc=example,dc=org"] != nil && a.entries["cn=everyone,ou=netgroups,dc=example,dc=org"] == nil
	})
	sameAnswer(t, "netgroups after the change", direct, proxied, all, 0)

	// The base of the netgroups set is not in it (scope one): the proxy serves a
	// container there, and a search below it works.
	res, err := proxied.Search(search("ou=netgroups,"+up.Suffix, ldap.ScopeBaseObject, "(objectClass=*)", "1.1"))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("container of the netgroups: %v", err)
	}
	if !strings.Contains(p.logs.String(), "served tree updated") {
		t.Error("no log line says the served tree was updated")
	}
}
