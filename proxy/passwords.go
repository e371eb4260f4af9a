package proxy

import (
	"log/slog"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// passwordCaches is the one place that remembers and forgets what the proxy keeps of
// users' passwords: the credential cache's hashes (bind.cache_passwords) and the
// cached-authentication entries (bind.cached_auth_ttl). Each is optional. The credential
// cache keeps a synced user's hash by the user's ID, and that of any other identity the
// upstream accepted (an application's own account) by its DN.
type passwordCaches struct {
	creds *cache.Credentials
	auth  *cache.AuthCache
	store *cache.Store
	log   *slog.Logger
}

// forget drops whatever is cached of the password of the identity the upstream knows as
// dn; u is that user when the caller already resolved it, else it is looked up. The
// upstream is always believed: once it refused a password, or a password changed, no
// cache may log the old one in — neither the user's hash nor one kept by the DN while
// the DN was no synced user's.
func (p *passwordCaches) forget(dn string, u *cache.User) {
	if p.auth != nil {
		p.auth.Forget(dn)
	}
	if p.creds == nil {
		return
	}
	if u == nil && p.store != nil {
		u, _ = p.store.Snapshot().UserByDN(dn)
	}
	if u != nil {
		p.creds.Forget(u.ID)
	}
	p.creds.ForgetDN(dn)
}

// rememberHash keeps a hash of password as the one the upstream just accepted for the
// synced user u or, when the name resolved to no user, for the identity dn (the name as
// bound). A name that is not a DN (DOMAIN\user or a UPN the store does not know, which
// Active Directory accepts) is not kept: offline, nothing would say whose it is.
func (p *passwordCaches) rememberHash(u *cache.User, dn string, password []byte) {
	if p.creds == nil {
		return
	}
	var err error
	switch {
	case u != nil:
		err = p.creds.Remember(u, password)
		dn = u.DN
	case isDN(dn):
		err = p.creds.RememberDN(dn, password)
	default:
		return
	}
	if err != nil {
		p.log.Debug("password hash not updated", "dn", dn, "err", err)
	}
}

// changed records a password change the upstream accepted for dn: the old password is
// forgotten and, when the proxy knows it, the new one remembered. newPassword is nil when
// the proxy cannot tell it.
func (p *passwordCaches) changed(dn string, newPassword []byte) {
	p.forget(dn, nil)
	if newPassword == nil {
		return
	}
	var u *cache.User
	if p.store != nil {
		u, _ = p.store.Snapshot().UserByDN(dn)
	}
	p.rememberHash(u, dn, newPassword)
}

// isDN says whether name is a DN: the credential cache keeps identities that are not
// synced users by DN only.
func isDN(name string) bool {
	dn, err := ldap.ParseDN(name)
	return err == nil && len(dn.RDNs) > 0
}
