package sambatest

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"
)

// userAccountControl flags (MS-ADTS 2.2.16).
const (
	uacAccountDisable     = 0x2
	uacNormalAccount      = 0x200
	uacDontExpirePassword = 0x10000
)

// User is an account of the sample data.
type User struct {
	// SAMAccountName is the pre-Windows 2000 logon name, the one DOMAIN\name binds use.
	SAMAccountName string
	// UPN is the userPrincipalName; jsmith's differs from its sAMAccountName.
	UPN string
	// GivenName, SN, DisplayName, Mail and Phone are givenName, sn, displayName, mail
	// and telephoneNumber; the service account has no givenName, sn or phone.
	GivenName, SN, DisplayName, Mail, Phone string
	// Password is the account's password.
	Password string
	// Disabled marks an account whose userAccountControl is 514
	// (ACCOUNTDISABLE|NORMAL_ACCOUNT): it cannot bind.
	Disabled bool
	// Expired marks an account whose accountExpires lies in the past: it cannot bind.
	Expired bool
	// UIDNumber is the RFC 2307 uidNumber; every user's gidNumber is DomainUsersGID.
	UIDNumber int
	// DN is the entry's distinguished name.
	DN string

	parent string // RDNs under the base DN
}

// Group is a global security group of the sample data.
type Group struct {
	// Name is both cn and sAMAccountName.
	Name string
	// GIDNumber is the RFC 2307 gidNumber.
	GIDNumber int
	// Members are the sAMAccountNames of the direct members, users or groups.
	Members []string
	// DN is the entry's distinguished name.
	DN string
}

// DomainUsersGID is the gidNumber every sample user carries.
const DomainUsersGID = 10000

const (
	ouStaff       = "OU=Staff"
	ouEngineering = "OU=Engineering,OU=Staff"
	ouGroups      = "OU=Groups"
	ouServices    = "OU=Service Accounts"
)

// organizationalUnits are made parents first.
var organizationalUnits = []string{ouStaff, ouEngineering, ouGroups, ouServices}

// ServiceAccount is the sAMAccountName of the read-only account a proxy binds as.
const ServiceAccount = "svc-ldapproxy"

// sampleUsers returns the users, without DNs.
func sampleUsers() []User {
	users := []User{
		{SAMAccountName: "alice", UPN: "alice@example.org", GivenName: "Alice", SN: "Adams", Mail: "alice@example.org", Phone: "+1 555 0101", parent: ouEngineering},
		{SAMAccountName: "jsmith", UPN: "john.smith@example.org", GivenName: "John", SN: "Smith", Mail: "john.smith@example.org", Phone: "+1 555 0102", parent: ouEngineering},
		{SAMAccountName: "bob", UPN: "bob@example.org", GivenName: "Bob", SN: "Brown", Mail: "bob@example.org", Phone: "+1 555 0103", parent: ouStaff},
		{SAMAccountName: "asmithers", UPN: "anna.smithers@example.org", GivenName: "Anna", SN: "Smithers", Mail: "anna.smithers@example.org", Phone: "+1 555 0104", parent: ouStaff},
		{SAMAccountName: "carol", UPN: "carol@example.org", GivenName: "Carol", SN: "Clark", Mail: "carol@example.org", Phone: "+1 555 0105", parent: ouStaff, Disabled: true},
		{SAMAccountName: "dave", UPN: "dave@example.org", GivenName: "Dave", SN: "Dunn", Mail: "dave@example.org", Phone: "+1 555 0106", parent: ouStaff, Expired: true},
		{SAMAccountName: ServiceAccount, UPN: ServiceAccount + "@example.org", DisplayName: "LDAP proxy service", Mail: "ldapproxy@example.org", parent: ouServices},
	}
	for i := range users {
		u := &users[i]
		if u.DisplayName == "" {
			u.DisplayName = u.GivenName + " " + u.SN
		}
		// Samba's default policy wants three character classes and no part of the
		// account or display name in the password.
		u.Password = fmt.Sprintf("Horse-%d-Battery!", i+1)
		u.UIDNumber = 10001 + i
	}
	return users
}

// sampleGroups returns the groups, without DNs. "All Staff" has Engineering as a
// member, and "VPN Users" has "All Staff": alice is in VPN Users two levels down.
func sampleGroups() []Group {
	return []Group{
		{Name: "Engineering", GIDNumber: 10101, Members: []string{"alice", "jsmith"}},
		{Name: "All Staff", GIDNumber: 10102, Members: []string{"bob", "asmithers", "carol", "dave", "Engineering"}},
		{Name: "VPN Users", GIDNumber: 10103, Members: []string{"All Staff"}},
	}
}

