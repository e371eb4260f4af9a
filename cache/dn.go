package cache

import (
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// NormalizeDN returns the form under which the store indexes DNs: attribute
// types and values in lower case, no spaces around "=" and ",", the
// attributes of a multi-valued RDN sorted, and values escaped as RFC 4514
// does (non-ASCII bytes as \xx). Two DNs a directory would treat as equal
// (for the case-insensitive attributes DNs are made of) normalise to the same
// string. A string that does not parse as a DN is only lower-cased and
// trimmed, so that it still finds itself.
func NormalizeDN(dn string) string {
	if s, ok := normalizePlainDN(dn); ok {
		return s
	}
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	for _, rdn := range parsed.RDNs {
		for _, a := range rdn.Attributes {
			a.Value = strings.ToLower(a.Value)
		}
	}
	return parsed.String()
}

// normalizePlainDN is the fast path of NormalizeDN, taken for the common DN
// made of printable ASCII with nothing to escape or unescape. It produces the
// same string as the parser would; ok is false when the DN needs the parser.
func normalizePlainDN(dn string) (string, bool) {
	var b strings.Builder
	b.Grow(len(dn))
	for rdn := range strings.SplitSeq(dn, ",") {
		typ, val, found := strings.Cut(rdn, "=")
		if !found {
			return "", false
		}
		typ = strings.TrimSpace(typ)
		val = strings.Trim(val, " ")
		if !plainType(typ) || val == "" || val[0] == '#' || strings.ContainsRune(val, '=') {
			return "", false
		}
		for i := 0; i < len(rdn); i++ {
			switch c := rdn[i]; {
			case c < ' ' || c > '~':
				return "", false
			case c == '\\' || c == '"' || c == '+' || c == ';' || c == '<' || c == '>':
				return "", false
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		writeLower(&b, typ)
		b.WriteByte('=')
		writeLower(&b, val)
	}
	if b.String() == dn {
		return dn, true // keeps the key a slice of the stored value
	}
	return b.String(), true
}

// plainType reports whether typ is a non-empty attribute name or OID.
func plainType(typ string) bool {
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return typ != ""
}

// writeLower writes the ASCII string s in lower case.
func writeLower(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
}
