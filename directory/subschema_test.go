package directory

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// schemaDescription is one parsed RFC 4512 §4.1 description: its numeric OID and each
// keyword with the words that follow it (parenthesised lists flattened, "$" dropped,
// quotes removed).
type schemaDescription struct {
	oid    string
	fields map[string][]string
}

// parseSchemaDescription parses a description strictly enough to catch what a client's
// parser would choke on: unbalanced parentheses or quotes, a missing or non-numeric OID,
// a keyword without its value.
func parseSchemaDescription(s string) (*schemaDescription, error) {
	var tokens []string
	depth := 0
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ':
			i++
		case c == '(' || c == ')':
			if c == '(' {
				depth++
			} else if depth--; depth < 0 {
				return nil, fmt.Errorf("unbalanced ')' at %d", i)
			}
			tokens = append(tokens, string(c))
			i++
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote at %d", i)
			}
			tokens = append(tokens, s[i:i+end+2])
			i += end + 2
		default:
			end := strings.IndexAny(s[i:], " ()'")
			if end < 0 {
				end = len(s) - i
			}
			tokens = append(tokens, s[i:i+end])
			i += end
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%d unclosed '('", depth)
	}
	if len(tokens) < 3 || tokens[0] != "(" || tokens[len(tokens)-1] != ")" {
		return nil, fmt.Errorf("not enclosed in parentheses")
	}
	tokens = tokens[1 : len(tokens)-1]
	if !validNumericOID(tokens[0]) {
		return nil, fmt.Errorf("%q is not a numeric OID", tokens[0])
	}
	d := &schemaDescription{oid: tokens[0], fields: map[string][]string{}}
	flags := map[string]bool{"OBSOLETE": true, "SINGLE-VALUE": true, "COLLECTIVE": true, "NO-USER-MODIFICATION": true,
		"ABSTRACT": true, "STRUCTURAL": true, "AUXILIARY": true}
	for i := 1; i < len(tokens); {
		key := tokens[i]
		if _, dup := d.fields[key]; dup {
			return nil, fmt.Errorf("%s twice", key)
		}
		i++
		if flags[key] {
			d.fields[key] = nil
			continue
		}
		if key != strings.ToUpper(key) || i == len(tokens) {
			return nil, fmt.Errorf("keyword %q without a value", key)
		}
		var vals []string
		if tokens[i] == "(" {
			for i++; i < len(tokens) && tokens[i] != ")"; i++ {
				if tokens[i] != "$" {
					vals = append(vals, strings.Trim(tokens[i], "'"))
				}
			}
			i++
		} else {
			vals = []string{strings.Trim(tokens[i], "'")}
			i++
		}
		if len(vals) == 0 {
			return nil, fmt.Errorf("%s: empty list", key)
		}
		d.fields[key] = vals
	}
	return d, nil
}

