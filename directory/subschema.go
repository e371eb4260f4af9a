package directory

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// The subschema subentry (RFC 4512 §4.2) publishes the schema of schema.go — the
// attribute types, object classes and matching rules cached searches are evaluated
// with — in the description syntax of RFC 4512 §4.1, so that clients (directory
// browsers, ldap3, SSSD) learn attribute syntaxes and which attributes are operational.
// It describes what the proxy itself answers, so it is served in direct mode too.
// Attributes that only property mappings introduce (attributes.*) are not in it: they
// have no OID, and their names vary with the configuration.

// SubschemaDN is the DN of the subschema subentry; the root DSE names it in
// subschemaSubentry.
const SubschemaDN = "cn=Subschema"

// IsSubschemaDN reports whether dn names the subschema subentry, in any spelling
// ("CN=subschema", "commonName = Subschema", "2.5.4.3=Subschema").
func IsSubschemaDN(dn string) bool {
	if strings.EqualFold(dn, SubschemaDN) {
		return true
	}
	// This runs for every base-scope search: parse only what could be another spelling
	// (escaped characters included).
	if len(dn) > 64 || !containsFold(dn, "subschema") && !strings.Contains(dn, `\`) {
		return false
	}
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) != 1 || len(parsed.RDNs[0].Attributes) != 1 {
		return false
	}
	ava := parsed.RDNs[0].Attributes[0]
	return staticAttributeTypes[strings.ToLower(ava.Type)] == staticAttributeTypes["cn"] && strings.EqualFold(ava.Value, "Subschema")
}

// containsFold reports whether s contains sub, ASCII case-insensitively, without
// allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// SearchSubschema answers a base search of the subschema subentry of the built-in
// schema; Schema.SearchSubschema answers it for another.
func SearchSubschema(q *SearchRequest, send func(*Entry) error) *Result {
	return BuiltinSchema().SearchSubschema(q, send)
}

// SearchSubschema answers a base search of the subschema subentry that describes s,
// handing the entry to send when the filter matches; nil when send failed. Like the
// root DSE it is readable without a bind: clients read it to learn the schema before
// they log in.
func (s *Schema) SearchSubschema(q *SearchRequest, send func(*Entry) error) *Result {
	e := s.entry()
	if MatchesPresence(q.FilterPacket(), e) {
		out := &Entry{DN: e.DN, Attributes: selectSubschemaAttributes(e.Attributes, q.Attributes)}
		if err := send(out); err != nil {
			return nil
		}
	}
	return &Result{Code: ldap.LDAPResultSuccess}
}

// MatchesPresence evaluates the filters clients send for a single, well-known entry (the
// root DSE, the subschema subentry). Presence and equality filters are checked against
// the entry; anything more elaborate matches, as the entry is the only candidate and
// clients ask for it on purpose.
func MatchesPresence(f *ber.Packet, e *Entry) bool {
	if f == nil || f.ClassType != ber.ClassContext {
		return true
	}
	switch f.Tag {
	case ldap.FilterPresent:
		return hasAttribute(e, f.Data.String())
	case ldap.FilterEqualityMatch:
		if len(f.Children) != 2 {
			return false
		}
		name, val := f.Children[0].Data.String(), f.Children[1].Data.String()
		for _, a := range e.Attributes {
			if strings.EqualFold(a.Name, name) {
				for _, v := range a.Values {
					if strings.EqualFold(string(v), val) {
						return true
					}
				}
			}
		}
		return false
	}
	return true
}

func hasAttribute(e *Entry, name string) bool {
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, name) {
			return true
		}
	}
	return false
}

// subschemaUserAttributes are the subentry's user attributes, returned for "*" or an
// empty list; all the others are operational, returned for "+" or by name.
var subschemaUserAttributes = []string{"objectClass", "cn"}

// selectSubschemaAttributes applies a search's attribute list (RFC 4511 §4.5.1.8) to
// the subentry, whose schema attributes are operational: "*" and an empty list give
// objectClass and cn, "+" gives the rest, "1.1" alone gives nothing. Names are matched
// case-insensitively, also by OID.
func selectSubschemaAttributes(attrs []Attribute, want []string) []Attribute {
	if len(want) == 0 {
		want = []string{"*"}
	}
	var out []Attribute
	for _, a := range attrs {
		user := false
		for _, u := range subschemaUserAttributes {
			user = user || strings.EqualFold(u, a.Name)
		}
		for _, w := range want {
			if w == "*" && user || w == "+" && !user || strings.EqualFold(w, a.Name) || w == subschemaAttributeOIDs[a.Name] {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// subschemaAttributeOIDs lets a client ask for the subentry's attributes by OID.
var subschemaAttributeOIDs = map[string]string{
	"objectClass": "2.5.4.0", "cn": "2.5.4.3", "attributeTypes": "2.5.21.5", "objectClasses": "2.5.21.6",
	"matchingRules": "2.5.21.4", "ldapSyntaxes": "1.3.6.1.4.1.1466.101.120.16",
	"structuralObjectClass": "2.5.21.9", "subschemaSubentry": "2.5.18.10", "entryDN": "1.3.6.1.1.20",
}

// subschemaEntry is the built-in schema's subentry, built once: the schema tables do
// not change while the process runs.
func subschemaEntry() *Entry { return BuiltinSchema().entry() }

// newSubschemaEntry makes a subschema subentry of the descriptions given, with the
// matching rules the proxy implements.
func newSubschemaEntry(syntaxes, types, classes []string) *Entry {
	e := &Entry{DN: SubschemaDN}
	add := func(name string, vals ...string) {
		a := Attribute{Name: name}
		for _, v := range vals {
			a.Values = append(a.Values, []byte(v))
		}
		e.Attributes = append(e.Attributes, a)
	}
	// extensibleObject, as in OpenLDAP, because RFC 4512's subschema class does not
	// list ldapSyntaxes.
	add("objectClass", "top", "subentry", "subschema", "extensibleObject")
	add("cn", "Subschema")
	add("structuralObjectClass", "subentry")
	add("subschemaSubentry", SubschemaDN)
	add("entryDN", SubschemaDN)
	add("ldapSyntaxes", syntaxes...)
	add("matchingRules", matchingRuleDescriptions()...)
	add("attributeTypes", types...)
	add("objectClasses", classes...)
	return e
}

// Syntax OIDs (RFC 4517 §3.3 unless noted).
const (
	syntaxPrefix           = "1.3.6.1.4.1.1466.115.121.1."
	oidAttrTypeDescription = syntaxPrefix + "3"
	oidBoolean             = syntaxPrefix + "7"
	oidDN                  = syntaxPrefix + "12"
	oidDirectoryString     = syntaxPrefix + "15"
	oidGeneralizedTime     = syntaxPrefix + "24"
	oidIA5String           = syntaxPrefix + "26"
	oidInteger             = syntaxPrefix + "27"
	oidMatchingRuleDesc    = syntaxPrefix + "30"
	oidNameAndOptionalUID  = syntaxPrefix + "34"
	oidObjectClassDesc     = syntaxPrefix + "37"
	oidOID                 = syntaxPrefix + "38"
	oidOctetString         = syntaxPrefix + "40"
	oidPrintableString     = syntaxPrefix + "44"
	oidSubtreeSpec         = syntaxPrefix + "45" // RFC 3672
	oidTelephoneNumber     = syntaxPrefix + "50"
	oidSyntaxDescription   = syntaxPrefix + "54"
	oidSubstringAssertion  = syntaxPrefix + "58"
	oidUUID                = "1.3.6.1.1.16.1"              // RFC 4530
	oidCSN                 = "1.3.6.1.4.1.4203.666.11.2.1" // OpenLDAP's change sequence number
)

// ldapSyntaxes lists every syntax the descriptions below refer to.
var ldapSyntaxes = []struct{ oid, desc string }{
	{oidAttrTypeDescription, "Attribute Type Description"},
	{oidBoolean, "Boolean"},
	{oidDN, "Distinguished Name"},
	{oidDirectoryString, "Directory String"},
	{oidGeneralizedTime, "Generalized Time"},
	{oidIA5String, "IA5 String"},
	{oidInteger, "Integer"},
	{oidMatchingRuleDesc, "Matching Rule Description"},
	{oidNameAndOptionalUID, "Name And Optional UID"},
	{oidObjectClassDesc, "Object Class Description"},
	{oidOID, "OID"},
	{oidOctetString, "Octet String"},
	{oidPrintableString, "Printable String"},
	{oidSubtreeSpec, "SubtreeSpecification"},
	{oidTelephoneNumber, "Telephone Number"},
	{oidSyntaxDescription, "LDAP Syntax Description"},
	{oidSubstringAssertion, "Substring Assertion"},
	{oidUUID, "UUID"},
	{oidCSN, "CSN"},
	{oidNumericString, "Numeric String"},
	{oidPostalAddress, "Postal Address"},
	{oidUTCTime, "UTC Time"},
}

func ldapSyntaxDescriptions() []string {
	out := make([]string, len(ldapSyntaxes))
	for i, s := range ldapSyntaxes {
		out[i] = "( " + s.oid + " DESC " + quoteDString(s.desc) + " )"
	}
	return out
}

// matchingRuleDescriptions describes the rules filters may name (allMatchingRules);
// each rule's assertion syntax follows from how it normalises.
func matchingRuleDescriptions() []string {
	out := make([]string, 0, len(allMatchingRules))
	for _, r := range allMatchingRules {
		out = append(out, "( "+r.oid+" NAME "+quoteDString(r.name)+" SYNTAX "+ruleSyntax(r)+" )")
	}
	return out
}

func ruleSyntax(r *matchingRule) string {
	if r.kind == ruleSubstrings {
		return oidSubstringAssertion
	}
	switch r.norm {
	case normCaseIgnoreIA5, normCaseExactIA5:
		return oidIA5String
	case normTelephone:
		return oidTelephoneNumber
	case normInteger:
		return oidInteger
	case normDN:
		return oidDN
	case normNameUID:
		return oidNameAndOptionalUID
	case normTime:
		return oidGeneralizedTime
	case normBoolean:
		return oidBoolean
	case normOID, normObjectClass:
		return oidOID
	case normUUID:
		return oidUUID
	case normCSN:
		return oidCSN
	case normOctet:
		return oidOctetString
	case normNumeric:
		return oidNumericString
	case normCaseIgnoreList:
		return oidPostalAddress
	case normIntegerFirst:
		return oidInteger
	case normUTCTime:
		return oidUTCTime
	}
	return oidDirectoryString
}

// attrSyntax is the SYNTAX of an attribute type that does not inherit it.
func attrSyntax(d attrDef) string {
	switch d.synt {
	case synPrintable:
		if d.eq == mrTelephone {
			return oidTelephoneNumber
		}
		return oidPrintableString
	case synIA5:
		return oidIA5String
	case synInteger:
		return oidInteger
	case synDN:
		return oidDN
	case synNameUID:
		return oidNameAndOptionalUID
	case synTime:
		return oidGeneralizedTime
	case synBoolean:
		return oidBoolean
	case synOID, synObjectClass:
		return oidOID
	case synUUID:
		return oidUUID
	case synCSN:
		return oidCSN
	case synOctet:
		return oidOctetString
	}
	return oidDirectoryString
}

// singleValued names the attribute types their standard schemas (RFC 4512, 2307, 2798,
// OpenLDAP's, Active Directory's) declare SINGLE-VALUE. schema.go does not need the
// cardinality to match filters; clients that edit entries do.
var singleValued = map[string]bool{
	"structuralObjectClass": true, "createTimestamp": true, "modifyTimestamp": true, "creatorsName": true,
	"modifiersName": true, "hasSubordinates": true, "subschemaSubentry": true, "entryDN": true, "entryUUID": true,
	"entryCSN": true, "pwdChangedTime": true, "pwdAccountLockedTime": true, "aliasedObjectName": true,
	"displayName": true, "employeeNumber": true, "preferredLanguage": true,
	"uidNumber": true, "gidNumber": true, "gecos": true, "homeDirectory": true, "loginShell": true,
	"shadowLastChange": true, "shadowMin": true, "shadowMax": true, "shadowWarning": true,
	"shadowInactive": true, "shadowExpire": true, "shadowFlag": true,
	"sAMAccountName": true, "userPrincipalName": true, "objectGUID": true, "objectSid": true,
	"userAccountControl": true, "groupType": true, "sAMAccountType": true, "primaryGroupID": true,
	"pwdLastSet": true, "accountExpires": true, "whenCreated": true, "whenChanged": true,
	"company": true, "department": true, "nsUniqueId": true, "nsAccountLock": true, "krbLastPwdChange": true,
}

// dsaOperational names the operational attributes that are USAGE dSAOperation (each
// server keeps its own values) rather than directoryOperation, as in OpenLDAP.
var dsaOperational = map[string]bool{"memberOf": true, "contextCSN": true}

// subschemaAttributeDefs are the subentry's own attribute types, which schema.go does
// not need: no served entry has them. EQUALITY is left out because the proxy does not
// implement objectIdentifierFirstComponentMatch.
var subschemaAttributeDefs = []string{
	"( 2.5.18.6 NAME 'subtreeSpecification' SYNTAX " + oidSubtreeSpec + " SINGLE-VALUE USAGE directoryOperation )",
	"( 2.5.21.4 NAME 'matchingRules' SYNTAX " + oidMatchingRuleDesc + " USAGE directoryOperation )",
	"( 2.5.21.5 NAME 'attributeTypes' SYNTAX " + oidAttrTypeDescription + " USAGE directoryOperation )",
	"( 2.5.21.6 NAME 'objectClasses' SYNTAX " + oidObjectClassDesc + " USAGE directoryOperation )",
	"( 1.3.6.1.4.1.1466.101.120.16 NAME 'ldapSyntaxes' SYNTAX " + oidSyntaxDescription + " USAGE directoryOperation )",
}

// attributeTypeDescriptions describes attributeDefs in RFC 4512 §4.1.2 form. A subtype
// names its SUP and inherits its rules and syntax, as in the standard schema files.
func attributeTypeDescriptions() []string {
	out := make([]string, 0, len(attributeDefs)+len(subschemaAttributeDefs))
	for _, d := range attributeDefs {
		names := strings.Fields(d.names)
		var b strings.Builder
		b.WriteString("( " + d.oid + " NAME " + quoteDescrs(names))
		if d.sup != "" {
			b.WriteString(" SUP " + d.sup)
		} else {
			eq := d.eq
			if eq == mrObjectSubClass {
				eq = mrOID // RFC 4512's objectClass; the proxy also matches subclasses, as slapd does
			}
			for _, r := range []struct {
				key  string
				rule *matchingRule
			}{{"EQUALITY", eq}, {"ORDERING", d.ord}, {"SUBSTR", d.sb}} {
				if r.rule != nil {
					b.WriteString(" " + r.key + " " + r.rule.name)
				}
			}
			b.WriteString(" SYNTAX " + attrSyntax(d))
		}
		if singleValued[names[0]] {
			b.WriteString(" SINGLE-VALUE")
		}
		if d.flags&fOperational != 0 {
			usage := "directoryOperation"
			if dsaOperational[names[0]] {
				usage = "dSAOperation"
			}
			b.WriteString(" NO-USER-MODIFICATION USAGE " + usage)
		}
		b.WriteString(" )")
		out = append(out, b.String())
	}
	return append(out, subschemaAttributeDefs...)
}

// classAttrs are the MUST and MAY lists of the object classes, as "$"-separated names.
// They hold only attribute types the subentry describes: a class's attributes that the
// proxy never serves (userPassword, postalAddress, …) are left out of MAY, and a class
// whose MUST needs one (country, simpleSecurityObject, pwdPolicy) has no lists. Active
// Directory spreads its attributes over auxiliary classes; here user and group list the
// ones the presets read.
var classAttrs = map[string]struct{ must, may string }{
	"top":                  {must: "objectClass"},
	"alias":                {must: "aliasedObjectName"},
	"locality":             {may: "street $ seeAlso $ st $ l $ description"},
	"organization":         {must: "o", may: orgMay},
	"organizationalUnit":   {must: "ou", may: orgMay},
	"person":               {must: "sn $ cn", may: "telephoneNumber $ seeAlso $ description"},
	"organizationalPerson": {may: "title $ telephoneNumber $ street $ postOfficeBox $ postalCode $ physicalDeliveryOfficeName $ ou $ st $ l"},
	"organizationalRole":   {must: "cn", may: "roleOccupant $ telephoneNumber $ street $ postOfficeBox $ postalCode $ physicalDeliveryOfficeName $ ou $ st $ l $ description $ seeAlso"},
	"groupOfNames":         {must: "member $ cn", may: "businessCategory $ seeAlso $ owner $ ou $ o $ description"},
	"residentialPerson":    {must: "l", may: "businessCategory $ street $ postOfficeBox $ postalCode $ physicalDeliveryOfficeName $ st"},
	"applicationProcess":   {must: "cn", may: "seeAlso $ ou $ l $ description"},
	"device":               {must: "cn", may: "serialNumber $ seeAlso $ owner $ ou $ o $ l $ description"},
	"groupOfUniqueNames":   {must: "uniqueMember $ cn", may: "businessCategory $ seeAlso $ owner $ ou $ o $ description"},
	"dcObject":             {must: "dc"},
	"uidObject":            {must: "uid"},
	"account":              {must: "uid", may: "description $ seeAlso $ l $ o $ ou $ host"},
	"domain":               {must: "dc", may: "seeAlso $ businessCategory $ telephoneNumber $ street $ postOfficeBox $ postalCode $ physicalDeliveryOfficeName $ st $ l $ o $ description"},
	"inetOrgPerson": {may: "businessCategory $ carLicense $ departmentNumber $ displayName $ employeeNumber $ employeeType $ " +
		"givenName $ homePhone $ initials $ labeledURI $ mail $ manager $ mobile $ o $ pager $ roomNumber $ secretary $ uid $ preferredLanguage"},
	"posixAccount":  {must: "cn $ uid $ uidNumber $ gidNumber $ homeDirectory", may: "loginShell $ gecos $ description"},
	"shadowAccount": {must: "uid", may: "shadowLastChange $ shadowMin $ shadowMax $ shadowWarning $ shadowInactive $ shadowExpire $ shadowFlag $ description"},
	"posixGroup":    {must: "cn $ gidNumber", may: "memberUid $ description"},
	"user": {may: "sAMAccountName $ userPrincipalName $ objectGUID $ objectSid $ userAccountControl $ sAMAccountType $ primaryGroupID $ " +
		"pwdLastSet $ accountExpires $ whenCreated $ whenChanged $ mail $ displayName $ givenName $ proxyAddresses $ company $ department"},
	"group":     {may: "member $ groupType $ sAMAccountName $ sAMAccountType $ objectGUID $ objectSid $ mail $ description $ whenCreated $ whenChanged"},
	"container": {must: "cn"},
}

const orgMay = "businessCategory $ seeAlso $ telephoneNumber $ street $ postOfficeBox $ postalCode $ physicalDeliveryOfficeName $ st $ l $ description"

// subschemaClassDefs are the subentry's own classes (RFC 4512 §4.2, RFC 3672).
var subschemaClassDefs = []string{
	"( 2.5.17.0 NAME 'subentry' SUP top STRUCTURAL MUST ( cn $ subtreeSpecification ) )",
	"( 2.5.20.1 NAME 'subschema' AUXILIARY MAY ( objectClasses $ attributeTypes $ matchingRules ) )",
}

// objectClassDescriptions describes classDefs in RFC 4512 §4.1.1 form.
func objectClassDescriptions() []string {
	out := make([]string, 0, len(classDefs)+len(subschemaClassDefs))
	for _, d := range classDefs {
		var b strings.Builder
		b.WriteString("( " + d.oid + " NAME " + quoteDString(d.name))
		if d.sup != "" {
			b.WriteString(" SUP " + d.sup)
		}
		b.WriteString([...]string{classStructural: " STRUCTURAL", classAbstract: " ABSTRACT", classAuxiliary: " AUXILIARY"}[d.kind])
		lists := classAttrs[d.name]
		for _, l := range []struct{ key, names string }{{"MUST", lists.must}, {"MAY", lists.may}} {
			switch {
			case l.names == "":
			case strings.Contains(l.names, "$"):
				b.WriteString(" " + l.key + " ( " + l.names + " )")
			default:
				b.WriteString(" " + l.key + " " + l.names)
			}
		}
		b.WriteString(" )")
		out = append(out, b.String())
	}
	return append(out, subschemaClassDefs...)
}

// quoteDescrs renders a NAME: one quoted name, or several in parentheses.
func quoteDescrs(names []string) string {
	if len(names) == 1 {
		return quoteDString(names[0])
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = quoteDString(n)
	}
	return "( " + strings.Join(quoted, " ") + " )"
}

// quoteDString quotes a qdstring (RFC 4512 §4.1): a quote and a backslash are escaped
// as \27 and \5C.
func quoteDString(s string) string {
	if strings.ContainsAny(s, `\'`) {
		s = dstringQuoter.Replace(s)
	}
	return "'" + s + "'"
}

// dstringQuoter escapes a qdstring's quotes and backslashes; made once (a Replacer's
// tables are built on its first use, and cost more than most strings it replaces in).
var dstringQuoter = strings.NewReplacer(`\`, `\5C`, `'`, `\27`)
