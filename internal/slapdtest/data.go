package slapdtest

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// UserName returns the uid of sample user i (1-based): "user0001".
func UserName(i int) string { return fmt.Sprintf("user%04d", i) }

// UserPassword returns the password of sample user i (1-based): "pass-user0001".
func UserPassword(i int) string { return "pass-" + UserName(i) }

// GroupName returns the cn of sample group i (1-based): "group001".
func GroupName(i int) string { return fmt.Sprintf("group%03d", i) }

// UserDN returns the DN of sample user i (1-based).
func (s *Server) UserDN(i int) string { return "uid=" + UserName(i) + "," + s.PeopleDN }

// GroupDN returns the DN of sample group i (1-based).
func (s *Server) GroupDN(i int) string { return "cn=" + GroupName(i) + "," + s.GroupsDN }

// UserGroups returns the groups (1-based indexes) that list sample user i as
// a direct member; see Options.Groups for the rule.
func (s *Server) UserGroups(i int) []int { return userGroups(i, s.Groups) }

func userGroups(user, groups int) []int {
	if groups <= 0 {
		return nil
	}
	g := []int{(user-1)%groups + 1}
	if user%10 == 0 && g[0] != groups {
		g = append(g, groups)
	}
	return g
}

// SSHA returns password hashed as OpenLDAP's {SSHA} scheme with a random
// salt: base64(sha1(password+salt)+salt).
func SSHA(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt) // crypto/rand.Read never returns an error (it crashes instead)
	h := sha1.New()
	h.Write([]byte(password))
	h.Write(salt)
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h.Sum(nil), salt...))
}

// writeData writes the LDIF slapadd loads: the suffix, the three OUs, the
// service account, the sample users and groups, then opts.ExtraLDIF.
func (s *Server) writeData(w io.Writer, opts Options) error {
	top, err := suffixEntry(s.Suffix)
	if err != nil {
		return err
	}
	b := bufio.NewWriterSize(w, 1<<20)
	b.WriteString(top)
	for _, ou := range []string{s.PeopleDN, s.GroupsDN, s.servicesDN()} {
		name := strings.TrimPrefix(strings.SplitN(ou, ",", 2)[0], "ou=")
		fmt.Fprintf(b, "dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n", ou, name)
	}
	fmt.Fprintf(b, "dn: %s\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: svc\n"+
		"description: service account for ldapproxy\nuserPassword: %s\n\n", s.ServiceDN, SSHA(s.ServicePassword))

	changed := ""
	if opts.PasswordPolicy {
		fmt.Fprintf(b, "dn: ou=policies,%s\nobjectClass: organizationalUnit\nou: policies\n\n", s.Suffix)
		fmt.Fprintf(b, "dn: %s\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: default\n"+
			"pwdAttribute: userPassword\npwdMinLength: %d\npwdCheckQuality: 1\n\n", s.policyDN(), PolicyMinLength)
		// slapadd bypasses the overlay, so give loaded users the
		// pwdChangedTime a password set through slapd would have.
		changed = time.Now().UTC().Format("20060102150405Z")
	}

	domain := mailDomain(s.Suffix)
	members := make([][]string, s.Groups+1)
	for i := 1; i <= s.Users; i++ {
		name := UserName(i)
		num := strings.TrimPrefix(name, "user")
		fmt.Fprintf(b, "dn: %s\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"+
			"uid: %s\ncn: User %s\nsn: %s\ngivenName: User\ndisplayName: User %s\nmail: %s@%s\n"+
			"uidNumber: %d\ngidNumber: %d\nhomeDirectory: /home/%s\nloginShell: /bin/bash\ngecos: User %s\n"+
			"telephoneNumber: +1 555 %07d\nuserPassword: %s\n",
			s.UserDN(i), name, num, num, num, name, domain, 10000+i, primaryGID(i, s.Groups), name, num, i, SSHA(UserPassword(i)))
		if i > 1 {
			fmt.Fprintf(b, "manager: %s\n", s.UserDN(1))
		}
		if i%10 == 0 {
			// A binary value, as photos and certificates are: bytes no string rule fits.
			fmt.Fprintf(b, "jpegPhoto:: %s\n", base64.StdEncoding.EncodeToString([]byte{0xff, 0xd8, 0xff, 0xe0, 0, byte(i), byte(i >> 8), 0x80, 0xd9}))
		}
		if changed != "" {
			fmt.Fprintf(b, "pwdChangedTime: %s\n", changed)
		}
		for _, g := range userGroups(i, s.Groups) {
			members[g] = append(members[g], s.UserDN(i))
			if opts.MemberOf {
				fmt.Fprintf(b, "memberOf: %s\n", s.GroupDN(g))
			}
		}
		b.WriteString("\n")
	}
	if s.Groups >= 2 {
		members[1] = append(members[1], s.GroupDN(2))
	}
	for g := 1; g <= s.Groups; g++ {
		// gidNumber makes each group a POSIX group as well (rfc2307bis style; the
		// nis schema's posixGroup is structural, so extensibleObject carries it).
		fmt.Fprintf(b, "dn: %s\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: %s\ndescription: sample group %d\ngidNumber: %d\n",
			s.GroupDN(g), GroupName(g), g, GroupGID(g))
		for _, m := range members[g] {
			fmt.Fprintf(b, "member: %s\n", m)
		}
		if g == 2 && opts.MemberOf {
			fmt.Fprintf(b, "memberOf: %s\n", s.GroupDN(1))
		}
		b.WriteString("\n")
	}
	if opts.ExtraLDIF != "" {
		b.WriteString(strings.TrimSpace(opts.ExtraLDIF))
		b.WriteString("\n")
	}
	return b.Flush()
}

