package sync

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/mapping"
)

// accountAttributes are the attributes a directory refuses logins by (cache.Account). The
// user search asks for them by name whatever the preset and the mappings: each means
// one thing in whichever directory has it, a directory without one simply returns
// nothing for it, and some are operational (ppolicy's), which "*" does not return.
var accountAttributes = []string{
	// Active Directory
	"userAccountControl", "accountExpires", "lockoutTime", "pwdLastSet",
	// OpenLDAP ppolicy (draft-behera-ldap-password-policy)
	"pwdAccountLockedTime", "pwdReset",
	// FreeIPA, 389-DS
	"nsAccountLock", "krbPrincipalExpiration", "krbPasswordExpiration",
}

// userAccountControl flags (MS-ADTS 2.2.16).
const (
	uacAccountDisable  = 0x2
	uacLockout         = 0x10
	uacPasswordExpired = 0x800000
)

// errAccountValue is wrapped by accountState's errors: a value it cannot read.
var errAccountValue = errors.New("unreadable account-state value; offline logins refused")

// accountState reads an entry's account state. A value that cannot be read refuses
// offline logins (the user counts as disabled, or expired, for a time): the directory
// knows better, and an offline login must not guess in the user's favour. The error
// names each such value, for the sync status.
func accountState(e *ldap.Entry) (cache.Account, error) {
	var a cache.Account
	var errs []error
	value := func(name string) (string, bool) {
		vals := e.GetEqualFoldAttributeValues(name)
		if len(vals) == 0 {
			return "", false
		}
		return vals[0], true
	}
	bad := func(name, v string, err error) {
		errs = append(errs, fmt.Errorf("%s %q: %w (%v)", name, v, errAccountValue, err))
	}
	// earliest keeps the earlier of two expiry times; an unreadable one counts as
	// already passed.
	earliest := func(t *time.Time, name string, parse func(string) (time.Time, error)) {
		v, ok := value(name)
		if !ok {
			return
		}
		x, err := parse(v)
		if err != nil {
			bad(name, v, err)
			x = time.Unix(0, 0).UTC()
		}
		if !x.IsZero() && (t.IsZero() || x.Before(*t)) {
			*t = x.Truncate(time.Second)
		}
	}

	if v, ok := value("userAccountControl"); ok {
		uac, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			bad("userAccountControl", v, err)
			a.Disabled = true
		}
		a.Disabled = a.Disabled || uac&uacAccountDisable != 0
		a.Locked = uac&uacLockout != 0
		a.PasswordExpired = uac&uacPasswordExpired != 0
	}
	earliest(&a.Expires, "accountExpires", mapping.ParseFileTime)
	if v, ok := value("lockoutTime"); ok && strings.TrimSpace(v) != "0" {
		// AD sets lockoutTime when it locks the account and back to 0 when it is
		// unlocked by hand or by the next successful login. After the domain's
		// lockout duration AD lets the user in although lockoutTime is still set;
		// the proxy does not know that duration, and refuses until it is 0.
		a.Locked = true
	}
	if v, ok := value("pwdLastSet"); ok && strings.TrimSpace(v) == "0" {
		a.MustChangePassword = true
	}

	if _, ok := value("pwdAccountLockedTime"); ok {
		// Present means locked (draft-behera-ldap-password-policy 5.3.3;
		// "000001010000Z" locks for good). A lock that pwdLockoutDuration ends is
		// removed at the user's next successful bind; the proxy does not know the
		// policy's duration, and refuses until the attribute is gone.
		a.Locked = true
	}
	if v, ok := value("pwdReset"); ok && strings.EqualFold(strings.TrimSpace(v), "TRUE") {
		a.MustChangePassword = true
	}

	if v, ok := value("nsAccountLock"); ok && strings.EqualFold(strings.TrimSpace(v), "TRUE") {
		a.Disabled = true
	}
	earliest(&a.Expires, "krbPrincipalExpiration", mapping.ParseGeneralizedTime)
	earliest(&a.PasswordExpires, "krbPasswordExpiration", mapping.ParseGeneralizedTime)
	return a, errors.Join(errs...)
}
