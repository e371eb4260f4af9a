package directory

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// An Active Directory domain as the proxy serves it: the upstream's own entries, with
// objectCategory DNs, sAMAccountName, userPrincipalName, userAccountControl as
// integers, objectGUID as 16 bytes and memberOf/member DNs.
const (
	adBase     = "DC=example,DC=com"
	adSchemaNC = "CN=Schema,CN=Configuration,DC=example,DC=com"
)

func adCategory(cn string) string { return "objectCategory: CN=" + cn + "," + adSchemaNC }

var adUserClasses = []string{"objectClass: top", "objectClass: person", "objectClass: organizationalPerson", "objectClass: user"}

// adUser is a user object; rdn is also its sAMAccountName.
func adUser(rdn, given, sn string, uac int, attrs ...string) *Entry {
	a := append(append([]string{}, adUserClasses...), adCategory("Person"), "cn: "+rdn, "name: "+rdn,
		"sAMAccountName: "+rdn, "userPrincipalName: "+rdn+"@example.com", fmt.Sprintf("userAccountControl: %d", uac))
	if given != "" {
		a = append(a, "givenName: "+given, "displayName: "+given+" "+sn)
	}
	if sn != "" {
		a = append(a, "sn: "+sn)
	}
	e := entry("CN="+rdn+",OU=Staff,"+adBase, append(a, attrs...)...)
	guid := []byte{0x41, 0x61, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, rdn[0]}
	e.Attributes = append(e.Attributes, Attribute{Name: "objectGUID", Values: [][]byte{guid}})
	return e
}

func adGroup(rdn string, groupType int, attrs ...string) *Entry {
	return entry("CN="+rdn+",OU=Groups,"+adBase, append([]string{"objectClass: top", "objectClass: group", adCategory("Group"),
		"cn: " + rdn, "name: " + rdn, "sAMAccountName: " + rdn, fmt.Sprintf("groupType: %d", groupType)}, attrs...)...)
}

func adGroupDN(rdn string) string { return "CN=" + rdn + ",OU=Groups," + adBase }
func adUserDN(rdn string) string  { return "CN=" + rdn + ",OU=Staff," + adBase }

const (
	adGlobalSecurity     = -2147483646 // GROUP_TYPE_SECURITY_ENABLED | GROUP_TYPE_ACCOUNT_GROUP
	adGlobalDistribution = 2
)

func adEntries() []*Entry {
	return []*Entry{
		entry(adBase, "objectClass: top", "objectClass: domain", "objectClass: domainDNS", adCategory("Domain-DNS"), "dc: example", "name: example"),
		entry("OU=Staff,"+adBase, "objectClass: top", "objectClass: organizationalUnit", adCategory("Organizational-Unit"), "ou: Staff", "name: Staff"),
		entry("OU=Groups,"+adBase, "objectClass: top", "objectClass: organizationalUnit", adCategory("Organizational-Unit"), "ou: Groups", "name: Groups"),
		adUser("alice", "Alice", "Liddell", 512, "memberOf: "+adGroupDN("devs"), "physicalDeliveryOfficeName: Oxford",
			"proxyAddresses: SMTP:alice@example.com", "proxyAddresses: smtp:al@example.com",
			"legacyExchangeDN: /o=Example/ou=Exchange Administrative Group/cn=Recipients/cn=alice"),
		adUser("bob", "Bob", "Builder", 514, "memberOf: "+adGroupDN("ops")), // disabled
		adUser("carol", "Carol", "Smith", 66048, "memberOf: "+adGroupDN("admins"), "title: Sales Manager"),
		adUser("john", "John", "Smithers", 512),
		adUser("smithj", "Smith", "Johnson", 512),
		// A contact: a person of category Person, not a user.
		entry("CN=dora,OU=Staff,"+adBase, "objectClass: top", "objectClass: person", "objectClass: organizationalPerson",
			"objectClass: contact", adCategory("Person"), "cn: dora", "name: dora", "givenName: Dora", "sn: Explorer",
			"mail: dora@partner.example"),
		// A computer: a user by class, of category Computer.
		entry("CN=WS01,OU=Staff,"+adBase, append(append([]string{}, adUserClasses...), "objectClass: computer",
			adCategory("Computer"), "cn: WS01", "name: WS01", "sAMAccountName: WS01$", "userAccountControl: 4096",
			"dNSHostName: ws01.example.com")...),
		adGroup("devs", adGlobalSecurity, "member: "+adUserDN("alice"), "member: "+adGroupDN("admins"), "memberOf: "+adGroupDN("all")),
		adGroup("admins", adGlobalSecurity, "member: "+adUserDN("carol"), "memberOf: "+adGroupDN("devs")),
		adGroup("ops", adGlobalSecurity, "member: "+adUserDN("bob"), "memberOf: "+adGroupDN("all")),
		adGroup("all", adGlobalSecurity, "member: "+adGroupDN("devs"), "member: "+adGroupDN("ops")),
		adGroup("loop1", adGlobalSecurity, "member: "+adGroupDN("loop2"), "memberOf: "+adGroupDN("loop2")),
		adGroup("loop2", adGlobalSecurity, "member: "+adGroupDN("loop1"), "memberOf: "+adGroupDN("loop1")),
		adGroup("newsletter", adGlobalDistribution, "member: "+adUserDN("john")),
	}
}

