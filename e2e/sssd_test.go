package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// The attributes SSSD's LDAP provider asks for (src/providers/ldap/sdap.c's default
// maps, rfc2307bis schema) when it looks a user or a group up.
var (
	sssdUserAttrs = []string{"objectClass", "uid", "userPassword", "uidNumber", "gidNumber", "gecos",
		"homeDirectory", "loginShell", "krbPrincipalName", "cn", "memberOf", "modifyTimestamp",
		"modifyTimestamp", "shadowLastChange", "shadowMin", "shadowMax", "shadowWarning",
		"shadowInactive", "shadowExpire", "shadowFlag", "krbLastPwdChange", "krbPasswordExpiration",
		"pwdAttribute", "authorizedService", "accountExpires", "userAccountControl", "nsAccountLock",
		"host", "rhost", "loginDisabled", "loginExpirationTime", "loginAllowedTimeMap",
		"sshPublicKey", "userCertificate;binary", "mail"}
	sssdGroupAttrs = []string{"objectClass", "cn", "userPassword", "gidNumber", "member",
		"modifyTimestamp", "modifyTimestamp", "nsUniqueId", "ipaUniqueID", "memberUid"}
)

// sudoSchema declares the sudoRole class of sudo's LDAP schema (its registered OIDs),
// with the attributes SSSD's sudo provider reads.
const sudoSchema = `
attributetype ( 1.3.6.1.4.1.15953.9.1.1 NAME 'sudoUser' EQUALITY caseExactIA5Match
  SUBSTR caseExactIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.15953.9.1.2 NAME 'sudoHost' EQUALITY caseExactIA5Match
  SUBSTR caseExactIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.15953.9.1.3 NAME 'sudoCommand' EQUALITY caseExactIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.15953.9.1.5 NAME 'sudoOption' EQUALITY caseExactIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.15953.9.1.6 NAME 'sudoRunAsUser' EQUALITY caseExactIA5Match
  SUBSTR caseExactIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( 1.3.6.1.4.1.15953.9.1.10 NAME 'sudoOrder' EQUALITY integerMatch
  ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.15953.9.2.1 NAME 'sudoRole' SUP top STRUCTURAL
  MUST cn MAY ( sudoUser $ sudoHost $ sudoCommand $ sudoOption $ sudoRunAsUser $ sudoOrder $ description ) )
`

// sudoRules are sudo rules under ou=sudoers, as an administrator writes them.
const sudoRules = `
dn: ou=sudoers,dc=example,dc=org
objectClass: organizationalUnit
ou: sudoers

dn: cn=defaults,ou=sudoers,dc=example,dc=org
objectClass: sudoRole
cn: defaults
sudoOption: !requiretty

dn: cn=admins,ou=sudoers,dc=example,dc=org
objectClass: sudoRole
cn: admins
sudoUser: %group001
sudoHost: ALL
sudoCommand: ALL
sudoOrder: 10

dn: cn=backup,ou=sudoers,dc=example,dc=org
objectClass: sudoRole
cn: backup
sudoUser: user0016
sudoHost: db1.example.org
sudoCommand: /usr/bin/rsync
sudoRunAsUser: root
sudoOrder: 20
`

