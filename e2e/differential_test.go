package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// adShaped adds users shaped like Active Directory's (msuser schema: user class,
// sAMAccountName, userAccountControl, binary objectGUID and objectSid) beside the
// generated inetOrgPerson users; uid lets the openldap preset's mappings name them.
const adShaped = `
dn: ou=ad,dc=example,dc=org
objectClass: organizationalUnit
ou: ad

dn: cn=Jane Roe,ou=ad,dc=example,dc=org
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
objectClass: extensibleObject
cn: Jane Roe
sn: Roe
uid: jroe
sAMAccountName: jroe
userPrincipalName: jane.roe@example.org
userAccountControl: 512
instanceType: 4
nTSecurityDescriptor:: AQAEgA==
objectCategory: CN=Person,CN=Schema,CN=Configuration,dc=example,dc=org
objectGUID:: AAECAwQFBgcICQoLDA0ODw==
objectSid:: AQUAAAAAAAUVAAAAoGXPfnhLm1/Hd0YsUQQAAA==
displayName: Jane Roe
mail: jane.roe@example.org

dn: cn=Rick Disabled,ou=ad,dc=example,dc=org
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
objectClass: extensibleObject
cn: Rick Disabled
sn: Disabled
uid: rick
sAMAccountName: rick
userAccountControl: 514
instanceType: 4
nTSecurityDescriptor:: AQAEgA==
objectCategory: CN=Person,CN=Schema,CN=Configuration,dc=example,dc=org
objectGUID:: /wABAgMEBQYHCAkKCwwNDg==
displayName: Rick Disabled
`

// The differential test through the whole proxy: seeded random filters over every
// attribute of the test directory (strings, integers, DNs, telephone numbers, binary
// values, timestamps, POSIX and Active Directory-shaped attributes), with every kind of
// attribute list (none, *, +, * and +, 1.1, named), sent to slapd and to the proxy in
// cached mode, must get the same entries with the same attributes and values.
func TestDifferentialThroughProxy(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 120, Groups: 6, Schemas: []string{"msuser"}, ExtraLDIF: adShaped})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": `  enabled: true
  interval: 1h
  user_filter: (|(objectClass=inetOrgPerson)(objectClass=user))`}))
	waitSynced(t, p, up)
	direct, proxied := asService(t, up, up.URL), asService(t, up, p.URL)

	// Values to build filters from: what the data holds, so that many filters match.
	all := ask(direct, ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(|(objectClass=inetOrgPerson)(objectClass=user)(objectClass=groupOfNames))", []string{"*", "+"}, nil), 0)
	values := map[string][]string{}
	for _, e := range all.entries {
		for name, vals := range e {
			values[name] = append(values[name], vals...)
		}
	}
	attrs := []string{"uid", "cn", "sn", "givenName", "displayName", "mail", "uidNumber", "gidNumber", "homeDirectory",
		"loginShell", "gecos", "telephoneNumber", "manager", "member", "description", "objectClass", "entryUUID",
		"createTimestamp", "modifyTimestamp", "jpegPhoto", "sAMAccountName", "userPrincipalName",
		"userAccountControl", "objectGUID", "objectSid", "structuralObjectClass", "creatorsName"}

	rng := rand.New(rand.NewPCG(8, 2026))
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	value := func(attr string) string {
		vals := values[strings.ToLower(attr)]
		if len(vals) == 0 || rng.IntN(8) == 0 {
			return "nothing-like-it"
		}
		v := pick(vals)
		switch rng.IntN(4) {
		case 0:
			v = strings.ToUpper(v) // case: insignificant for some attributes, not others
		case 1:
			v = " " + v + " "
		}
		return v
	}
	var filter func(depth int) string
	filter = func(depth int) string {
		attr := pick(attrs)
		n := 5
		if depth < 2 {
			n = 8
		}
		switch rng.IntN(n) {
		case 0:
			return fmt.Sprintf("(%s=%s)", attr, ldap.EscapeFilter(value(attr)))
		case 1:
			return fmt.Sprintf("(%s=*)", attr)
		case 2:
			v := value(attr)
			if len(v) > 3 {
				v = v[1 : len(v)-1]
			}
			return fmt.Sprintf("(%s=*%s*)", attr, ldap.EscapeFilter(v))
		case 3:
			return fmt.Sprintf("(%s>=%s)", attr, ldap.EscapeFilter(value(attr)))
		case 4:
			return fmt.Sprintf("(%s<=%s)", attr, ldap.EscapeFilter(value(attr)))
		case 5:
			return fmt.Sprintf("(&%s%s)", filter(depth+1), filter(depth+1))
		case 6:
			return fmt.Sprintf("(|%s%s)", filter(depth+1), filter(depth+1))
		default:
			return fmt.Sprintf("(!%s)", filter(depth+1))
		}
	}
	lists := [][]string{nil, {"*"}, {"+"}, {"*", "+"}, {"1.1"}, {"cn", "uidNumber", "memberOf"},
		{"objectGUID", "objectSid", "userAccountControl", "sAMAccountName"}, {"jpegPhoto", "telephoneNumber", "manager"},
		{"member", "gidNumber", "modifyTimestamp", "entryUUID"}}

	// Every attribute is compared, computed ones (entryDN, hasSubordinates,
	// structuralObjectClass) and stored operational ones (entryCSN, creatorsName, ...)
	// included, but one: subschemaSubentry names each server's own subschema entry
	// (slapd's cn=Subschema; the proxy's serves the upstream's schema under its own).
	except := []string{"subschemasubentry"}
	bases := []string{"ou=people," + up.Suffix, "ou=groups," + up.Suffix, "ou=ad," + up.Suffix}
	const searches = 300
	matched, differing := 0, 0
	for i := range searches {
		req := ldap.NewSearchRequest(pick(bases), ldap.ScopeSingleLevel, 0, 0, 0, false, filter(0), lists[i%len(lists)], nil)
		want := ask(direct, req, 0)
		got := ask(proxied, req, 0)
		if len(want.entries) > 0 {
			matched++
		}
		if d := differ(want, got, except...); d != "" {
			differing++
			if differing <= 10 {
				t.Errorf("%s %q under %s:\n%s", req.Filter, req.Attributes, req.BaseDN, d)
			}
		}
	}
	t.Logf("%d searches, %d found entries in slapd, %d answered differently", searches, matched, differing)
	if matched < searches/4 {
		t.Errorf("only %d of %d searches found anything: the comparison proves little", matched, searches)
	}
}