// domainTree is a tree of adEntries matched with sch (nil: the built-in schema), with
// the active-directory conventions unless opts say otherwise.
func domainTree(t testing.TB, sch *Schema, opts ...TreeOption) *Tree {
	t.Helper()
	if opts == nil {
		opts = []TreeOption{WithActiveDirectory(ADOptions{})}
	}
	tree, err := NewTreeSchema(sch, []string{adBase}, adEntries(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// adSchema is the schema of adEntries as Active Directory publishes it in its
// subschema subentry (CN=Aggregate): syntaxes and no matching rules, name an attribute
// of its own rather than the supertype of cn and sn.
func adSchema(t testing.TB) *Schema {
	t.Helper()
	const (
		str  = "'1.3.6.1.4.1.1466.115.121.1.15'"
		dn   = "'1.3.6.1.4.1.1466.115.121.1.12'"
		num  = "'1.3.6.1.4.1.1466.115.121.1.27'"
		oct  = "'1.3.6.1.4.1.1466.115.121.1.40'"
		oid  = "'1.3.6.1.4.1.1466.115.121.1.38'"
		telx = "'1.2.840.113556.1.4.905'"
	)
	var d Descriptions
	for _, a := range [][3]string{
		{"2.5.4.0", "objectClass", oid}, {"1.2.840.113556.1.4.782", "objectCategory", dn},
		{"2.5.4.3", "cn", str}, {"1.2.840.113556.1.4.1", "name", str}, {"2.5.4.42", "givenName", str},
		{"2.5.4.4", "sn", str}, {"1.2.840.113556.1.2.13", "displayName", str}, {"2.5.4.12", "title", str},
		{"1.2.840.113556.1.4.221", "sAMAccountName", str}, {"1.2.840.113556.1.4.656", "userPrincipalName", str},
		{"2.5.4.19", "physicalDeliveryOfficeName", str}, {"1.2.840.113556.1.2.210", "proxyAddresses", str},
		{"1.2.840.113556.1.4.655", "legacyExchangeDN", telx}, {"0.9.2342.19200300.100.1.3", "mail", str},
		{"1.2.840.113556.1.4.619", "dNSHostName", str}, {"2.5.4.11", "ou", str}, {"0.9.2342.19200300.100.1.25", "dc", str},
		{"1.2.840.113556.1.4.8", "userAccountControl", num}, {"1.2.840.113556.1.4.750", "groupType", num},
		{"1.2.840.113556.1.4.2", "objectGUID", oct}, {"2.5.4.31", "member", dn}, {"1.2.840.113556.1.2.102", "memberOf", dn},
	} {
		d.AttributeTypes = append(d.AttributeTypes, "( "+a[0]+" NAME '"+a[1]+"' SYNTAX "+a[2]+" )")
	}
	d.ObjectClasses = []string{
		"( 2.5.6.0 NAME 'top' ABSTRACT MUST (objectClass ) )",
		"( 2.5.6.6 NAME 'person' SUP top STRUCTURAL )",
		"( 2.5.6.7 NAME 'organizationalPerson' SUP person STRUCTURAL )",
		"( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL )",
		"( 1.2.840.113556.1.3.30 NAME 'computer' SUP user STRUCTURAL )",
		"( 1.2.840.113556.1.5.15 NAME 'contact' SUP organizationalPerson STRUCTURAL )",
		"( 1.2.840.113556.1.5.8 NAME 'group' SUP top STRUCTURAL )",
		"( 2.5.6.5 NAME 'organizationalUnit' SUP top STRUCTURAL )",
		"( 1.2.840.113556.1.5.66 NAME 'domain' SUP top ABSTRACT )",
		"( 1.2.840.113556.1.5.67 NAME 'domainDNS' SUP domain STRUCTURAL )",
	}
	sch, err := ParseSchema(d, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// adTrees are domainTree matched with the built-in schema and with AD's.
func adTrees(t *testing.T) map[string]*Tree {
	return map[string]*Tree{"built-in schema": domainTree(t, nil), "AD's schema": domainTree(t, adSchema(t))}
}

// adFound runs filter over the whole tree and returns the RDN values of the entries
// found, sorted ("alice bob").
func adFound(t *testing.T, tree *Tree, filter string) string {
	t.Helper()
	w := &collectWriter{}
	searchInto(tree, w, searchRequest(t, adBase, ScopeSubtree, filter, "1.1"))
	if w.result == nil || w.result.Code != 0 {
		t.Fatalf("%s: result %+v", filter, w.result)
	}
	rdns := strings.Fields(rdnsOf(w.dns()))
	for i, r := range rdns {
		_, rdns[i], _ = strings.Cut(r, "=")
	}
	return sortedWords(strings.Join(rdns, " "))
}

const (
	adUsers     = "alice bob carol john smithj"
	adPersons   = adUsers + " dora"
	adGroups    = "admins all devs loop1 loop2 newsletter ops"
	adEverybody = "example Staff Groups WS01 " + adPersons + " " + adGroups
)

// TestADFilters checks the filters that AD-integrated applications send, on AD-shaped
// entries, with the active-directory conventions on: the entries found and the ones not.
func TestADFilters(t *testing.T) {
	trees := adTrees(t)
	for _, c := range []struct{ filter, want string }{
		// objectCategory: a short name stands for its class's default category.
		{"(objectCategory=person)", adPersons},
		{"(objectCategory=Person)", adPersons},
		{"(1.2.840.113556.1.4.782=person)", adPersons}, // objectCategory by its OID
		{"(objectCategory=user)", adPersons},           // user's category is Person: contacts too
		{"(objectCategory=contact)", adPersons},
		{"(objectCategory=inetOrgPerson)", adPersons},
		{"(objectCategory=group)", adGroups},
		{"(objectCategory=computer)", "WS01"},
		{"(objectCategory=organizationalUnit)", "Staff Groups"},
		{"(objectCategory=domainDNS)", "example"},
		{"(objectCategory=domain)", "example"},
		{"(objectCategory=Organizational-Unit)", "Staff Groups"}, // no such class: the category of that CN
		{"(objectCategory=printQueue)", ""},
		{"(objectCategory~=group)", adGroups},
		{"(!(objectCategory=group))", "example Staff Groups WS01 " + adPersons},
		{"(|(objectCategory=group)(objectCategory=computer))", "WS01 " + adGroups},
		// A DN still matches as a DN, in any spelling; a partial one matches nothing.
		{"(objectCategory=CN=Person,CN=Schema,CN=Configuration,DC=example,DC=com)", adPersons},
		{"(objectCategory=cn=person, cn=schema,cn=configuration,dc=EXAMPLE,dc=com)", adPersons},
		{"(objectCategory=CN=Person)", ""},
		{"(objectCategory=*)", adEverybody},
		// objectClass by the entries' own class chains.
		{"(objectClass=user)", adUsers + " WS01"},
		{"(objectClass=person)", adPersons + " WS01"},
		{"(objectClass=organizationalPerson)", adPersons + " WS01"},
		{"(objectClass=group)", adGroups},
		{"(objectClass=computer)", "WS01"},
		{"(objectClass=contact)", "dora"},
		// The usual application filters.
		{"(&(objectCategory=person)(objectClass=user))", adUsers},
		{"(&(objectCategory=person)(objectClass=user)(sAMAccountName=ALICE))", "alice"},
		{"(&(objectClass=user)(objectCategory=computer))", "WS01"},
		{"(sAMAccountName=alice)", "alice"},
		{"(sAMAccountName=WS01$)", "WS01"},
		{"(userPrincipalName=Alice@Example.COM)", "alice"},
		{"(|(sAMAccountName=bob)(userPrincipalName=carol@example.com))", "bob carol"},
		// userAccountControl flags: ACCOUNTDISABLE is 2, DONT_EXPIRE_PASSWORD 65536.
		{"(userAccountControl:1.2.840.113556.1.4.803:=2)", "bob"},
		{"(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))", "alice carol john smithj"},
		{"(userAccountControl:1.2.840.113556.1.4.803:=66048)", "carol"},
		{"(userAccountControl:1.2.840.113556.1.4.804:=65538)", "bob carol"},
		{"(userAccountControl:1.2.840.113556.1.4.803:=4096)", "WS01"},
		{"(userAccountControl=512)", "alice john smithj"},
		// groupType: security groups have the sign bit.
		{"(groupType:1.2.840.113556.1.4.803:=2147483648)", "admins all devs loop1 loop2 ops"},
		{"(&(objectCategory=group)(!(groupType:1.2.840.113556.1.4.803:=2147483648)))", "newsletter"},
		{"(groupType:1.2.840.113556.1.4.804:=2)", adGroups},
		// In-chain membership, through nesting and cycles.
		{"(memberOf:1.2.840.113556.1.4.1941:=" + adGroupDN("all") + ")", "admins devs ops alice bob carol"},
		{"(&(objectCategory=person)(memberOf:1.2.840.113556.1.4.1941:=cn=ALL,ou=groups,dc=example,dc=com))", "alice bob carol"},
		{"(memberOf:1.2.840.113556.1.4.1941:=" + adGroupDN("devs") + ")", "admins alice carol"},
		{"(memberOf:1.2.840.113556.1.4.1941:=" + adGroupDN("loop1") + ")", "loop1 loop2"},
		{"(member:1.2.840.113556.1.4.1941:=" + adUserDN("carol") + ")", "admins all devs"},
		{"(member:1.2.840.113556.1.4.1941:=" + adUserDN("bob") + ")", "all ops"},
		{"(member:1.2.840.113556.1.4.1941:=" + adGroupDN("loop2") + ")", "loop1 loop2"},
		{"(member:1.2.840.113556.1.4.1941:=" + adUserDN("dora") + ")", ""},
		{"(memberOf=" + adGroupDN("devs") + ")", "admins alice"},
	} {
		for name, tree := range trees {
			if got := adFound(t, tree, c.filter); got != sortedWords(c.want) {
				t.Errorf("%s: %s: %q, want %q", name, c.filter, got, sortedWords(c.want))
			}
		}
	}
}

// TestANR checks ambiguous name resolution as [MS-ADTS] 3.1.1.3.1.3.4 rewrites it.
func TestANR(t *testing.T) {
	trees := adTrees(t)
	for _, c := range []struct{ filter, want string }{
		{"(anr=alice)", "alice"},             // sAMAccountName, givenName, displayName, name
		{"(anr=ALI)", "alice"},               // initial substring, caseIgnore
		{"(anr=Lid)", "alice"},               // sn
		{"(anr=Oxford)", "alice"},            // physicalDeliveryOfficeName
		{"(anr=SMTP:al)", "alice"},           // proxyAddresses
		{"(anr=smtp:al@)", "alice"},          // the other proxy address
		{"(anr=WS01)", "WS01"},               // sAMAccountName WS01$, name
		{"(anr=devs)", "devs"},               // groups by sAMAccountName and name
		{"(anr=Dora)", "dora"},               // a contact by givenName
		{"(anr=John)", "john smithj"},        // givenName John, sn Johnson
		{"(anr==John)", "john"},              // "=": exact, givenName only
		{"(anr= =john )", "john"},            // spaces around are not significant
		{"(anr=Smith)", "carol john smithj"}, // sn Smith and Smithers, givenName Smith
		{"(anr==Smith)", "carol smithj"},     // exact: sn Smith, givenName Smith
		{"(anr=John Sm)", "john smithj"},     // givenName John + sn Sm*, and givenName Sm* + sn John*
		{"(anr=Sm John)", "john smithj"},     // both orders
		{"(anr=John  Smithers)", "john"},     // more spaces between the parts
		{"(anr==John Smith)", ""},            // exact: no John Smith, nor Smith John
		{"(anr==Smith Johnson)", "smithj"},   // exact in one order
		{"(anr==Johnson Smith)", "smithj"},   // and in the other
		{"(anr=Carol Liddell)", ""},          // both parts, of two people
		{"(anr=Alice Lid)", "alice"},         // displayName prefix as well
		{"(anr=Sales)", ""},                  // title is no ANR attribute, name is not its supertype
		{"(anr=Staff)", "Staff"},             // the OU by its name
		{"(anr=nobody)", ""},                 //
		{"(anr=al*)", "alice all"},           // a substrings item is its initial part
		{"(anr=ali*zzz)", "alice"},           //
		{"(!(anr=*lice))", ""},               // no initial part: Undefined
		{"(anr~=alice)", "alice"},            // approximate, ordering: the same as equality
		{"(anr>=alice)", "alice"},            //
		{"(anr<=alice)", "alice"},            //
		{"(anr=*)", ""},                      // presence: False
		{"(!(anr=*))", adEverybody},          //
		{"(!(anr=))", ""},                    // no value: Undefined
		{"(!(anr=alice))", strings.Replace(adEverybody, "alice", "", 1)},
		{"(ANR=alice)", "alice"},                     // the name is case-insensitive
		{"(1.2.840.113556.1.4.1208=alice)", "alice"}, // and has an OID
		{"(anr=/o=Example/ou=Exchange Administrative Group/cn=Recipients/cn=alice)", "alice"},
		{"(anr=/o=Example)", ""}, // legacyExchangeDN is compared whole
		{"(&(objectCategory=person)(objectClass=user)(anr=smith))", "carol john smithj"},
	} {
		for name, tree := range trees {
			if got := adFound(t, tree, c.filter); got != sortedWords(c.want) {
				t.Errorf("%s: %s: %q, want %q", name, c.filter, got, sortedWords(c.want))
			}
		}
	}
}

// TestADConventionsOff checks that the conventions are those of the active-directory
// preset only: without them, objectCategory is a DN like any other and aNR an unknown
// attribute.
func TestADConventionsOff(t *testing.T) {
	tree := domainTree(t, nil, func(*Tree) {})
	for _, c := range []struct{ filter, want string }{
		{"(objectCategory=person)", ""},
		{"(!(objectCategory=person))", ""}, // not a DN: Undefined
		{"(objectCategory=CN=Person,CN=Schema,CN=Configuration,DC=example,DC=com)", adPersons},
		{"(anr=alice)", ""},
		{"(!(anr=alice))", ""},
		{"(&(objectClass=user)(sAMAccountName=alice))", "alice"},
		{"(userAccountControl:1.2.840.113556.1.4.803:=2)", "bob"},
		{"(member:1.2.840.113556.1.4.1941:=" + adUserDN("carol") + ")", "admins all devs"},
	} {
		if got := adFound(t, tree, c.filter); got != sortedWords(c.want) {
			t.Errorf("%s: %q, want %q", c.filter, got, sortedWords(c.want))
		}
	}
}

// TestADSchemaNamingContext checks where the category DNs come from: the option, else
// the entries' objectCategory values, learned by a later version when the first has
// none.
func TestADSchemaNamingContext(t *testing.T) {
	other := domainTree(t, nil, WithActiveDirectory(ADOptions{SchemaNamingContext: "CN=Schema,CN=Configuration,DC=other,DC=com"}))
	if got := adFound(t, other, "(objectCategory=person)"); got != "" {
		t.Errorf("another forest's schema: %q, want nothing", got)
	}
	same := domainTree(t, nil, WithActiveDirectory(ADOptions{SchemaNamingContext: "cn=schema,cn=configuration,dc=example,dc=com"}))
	if got, want := adFound(t, same, "(objectCategory=group)"), sortedWords(adGroups); got != want {
		t.Errorf("the option's schema: %q, want %q", got, want)
	}

	// A tree that starts with the domain alone, without objectCategory, learns the
	// schema from the entries a batch adds.
	all := adEntries()
	bare := entry(adBase, "objectClass: top", "objectClass: domain", "dc: example")
	tree, err := NewTree([]string{adBase}, []*Entry{bare}, WithActiveDirectory(ADOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := adFound(t, tree, "(objectCategory=person)"); got != "" {
		t.Errorf("no category known: %q", got)
	}
	var changes []Change
	for _, e := range all[1:] {
		changes = append(changes, Change{Entry: e})
	}
	next, err := tree.Apply(changes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := adFound(t, next, "(objectCategory=person)"), sortedWords(adPersons); got != want {
		t.Errorf("after the batch: %q, want %q", got, want)
	}
	if got := adFound(t, next, "(anr=john sm)"); got != "john smithj" {
		t.Errorf("after the batch, ANR: %q", got)
	}
}

// TestADCategoryIndex checks that (objectCategory=user) is answered from the index:
// its candidates are the persons, not every entry.
func TestADCategoryIndex(t *testing.T) {
	for name, tree := range adTrees(t) {
		p, err := tree.compileFilter(mustFilterElement(t, "(objectCategory=user)"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Fields(adPersons)); !p.indexed || len(p.cands) != n {
			t.Errorf("%s: indexed %v, %d candidates, want the %d persons", name, p.indexed, len(p.cands), n)
		}
	}
}

// TestADObjectGUID checks objectGUID: 16 bytes compared byte for byte, with AD's schema
// and with the built-in one.
func TestADObjectGUID(t *testing.T) {
	trees := adTrees(t)
	for _, c := range []struct{ filter, want string }{
		{`(objectGUID=\41\61\00\01\02\03\04\05\06\07\08\09\0a\0b\0c\61)`, "alice"},
		{`(objectGUID=\61\41\00\01\02\03\04\05\06\07\08\09\0a\0b\0c\61)`, ""},
		{`(objectGUID=\41\61\00\01\02\03\04\05\06\07\08\09\0a\0b\0c\41)`, ""},
		{`(objectGUID=\41\61\00\01\02\03\04\05\06\07\08\09\0A\0B\0C\6A)`, "john"},
	} {
		for name, tree := range trees {
			if got := adFound(t, tree, c.filter); got != c.want {
				t.Errorf("%s: %s: %q, want %q", name, c.filter, got, c.want)
			}
		}
	}
}

// BenchmarkADFilters runs the filters AD clients send over 10,000 AD-shaped users:
// the enabled users of a category (indexed), one account by name, and an ANR search
// (a scan of every entry).
func BenchmarkADFilters(b *testing.B) {
	entries := adEntries()
	for i := range 10000 {
		name := fmt.Sprintf("user%04d", i)
		entries = append(entries, adUser(name, "Given"+name, fmt.Sprintf("Surname%04d", i), 512))
	}
	tree, err := NewTree([]string{adBase}, entries, WithActiveDirectory(ADOptions{}))
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{
		"(&(objectCategory=person)(objectClass=user)(sAMAccountName=user0042))",
		"(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
		"(anr=surname004)",
		"(anr=given sur)",
	} {
		b.Run(f, func(b *testing.B) {
			req := searchRequest(b, adBase, ScopeSubtree, f, "1.1")
			w := &discardWriter{}
			b.ReportAllocs()
			for b.Loop() {
				searchInto(tree, w, req)
			}
		})
	}
}