// unicodePwd encodes a password the way AD takes it: in double quotes, UTF-16LE.
func unicodePwd(password string) string {
	units := utf16.Encode([]rune(`"` + password + `"`))
	b := make([]byte, 2*len(units))
	for i, u := range units {
		binary.LittleEndian.PutUint16(b[2*i:], u)
	}
	return string(b)
}

// fileTime is t in Windows FILETIME units (100 ns since 1601), as accountExpires takes it.
func fileTime(t time.Time) string {
	const epochDiff = 116444736000000000 // 1601-01-01 to 1970-01-01 in 100 ns
	return strconv.FormatInt(t.UnixNano()/100+epochDiff, 10)
}

// assignDNs sets the DNs of the sample users and groups.
func (s *Server) assignDNs() {
	for i := range s.Users {
		u := &s.Users[i]
		u.DN = "CN=" + ldap.EscapeDN(u.DisplayName) + "," + u.parent + "," + s.BaseDN
	}
	for i := range s.Groups {
		g := &s.Groups[i]
		g.DN = "CN=" + ldap.EscapeDN(g.Name) + "," + ouGroups + "," + s.BaseDN
	}
}

// fill adds the organizational units, users and groups over conn, bound as the
// Administrator over TLS (AD takes unicodePwd only on an encrypted connection).
func (s *Server) fill(conn *ldap.Conn) error {
	// AD's default minimum password age (one day) would refuse every user's change of
	// their own password in a test, and its maximum (42 days) would expire the sample
	// passwords of a template kept that long: 0 turns both off.
	policy := ldap.NewModifyRequest(s.BaseDN, nil)
	policy.Replace("minPwdAge", []string{"0"})
	policy.Replace("maxPwdAge", []string{"0"})
	if err := conn.Modify(policy); err != nil {
		return fmt.Errorf("password ages: %w", err)
	}
	for _, ou := range organizationalUnits {
		dn := ou + "," + s.BaseDN
		req := ldap.NewAddRequest(dn, nil)
		req.Attribute("objectClass", []string{"top", "organizationalUnit"})
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("add %s: %w", dn, err)
		}
	}
	byName := map[string]string{}
	for _, u := range s.Users {
		byName[u.SAMAccountName] = u.DN
	}
	for _, g := range s.Groups {
		byName[g.Name] = g.DN
	}
	for _, u := range s.Users {
		uac := uacNormalAccount
		if u.Disabled {
			uac |= uacAccountDisable
		}
		if u.SAMAccountName == ServiceAccount {
			uac |= uacDontExpirePassword
		}
		req := ldap.NewAddRequest(u.DN, nil)
		req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "user"})
		req.Attribute("sAMAccountName", []string{u.SAMAccountName})
		req.Attribute("userPrincipalName", []string{u.UPN})
		req.Attribute("displayName", []string{u.DisplayName})
		req.Attribute("mail", []string{u.Mail})
		for attr, v := range map[string]string{"givenName": u.GivenName, "sn": u.SN, "telephoneNumber": u.Phone} {
			if v != "" {
				req.Attribute(attr, []string{v})
			}
		}
		req.Attribute("uidNumber", []string{strconv.Itoa(u.UIDNumber)})
		req.Attribute("gidNumber", []string{strconv.Itoa(DomainUsersGID)})
		req.Attribute("unixHomeDirectory", []string{"/home/" + u.SAMAccountName})
		req.Attribute("loginShell", []string{"/bin/bash"})
		req.Attribute("unicodePwd", []string{unicodePwd(u.Password)})
		req.Attribute("userAccountControl", []string{strconv.Itoa(uac)})
		if u.Expired {
			req.Attribute("accountExpires", []string{fileTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))})
		}
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("add %s: %w", u.DN, err)
		}
	}
	for _, g := range s.Groups {
		var members []string
		for _, m := range g.Members {
			members = append(members, byName[m])
		}
		req := ldap.NewAddRequest(g.DN, nil)
		req.Attribute("objectClass", []string{"top", "group"})
		req.Attribute("sAMAccountName", []string{g.Name})
		req.Attribute("groupType", []string{strconv.Itoa(int(globalSecurityGroup))})
		req.Attribute("gidNumber", []string{strconv.Itoa(g.GIDNumber)})
		req.Attribute("description", []string{g.Name + " group"})
		req.Attribute("member", members)
		if err := conn.Add(req); err != nil {
			return fmt.Errorf("add %s: %w", g.DN, err)
		}
	}
	return nil
}

// globalSecurityGroup is groupType GLOBAL_GROUP|SECURITY_ENABLED as the signed 32-bit
// integer AD stores.
const globalSecurityGroup = int32(-2147483646)
