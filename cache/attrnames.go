package cache

// The attribute names a stored object's upstream attributes are written with as
// numbers (format 4, see encoding.go): the names the common directories (OpenLDAP's
// core, cosine, inetorgperson, nis and operational schemas, 389-DS and FreeIPA, Active
// Directory) return for their users and groups, spelled as they return them. A name is
// the number of its place in the list plus one; a name not in it, or spelled otherwise
// (another case, with options), is written out. With every attribute kept, the names
// were a quarter of a user's record.
//
// The list belongs to format 4: a record's numbers mean these names forever. Names are
// never removed, reordered or respelled; a longer list would need a new format byte,
// since a version that knows a shorter one must refuse the records it cannot read.
var attrNames = [...]string{
	// OpenLDAP and the RFC 4519/2798/2307 schemas: users and groups.
	"objectClass", "uid", "cn", "sn", "givenName", "displayName", "mail", "uidNumber",
	"gidNumber", "homeDirectory", "loginShell", "gecos", "telephoneNumber", "manager",
	"member", "uniqueMember", "memberUid", "memberOf", "description", "title", "ou", "o",
	"l", "st", "street", "postalCode", "postalAddress", "employeeNumber", "employeeType",
	"departmentNumber", "mobile", "facsimileTelephoneNumber", "homePhone", "pager",
	"initials", "jpegPhoto", "userCertificate;binary", "labeledURI", "preferredLanguage",
	"roomNumber", "secretary", "carLicense", "businessCategory",
	"physicalDeliveryOfficeName", "seeAlso", "owner",
	"shadowLastChange", "shadowMin", "shadowMax", "shadowWarning", "shadowInactive",
	"shadowExpire", "shadowFlag", "sshPublicKey",
	// Operational attributes (OpenLDAP, 389-DS).
	"structuralObjectClass", "entryUUID", "creatorsName", "createTimestamp", "entryCSN",
	"modifiersName", "modifyTimestamp", "pwdChangedTime", "pwdPolicySubentry",
	"pwdAccountLockedTime", "pwdFailureTime", "pwdGraceUseTime", "pwdReset",
	"nsUniqueId", "entryid", "parentid", "nsAccountLock",
	// FreeIPA.
	"ipaUniqueID", "krbPrincipalName", "krbCanonicalName", "krbLastPwdChange",
	"krbPasswordExpiration", "krbLoginFailedCount", "krbLastSuccessfulAuth",
	"krbLastFailedAuth", "krbTicketFlags", "ipaNTSecurityIdentifier", "mepManagedEntry",
	"ipaSshPubKey", "memberofindirect",
	// Active Directory.
	"objectGUID", "objectSid", "sAMAccountName", "sAMAccountType", "userPrincipalName",
	"userAccountControl", "distinguishedName", "name", "instanceType", "whenCreated",
	"whenChanged", "uSNCreated", "uSNChanged", "objectCategory", "primaryGroupID",
	"pwdLastSet", "accountExpires", "lastLogon", "lastLogonTimestamp", "lastLogoff",
	"logonCount", "badPwdCount", "badPasswordTime", "codePage", "countryCode",
	"dSCorePropagationData", "lockoutTime", "groupType", "msDS-SupportedEncryptionTypes",
	"servicePrincipalName", "proxyAddresses", "company", "department", "co", "c",
	"streetAddress", "wWWHomePage", "thumbnailPhoto", "isCriticalSystemObject",
	"showInAdvancedViewOnly", "adminCount", "userParameters", "homeDrive", "scriptPath",
	"profilePath", "mailNickname", "legacyExchangeDN", "info", "otherTelephone",
	"ipPhone", "employeeID", "extensionAttribute1", "extensionAttribute2",
	"extensionAttribute3", "extensionAttribute4", "extensionAttribute5",
	"extensionAttribute6", "extensionAttribute7", "extensionAttribute8",
	"extensionAttribute9", "extensionAttribute10", "extensionAttribute11",
	"extensionAttribute12", "extensionAttribute13", "extensionAttribute14",
	"extensionAttribute15", "msDS-User-Account-Control-Computed", "managedBy",
	"msSFU30Name", "msSFU30NisDomain", "unixHomeDirectory",
}

// attrNumbers is attrNames' inverse: a name's number (its place plus one).
var attrNumbers = numbers(attrNames[:], "attribute name")

// numbers is a list of names' inverse: each name's number (its place plus one). A name
// listed twice is a mistake in the list (what it lists).
func numbers(names []string, what string) map[string]uint64 {
	m := make(map[string]uint64, len(names))
	for i, n := range names {
		if _, dup := m[n]; dup {
			panic("cache: " + what + " listed twice: " + n)
		}
		m[n] = uint64(i + 1)
	}
	return m
}

// mappedNames are the names of mapped attributes.* fields that format 7 (see
// encoding.go) writes as numbers: the presets' and those that configurations commonly
// map. A name is the number of its place in the list plus one; any other name is written
// out. The list belongs to format 7, as attrNames belongs to format 4: names are never
// removed, reordered or respelled, and a longer list needs a new format byte.
var mappedNames = [...]string{
	// The presets'.
	"upn", "given_name", "surname", "object_guid", "description",
	// Common in configurations.
	"phone", "mobile", "title", "department", "company", "manager", "employee_id",
	"employee_number", "employee_type", "display_name", "first_name", "last_name",
	"initials", "office", "location", "street", "city", "state", "postal_code", "country",
	"uid_number", "gid_number", "home_directory", "login_shell", "gecos", "object_sid",
	"sam_account_name", "mail", "email", "groups", "nickname", "avatar", "locale",
	"timezone", "cost_center", "division", "organization",
}

// mappedNumbers is mappedNames' inverse: a name's number (its place plus one).
var mappedNumbers = numbers(mappedNames[:], "mapped attribute name")