func TestSubschemaDescriptionsParse(t *testing.T) {
	e := subschemaEntry()
	values := func(name string) []string {
		for _, a := range e.Attributes {
			if a.Name == name {
				var out []string
				for _, v := range a.Values {
					out = append(out, string(v))
				}
				return out
			}
		}
		t.Fatalf("subschema entry has no %s", name)
		return nil
	}
	parseAll := func(attr string, needName bool) map[string]*schemaDescription {
		byName := map[string]*schemaDescription{}
		oids := map[string]bool{}
		for _, v := range values(attr) {
			d, err := parseSchemaDescription(v)
			if err != nil {
				t.Errorf("%s %q: %v", attr, v, err)
				continue
			}
			if oids[d.oid] {
				t.Errorf("%s: OID %s twice", attr, d.oid)
			}
			oids[d.oid] = true
			if needName && len(d.fields["NAME"]) == 0 {
				t.Errorf("%s %q: no NAME", attr, v)
			}
			for _, n := range d.fields["NAME"] {
				if byName[strings.ToLower(n)] != nil {
					t.Errorf("%s: name %s twice", attr, n)
				}
				byName[strings.ToLower(n)] = d
			}
		}
		return byName
	}
	syntaxes := map[string]bool{}
	for _, v := range values("ldapSyntaxes") {
		d, err := parseSchemaDescription(v)
		if err != nil {
			t.Errorf("ldapSyntaxes %q: %v", v, err)
			continue
		}
		syntaxes[d.oid] = true
	}
	rules := parseAll("matchingRules", true)
	attrs := parseAll("attributeTypes", true)
	classes := parseAll("objectClasses", true)

	for name, d := range rules {
		if s := d.fields["SYNTAX"]; len(s) != 1 || !syntaxes[s[0]] {
			t.Errorf("matching rule %s: SYNTAX %v is not in ldapSyntaxes", name, s)
		}
	}
	for name, d := range attrs {
		for _, k := range []string{"EQUALITY", "ORDERING", "SUBSTR"} {
			if r := d.fields[k]; r != nil && rules[strings.ToLower(r[0])] == nil {
				t.Errorf("attribute %s: %s %s is not in matchingRules", name, k, r[0])
			}
		}
		sup, syn := d.fields["SUP"], d.fields["SYNTAX"]
		switch {
		case sup != nil && attrs[strings.ToLower(sup[0])] == nil:
			t.Errorf("attribute %s: SUP %s is not described", name, sup[0])
		case sup == nil && (len(syn) != 1 || !syntaxes[syn[0]]):
			t.Errorf("attribute %s: SYNTAX %v is not in ldapSyntaxes", name, syn)
		}
		if u := d.fields["USAGE"]; u != nil && !slices.Contains([]string{"userApplications", "directoryOperation", "distributedOperation", "dSAOperation"}, u[0]) {
			t.Errorf("attribute %s: USAGE %s", name, u[0])
		}
	}
	for name, d := range classes {
		for _, k := range []string{"MUST", "MAY"} {
			for _, a := range d.fields[k] {
				if attrs[strings.ToLower(a)] == nil {
					t.Errorf("class %s: %s %s is not described", name, k, a)
				}
			}
		}
		for _, s := range d.fields["SUP"] {
			if classes[strings.ToLower(s)] == nil {
				t.Errorf("class %s: SUP %s is not described", name, s)
			}
		}
	}
	for name := range classAttrs {
		if classes[strings.ToLower(name)] == nil {
			t.Errorf("classAttrs names %s, which is not a class", name)
		}
	}
	for name := range singleValued {
		if attrs[strings.ToLower(name)] == nil {
			t.Errorf("singleValued names %s, which is not an attribute type", name)
		}
	}

	// What the served entries use, described as a client expects.
	for name, want := range map[string]string{
		"uid":            "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
		"cn":             "( 2.5.4.3 NAME ( 'cn' 'commonName' ) SUP name )",
		"memberof":       "( 1.2.840.113556.1.2.102 NAME 'memberOf' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 NO-USER-MODIFICATION USAGE dSAOperation )",
		"entryuuid":      "( 1.3.6.1.1.16.4 NAME 'entryUUID' EQUALITY UUIDMatch ORDERING UUIDOrderingMatch SYNTAX 1.3.6.1.1.16.1 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
		"displayname":    "( 2.16.840.1.113730.3.1.241 NAME 'displayName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
		"objectclass":    "( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )",
		"mail":           "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
		"uidnumber":      "( 1.3.6.1.1.1.1.0 NAME 'uidNumber' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
		"attributetypes": "( 2.5.21.5 NAME 'attributeTypes' SYNTAX 1.3.6.1.4.1.1466.115.121.1.3 USAGE directoryOperation )",
	} {
		if d := attrs[name]; d == nil || !slices.Contains(values("attributeTypes"), want) {
			t.Errorf("attributeTypes lacks\n%s", want)
		}
	}
	for _, want := range []string{
		"( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )",
		"( 2.5.6.6 NAME 'person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( telephoneNumber $ seeAlso $ description ) )",
		"( 2.5.6.9 NAME 'groupOfNames' SUP top STRUCTURAL MUST ( member $ cn ) MAY ( businessCategory $ seeAlso $ owner $ ou $ o $ description ) )",
		"( 1.3.6.1.4.1.1466.344 NAME 'dcObject' SUP top AUXILIARY MUST dc )",
		"( 2.5.20.1 NAME 'subschema' AUXILIARY MAY ( objectClasses $ attributeTypes $ matchingRules ) )",
	} {
		if !slices.Contains(values("objectClasses"), want) {
			t.Errorf("objectClasses lacks\n%s", want)
		}
	}
	for _, c := range []string{"inetOrgPerson", "organizationalPerson", "organizationalUnit", "posixAccount", "subentry"} {
		if classes[strings.ToLower(c)] == nil {
			t.Errorf("objectClasses lacks %s", c)
		}
	}
	if d := classes["inetorgperson"]; d != nil && (!slices.Equal(d.fields["SUP"], []string{"organizationalPerson"}) || !slices.Contains(d.fields["MAY"], "uid")) {
		t.Errorf("inetOrgPerson: %v", d.fields)
	}
}

