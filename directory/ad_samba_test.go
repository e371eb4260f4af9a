package directory

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/sambatest"
)

// TestADConventionsAgainstSamba sends AD-style filters to a Samba domain controller and
// to trees built from the entries read from it (with Samba's own schema, as the proxy
// reads it, and with the built-in one), and requires the same entries from both.
//
// Known differences, left out of the filters below: Samba leaves a short name that no
// class has as it is ((objectCategory=Organizational-Unit) finds nothing there), where
// the tree takes it for the category of that CN; and Samba's ANR neither trims spaces
// nor compares legacyExchangeDN whole, where the tree follows [MS-ADTS]; and Samba fails
// an approximate match on objectCategory (operationsError), which AD takes as equality.
func TestADConventionsAgainstSamba(t *testing.T) {
	dc := sambatest.New(t, sambatest.Options{})
	conn := dc.Conn(t)

	agg, err := conn.Search(ldap.NewSearchRequest("CN=Aggregate,CN=Schema,CN=Configuration,"+dc.BaseDN, ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"attributeTypes", "objectClasses"}, nil))
	if err != nil || len(agg.Entries) != 1 {
		t.Fatalf("read the aggregate schema: %v", err)
	}
	sch, err := ParseSchema(Descriptions{
		AttributeTypes: agg.Entries[0].GetAttributeValues("attributeTypes"),
		ObjectClasses:  agg.Entries[0].GetAttributeValues("objectClasses"),
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"*"}, nil), 500)
	if err != nil {
		t.Fatalf("read the domain: %v", err)
	}
	entries := make([]*Entry, 0, len(res.Entries))
	for _, e := range res.Entries {
		te := &Entry{DN: e.DN}
		for _, a := range e.Attributes {
			te.Attributes = append(te.Attributes, Attribute{Name: a.Name, Values: a.ByteValues})
		}
		entries = append(entries, te)
	}
	trees := map[string]*Tree{}
	for name, s := range map[string]*Schema{"Samba's schema": sch, "built-in schema": nil} {
		tree, err := NewTreeSchema(s, []string{dc.BaseDN}, entries, WithActiveDirectory(ADOptions{}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		trees[name] = tree
	}

	user := func(name string) string { return dc.User(name).DN }
	group := func(name string) string { return dc.Group(name).DN }
	filters := []string{
		"(objectCategory=person)", "(objectCategory=user)", "(objectCategory=Person)", "(objectCategory=contact)",
		"(objectCategory=group)", "(objectCategory=computer)", "(objectCategory=organizationalUnit)",
		"(objectCategory=container)", "(objectCategory=domainDNS)", "(objectCategory=domain)",
		"(objectCategory=foreignSecurityPrincipal)", "(objectCategory=builtinDomain)",
		"(objectCategory=CN=Person,CN=Schema,CN=Configuration," + dc.BaseDN + ")",
		"(objectCategory=cn=group, cn=schema,cn=configuration,dc=EXAMPLE,dc=org)",
		"(!(objectCategory=group))",
		"(objectClass=user)", "(objectClass=group)", "(objectClass=person)", "(objectClass=organizationalPerson)",
		"(objectClass=computer)", "(objectClass=top)",
		"(&(objectCategory=person)(objectClass=user))",
		"(&(objectCategory=person)(objectClass=user)(sAMAccountName=jsmith))",
		"(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
		"(userAccountControl:1.2.840.113556.1.4.803:=2)", "(userAccountControl:1.2.840.113556.1.4.803:=514)",
		"(userAccountControl:1.2.840.113556.1.4.804:=65538)", "(userAccountControl:1.2.840.113556.1.4.803:=8192)",
		"(groupType:1.2.840.113556.1.4.803:=2147483648)", "(groupType:1.2.840.113556.1.4.803:=4)",
		"(&(objectCategory=group)(!(groupType:1.2.840.113556.1.4.803:=2147483648)))",
		"(sAMAccountName=ALICE)", "(sAMAccountName=a*)", "(userPrincipalName=john.smith@example.org)",
		"(userPrincipalName=JOHN.SMITH@EXAMPLE.ORG)",
		"(memberOf:1.2.840.113556.1.4.1941:=" + group("VPN Users") + ")",
		"(memberOf:1.2.840.113556.1.4.1941:=" + group("All Staff") + ")",
		"(&(objectCategory=person)(memberOf:1.2.840.113556.1.4.1941:=" + group("VPN Users") + "))",
		"(member:1.2.840.113556.1.4.1941:=" + user("alice") + ")",
		"(member:1.2.840.113556.1.4.1941:=" + user("carol") + ")",
		"(member:1.2.840.113556.1.4.1941:=" + group("Engineering") + ")",
		"(memberOf=" + group("Engineering") + ")", "(member=" + user("bob") + ")",
		"(anr=smith)", "(anr=Smith)", "(anr=alice)", "(anr=al)", "(anr=john sm)", "(anr=Smith John)",
		"(anr==John Smith)", "(anr=Smithers Anna)", "(anr==alice)", "(anr==smith)", "(anr=jsmith)",
		"(anr=john.smith)", "(anr=svc)", "(anr=Engineering)", "(anr=Administrator)", "(anr=nobody)",
		"(&(objectCategory=person)(objectClass=user)(anr=smith))", "(!(anr=smith))", "(anr=sm*)",
		"(|(anr=alice)(anr=bob))",
	}
	for _, f := range filters {
		sr, err := conn.SearchWithPaging(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			f, []string{"1.1"}, nil), 500)
		if err != nil {
			t.Errorf("Samba: %s: %v", f, err)
			continue
		}
		var want []string
		for _, e := range sr.Entries {
			want = append(want, strings.ToLower(e.DN))
		}
		slices.Sort(want)
		for name, tree := range trees {
			w := &collectWriter{}
			searchInto(tree, w, searchRequest(t, dc.BaseDN, ScopeSubtree, f, "1.1"))
			got := w.dns()
			for i := range got {
				got[i] = strings.ToLower(got[i])
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s:\n got  %q\n want %q (Samba)", name, f, got, want)
			}
		}
		if len(want) == 0 && !strings.Contains(f, "nobody") {
			t.Logf("%s: Samba finds nothing", f)
		}
	}
}
