package directory

import (
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/fold"
	"github.com/ldapproxy/ldapproxy/mapping"
)

// The schema cached searches evaluate filters with: the attribute types, object classes
// and matching rules of OpenLDAP's core, cosine, inetorgperson and nis schemas, which is
// what the directories the proxy fronts (and the differential test's slapd) use, plus the
// Active Directory and FreeIPA attributes the sync presets serve. Matching follows
// slapd's behaviour, including its corners (see the rules below), so that a search gives
// the same entries whether it is answered from the tree or by slapd.

// syntaxClass groups attribute syntaxes by the matching rules that apply to them in
// extensible matches (OpenLDAP's matchingRuleUse).
type syntaxClass uint16

const (
	synDirectoryString syntaxClass = 1 << iota
	synPrintable                   // PrintableString and telephone numbers
	synIA5
	synInteger
	synDN
	synNameUID // uniqueMember: a DN and an optional bit string
	synTime
	synBoolean
	synOID
	synObjectClass // objectClass and structuralObjectClass: names of known classes
	synUUID
	synCSN
	synOctet
	synNumeric // NumericString
	synPostal  // PostalAddress: lines separated by "$"
)

// normKind names a value normalisation, so that a filter whose rule normalises as the
// attribute's equality rule does can reuse the values normalised when the tree was built.
type normKind uint8

const (
	normCaseIgnore normKind = iota
	normCaseExact
	normCaseIgnoreIA5
	normCaseExactIA5
	normTelephone
	normInteger
	normDN
	normNameUID
	normTime
	normBoolean
	normOID
	normObjectClass
	normUUID
	normCSN
	normOctet
	normNumeric
	normCaseIgnoreList
	normIntegerFirst
	normUTCTime
)

// normPos says where a value sits: a stored value or equality assertion, or one part of
// a substrings assertion. Insignificant spaces are handled differently in each.
type normPos uint8

const (
	posValue normPos = iota
	posInitial
	posAny
	posFinal
)

type ruleKind uint8

const (
	ruleEquality ruleKind = iota
	ruleOrdering
	ruleSubstrings
	ruleBitAnd
	ruleBitOr
	ruleInChain
)

// matchingRule is one matching rule. Equality compares normalised values as strings;
// ordering uses cmp.
type matchingRule struct {
	name, oid string
	kind      ruleKind
	norm      normKind
	// usable is the set of attribute syntaxes an extensible match may apply the rule to.
	usable syntaxClass
	ext    extUse
	cmp    func(a, b string) int
}

// extUse says how extensible matches may use a rule. slapd refuses some rules there
// although attributes use them for equality.
type extUse uint8

const (
	extAny         extUse = iota
	extNoAttribute        // Undefined with a type; without one, no attribute qualifies
)

// OIDInChain is Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: an extensible match on a
// DN-valued attribute that follows the attribute transitively (nested groups).
const OIDInChain = "1.2.840.113556.1.4.1941"

