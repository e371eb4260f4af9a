package proxy

import (
	"log/slog"

	"github.com/ldapproxy/ldapproxy/cache"
)

// passwordCaches is the one place that remembers and forgets what the proxy keeps of
// users' passwords: the credential cache's hashes (bind.cache_passwords) and the
// cached-authentication entries (bind.cached_auth_ttl). Each is optional.
type passwordCaches struct {
	creds *cache.Credentials
	auth  *cache.AuthCache
	store *cache.Store
	log   *slog.Logger
}

// forget drops whatever is cached of the password of the user the upstream knows as dn;
// u is that user when the caller already resolved it, else it is looked up. The upstream
// is always believed: once it refused a password, or a password changed, no cache may
// log the old one in.
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
}

// rememberHash keeps a hash of password as the one the upstream just accepted for u.
func (p *passwordCaches) rememberHash(u *cache.User, password []byte) {
	if p.creds == nil || u == nil {
		return
	}
	if err := p.creds.Remember(u, password); err != nil {
		p.log.Debug("password hash not updated", "dn", u.DN, "err", err)
	}
}

// changed records a password change the upstream accepted for dn: the old password is
// forgotten and, when the proxy knows it, the new one remembered. newPassword is nil when
// the proxy cannot tell it.
func (p *passwordCaches) changed(dn string, newPassword []byte) {
	p.forget(dn, nil)
	if newPassword == nil || p.store == nil {
		return
	}
	if u, ok := p.store.Snapshot().UserByDN(dn); ok {
		p.rememberHash(u, newPassword)
	}
}
