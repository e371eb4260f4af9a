// Package secret names the attributes that hold secrets: password hashes and histories,
// Kerberos and NT keys, private keys and credential blobs of Active Directory, FreeIPA,
// Samba and OpenLDAP. They are never stored or served, whatever an upstream returns: the
// syncer drops them on arrival, and the served tree leaves them out of whatever entries it
// is handed, so that a mistake in one cannot reach clients.
package secret

import (
	"strings"

	"github.com/ldapproxy/ldapproxy/internal/fold"
)

// attributes are the secret attribute types, lower-cased.
var attributes = map[string]bool{
	"userpassword": true, "authpassword": true, "pwdhistory": true, "userpkcs12": true,
	// Active Directory
	"unicodepwd": true, "dbcspwd": true, "ntpwdhistory": true, "lmpwdhistory": true,
	"supplementalcredentials": true, "msds-managedpassword": true,
	"mspkiaccountcredentials": true, "mspkidpapimasterkeys": true,
	"ms-mcs-admpwd": true, "mslaps-password": true, "mslaps-encryptedpassword": true,
	"mslaps-encryptedpasswordhistory": true, "mslaps-encrypteddsrmpassword": true,
	"mslaps-encrypteddsrmpasswordhistory": true, "msfve-recoverypassword": true, "msfve-keypackage": true,
	"priorvalue": true, "currentvalue": true, "trustauthincoming": true, "trustauthoutgoing": true,
	"initialauthincoming": true, "initialauthoutgoing": true,
	// Samba, FreeIPA, Kerberos
	"sambantpassword": true, "sambalmpassword": true, "sambapasswordhistory": true,
	"krbprincipalkey": true, "krbmkey": true, "krbpwdhistory": true, "ipanthash": true,
	"unixuserpassword": true,
}

// Attribute tells whether an attribute description (its type, in any case, options
// allowed: "userPassword;binary") holds a secret.
func Attribute(desc string) bool {
	typ, _, _ := strings.Cut(desc, ";")
	return fold.Get(attributes, typ)
}