var (
	dirStrings = synDirectoryString | synPrintable

	mrCaseIgnore       = &matchingRule{name: "caseIgnoreMatch", oid: "2.5.13.2", norm: normCaseIgnore, usable: dirStrings}
	mrCaseIgnoreOrder  = &matchingRule{name: "caseIgnoreOrderingMatch", oid: "2.5.13.3", kind: ruleOrdering, norm: normCaseIgnore, usable: dirStrings, cmp: strings.Compare}
	mrCaseIgnoreSubstr = &matchingRule{name: "caseIgnoreSubstringsMatch", oid: "2.5.13.4", kind: ruleSubstrings, norm: normCaseIgnore}
	mrCaseExact        = &matchingRule{name: "caseExactMatch", oid: "2.5.13.5", norm: normCaseExact, usable: dirStrings}
	mrCaseExactOrder   = &matchingRule{name: "caseExactOrderingMatch", oid: "2.5.13.6", kind: ruleOrdering, norm: normCaseExact, usable: dirStrings, cmp: strings.Compare}
	mrCaseExactSubstr  = &matchingRule{name: "caseExactSubstringsMatch", oid: "2.5.13.7", kind: ruleSubstrings, norm: normCaseExact}
	mrCaseIgnoreIA5    = &matchingRule{name: "caseIgnoreIA5Match", oid: "1.3.6.1.4.1.1466.109.114.2", norm: normCaseIgnoreIA5, usable: synIA5}
	mrCaseExactIA5     = &matchingRule{name: "caseExactIA5Match", oid: "1.3.6.1.4.1.1466.109.114.1", norm: normCaseExactIA5, usable: synIA5}
	mrCaseIgnoreIA5Sub = &matchingRule{name: "caseIgnoreIA5SubstringsMatch", oid: "1.3.6.1.4.1.1466.109.114.3", kind: ruleSubstrings, norm: normCaseIgnoreIA5}
	mrCaseExactIA5Sub  = &matchingRule{name: "caseExactIA5SubstringsMatch", oid: "1.3.6.1.4.1.4203.1.2.1", kind: ruleSubstrings, norm: normCaseExactIA5}
	mrTelephone        = &matchingRule{name: "telephoneNumberMatch", oid: "2.5.13.20", norm: normTelephone, usable: synPrintable}
	mrTelephoneSubstr  = &matchingRule{name: "telephoneNumberSubstringsMatch", oid: "2.5.13.21", kind: ruleSubstrings, norm: normTelephone}
	mrDN               = &matchingRule{name: "distinguishedNameMatch", oid: "2.5.13.1", norm: normDN, usable: synDN}
	mrUniqueMember     = &matchingRule{name: "uniqueMemberMatch", oid: "2.5.13.23", norm: normNameUID, usable: synNameUID}
	mrInteger          = &matchingRule{name: "integerMatch", oid: "2.5.13.14", norm: normInteger, usable: synInteger}
	mrIntegerOrder     = &matchingRule{name: "integerOrderingMatch", oid: "2.5.13.15", kind: ruleOrdering, norm: normInteger, usable: synInteger, cmp: compareIntegers}
	mrBitAnd           = &matchingRule{name: "integerBitAndMatch", oid: "1.2.840.113556.1.4.803", kind: ruleBitAnd, norm: normInteger, usable: synInteger}
	mrBitOr            = &matchingRule{name: "integerBitOrMatch", oid: "1.2.840.113556.1.4.804", kind: ruleBitOr, norm: normInteger, usable: synInteger}
	mrTime             = &matchingRule{name: "generalizedTimeMatch", oid: "2.5.13.27", norm: normTime, usable: synTime}
	mrTimeOrder        = &matchingRule{name: "generalizedTimeOrderingMatch", oid: "2.5.13.28", kind: ruleOrdering, norm: normTime, usable: synTime, cmp: strings.Compare}
	mrBoolean          = &matchingRule{name: "booleanMatch", oid: "2.5.13.13", norm: normBoolean, usable: synBoolean}
	mrOID              = &matchingRule{name: "objectIdentifierMatch", oid: "2.5.13.0", norm: normOID, usable: synOID}
	mrUUID             = &matchingRule{name: "UUIDMatch", oid: "1.3.6.1.1.16.2", norm: normUUID, ext: extNoAttribute}
	mrUUIDOrder        = &matchingRule{name: "UUIDOrderingMatch", oid: "1.3.6.1.1.16.3", kind: ruleOrdering, norm: normUUID, cmp: strings.Compare, ext: extNoAttribute}
	mrCSN              = &matchingRule{name: "CSNMatch", oid: "1.3.6.1.4.1.4203.666.11.2.2", norm: normCSN, ext: extNoAttribute}
	mrCSNOrder         = &matchingRule{name: "CSNOrderingMatch", oid: "1.3.6.1.4.1.4203.666.11.2.3", kind: ruleOrdering, norm: normCSN, cmp: strings.Compare, ext: extNoAttribute}
	mrOctet            = &matchingRule{name: "octetStringMatch", oid: "2.5.13.17", norm: normOctet, usable: synOctet}
	mrOctetOrder       = &matchingRule{name: "octetStringOrderingMatch", oid: "2.5.13.18", kind: ruleOrdering, norm: normOctet, usable: synOctet, cmp: strings.Compare}
	mrOctetSubstr      = &matchingRule{name: "octetStringSubstringsMatch", oid: "2.5.13.19", kind: ruleSubstrings, norm: normOctet}
	mrNumeric          = &matchingRule{name: "numericStringMatch", oid: "2.5.13.8", norm: normNumeric, usable: synNumeric}
	mrNumericOrder     = &matchingRule{name: "numericStringOrderingMatch", oid: "2.5.13.9", kind: ruleOrdering, norm: normNumeric, usable: synNumeric, cmp: strings.Compare}
	mrNumericSubstr    = &matchingRule{name: "numericStringSubstringsMatch", oid: "2.5.13.10", kind: ruleSubstrings, norm: normNumeric}
	mrCaseIgnoreList   = &matchingRule{name: "caseIgnoreListMatch", oid: "2.5.13.11", norm: normCaseIgnoreList, usable: synPostal}
	mrCaseIgnoreListSb = &matchingRule{name: "caseIgnoreListSubstringsMatch", oid: "2.5.13.12", kind: ruleSubstrings, norm: normCaseIgnoreList}
	mrUTCTime          = &matchingRule{name: "uTCTimeMatch", oid: "2.5.13.25", norm: normUTCTime, usable: synTime}
	mrUTCTimeOrder     = &matchingRule{name: "uTCTimeOrderingMatch", oid: "2.5.13.26", kind: ruleOrdering, norm: normUTCTime, usable: synTime, cmp: strings.Compare}
	mrIntegerFirst     = &matchingRule{name: "integerFirstComponentMatch", oid: "2.5.13.29", norm: normIntegerFirst}
	mrInChain          = &matchingRule{name: "inChainMatch", oid: OIDInChain, kind: ruleInChain, norm: normDN, usable: synDN}
	mrObjectSubClass   = &matchingRule{name: "objectSubClassMatch", norm: normObjectClass} // objectClass equality: a class matches its subclasses
	allMatchingRules   = []*matchingRule{mrCaseIgnore, mrCaseIgnoreOrder, mrCaseIgnoreSubstr, mrCaseExact, mrCaseExactOrder, mrCaseExactSubstr, mrCaseIgnoreIA5, mrCaseExactIA5, mrCaseIgnoreIA5Sub, mrCaseExactIA5Sub, mrTelephone, mrTelephoneSubstr, mrDN, mrUniqueMember, mrInteger, mrIntegerOrder, mrBitAnd, mrBitOr, mrTime, mrTimeOrder, mrBoolean, mrOID, mrUUID, mrUUIDOrder, mrCSN, mrCSNOrder, mrOctet, mrOctetOrder, mrOctetSubstr, mrNumeric, mrNumericOrder, mrNumericSubstr, mrCaseIgnoreList, mrCaseIgnoreListSb, mrIntegerFirst, mrUTCTime, mrUTCTimeOrder, mrInChain}
)

// The static schema, by lowercased name and by OID. Built in variable initialisation
// (not init) because other package variables look attribute types up in it.
var (
	ruleByName                                = indexRules()
	staticAttributeTypes, staticObjectClasses = buildStaticSchema()
)

// attrType is an attribute type of the served schema.
type attrType struct {
	name string // the primary name, as the schema spells it
	sup  *attrType
	synt syntaxClass
	eq   *matchingRule
	ord  *matchingRule
	sub  *matchingRule
	// operational attributes are returned for "+" or by name, never for "*".
	operational bool
	// indexed attributes get an equality index in every tree.
	indexed bool
	// computed attributes are not stored with the entry in slapd: extensible matches
	// without a type skip them, and hasSubordinates is invisible to typed ones too.
	computed bool
	// hasSubtypes is set when another type names this one as its supertype.
	hasSubtypes bool
}

// isA reports whether t is want or one of its subtypes.
func (t *attrType) isA(want *attrType) bool {
	for ; t != nil; t = t.sup {
		if t == want {
			return true
		}
	}
	return false
}

type classKind uint8

const (
	classStructural classKind = iota
	classAbstract
	classAuxiliary
)

// objectClass is an object class of the served schema.
type objectClass struct {
	name string
	sup  []*objectClass
	kind classKind
	// key is the normalised name that indexes and assertions use.
	key string
	// ancestors is the class itself and every superclass, as keys.
	ancestors []string
	// values is the name as the value of structuralObjectClass, shared by every entry
	// the tree gives it to.
	values [][]byte
}

