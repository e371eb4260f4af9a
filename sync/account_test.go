package sync

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// fileTime is t as an AD integer time.
func fileTime(t time.Time) string {
	return strconv.FormatInt(t.Unix()*1e7+116444736000000000, 10)
}

func TestAccountState(t *testing.T) {
	past := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	future := time.Date(2040, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		attrs   map[string]string
		want    cache.Account
		wantErr bool
	}{
		{"nothing", nil, cache.Account{}, false},
		{"AD normal account", map[string]string{"userAccountControl": "512", "accountExpires": "9223372036854775807",
			"lockoutTime": "0", "pwdLastSet": "133497216000000000"}, cache.Account{}, false},
		{"AD accountExpires 0 is never", map[string]string{"accountExpires": "0"}, cache.Account{}, false},
		{"AD accountExpires", map[string]string{"accountExpires": fileTime(past)}, cache.Account{Expires: past}, false},
		{"AD accountExpires later", map[string]string{"accountExpires": fileTime(future)}, cache.Account{Expires: future}, false},
		{"AD ACCOUNTDISABLE", map[string]string{"userAccountControl": "514"}, cache.Account{Disabled: true}, false},
		{"AD PASSWORD_EXPIRED", map[string]string{"userAccountControl": strconv.Itoa(512 | 0x800000)}, cache.Account{PasswordExpired: true}, false},
		{"AD LOCKOUT flag", map[string]string{"userAccountControl": strconv.Itoa(512 | 0x10)}, cache.Account{Locked: true}, false},
		{"AD lockoutTime", map[string]string{"lockoutTime": "133497216000000000"}, cache.Account{Locked: true}, false},
		{"AD pwdLastSet 0", map[string]string{"pwdLastSet": "0"}, cache.Account{MustChangePassword: true}, false},
		{"AD attribute names in another case", map[string]string{"useraccountcontrol": "514", "LOCKOUTTIME": "1"}, cache.Account{Disabled: true, Locked: true}, false},
		{"AD unreadable userAccountControl", map[string]string{"userAccountControl": "lots"}, cache.Account{Disabled: true}, true},
		{"AD unreadable accountExpires", map[string]string{"accountExpires": "soon"}, cache.Account{Expires: time.Unix(0, 0).UTC()}, true},
		{"ppolicy locked", map[string]string{"pwdAccountLockedTime": "20250101000000Z"}, cache.Account{Locked: true}, false},
		{"ppolicy locked for good", map[string]string{"pwdAccountLockedTime": "000001010000Z"}, cache.Account{Locked: true}, false},
		{"ppolicy pwdReset", map[string]string{"pwdReset": "TRUE"}, cache.Account{MustChangePassword: true}, false},
		{"ppolicy pwdReset false", map[string]string{"pwdReset": "FALSE"}, cache.Account{}, false},
		{"FreeIPA nsAccountLock", map[string]string{"nsAccountLock": "true"}, cache.Account{Disabled: true}, false},
		{"FreeIPA nsAccountLock false", map[string]string{"nsAccountLock": "FALSE"}, cache.Account{}, false},
		{"FreeIPA krbPrincipalExpiration", map[string]string{"krbPrincipalExpiration": "20200506070809Z"}, cache.Account{Expires: past}, false},
		{"FreeIPA krbPasswordExpiration", map[string]string{"krbPasswordExpiration": "20400506070809Z"}, cache.Account{PasswordExpires: future}, false},
		{"the earlier expiry counts", map[string]string{"accountExpires": fileTime(future), "krbPrincipalExpiration": "20200506070809Z"},
			cache.Account{Expires: past}, false},
		{"FreeIPA unreadable krbPasswordExpiration", map[string]string{"krbPasswordExpiration": "never"},
			cache.Account{PasswordExpires: time.Unix(0, 0).UTC()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &ldap.Entry{DN: "cn=x"}
			for name, v := range tc.attrs {
				e.Attributes = append(e.Attributes, &ldap.EntryAttribute{Name: name, Values: []string{v}})
			}
			got, err := accountState(e)
			if got != tc.want {
				t.Errorf("account %+v, want %+v", got, tc.want)
			}
			if (err != nil) != tc.wantErr || err != nil && !errors.Is(err, errAccountValue) {
				t.Errorf("error %v, want one: %v", err, tc.wantErr)
			}
		})
	}
}
