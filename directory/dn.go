package directory

import (
	"strings"
)

// staticSchema resolves the attribute types of the static tables only; it is never
// changed, so any goroutine may use it.
var staticSchema = newSchema()

// NormalizeDN returns the canonical form of a DN, as distinguishedNameMatch compares
// DNs: attribute types by their primary name (also when written as an OID) in lower
// case, values normalised by their type's equality rule (case folded and insignificant
// spaces removed for the directory strings DNs are made of) and re-escaped, the values of
// a multi-valued RDN sorted. It is the project's one DN normaliser: the served tree
// matches base DNs and DN-valued attributes with it, the store indexes DNs by it, and
// bind names are resolved through it, so "UID=Alice , ou=People,dc=Example,dc=org" and
// "0.9.2342.19200300.100.1.1=alice,ou=people,dc=example,dc=org" are one user everywhere.
// Attribute types the schema does not know are taken as directory strings. A string
// that is not a DN is returned lower-cased and trimmed, so that it still finds itself.
func NormalizeDN(dn string) string {
	if n, ok := normalizePlainDN(dn); ok {
		return n
	}
	parsed, ok := parseDN(dn)
	if !ok {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	rdns, ok := staticSchema.canonicalRDNs(parsed, true)
	if !ok {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	return strings.Join(rdns, ",")
}

// normalizePlainDN is NormalizeDN's fast path, for the common DN of printable ASCII with
// single-valued RDNs, nothing escaped, no double spaces, and types whose equality rule
// only folds case (cn, uid, ou, dc, ...). It gives the same string as the full path; ok
// is false when the DN needs the parser.
func normalizePlainDN(dn string) (string, bool) {
	// Most DNs a client sends are in their normal form already (found by a search, or
	// written in lower case): b stays empty, and dn itself is the result, until an RDN
	// differs from its normal form.
	var b strings.Builder
	differs := false
	for start := 0; ; {
		end := strings.IndexByte(dn[start:], ',')
		if end < 0 {
			end = len(dn)
		} else {
			end += start
		}
		rdn := dn[start:end]
		typ, val, found := strings.Cut(rdn, "=")
		if !found {
			return "", false
		}
		typ = strings.Trim(typ, " ")
		val = strings.Trim(val, " ")
		at := staticAttributeTypes[strings.ToLower(typ)]
		if at == nil || at.eq != mrCaseIgnore && at.eq != mrCaseIgnoreIA5 || !validAttrName(typ) ||
			val == "" || val[0] == '#' || strings.Contains(val, "  ") {
			return "", false
		}
		upper := false
		for i := 0; i < len(val); i++ {
			switch c := val[i]; {
			case c < ' ' || c > '~':
				return "", false
			case c == '\\' || c == '"' || c == '+' || c == ';' || c == '<' || c == '>' || c == '=':
				return "", false
			case 'A' <= c && c <= 'Z':
				upper = true
			}
		}
		name := strings.ToLower(at.name)
		if !differs && (upper || typ != name || len(typ)+1+len(val) != len(rdn)) {
			differs = true
			b.Grow(len(dn))
			b.WriteString(dn[:max(start-1, 0)]) // the RDNs before, in their normal form
		}
		if differs {
			if start > 0 {
				b.WriteByte(',')
			}
			b.WriteString(name)
			b.WriteByte('=')
			for i := 0; i < len(val); i++ {
				c := val[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b.WriteByte(c)
			}
		}
		if end == len(dn) {
			break
		}
		start = end + 1
	}
	if !differs {
		return dn, true // keeps the key a slice of the caller's string
	}
	return b.String(), true
}
