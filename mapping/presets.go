package mapping

import (
	"fmt"
	"strings"
)

// presets are the built-in mapping sets. Names are stable: configurations
// replace a preset mapping by naming it. The README's table lists them; a
// test keeps the two in step.
var presets = map[string][2][]Mapping{
	"active-directory": {
		Users: {
			{"ad-username", "username", `ldap.sAMAccountName`},
			{"ad-name", "name", `ldap.displayName ?? ldap.name ?? ldap.cn`},
			{"ad-email", "email", `ldap.mail`},
			{"ad-is-active", "is_active", `!uac_disabled(ldap.userAccountControl)`},
			{"ad-upn", "attributes.upn", `list_flatten(ldap.userPrincipalName)`},
			{"ad-given-name", "attributes.given_name", `list_flatten(ldap.givenName)`},
			{"ad-surname", "attributes.surname", `list_flatten(ldap.sn)`},
			{"ad-object-guid", "attributes.object_guid", `guid_to_string(ldap.objectGUID)`},
		},
		Groups: {
			{"ad-name", "name", `ldap.cn`},
			{"ad-description", "attributes.description", `list_flatten(ldap.description)`},
		},
	},
	"openldap": {
		Users: {
			{"openldap-username", "username", `ldap.uid`},
			{"openldap-name", "name", `ldap.displayName ?? ldap.cn`},
			{"openldap-email", "email", `ldap.mail`},
			// ppolicy sets pwdAccountLockedTime (an operational attribute)
			// while an account is locked.
			{"openldap-is-active", "is_active", `ldap.pwdAccountLockedTime == nil`},
			{"openldap-given-name", "attributes.given_name", `list_flatten(ldap.givenName)`},
			{"openldap-surname", "attributes.surname", `list_flatten(ldap.sn)`},
		},
		Groups: {
			{"openldap-name", "name", `ldap.cn`},
			{"openldap-description", "attributes.description", `list_flatten(ldap.description)`},
		},
	},
	"freeipa": {
		Users: {
			{"freeipa-username", "username", `ldap.uid`},
			{"freeipa-name", "name", `ldap.displayName ?? ldap.cn`},
			{"freeipa-email", "email", `ldap.mail`},
			{"freeipa-is-active", "is_active", `lower(list_flatten(ldap.nsAccountLock) ?? "false") != "true"`},
			// Every principal name (aliases too) is a UPN-like bind name (jdoe@IPA.EXAMPLE):
			// a list, not flattened.
			{"freeipa-upn", "attributes.upn", `ldap.krbPrincipalName`},
			{"freeipa-given-name", "attributes.given_name", `list_flatten(ldap.givenName)`},
			{"freeipa-surname", "attributes.surname", `list_flatten(ldap.sn)`},
		},
		Groups: {
			{"freeipa-name", "name", `ldap.cn`},
			{"freeipa-description", "attributes.description", `list_flatten(ldap.description)`},
		},
	},
}

// Presets returns the names of the built-in mapping sets.
func Presets() []string {
	return []string{"active-directory", "openldap", "freeipa"}
}

// PresetMappings returns a copy of a preset's mappings for one kind.
func PresetMappings(preset string, kind Kind) ([]Mapping, error) {
	p, ok := presets[preset]
	if !ok {
		return nil, fmt.Errorf("preset %q is not one of %s", preset, strings.Join(Presets(), ", "))
	}
	if kind != Users && kind != Groups {
		return nil, fmt.Errorf("mapping: unknown kind %d", int(kind))
	}
	return append([]Mapping(nil), p[kind]...), nil
}
