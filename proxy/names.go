package proxy

import (
	"strings"

	"github.com/ldapproxy/ldapproxy/cache"
)

// resolver finds the synced user a name stands for: a bind name, a Password Modify
// userIdentity, a password_reset_identities entry.
type resolver struct {
	store *cache.Store // nil: no name is resolved
}

// user returns the synced user name stands for: a DN (served or upstream, in any
// spelling the directory takes: the store compares DNs as directory.NormalizeDN does), a
// user name, or a user@domain UPN (matched against the user's mapped upn or mail). It
// returns nil when the store does not know the name; the name then goes upstream as it
// came, and the upstream decides.
func (n *resolver) user(name string) *cache.User {
	if n.store == nil {
		return nil
	}
	sn := n.store.Snapshot()
	if strings.Contains(name, "=") {
		if u, ok := sn.UserByBindDN(name); ok {
			return u
		}
		return nil
	}
	if u, ok := sn.UserByUsername(name); ok {
		return u
	}
	if local, _, ok := strings.Cut(name, "@"); ok {
		if u, ok := sn.UserByUsername(local); ok &&
			(strings.EqualFold(attrString(u.Attributes["upn"]), name) || strings.EqualFold(u.Email, name)) {
			return u
		}
	}
	return nil
}

// upstreamDN is the DN the upstream knows a user by: name may be an authzId ("dn:..."),
// a DN of the served tree, a user name or anything else the synced store resolves. A name
// the store does not know is taken as it is.
func (n *resolver) upstreamDN(name string) string {
	if len(name) > 3 && strings.EqualFold(name[:3], "dn:") {
		name = name[3:]
	}
	if u := n.user(name); u != nil {
		return u.DN
	}
	return name
}

// servedDN is the DN a user has in the served tree.
func servedDN(u *cache.User) string {
	if u.Path != "" {
		return u.Path
	}
	return u.DN
}
