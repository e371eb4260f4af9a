package sync_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/mapping"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// replace sets attributes of dn as the directory's administrator.
func replace(t *testing.T, srv *slapdtest.Server, dn string, attrs map[string]string) {
	t.Helper()
	modify(t, srv.Conn(t), dn, func(req *ldap.ModifyRequest) {
		for name, v := range attrs {
			req.Replace(name, []string{v})
		}
	})
}

// The ppolicy attributes are operational: "*" does not return them, so the sync must ask
// for them by name, whatever the mappings ask for. Here no mapping mentions them.
func TestAccountStateOpenLDAPPasswordPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{Users: 3, Groups: -1, PasswordPolicy: true})
	replace(t, e.srv, e.srv.UserDN(1), map[string]string{"pwdAccountLockedTime": "000001010000Z"})
	replace(t, e.srv, e.srv.UserDN(2), map[string]string{"pwdReset": "TRUE"})
	sn := e.sync(config(t, func(c *ldapsync.Config) {
		c.Mappings.Users = []mapping.Mapping{{Name: "openldap-is-active", Field: "is_active", Expression: "true"}}
	}))
	want := map[string]cache.Account{
		slapdtest.UserName(1): {Locked: true},
		slapdtest.UserName(2): {MustChangePassword: true},
		slapdtest.UserName(3): {},
	}
	for name, acct := range want {
		u, ok := sn.UserByUsername(name)
		if !ok {
			t.Fatalf("%s not synced", name)
		}
		if u.Account != acct || !u.IsActive {
			t.Errorf("%s: account %+v active %v, want %+v and active (the mapping's)", name, u.Account, u.IsActive, acct)
		}
	}
}

// Active Directory's account state, as AD-shaped entries on slapd (msuser schema) carry
// it, reaches the store with the active-directory preset.
func TestAccountStateActiveDirectory(t *testing.T) {
	t.Parallel()
	users := []adUser{
		{cn: "Normal", sam: "normal", uac: "512", pwdLastSet: "133497216000000000", guid: 0x00, rid: 1101},
		{cn: "Expired", sam: "expired", uac: "512", pwdLastSet: "133497216000000000", guid: 0x10, rid: 1102},
		{cn: "Locked", sam: "locked", uac: "512", pwdLastSet: "133497216000000000", guid: 0x20, rid: 1103},
		{cn: "Must Change", sam: "mustchange", uac: "512", pwdLastSet: "0", guid: 0x30, rid: 1104},
		{cn: "Password Expired", sam: "pwexpired", uac: strconv.Itoa(512 | 0x800000), pwdLastSet: "133497216000000000", guid: 0x40, rid: 1105},
		{cn: "Disabled", sam: "disabled", uac: "514", pwdLastSet: "133497216000000000", guid: 0x50, rid: 1106},
	}
	srv := slapdtest.New(t, slapdtest.Options{Users: -1, Groups: -1, Schemas: []string{"msuser"}, ExtraLDIF: adLDIF(users, nil)})
	expired := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	replace(t, srv, adDN("Normal"), map[string]string{"accountExpires": "9223372036854775807", "lockoutTime": "0"})
	replace(t, srv, adDN("Expired"), map[string]string{"accountExpires": strconv.FormatInt(expired.Unix()*1e7+116444736000000000, 10)})
	replace(t, srv, adDN("Locked"), map[string]string{"lockoutTime": "133497216000000000"})

	e := newEnvAt(t, srv.URL, srv.ServiceDN, srv.ServicePassword, srv.Suffix)
	sn := e.sync(config(t, func(c *ldapsync.Config) {
		c.Preset = "active-directory"
		c.UserFilter = "(objectClass=user)" // see TestActiveDirectoryPreset
	}))
	want := map[string]cache.Account{
		"normal":     {},
		"expired":    {Expires: expired},
		"locked":     {Locked: true},
		"mustchange": {MustChangePassword: true},
		"pwexpired":  {PasswordExpired: true},
		"disabled":   {Disabled: true},
	}
	for name, acct := range want {
		u, ok := sn.UserByUsername(name)
		if !ok {
			t.Fatalf("%s not synced", name)
		}
		if u.Account != acct {
			t.Errorf("%s: account %+v, want %+v", name, u.Account, acct)
		}
	}
}