// attrDef and classDef are the rows of the static schema tables.
type attrDef struct {
	names       string // space-separated: primary name first, then aliases
	oid         string
	sup         string
	synt        syntaxClass
	eq, ord, sb *matchingRule
	flags       attrFlags
}

type attrFlags uint8

const (
	fOperational attrFlags = 1 << iota
	fIndexed
	fComputed
)

type classDef struct {
	name, oid string
	sup       string
	kind      classKind
}

// attributeDefs mirrors the attribute types of OpenLDAP's schema files (their EQUALITY,
// ORDERING and SUBSTR rules decide which filters are defined), plus AD and FreeIPA ones.
var attributeDefs = []attrDef{
	// RFC 4512 and OpenLDAP operational attributes.
	{names: "objectClass", oid: "2.5.4.0", synt: synObjectClass, eq: mrObjectSubClass, flags: fIndexed},
	{names: "structuralObjectClass", oid: "2.5.21.9", synt: synObjectClass, eq: mrObjectSubClass, flags: fOperational},
	{names: "createTimestamp", oid: "2.5.18.1", synt: synTime, eq: mrTime, ord: mrTimeOrder, flags: fOperational},
	{names: "modifyTimestamp", oid: "2.5.18.2", synt: synTime, eq: mrTime, ord: mrTimeOrder, flags: fOperational},
	{names: "creatorsName", oid: "2.5.18.3", synt: synDN, eq: mrDN, flags: fOperational},
	{names: "modifiersName", oid: "2.5.18.4", synt: synDN, eq: mrDN, flags: fOperational},
	{names: "hasSubordinates", oid: "2.5.18.9", synt: synBoolean, eq: mrBoolean, flags: fOperational | fComputed},
	{names: "subschemaSubentry", oid: "2.5.18.10", synt: synDN, eq: mrDN, flags: fOperational | fComputed},
	{names: "entryDN", oid: "1.3.6.1.1.20", synt: synDN, eq: mrDN, flags: fOperational | fComputed},
	{names: "entryUUID", oid: "1.3.6.1.1.16.4", synt: synUUID, eq: mrUUID, ord: mrUUIDOrder, flags: fOperational | fIndexed},
	{names: "entryCSN", oid: "1.3.6.1.4.1.4203.666.1.7", synt: synCSN, eq: mrCSN, ord: mrCSNOrder, flags: fOperational},
	{names: "contextCSN", oid: "1.3.6.1.4.1.4203.666.1.25", synt: synCSN, eq: mrCSN, ord: mrCSNOrder, flags: fOperational},
	// memberOf is operational in OpenLDAP's memberof overlay (USAGE dSAOperation): it is
	// returned for "+" or by name, as slapd does.
	{names: "memberOf", oid: "1.2.840.113556.1.2.102", synt: synDN, eq: mrDN, flags: fOperational | fIndexed},
	{names: "pwdChangedTime", oid: "1.3.6.1.4.1.42.2.27.8.1.16", synt: synTime, eq: mrTime, ord: mrTimeOrder, flags: fOperational},
	{names: "pwdAccountLockedTime", oid: "1.3.6.1.4.1.42.2.27.8.1.17", synt: synTime, eq: mrTime, ord: mrTimeOrder, flags: fOperational},
	// RFC 4519 (core.schema).
	{names: "aliasedObjectName aliasedEntryName", oid: "2.5.4.1", synt: synDN, eq: mrDN},
	{names: "name", oid: "2.5.4.41", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "cn commonName", oid: "2.5.4.3", sup: "name", flags: fIndexed},
	{names: "sn surname", oid: "2.5.4.4", sup: "name"},
	{names: "serialNumber", oid: "2.5.4.5", synt: synPrintable, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "l localityName", oid: "2.5.4.7", sup: "name"},
	{names: "st stateOrProvinceName", oid: "2.5.4.8", sup: "name"},
	{names: "street streetAddress", oid: "2.5.4.9", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "o organizationName", oid: "2.5.4.10", sup: "name"},
	{names: "ou organizationalUnitName", oid: "2.5.4.11", sup: "name"},
	{names: "title", oid: "2.5.4.12", sup: "name"},
	{names: "description", oid: "2.5.4.13", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "businessCategory", oid: "2.5.4.15", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "postalCode", oid: "2.5.4.17", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "postOfficeBox", oid: "2.5.4.18", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "physicalDeliveryOfficeName", oid: "2.5.4.19", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "telephoneNumber", oid: "2.5.4.20", synt: synPrintable, eq: mrTelephone, sb: mrTelephoneSubstr},
	{names: "distinguishedName", oid: "2.5.4.49", synt: synDN, eq: mrDN},
	{names: "member", oid: "2.5.4.31", sup: "distinguishedName", flags: fIndexed},
	{names: "owner", oid: "2.5.4.32", sup: "distinguishedName"},
	{names: "roleOccupant", oid: "2.5.4.33", sup: "distinguishedName"},
	{names: "seeAlso", oid: "2.5.4.34", sup: "distinguishedName"},
	{names: "givenName gn", oid: "2.5.4.42", sup: "name"},
	{names: "initials", oid: "2.5.4.43", sup: "name"},
	{names: "generationQualifier", oid: "2.5.4.44", sup: "name"},
	{names: "uniqueMember", oid: "2.5.4.50", synt: synNameUID, eq: mrUniqueMember, flags: fIndexed},
	{names: "houseIdentifier", oid: "2.5.4.51", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "pseudonym", oid: "2.5.4.65", sup: "name"},
	// RFC 4524 (cosine.schema).
	{names: "uid userid", oid: "0.9.2342.19200300.100.1.1", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr, flags: fIndexed},
	{names: "mail rfc822Mailbox", oid: "0.9.2342.19200300.100.1.3", synt: synIA5, eq: mrCaseIgnoreIA5, sb: mrCaseIgnoreIA5Sub, flags: fIndexed},
	{names: "info", oid: "0.9.2342.19200300.100.1.4", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "drink favouriteDrink", oid: "0.9.2342.19200300.100.1.5", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "roomNumber", oid: "0.9.2342.19200300.100.1.6", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "host", oid: "0.9.2342.19200300.100.1.9", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "manager", oid: "0.9.2342.19200300.100.1.10", synt: synDN, eq: mrDN},
	{names: "homePhone homeTelephoneNumber", oid: "0.9.2342.19200300.100.1.20", synt: synPrintable, eq: mrTelephone, sb: mrTelephoneSubstr},
	{names: "secretary", oid: "0.9.2342.19200300.100.1.21", synt: synDN, eq: mrDN},
	{names: "dc domainComponent", oid: "0.9.2342.19200300.100.1.25", synt: synIA5, eq: mrCaseIgnoreIA5, sb: mrCaseIgnoreIA5Sub},
	{names: "associatedDomain", oid: "0.9.2342.19200300.100.1.37", synt: synIA5, eq: mrCaseIgnoreIA5, sb: mrCaseIgnoreIA5Sub},
	{names: "personalTitle", oid: "0.9.2342.19200300.100.1.40", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "mobile mobileTelephoneNumber", oid: "0.9.2342.19200300.100.1.41", synt: synPrintable, eq: mrTelephone, sb: mrTelephoneSubstr},
	{names: "pager pagerTelephoneNumber", oid: "0.9.2342.19200300.100.1.42", synt: synPrintable, eq: mrTelephone, sb: mrTelephoneSubstr},
	{names: "co friendlyCountryName", oid: "0.9.2342.19200300.100.1.43", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "uniqueIdentifier", oid: "0.9.2342.19200300.100.1.44", synt: synDirectoryString, eq: mrCaseIgnore},
	{names: "organizationalStatus", oid: "0.9.2342.19200300.100.1.45", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "buildingName", oid: "0.9.2342.19200300.100.1.48", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	// RFC 2798 (inetorgperson.schema).
	{names: "carLicense", oid: "2.16.840.1.113730.3.1.1", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "departmentNumber", oid: "2.16.840.1.113730.3.1.2", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "employeeNumber", oid: "2.16.840.1.113730.3.1.3", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "employeeType", oid: "2.16.840.1.113730.3.1.4", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "preferredLanguage", oid: "2.16.840.1.113730.3.1.39", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "displayName", oid: "2.16.840.1.113730.3.1.241", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "labeledURI", oid: "1.3.6.1.4.1.250.1.57", synt: synDirectoryString, eq: mrCaseExact},
	// RFC 2307 (nis.schema).
	{names: "uidNumber", oid: "1.3.6.1.1.1.1.0", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder, flags: fIndexed},
	{names: "gidNumber", oid: "1.3.6.1.1.1.1.1", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder, flags: fIndexed},
	{names: "gecos", oid: "1.3.6.1.1.1.1.2", synt: synIA5, eq: mrCaseIgnoreIA5, sb: mrCaseIgnoreIA5Sub},
	{names: "homeDirectory", oid: "1.3.6.1.1.1.1.3", synt: synIA5, eq: mrCaseExactIA5},
	{names: "loginShell", oid: "1.3.6.1.1.1.1.4", synt: synIA5, eq: mrCaseExactIA5},
	{names: "shadowLastChange", oid: "1.3.6.1.1.1.1.5", synt: synInteger, eq: mrInteger},
	{names: "shadowMin", oid: "1.3.6.1.1.1.1.6", synt: synInteger, eq: mrInteger},
	{names: "shadowMax", oid: "1.3.6.1.1.1.1.7", synt: synInteger, eq: mrInteger},
	{names: "shadowWarning", oid: "1.3.6.1.1.1.1.8", synt: synInteger, eq: mrInteger},
	{names: "shadowInactive", oid: "1.3.6.1.1.1.1.9", synt: synInteger, eq: mrInteger},
	{names: "shadowExpire", oid: "1.3.6.1.1.1.1.10", synt: synInteger, eq: mrInteger},
	{names: "shadowFlag", oid: "1.3.6.1.1.1.1.11", synt: synInteger, eq: mrInteger},
	{names: "memberUid", oid: "1.3.6.1.1.1.1.12", synt: synIA5, eq: mrCaseExactIA5, sb: mrCaseExactIA5Sub, flags: fIndexed},
	// Active Directory (as in OpenLDAP's msuser.schema). objectGUID and objectSid are
	// served as the upstream has them, binary: octet strings, compared byte for byte.
	{names: "sAMAccountName", oid: "1.2.840.113556.1.4.221", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr, flags: fIndexed},
	{names: "objectCategory", oid: "1.2.840.113556.1.4.782", synt: synDN, eq: mrDN, flags: fIndexed},
	{names: "userPrincipalName", oid: "1.2.840.113556.1.4.656", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr, flags: fIndexed},
	{names: "objectGUID", oid: "1.2.840.113556.1.4.2", synt: synOctet, eq: mrOctet, ord: mrOctetOrder, flags: fIndexed},
	{names: "objectSid", oid: "1.2.840.113556.1.4.146", synt: synOctet, eq: mrOctet, ord: mrOctetOrder, flags: fIndexed},
	{names: "userAccountControl", oid: "1.2.840.113556.1.4.8", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "groupType", oid: "1.2.840.113556.1.4.750", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "sAMAccountType", oid: "1.2.840.113556.1.4.302", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "primaryGroupID", oid: "1.2.840.113556.1.4.98", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "pwdLastSet", oid: "1.2.840.113556.1.4.96", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "accountExpires", oid: "1.2.840.113556.1.4.159", synt: synInteger, eq: mrInteger, ord: mrIntegerOrder},
	{names: "whenCreated", oid: "1.2.840.113556.1.2.2", synt: synTime, eq: mrTime, ord: mrTimeOrder},
	{names: "whenChanged", oid: "1.2.840.113556.1.2.3", synt: synTime, eq: mrTime, ord: mrTimeOrder},
	{names: "proxyAddresses", oid: "1.2.840.113556.1.2.210", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "company", oid: "1.2.840.113556.1.2.146", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	{names: "department", oid: "1.2.840.113556.1.2.141", synt: synDirectoryString, eq: mrCaseIgnore, sb: mrCaseIgnoreSubstr},
	// FreeIPA and 389 Directory Server.
	{names: "ipaUniqueID", oid: "2.16.840.1.113730.3.8.3.1", synt: synDirectoryString, eq: mrCaseIgnore, flags: fIndexed},
	{names: "nsUniqueId", oid: "2.16.840.1.113730.3.1.542", synt: synDirectoryString, eq: mrCaseIgnore, flags: fIndexed},
	{names: "nsAccountLock", oid: "2.16.840.1.113730.3.1.610", synt: synDirectoryString, eq: mrCaseIgnore},
	{names: "krbLastPwdChange", oid: "2.16.840.1.113719.1.301.4.45.1", synt: synTime, eq: mrTime, ord: mrTimeOrder},
}

var classDefs = []classDef{
	{name: "top", oid: "2.5.6.0", kind: classAbstract},
	{name: "alias", oid: "2.5.6.1", sup: "top"},
	{name: "country", oid: "2.5.6.2", sup: "top"},
	{name: "locality", oid: "2.5.6.3", sup: "top"},
	{name: "organization", oid: "2.5.6.4", sup: "top"},
	{name: "organizationalUnit", oid: "2.5.6.5", sup: "top"},
	{name: "person", oid: "2.5.6.6", sup: "top"},
	{name: "organizationalPerson", oid: "2.5.6.7", sup: "person"},
	{name: "organizationalRole", oid: "2.5.6.8", sup: "top"},
	{name: "groupOfNames", oid: "2.5.6.9", sup: "top"},
	{name: "residentialPerson", oid: "2.5.6.10", sup: "person"},
	{name: "applicationProcess", oid: "2.5.6.11", sup: "top"},
	{name: "device", oid: "2.5.6.14", sup: "top"},
	{name: "groupOfUniqueNames", oid: "2.5.6.17", sup: "top"},
	{name: "dcObject", oid: "1.3.6.1.4.1.1466.344", sup: "top", kind: classAuxiliary},
	{name: "uidObject", oid: "1.3.6.1.1.3.1", sup: "top", kind: classAuxiliary},
	{name: "extensibleObject", oid: "1.3.6.1.4.1.1466.101.120.111", sup: "top", kind: classAuxiliary},
	{name: "account", oid: "0.9.2342.19200300.100.4.5", sup: "top"},
	{name: "domain", oid: "0.9.2342.19200300.100.4.13", sup: "top"},
	{name: "simpleSecurityObject", oid: "0.9.2342.19200300.100.4.19", sup: "top", kind: classAuxiliary},
	{name: "inetOrgPerson", oid: "2.16.840.1.113730.3.2.2", sup: "organizationalPerson"},
	{name: "posixAccount", oid: "1.3.6.1.1.1.2.0", sup: "top", kind: classAuxiliary},
	{name: "shadowAccount", oid: "1.3.6.1.1.1.2.1", sup: "top", kind: classAuxiliary},
	{name: "posixGroup", oid: "1.3.6.1.1.1.2.2", sup: "top"},
	{name: "pwdPolicy", oid: "1.3.6.1.4.1.42.2.27.8.2.1", sup: "top", kind: classAuxiliary},
	{name: "user", oid: "1.2.840.113556.1.5.9", sup: "organizationalPerson"},
	{name: "group", oid: "1.2.840.113556.1.5.8", sup: "top"},
	{name: "computer", oid: "1.2.840.113556.1.3.30", sup: "user"},
	{name: "container", oid: "1.2.840.113556.1.3.23", sup: "top"},
}

func indexRules() map[string]*matchingRule {
	m := map[string]*matchingRule{}
	for _, r := range allMatchingRules {
		m[strings.ToLower(r.name)] = r
		m[r.oid] = r
	}
	return m
}

func buildStaticSchema() (map[string]*attrType, map[string]*objectClass) {
	attrs := map[string]*attrType{}
	for _, d := range attributeDefs {
		names := strings.Fields(d.names)
		t := &attrType{name: names[0], synt: d.synt, eq: d.eq, ord: d.ord, sub: d.sb,
			operational: d.flags&fOperational != 0, indexed: d.flags&fIndexed != 0, computed: d.flags&fComputed != 0}
		if d.sup != "" {
			sup := attrs[strings.ToLower(d.sup)]
			if sup == nil {
				panic("schema: supertype " + d.sup + " of " + t.name + " is not defined before it")
			}
			t.sup = sup
			sup.hasSubtypes = true
			t.synt, t.eq, t.ord, t.sub = sup.synt, sup.eq, sup.ord, sup.sub
		}
		for _, n := range append(names, d.oid) {
			attrs[strings.ToLower(n)] = t
		}
	}
	classes := map[string]*objectClass{}
	for _, d := range classDefs {
		c := &objectClass{name: d.name, kind: d.kind, key: strings.ToLower(d.name)}
		if d.sup != "" {
			c.sup = []*objectClass{classes[strings.ToLower(d.sup)]}
		}
		c.ancestors = classAncestors(c)
		c.values = [][]byte{[]byte(c.name)}
		classes[c.key] = c
		classes[d.oid] = c
	}
	return attrs, classes
}

func classAncestors(c *objectClass) []string {
	out := []string{c.key}
	for _, s := range c.sup {
		for _, a := range s.ancestors {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// schema is the schema of one tree: its Schema (the upstream's, or the built-in one),
// plus the attribute types and object classes that its entries use and the Schema does
// not know. Those are plain directory strings (caseIgnoreMatch) and structural classes
// under top, so that attributes added by property mappings can be searched; a type
// that neither the Schema nor any entry knows is undefined, as in slapd.
type schema struct {
	base    *Schema
	attrs   map[string]*attrType
	classes map[string]*objectClass
	// uses counts the entries that use each of attrs ("a:" + key) and classes ("c:" +
	// key), so that a version forgets a type the last entry using it took away, as a
	// tree built anew from its entries would not know it.
	uses map[string]int
}

// newSchema returns a tree's schema on the built-in Schema.
func newSchema() *schema { return newSchemaOn(BuiltinSchema()) }

// newSchemaOn returns a tree's schema on base.
func newSchemaOn(base *Schema) *schema {
	return &schema{base: base, attrs: map[string]*attrType{}, classes: map[string]*objectClass{}, uses: map[string]int{}}
}

// clone returns a copy of s that may learn types without changing s: the types and
// classes themselves are shared.
func (s *schema) clone() *schema {
	return &schema{base: s.base, attrs: maps.Clone(s.attrs), classes: maps.Clone(s.classes), uses: maps.Clone(s.uses)}
}

// attr resolves an attribute type by name or OID, case-insensitively; nil if unknown.
func (s *schema) attr(name string) *attrType {
	if t := s.base.attrs[name]; t != nil {
		return t
	}
	if t := s.base.spelled[name]; t != nil {
		return t
	}
	if t := s.attrs[name]; t != nil {
		return t
	}
	if t := fold.Get(s.base.attrs, name); t != nil {
		return t
	}
	return fold.Get(s.attrs, name)
}

// attrBytes is attr for a name straight from a request, without copying it.
func (s *schema) attrBytes(name []byte) *attrType {
	if t := s.base.attrs[string(name)]; t != nil {
		return t
	}
	return s.attr(string(name))
}

// addAttr makes name known as a directory string attribute and returns its type. The
// Schema not describing it is logged once per name.
func (s *schema) addAttr(name string) *attrType {
	if t := s.attr(name); t != nil {
		return t
	}
	s.base.undescribed(name)
	t := learntAttr(name)
	s.attrs[strings.ToLower(name)] = t
	return t
}

// learntAttr returns the type that entries make known as name: a directory string.
func learntAttr(name string) *attrType {
	return &attrType{name: name, synt: synDirectoryString, eq: mrCaseIgnore, sub: mrCaseIgnoreSubstr}
}

// class resolves an object class by name or OID, case-insensitively; nil if unknown.
func (s *schema) class(name string) *objectClass {
	if c := fold.Get(s.base.classes, name); c != nil {
		return c
	}
	return fold.Get(s.classes, name)
}

func (s *schema) addClass(name string) *objectClass {
	if c := s.class(name); c != nil {
		return c
	}
	top := s.base.classes["top"]
	if top == nil {
		top = staticObjectClasses["top"]
	}
	c := &objectClass{name: name, key: strings.ToLower(name), sup: []*objectClass{top}}
	c.ancestors = classAncestors(c)
	c.values = [][]byte{[]byte(c.name)}
	s.classes[c.key] = c
	return c
}

// validAttrName reports whether s is an attribute description's type: a keystring or a
// numeric OID (RFC 4512 §1.4).
func validAttrName(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		return validNumericOID(s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '-')) {
			return false
		}
	}
	return true
}

func validNumericOID(s string) bool {
	return strings.Contains(s, ".") && validOIDNumbers(s)
}

// validOIDNumbers reports whether s is numbers without leading zeros, separated by dots.
func validOIDNumbers(s string) bool {
	for {
		part, rest, more := strings.Cut(s, ".")
		if part == "" || len(part) > 1 && part[0] == '0' {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
		if !more {
			return true
		}
		s = rest
	}
}

// splitDescription splits an attribute description into its type and its options,
// lowercased and sorted ("cn;lang-de" → "cn", "lang-de").
func splitDescription(desc string) (typ, options string) {
	typ, options, found := strings.Cut(desc, ";")
	if !found {
		return desc, ""
	}
	opts := strings.Split(strings.ToLower(options), ";")
	slices.Sort(opts)
	return typ, strings.Join(opts, ";")
}

// hasOptions reports whether an attribute's options include every option wanted.
func hasOptions(have, want string) bool {
	if want == "" {
		return true
	}
	for o := range strings.SplitSeq(want, ";") {
		found := false
		for h := range strings.SplitSeq(have, ";") {
			if h == o {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// normalize normalises v as a value or assertion part of rule kind k. ok is false when
// v is not valid for the syntax; a filter item with such an assertion is undefined.
func (s *schema) normalize(k normKind, v []byte, pos normPos) (string, bool) {
	switch k {
	case normCaseIgnore:
		return normDirectoryString(v, pos, true)
	case normCaseExact:
		return normDirectoryString(v, pos, false)
	case normCaseIgnoreIA5:
		return normIA5(v, true)
	case normCaseExactIA5:
		return normIA5(v, false)
	case normTelephone:
		return normTelephoneNumber(v)
	case normInteger:
		return normIntegerValue(v)
	case normDN:
		return s.normDN(string(v))
	case normNameUID:
		return s.normNameAndUID(string(v))
	case normTime:
		return normGeneralizedTime(string(v))
	case normBoolean:
		switch string(v) {
		case "TRUE":
			return "TRUE", true // constants: no string per entry
		case "FALSE":
			return "FALSE", true
		}
		return "", false
	case normOID:
		return normOIDValue(string(v))
	case normObjectClass:
		c := s.class(string(v))
		if c == nil {
			return "", false
		}
		return c.key, true
	case normUUID:
		return normUUIDValue(string(v))
	case normCSN:
		return normCSNValue(string(v))
	case normNumeric:
		return normNumericString(v)
	case normCaseIgnoreList:
		return normCaseIgnoreListValue(v, pos)
	case normIntegerFirst:
		return normIntegerFirstComponent(v)
	case normUTCTime:
		return normUTCTimeValue(string(v))
	}
	return string(v), true
}

// normNumericString checks a NumericString (digits and spaces) and removes the spaces,
// which numericStringMatch ignores.
func normNumericString(v []byte) (string, bool) {
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		switch {
		case c == ' ':
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	if b.Len() == 0 && len(v) == 0 {
		return "", false
	}
	return b.String(), true
}

// normCaseIgnoreListValue normalises a list of strings (a PostalAddress: lines
// separated by "$") for caseIgnoreListMatch: each line as caseIgnoreMatch does, the
// lines joined by "$". A substrings part is one string, normalised as a whole.
func normCaseIgnoreListValue(v []byte, pos normPos) (string, bool) {
	if pos != posValue {
		return normDirectoryString(v, pos, true)
	}
	lines := strings.Split(string(v), "$")
	for i, l := range lines {
		n, ok := normDirectoryString([]byte(l), posValue, true)
		if !ok {
			return "", false
		}
		lines[i] = n
	}
	return strings.Join(lines, "$"), true
}

// normIntegerFirstComponent normalises for integerFirstComponentMatch: an assertion is
// an integer, a value a description whose first component is one ("( 1 NAME ... )").
func normIntegerFirstComponent(v []byte) (string, bool) {
	s := strings.TrimSpace(string(v))
	if rest, ok := strings.CutPrefix(s, "("); ok {
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return "", false
		}
		s = fields[0]
	}
	return normIntegerValue([]byte(s))
}

// normDirectoryString applies caseIgnoreMatch or caseExactMatch normalisation the way
// slapd does (RFC 4518 insignificant space handling, simplified): case folded when fold
// is set, runs of spaces collapsed to one, and leading and trailing spaces removed,
// except that a substrings "any" or "final" part keeps one leading space and an
// "initial" or "any" part one trailing space, so that "(cn=John *)" does not match
// "Johnson". An empty or invalid UTF-8 value is invalid.
func normDirectoryString(v []byte, pos normPos, fold bool) (string, bool) {
	if len(v) == 0 || !utf8.Valid(v) {
		return "", false
	}
	if isNormalASCII(v, fold) {
		return string(v), true
	}
	var b strings.Builder
	b.Grow(len(v))
	wasSpace := pos == posValue || pos == posInitial // trims leading spaces
	for _, r := range string(v) {
		if r == ' ' {
			if !wasSpace {
				b.WriteByte(' ')
			}
			wasSpace = true
			continue
		}
		wasSpace = false
		if fold {
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	out := b.String()
	if out == "" {
		// A value of spaces only: slapd keeps one space, except at the end of a
		// "final" part, whose trailing space goes.
		if pos == posFinal {
			return "", true
		}
		return " ", true
	}
	if wasSpace && (pos == posValue || pos == posFinal) {
		out = out[:len(out)-1]
	}
	return out, true
}

// isNormalASCII reports whether v is printable ASCII already in normal form: no space at
// either end, no double space, and no upper case when folding.
func isNormalASCII(v []byte, fold bool) bool {
	if v[0] == ' ' || v[len(v)-1] == ' ' {
		return false
	}
	prev := byte(0)
	for _, c := range v {
		if c >= utf8.RuneSelf || c < ' ' || fold && c >= 'A' && c <= 'Z' || c == ' ' && prev == ' ' {
			return false
		}
		prev = c
	}
	return true
}

// normIA5 normalises an IA5 string (caseIgnoreIA5Match, caseExactIA5Match): ASCII only,
// leading and trailing spaces removed in every position, inner runs collapsed.
func normIA5(v []byte, fold bool) (string, bool) {
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for _, c := range v {
		if c >= utf8.RuneSelf {
			return "", false
		}
		if c == ' ' {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// normTelephoneNumber removes the spaces and hyphens that telephoneNumberMatch ignores;
// the value must be a PrintableString.
func normTelephoneNumber(v []byte) (string, bool) {
	if len(v) == 0 {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		switch {
		case c == ' ' || c == '-':
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("'()+,./:=?", c) >= 0:
			b.WriteByte(c)
		default:
			return "", false
		}
	}
	return b.String(), true
}

// normIntegerValue checks the INTEGER syntax (RFC 4517 §3.3.16): an optional minus and
// digits without leading zeros; "-0" is not an integer.
func normIntegerValue(v []byte) (string, bool) {
	s := string(v)
	d := strings.TrimPrefix(s, "-")
	if d == "" || d[0] == '0' && (len(d) > 1 || len(s) > 1) {
		return "", false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", false
		}
	}
	return s, true
}

// compareIntegers orders two valid integers of any size.
func compareIntegers(a, b string) int {
	na, nb := strings.HasPrefix(a, "-"), strings.HasPrefix(b, "-")
	switch {
	case na && !nb:
		return -1
	case !na && nb:
		return 1
	case na && nb:
		return compareIntegers(b[1:], a[1:])
	}
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// normGeneralizedTime parses a GeneralizedTime (RFC 4517 §3.3.13) and returns the
// instant in UTC as YYYYMMDDHHMMSS, "Z", then the fraction of a second's digits without
// trailing zeros (none for a whole second; as written, past nanoseconds too; a fraction
// of a minute or an hour in seconds): equal instants compare equal, and string
// order is time order (a whole second sorts before the same second with a fraction, as
// a prefix; two fractions compare digit by digit, as decimals do). A value already in
// that form, as most directories write their timestamps ("20240102030405Z"), is its
// own normalised form: the tree keeps no copy of it. A value whose offset takes the
// instant out of the years 0000-9999 (9999-12-31T23:30 at -0100) is not one, as in
// slapd: its year would not be four digits, and string order would not be time order.
// A leap second (SS 60) is an instant of its own, as in slapd: its normal form keeps the
// 60, after the minute's :59 and before the next minute.
func normGeneralizedTime(s string) (string, bool) {
	parse, leap := s, leapSecond(s)
	if leap {
		parse = s[:12] + "59" + s[14:] // offsets are whole minutes: the seconds stay 59 in UTC
	}
	t, err := mapping.ParseGeneralizedTime(parse)
	if err != nil {
		return "", false
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return "", false
	}
	var buf [32]byte
	b := append(t.UTC().AppendFormat(buf[:0], "20060102150405"), 'Z')
	if leap {
		b[12], b[13] = '6', '0'
	}
	if frac, ok := secondsFraction(s); ok {
		// The digits as written, beyond nanoseconds too: equal as slapd's are.
		b = append(b, frac...)
	} else if ns := t.Nanosecond(); ns != 0 {
		// A fraction of a minute or an hour, in seconds.
		var frac [9]byte
		for i := 8; i >= 0; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		end := 9
		for frac[end-1] == '0' {
			end--
		}
		b = append(b, frac[:end]...)
	}
	if string(b) == s {
		return s, true
	}
	return string(b), true
}

// secondsFraction returns the digits of the fraction of a second of the
// GeneralizedTime s without trailing zeros; false when s has no seconds with a fraction.
func secondsFraction(s string) (string, bool) {
	if len(s) < 16 || s[14] != '.' && s[14] != ',' {
		return "", false
	}
	for i := range 14 {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	end := 15
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	for end > 15 && s[end-1] == '0' {
		end--
	}
	return s[15:end], true
}

// leapSecond reports whether the GeneralizedTime s has the seconds 60.
func leapSecond(s string) bool {
	if len(s) < 14 {
		return false
	}
	for i := range 14 {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s[12:14] == "60"
}

// normUTCTimeValue parses a UTCTime (RFC 4517 §3.3.34: YYMMDDHHMM[SS] and Z or an
// offset; years 50–99 in the 1900s, 00–49 in the 2000s, as RFC 5280 has it) into
// normGeneralizedTime's form, so that equal instants compare equal and string order is
// time order. A value in GeneralizedTime form is taken too: Active Directory writes
// some of its UTC-time attributes so.
func normUTCTimeValue(s string) (string, bool) {
	digits := 0
	for digits < len(s) && s[digits] >= '0' && s[digits] <= '9' {
		digits++
	}
	if digits != 10 && digits != 12 {
		return normGeneralizedTime(s)
	}
	if digits == len(s) || digits == 12 && s[10:12] == "60" {
		return "", false // a UTCTime has a zone, and no leap second (as slapd has it)
	}
	century := "20"
	if s[0] >= '5' {
		century = "19"
	}
	return normGeneralizedTime(century + s)
}

// normOIDValue checks an objectIdentifierMatch assertion. slapd takes numeric OIDs only
// there (a descriptor is Undefined), and no served attribute has the OID syntax, so
// such a match is never true.
func normOIDValue(s string) (string, bool) {
	if !validOIDNumbers(s) {
		return "", false
	}
	return s, true
}

// normUUIDValue checks a UUID in its string form (RFC 4122) and lowercases it.
func normUUIDValue(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return "", false
			}
		}
	}
	return strings.ToLower(s), true
}

// normCSNValue checks OpenLDAP's change sequence number form
// (YYYYmmddHHMMSS.uuuuuuZ#SSSSSS#SID#ssssss).
func normCSNValue(s string) (string, bool) {
	parts := strings.Split(s, "#")
	if len(parts) != 4 || len(parts[0]) < 15 || !strings.HasSuffix(parts[0], "Z") {
		return "", false
	}
	return s, true
}

// normDN returns the canonical form of a DN (distinguishedNameMatch): attribute types by
// their primary name in lower case, values normalised by their type's equality rule and
// re-escaped, the values of a multi-valued RDN sorted. Unknown attribute types, values
// their type rejects and BER-encoded (#hex) values make the DN invalid, as in slapd.
func (s *schema) normDN(dn string) (string, bool) {
	rdns, ok := s.normRDNs(dn)
	if !ok {
		return "", false
	}
	return strings.Join(rdns, ","), true
}

// normRDNs returns the canonical form of each RDN of dn, leaf first.
func (s *schema) normRDNs(dn string) ([]string, bool) {
	parsed, ok := parseDN(dn)
	if !ok {
		return nil, false
	}
	return s.canonicalRDNs(parsed, false)
}

// parseDN parses a DN as slapd accepts it: RFC 4514 without #hex values, and not
// spaces alone (the empty DN is empty).
func parseDN(dn string) (*ldap.DN, bool) {
	if hasHexValue(dn) || dn != "" && strings.TrimSpace(dn) == "" {
		return nil, false
	}
	parsed, err := ldap.ParseDN(dn)
	return parsed, err == nil
}

// canonicalRDNs returns the canonical form of each RDN of a parsed DN, leaf first. An
// attribute type the schema does not know makes the DN invalid, unless loose is set:
// it is then taken as a directory string, as a tree takes the types its entries use.
func (s *schema) canonicalRDNs(parsed *ldap.DN, loose bool) ([]string, bool) {
	out := make([]string, len(parsed.RDNs))
	for i, rdn := range parsed.RDNs {
		avas := make([]string, len(rdn.Attributes))
		for j, ava := range rdn.Attributes {
			t := s.attr(ava.Type)
			if !validAttrName(ava.Type) || t == nil && !loose {
				return nil, false
			}
			if t == nil {
				t = &attrType{name: ava.Type, synt: synDirectoryString, eq: mrCaseIgnore}
			}
			v := ava.Value
			if t.eq != nil {
				if t.eq.norm == normDN || t.eq.norm == normNameUID || t.eq.norm == normObjectClass {
					v = strings.ToLower(v) // nested DNs and classes as RDN values: rare, compared loosely
				} else if n, ok := s.normalize(t.eq.norm, []byte(v), posValue); ok {
					v = n
				} else {
					return nil, false
				}
			}
			avas[j] = strings.ToLower(t.name) + "=" + escapeDNValue(v)
		}
		slices.Sort(avas)
		out[i] = strings.Join(avas, "+")
	}
	return out, true
}

// hasHexValue reports whether an RDN value of dn is in the #hex (BER) form, which slapd
// does not accept for the string attributes DNs are made of.
func hasHexValue(dn string) bool {
	inValue, start := false, true
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		switch {
		case c == '\\':
			i++
			start = false
		case !inValue && c == '=':
			inValue, start = true, true
		case c == ',' || c == ';' || c == '+':
			inValue = false
		case inValue && start && c == '#':
			return true
		case c != ' ':
			start = false
		}
	}
	return false
}

// escapeDNValue escapes a normalised RDN value for the canonical form. Every special
// character becomes \xx, so that ',', '+' and '=' in a canonical DN only ever separate.
func escapeDNValue(v string) string {
	n := 0
	for i := 0; i < len(v); i++ {
		if dnSpecial(v, i) {
			n++
		}
	}
	if n == 0 {
		return v
	}
	const hexDigits = "0123456789abcdef"
	b := make([]byte, 0, len(v)+2*n)
	for i := 0; i < len(v); i++ {
		if dnSpecial(v, i) {
			b = append(b, '\\', hexDigits[v[i]>>4], hexDigits[v[i]&15])
			continue
		}
		b = append(b, v[i])
	}
	return string(b)
}

func dnSpecial(v string, i int) bool {
	switch c := v[i]; c {
	case ',', '+', '=', '\\', '"', '<', '>', ';', 0:
		return true
	case '#':
		return i == 0
	case ' ':
		return i == 0 || i == len(v)-1
	}
	return false
}

// normNameAndUID normalises a uniqueMember value: a DN, optionally followed by
// "#'0101'B" (RFC 4517 §3.3.21). The UID takes part in matching.
func (s *schema) normNameAndUID(v string) (string, bool) {
	dn, uid := v, ""
	if i := strings.LastIndexByte(v, '#'); i >= 0 && isBitString(v[i+1:]) {
		dn, uid = v[:i], v[i:]
	}
	n, ok := s.normDN(dn)
	if !ok {
		return "", false
	}
	return n + uid, true
}

func isBitString(s string) bool {
	if len(s) < 3 || s[0] != '\'' || !strings.HasSuffix(s, "'B") {
		return false
	}
	for _, c := range s[1 : len(s)-2] {
		if c != '0' && c != '1' {
			return false
		}
	}
	return true
}

// usableWith reports whether an extensible match may apply rule r to attribute type t.
func (r *matchingRule) usableWith(t *attrType) bool {
	return r == t.eq || r == t.ord || r == t.sub || r.usable&t.synt != 0
}
