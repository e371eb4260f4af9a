package cache

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestNormalizeDN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"uid=jdoe,ou=People,dc=example,dc=org", "uid=jdoe,ou=people,dc=example,dc=org"},
		{"UID=JDoe, OU=People , DC=Example,DC=ORG", "uid=jdoe,ou=people,dc=example,dc=org"},
		{"  cn = John Doe ,dc=x", "cn=john doe,dc=x"},
		{`cn=Doe\, John,dc=x`, `cn=doe\, john,dc=x`},
		{`cn=Doe\2C John,dc=x`, `cn=doe\, john,dc=x`},
		{`cn="Doe, John",dc=x`, `cn="doe, john",dc=x`}, // RFC 1779 quoting is not RFC 4514's: compared as text
		{"cn=Jürgen,dc=x", `cn=j\c3\bcrgen,dc=x`},
		{`cn=J\C3\BCrgen,dc=x`, `cn=j\c3\bcrgen,dc=x`},
		{"cn=a+sn=B,dc=x", "cn=a+sn=b,dc=x"},
		{"SN=B+cn=a,dc=x", "cn=a+sn=b,dc=x"},
		{"2.5.4.3=x,dc=y", "2.5.4.3=x,dc=y"},
		{"", ""},
		{"not a dn", "not a dn"},
		{"  Not A DN  ", "not a dn"},
	} {
		if got := NormalizeDN(tc.in); got != tc.want {
			t.Errorf("NormalizeDN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The fast path gives what the parser gives, whenever it is taken.
func TestNormalizePlainDNAgreesWithParser(t *testing.T) {
	for _, dn := range []string{
		"uid=jdoe,ou=People,dc=example,dc=org",
		"UID = JDoe , OU=People,DC=Example,DC=ORG",
		"cn=John  Doe,dc=x",
		"cn=a-b_c.d@e!f(g)h,dc=x",
		"cn=x ,dc=y",
		"cn=a=b,dc=x",
		"cn=#41,dc=x",
		"c n=x,dc=y",
		"cn=,dc=x",
		"cn=x,,dc=y",
		"cn=x;dc=y",
		"entryUUID=6f1e0a52-0000-4000-8000-000000000001,ou=people,dc=example,dc=org",
	} {
		fast, ok := normalizePlainDN(dn)
		if !ok {
			continue
		}
		parsed, err := ldap.ParseDN(dn)
		if err != nil {
			t.Errorf("fast path took %q, which does not parse: %v", dn, err)
			continue
		}
		for _, rdn := range parsed.RDNs {
			for _, a := range rdn.Attributes {
				a.Value = strings.ToLower(a.Value)
			}
		}
		if slow := parsed.String(); fast != slow {
			t.Errorf("%q: fast path %q, parser %q", dn, fast, slow)
		}
	}
}

func BenchmarkNormalizeDN(b *testing.B) {
	for b.Loop() {
		NormalizeDN("uid=user012345,ou=People,dc=example,dc=org")
	}
}