func TestParseSchemaDescriptionRejects(t *testing.T) {
	for _, s := range []string{
		"( 2.5.4.3 NAME 'cn' SUP name",
		"2.5.4.3 NAME 'cn' )",
		"( cn NAME 'cn' )",
		"( 2.5.4.3 NAME 'cn )",
		"( 2.5.4.3 NAME )",
		"( 2.5.4.3 NAME ( ) )",
		"( 2.5.4.3 NAME 'cn' ) )",
	} {
		if _, err := parseSchemaDescription(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestIsSubschemaDN(t *testing.T) {
	for dn, want := range map[string]bool{
		"cn=Subschema":          true,
		"CN=SUBSCHEMA":          true,
		"cn = subschema":        true,
		"commonName=Subschema":  true,
		"2.5.4.3=Subschema":     true,
		"cn=Subschema,dc=org":   false,
		"ou=Subschema":          false,
		"cn=Subschemas":         false,
		"cn=Aggregate":          false,
		"":                      false,
		"uid=subschema+cn=x":    false,
		"cn=subschema\\":        false,
		"dc=example,dc=org":     false,
		"cn=not-the-subschema":  false,
		"cn=\\53ubschema":       true, // an escaped 'S'
		"cn=Subschema ":         true,
		strings.Repeat("x", 70): false,
	} {
		if got := IsSubschemaDN(dn); got != want {
			t.Errorf("IsSubschemaDN(%q) = %v, want %v", dn, got, want)
		}
	}
}

func TestSubschemaSearch(t *testing.T) {
	names := func(e *Entry) string {
		var out []string
		for _, a := range e.Attributes {
			out = append(out, a.Name)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		filter string
		attrs  []string
		want   string // attribute names, in order; "-" for no entry
	}{
		{"(objectClass=*)", nil, "objectClass cn"},
		{"(objectClass=subschema)", []string{"*"}, "objectClass cn"},
		{"(objectClass=subschema)", []string{"+"}, "structuralObjectClass subschemaSubentry entryDN ldapSyntaxes matchingRules attributeTypes objectClasses"},
		{"(objectClass=subschema)", []string{"*", "+"}, "objectClass cn structuralObjectClass subschemaSubentry entryDN ldapSyntaxes matchingRules attributeTypes objectClasses"},
		{"(objectclass=SUBSCHEMA)", []string{"attributetypes", "objectClasses"}, "attributeTypes objectClasses"},
		{"(objectClass=subschema)", []string{"2.5.21.5"}, "attributeTypes"},
		{"(objectClass=subschema)", []string{"1.1"}, ""},
		{"(objectClass=person)", nil, "-"},
		{"(cn=*)", []string{"cn"}, "cn"},
	} {
		t.Run(c.filter+" "+strings.Join(c.attrs, ","), func(t *testing.T) {
			w := &collectWriter{}
			req := searchRequest(t, "CN=subschema", ScopeBase, c.filter, c.attrs...)
			if res := SearchSubschema(req.Search, func(e *Entry) error { return w.WriteEntry(e) }); res != nil {
				w.WriteResult(res)
			}
			if w.result == nil || w.result.Code != ldap.LDAPResultSuccess {
				t.Fatalf("result %+v, want success", w.result)
			}
			got := "-"
			if len(w.entries) == 1 {
				got = names(w.entries[0])
				if w.entries[0].DN != SubschemaDN {
					t.Errorf("DN %q", w.entries[0].DN)
				}
			}
			if got != c.want || len(w.entries) > 1 {
				t.Errorf("%d entries with %q, want %q", len(w.entries), got, c.want)
			}
		})
	}
	// Selecting attributes must never change the shared entry.
	if got := names(subschemaEntry()); got != "objectClass cn structuralObjectClass subschemaSubentry entryDN ldapSyntaxes matchingRules attributeTypes objectClasses" {
		t.Errorf("shared entry changed: %s", got)
	}
}
