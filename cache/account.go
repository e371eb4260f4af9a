package cache

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Account is what the directory says about whether a user may log in at all, beside
// the mapped is_active: the account-state attributes a sync reads whatever the
// mappings are (AD userAccountControl, accountExpires, lockoutTime, pwdLastSet;
// OpenLDAP ppolicy pwdAccountLockedTime, pwdReset; FreeIPA nsAccountLock,
// krbPrincipalExpiration, krbPasswordExpiration). An upstream applies them itself at
// every bind; the credential cache applies them to offline logins, which the upstream
// never sees. The zero Account refuses nothing.
type Account struct {
	// Disabled: AD ACCOUNTDISABLE, FreeIPA nsAccountLock TRUE.
	Disabled bool
	// Locked: AD lockoutTime non-zero (or the LOCKOUT flag), ppolicy
	// pwdAccountLockedTime present.
	Locked bool
	// MustChangePassword: AD pwdLastSet 0, ppolicy pwdReset TRUE.
	MustChangePassword bool
	// PasswordExpired: AD PASSWORD_EXPIRED.
	PasswordExpired bool
	// Expires is when the account stops logging in (AD accountExpires, FreeIPA
	// krbPrincipalExpiration); zero: never.
	Expires time.Time
	// PasswordExpires is when the password stops logging in (FreeIPA
	// krbPasswordExpiration); zero: never.
	PasswordExpires time.Time
}

// Refusal says why a directory with this account state would refuse a login at now,
// or nil when it would not.
func (a Account) Refusal(now time.Time) error {
	switch {
	case a.Disabled:
		return ErrOfflineDisabled
	case !a.Expires.IsZero() && !now.Before(a.Expires):
		return fmt.Errorf("%w on %s", ErrOfflineAccountExpired, a.Expires.UTC().Format(time.RFC3339))
	case a.Locked:
		return ErrOfflineLocked
	case a.PasswordExpired:
		return ErrOfflinePasswordExpired
	case !a.PasswordExpires.IsZero() && !now.Before(a.PasswordExpires):
		return fmt.Errorf("%w on %s", ErrOfflinePasswordExpired, a.PasswordExpires.UTC().Format(time.RFC3339))
	case a.MustChangePassword:
		return ErrOfflineMustChangePassword
	}
	return nil
}

// Account flags in the encoding (format 2, see encoding.go).
const (
	accountDisabled = 1 << iota
	accountLocked
	accountMustChange
	accountPasswordExpired
	accountExpires         // followed by the time
	accountPasswordExpires // followed by the time, after Expires's
)

// appendAccount appends the encoding of a: a flag byte, then each time that is set, as
// Unix seconds (varint). Times are kept to the second, which is the resolution of the
// attributes they come from (GeneralizedTime in whole seconds, in practice).
func appendAccount(b []byte, a Account) []byte {
	var flags byte
	for _, f := range []struct {
		set bool
		bit byte
	}{
		{a.Disabled, accountDisabled}, {a.Locked, accountLocked}, {a.MustChangePassword, accountMustChange},
		{a.PasswordExpired, accountPasswordExpired}, {!a.Expires.IsZero(), accountExpires},
		{!a.PasswordExpires.IsZero(), accountPasswordExpires},
	} {
		if f.set {
			flags |= f.bit
		}
	}
	b = append(b, flags)
	if !a.Expires.IsZero() {
		b = binary.AppendVarint(b, a.Expires.Unix())
	}
	if !a.PasswordExpires.IsZero() {
		b = binary.AppendVarint(b, a.PasswordExpires.Unix())
	}
	return b
}

// account reads what appendAccount wrote.
func (d *decoder) account() Account {
	flags := d.readByte()
	if d.err == nil && flags >= accountPasswordExpires<<1 {
		d.err = fmt.Errorf("unknown account flags %#x", flags)
	}
	a := Account{
		Disabled:           flags&accountDisabled != 0,
		Locked:             flags&accountLocked != 0,
		MustChangePassword: flags&accountMustChange != 0,
		PasswordExpired:    flags&accountPasswordExpired != 0,
	}
	if flags&accountExpires != 0 {
		a.Expires = d.unixTime()
	}
	if flags&accountPasswordExpires != 0 {
		a.PasswordExpires = d.unixTime()
	}
	return a
}

// unixTime reads a time as Unix seconds (varint), in UTC.
func (d *decoder) unixTime() time.Time {
	x := d.uvarint()
	return time.Unix(int64(x>>1)^-int64(x&1), 0).UTC() // zigzag, as binary.AppendVarint
}