// SSSD, configured for the directory (id_provider = ldap, ldap_schema = rfc2307bis,
// ldap_group_object_class = groupOfNames), pointed at the proxy in cached mode instead:
// the search sequence it sends to resolve a user, its groups and their members, and to
// enumerate, gets the same entries with the same values as from slapd itself, and the
// user logs in.
func TestSSSDSequence(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 60, Groups: 6, MemberOf: true, ExtraSchema: sudoSchema, ExtraLDIF: sudoRules})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": `  enabled: true
  interval: 1h
  extra:
    - {name: sudo, base_dn: ou=sudoers, filter: (objectClass=sudoRole)}`}))
	waitSynced(t, p, up)

	direct, proxied := asService(t, up, up.URL), asService(t, up, p.URL)
	search := func(base string, scope int, filter string, attrs []string) *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	}

	// The root DSE: SSSD reads the naming contexts to find the search base.
	rootDSE := search("", ldap.ScopeBaseObject, "(objectclass=*)", []string{"*", "altServer", "namingContexts",
		"supportedControl", "supportedExtension", "supportedFeatures", "supportedLDAPVersion",
		"supportedSASLMechanisms", "domainControllerFunctionality", "defaultNamingContext", "lastUSN",
		"highestCommittedUSN"})
	w, g := ask(direct, rootDSE, 0), ask(proxied, rootDSE, 0)
	if w.code != 0 || g.code != 0 || strings.Join(g.entries[""]["namingcontexts"], ";") != strings.Join(w.entries[""]["namingcontexts"], ";") {
		t.Errorf("root DSE naming contexts %q (code %d), want %q", g.entries[""]["namingcontexts"], g.code, w.entries[""]["namingcontexts"])
	}

	const user = 16 // in group006 and, as every tenth user, in no other (group006 is the last)
	name := slapdtest.UserName(user)

	// getent passwd user0016
	byName := sameAnswer(t, "user by name", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(uid=%s)(objectclass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))", name), sssdUserAttrs), 0)
	entry := byName.entries[strings.ToLower(up.UserDN(user))]
	if len(byName.entries) != 1 || entry == nil {
		t.Fatalf("slapd found %d entries for %s", len(byName.entries), name)
	}
	for _, a := range []string{"uidnumber", "gidnumber", "homedirectory", "loginshell", "gecos", "memberof", "modifytimestamp"} {
		if len(entry[a]) == 0 {
			t.Errorf("the test directory's user has no %s: the comparison would prove little", a)
		}
	}

	// The primary group, by the user's gidNumber.
	gid := entry["gidnumber"][0]
	primary := sameAnswer(t, "primary group", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(gidNumber=%s)(objectClass=groupOfNames)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", gid), sssdGroupAttrs), 0)
	if len(primary.entries) != 1 {
		t.Errorf("slapd found %d groups with gidNumber %s, want 1", len(primary.entries), gid)
	}

	// id user0016: the groups the user is a member of (initgroups, rfc2307bis).
	initgroups := sameAnswer(t, "initgroups", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(member=%s)(objectClass=groupOfNames)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", ldap.EscapeFilter(up.UserDN(user))),
		[]string{"objectClass", "cn", "userPassword", "gidNumber", "modifyTimestamp", "modifyTimestamp", "nsUniqueId", "ipaUniqueID"}), 0)
	if len(initgroups.entries) != len(up.UserGroups(user)) {
		t.Errorf("slapd found %d groups of %s, want %d", len(initgroups.entries), name, len(up.UserGroups(user)))
	}

	// getent group group001, then each member by a base search.
	group := sameAnswer(t, "group by name", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(cn=%s)(objectClass=groupOfNames)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", slapdtest.GroupName(1)), sssdGroupAttrs), 0)
	members := group.entries[strings.ToLower(up.GroupDN(1))]["member"]
	if len(members) < 10 {
		t.Fatalf("group001 has %d members in slapd", len(members))
	}
	for _, m := range members {
		sameAnswer(t, "member "+m, direct, proxied, search(m, ldap.ScopeBaseObject, "(objectClass=posixAccount)", sssdUserAttrs), 0)
	}

	// getent passwd with enumerate = true: every user, paged at 1,000.
	all := sameAnswer(t, "enumeration", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(objectclass=posixAccount)(uid=*)(uidNumber=*)(gidNumber=*))", sssdUserAttrs), 1000)
	if len(all.entries) != 60 {
		t.Errorf("enumeration: slapd found %d users, want 60", len(all.entries))
	}
	sameAnswer(t, "group enumeration", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(objectclass=groupOfNames)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", sssdGroupAttrs), 1000)

	// sudo -l on host db1: the rules for this host (SSSD's sudo provider, full refresh).
	sudo := sameAnswer(t, "sudo rules", direct, proxied, search("ou=sudoers,"+up.Suffix, ldap.ScopeWholeSubtree,
		`(&(objectClass=sudoRole)(|(!(sudoHost=*))(sudoHost=ALL)(sudoHost=db1)(sudoHost=db1.example.org)(sudoHost=127.0.0.1)(sudoHost=+*)(|(sudoHost=*\5C*)(sudoHost=*?*)(sudoHost=*\2A*)(sudoHost=*[*]*))))`,
		[]string{"objectClass", "cn", "sudoCommand", "sudoHost", "sudoUser", "sudoOption", "sudoRunAs", "sudoRunAsUser",
			"sudoRunAsGroup", "sudoNotBefore", "sudoNotAfter", "sudoOrder", "modifyTimestamp", "entryUSN"}), 0)
	if len(sudo.entries) != 3 {
		t.Errorf("slapd found %d sudo rules for db1, want 3", len(sudo.entries))
	}

	// The login: SSSD binds as the user's DN with the password on a connection of its own.
	login := dial(t, p.URL)
	if err := login.Bind(up.UserDN(user), slapdtest.UserPassword(user)); err != nil {
		t.Errorf("login through the proxy: %v", err)
	}
	if err := login.Bind(up.UserDN(user), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Errorf("wrong password: %v, want invalidCredentials", err)
	}
}

// posixGroups are RFC 2307 groups (posixGroup, members by memberUid) for the test
// directory's users, as ldap_schema = rfc2307 expects them.
func posixGroups(suffix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: ou=posix,%s\nobjectClass: organizationalUnit\nou: posix\n\n", suffix)
	for g := 1; g <= 4; g++ {
		fmt.Fprintf(&b, "dn: cn=team%d,ou=posix,%s\nobjectClass: posixGroup\ncn: team%d\ngidNumber: %d\n", g, suffix, g, 30000+g)
		for u := g; u <= 40; u += 4 {
			fmt.Fprintf(&b, "memberUid: %s\n", slapdtest.UserName(u))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestSSSDSequenceRFC2307 is TestSSSDSequence for SSSD configured with ldap_schema =
// rfc2307: POSIX groups list their members by user name (memberUid), and the proxy syncs
// them with membership_field memberUid.
func TestSSSDSequenceRFC2307(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 40, Groups: -1, ExtraLDIF: posixGroups(slapdtest.DefaultSuffix)})
	p := startProxy(t, config(up, map[string]string{"mode": "cached", "sync": `  enabled: true
  interval: 1h
  group_filter: (objectClass=posixGroup)
  membership_field: memberUid`}))
	waitSynced(t, p, up)
	direct, proxied := asService(t, up, up.URL), asService(t, up, p.URL)
	search := func(base string, scope int, filter string, attrs []string) *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	}
	groupAttrs := []string{"objectClass", "cn", "userPassword", "gidNumber", "memberUid", "modifyTimestamp", "modifyTimestamp"}
	name := slapdtest.UserName(6) // in team2

	byName := sameAnswer(t, "user by name", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(uid=%s)(objectclass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))", name), sssdUserAttrs), 0)
	if len(byName.entries) != 1 {
		t.Fatalf("slapd found %d entries for %s", len(byName.entries), name)
	}
	initgroups := sameAnswer(t, "initgroups", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		fmt.Sprintf("(&(memberUid=%s)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", name), groupAttrs), 0)
	if len(initgroups.entries) != 1 {
		t.Errorf("slapd found %d groups of %s, want 1", len(initgroups.entries), name)
	}
	group := sameAnswer(t, "group by name", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(cn=team2)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", groupAttrs), 0)
	members := group.entries["cn=team2,ou=posix,dc=example,dc=org"]["memberuid"]
	if len(members) != 10 {
		t.Fatalf("team2 has %d members in slapd", len(members))
	}
	for _, m := range members { // each member by name, as SSSD resolves memberUid
		sameAnswer(t, "member "+m, direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
			fmt.Sprintf("(&(uid=%s)(objectclass=posixAccount))", m), sssdUserAttrs), 0)
	}
	sameAnswer(t, "primary group", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(gidNumber=30002)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", groupAttrs), 0)
	sameAnswer(t, "group enumeration", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(objectclass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", groupAttrs), 1000)
	if all := sameAnswer(t, "enumeration", direct, proxied, search(up.Suffix, ldap.ScopeWholeSubtree,
		"(&(objectclass=posixAccount)(uid=*)(uidNumber=*)(gidNumber=*))", sssdUserAttrs), 1000); len(all.entries) != 40 {
		t.Errorf("enumeration: slapd found %d users, want 40", len(all.entries))
	}
	login := dial(t, p.URL)
	if err := login.Bind(up.UserDN(6), slapdtest.UserPassword(6)); err != nil {
		t.Errorf("login through the proxy: %v", err)
	}
}