// GroupGID is the gidNumber of group g.
func GroupGID(g int) int { return 20000 + g }

// primaryGID is user i's gidNumber: its first group's (10000 without groups).
func primaryGID(i, groups int) int {
	if gs := userGroups(i, groups); len(gs) > 0 {
		return GroupGID(gs[0])
	}
	return 10000
}

// suffixEntry returns the LDIF entry for the suffix; its first RDN decides
// the object class (dc, o or ou).
func suffixEntry(suffix string) (string, error) {
	dn, err := ldap.ParseDN(suffix)
	if err != nil {
		return "", fmt.Errorf("suffix %q: %w", suffix, err)
	}
	if len(dn.RDNs) == 0 || len(dn.RDNs[0].Attributes) != 1 {
		return "", fmt.Errorf("suffix %q: want a single-valued first RDN", suffix)
	}
	a := dn.RDNs[0].Attributes[0]
	switch strings.ToLower(a.Type) {
	case "dc":
		return fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n\n", suffix, a.Value, a.Value), nil
	case "o":
		return fmt.Sprintf("dn: %s\nobjectClass: organization\no: %s\n\n", suffix, a.Value), nil
	case "ou":
		return fmt.Sprintf("dn: %s\nobjectClass: organizationalUnit\nou: %s\n\n", suffix, a.Value), nil
	}
	return "", fmt.Errorf("suffix %q: first RDN must be dc=, o= or ou=", suffix)
}

// mailDomain turns dc=example,dc=org into example.org; other suffixes get
// example.org.
func mailDomain(suffix string) string {
	dn, err := ldap.ParseDN(suffix)
	if err != nil || len(dn.RDNs) == 0 {
		return "example.org"
	}
	var parts []string
	for _, rdn := range dn.RDNs {
		if len(rdn.Attributes) != 1 || !strings.EqualFold(rdn.Attributes[0].Type, "dc") {
			return "example.org"
		}
		parts = append(parts, rdn.Attributes[0].Value)
	}
	return strings.Join(parts, ".")
}
