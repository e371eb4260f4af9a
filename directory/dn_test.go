package directory

import (
	"strings"
	"testing"
)

func TestNormalizeDN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"uid=jdoe,ou=People,dc=example,dc=org", "uid=jdoe,ou=people,dc=example,dc=org"},
		{"UID=JDoe, OU=People , DC=Example,DC=ORG", "uid=jdoe,ou=people,dc=example,dc=org"},
		{"  cn = John Doe ,dc=x", "cn=john doe,dc=x"},
		{"cn=John  Doe,dc=x", "cn=john doe,dc=x"}, // insignificant spaces (caseIgnoreMatch)
		{`cn=Doe\, John,dc=x`, `cn=doe\2c john,dc=x`},
		{`cn=Doe\2C John,dc=x`, `cn=doe\2c john,dc=x`},
		{"cn=Jürgen,dc=x", "cn=jürgen,dc=x"},
		{`cn=J\C3\BCrgen,dc=x`, "cn=jürgen,dc=x"},
		{"cn=a+sn=B,dc=x", "cn=a+sn=b,dc=x"},
		{"SN=B+cn=a,dc=x", "cn=a+sn=b,dc=x"},
		{"2.5.4.3=x,dc=y", "cn=x,dc=y"},
		{"commonName=X,dc=y", "cn=x,dc=y"},
		{"0.9.2342.19200300.100.1.1=user0004,OU=People,dc=example,dc=org", "uid=user0004,ou=people,dc=example,dc=org"},
		{`UID=user0004\20,ou=people,dc=example,dc=org`, "uid=user0004,ou=people,dc=example,dc=org"},
		{"madeUpType=Value,dc=x", "madeuptype=value,dc=x"},
		{"", ""},
		{"not a dn", "not a dn"},
		{"  Not A DN  ", "not a dn"},
	} {
		if got := NormalizeDN(tc.in); got != tc.want {
			t.Errorf("NormalizeDN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The fast path gives what the full normaliser gives, whenever it is taken, and the
// tree's own DN matching agrees with both.
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
		"mail=A@Example.org,dc=x",
		"entryUUID=6f1e0a52-0000-4000-8000-000000000001,ou=people,dc=example,dc=org",
		// Only spaces surround a type: a tab or a form feed is no DN's.
		"uid=jdoe,\tou=people,dc=example,dc=org",
		"\fo=0",
	} {
		fast, ok := normalizePlainDN(dn)
		if !ok {
			continue
		}
		parsed, ok := parseDN(dn)
		if !ok {
			t.Errorf("fast path took %q, which does not parse", dn)
			continue
		}
		rdns, ok := staticSchema.canonicalRDNs(parsed, true)
		if slow := strings.Join(rdns, ","); !ok || fast != slow {
			t.Errorf("%q: fast path %q, full path %q (%v)", dn, fast, slow, ok)
		}
		if tree, ok := staticSchema.normDN(dn); ok && tree != fast {
			t.Errorf("%q: fast path %q, tree %q", dn, fast, tree)
		}
	}
}

// FuzzNormalizePlainDN: whatever DN the fast path takes, the full path gives the same
// string, and the string it gives is its own normal form.
func FuzzNormalizePlainDN(f *testing.F) {
	for _, dn := range []string{
		"uid=jdoe,ou=People,dc=example,dc=org",
		"UID = JDoe , OU=People,DC=Example,DC=ORG",
		"cn=x ,dc=y",
		"commonName=X,dc=y",
		"2.5.4.3=x,dc=y",
	} {
		f.Add(dn)
	}
	f.Fuzz(func(t *testing.T, dn string) {
		fast, ok := normalizePlainDN(dn)
		if !ok {
			return
		}
		parsed, ok := parseDN(dn)
		if !ok {
			t.Fatalf("fast path took %q, which does not parse", dn)
		}
		rdns, ok := staticSchema.canonicalRDNs(parsed, true)
		if slow := strings.Join(rdns, ","); !ok || fast != slow {
			t.Fatalf("%q: fast path %q, full path %q (%v)", dn, fast, slow, ok)
		}
		if again, _ := normalizePlainDN(fast); again != fast {
			t.Fatalf("%q: fast path %q, then %q", dn, fast, again)
		}
	})
}

// BenchmarkNormalizeDN: a DN in its normal form already (as a client binds with the DN
// a search returned) and one that is not.
func BenchmarkNormalizeDN(b *testing.B) {
	for _, dn := range []string{"uid=user012345,ou=people,dc=example,dc=org", "uid=user012345,ou=People,dc=example,dc=org"} {
		b.Run(dn[strings.Index(dn, "ou=")+3:strings.Index(dn, ",dc")], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizeDN(dn)
			}
		})
	}
}
