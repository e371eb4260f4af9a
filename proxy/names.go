package proxy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// NamesConfig is the part of the `bind:` section that says how bind names resolve.
//
// Example:
//
//	bind:
//	  netbios_domain: EXAMPLE   # EXAMPLE\alice binds as alice
type NamesConfig struct {
	// NetBIOSDomain is the domain of down-level bind names (EXAMPLE\alice), compared
	// without regard to case. Default "": the one the sync reads from Active Directory
	// (the domain's nETBIOSName); set it for a directory that has none, or to override
	// what the upstream says.
	NetBIOSDomain string `yaml:"netbios_domain"`
}

// Validate checks the NetBIOS domain name: at most 15 characters, none of those Windows
// refuses in one, and no dot — a DNS domain (example.com\alice) is not a down-level name,
// and Active Directory does not take it either.
func (c *NamesConfig) Validate() error {
	d := c.NetBIOSDomain
	switch {
	case d == "":
		return nil
	case strings.TrimSpace(d) != d || strings.TrimSpace(d) == "":
		return fmt.Errorf("netbios_domain: %q has leading or trailing spaces", d)
	case strings.ContainsAny(d, `\/:*?"<>|.`):
		return fmt.Errorf(`netbios_domain: %q is not a NetBIOS domain name (no \ / : * ? " < > | or dot; a DNS domain is not one: EXAMPLE, not example.com)`, d)
	case utf8.RuneCountInString(d) > 15:
		return errors.New("netbios_domain: a NetBIOS domain name has at most 15 characters")
	}
	return nil
}

// resolver finds the synced user a name stands for: a bind name, a Password Modify
// userIdentity, a password_reset_identities or search.readers entry. These are the forms
// it takes, as Active Directory takes them at a bind:
//
//   - a DN, served or upstream, in any spelling the directory takes (the store compares
//     DNs as directory.NormalizeDN does);
//   - DOMAIN\user, a down-level logon name, where DOMAIN is the NetBIOS domain name
//     (bind.netbios_domain, else what the sync read from the upstream) and user the
//     user name; any other domain, a DNS one included, resolves to nobody;
//   - a user name, the user's UPN (each value of attributes.upn: AD's userPrincipalName,
//     whatever its local part; FreeIPA's krbPrincipalName), its mail address, or AD's
//     implicit UPN (user name@the DNS domain the sync read), without regard to case. A
//     name that stands for two users, in one of these or across them, resolves to
//     nobody.
//
// A name that resolves to nobody goes upstream as it came, and the upstream decides.
type resolver struct {
	store *cache.Store // nil: no name is resolved
	// netbios is bind.netbios_domain; "": the store's (read from the upstream at sync).
	netbios string
}

func newResolver(o Options) *resolver {
	return &resolver{store: o.Store, netbios: o.Names.NetBIOSDomain}
}

// user returns the synced user name stands for (see resolver), or nil, without its
// attributes (cache.Snapshot.Names).
func (n *resolver) user(name string) *cache.User {
	if n.store == nil || name == "" {
		return nil
	}
	return n.userIn(n.store.Snapshot(), name)
}

// nobodyMemo remembers, for one client connection, the last bind name that resolved to
// nobody, and in which generation of the store: an application binds as its service
// account before each user's login, on the same connection, and that name is no synced
// user's. The same name in the same generation resolves to nobody again; any commit
// makes it resolve anew. Only binds use it, and a connection runs those one at a time.
type nobodyMemo struct {
	name string
	gen  uint64
	set  bool
}

// bindUser is user for a bind on the connection whose memo m is.
func (n *resolver) bindUser(m *nobodyMemo, name string) *cache.User {
	if n.store == nil || name == "" {
		return nil
	}
	sn := n.store.Snapshot()
	gen := sn.Generation()
	if m.set && m.gen == gen && m.name == name {
		return nil
	}
	u := n.userIn(sn, name)
	if u == nil {
		*m = nobodyMemo{name: name, gen: gen, set: true}
	}
	return u
}

// userIn is user in the snapshot sn.
func (n *resolver) userIn(sn *cache.Snapshot, name string) *cache.User {
	// Without the user's attributes: deciding who a name is never reads them.
	names := sn.Names()
	var (
		u  *cache.User
		ok bool
	)
	switch {
	case strings.Contains(name, "="):
		// A DN. No other form holds "=": AD refuses it in user names, and mail
		// addresses and UPNs that hold one are not worth a DN that goes astray.
		u, ok = names.UserByBindDN(name)
	case strings.Contains(name, `\`):
		domain, user, _ := strings.Cut(name, `\`)
		if nb := n.netbiosDomain(sn); nb != "" && strings.EqualFold(domain, nb) {
			u, ok = names.UserByUsername(user)
		}
	default:
		u, ok = names.UserByLoginName(name)
	}
	if !ok {
		return nil
	}
	return u
}

// netbiosDomain is the NetBIOS domain down-level names are checked against: the
// configuration's, else the upstream's as the last sync read it ("" when neither has
// one: then no down-level name resolves).
func (n *resolver) netbiosDomain(sn *cache.Snapshot) string {
	if n.netbios != "" {
		return n.netbios
	}
	return sn.Domain().NetBIOS
}

// upstreamDN is the DN the upstream knows a user by: name may be an authzId ("dn:..."
// or "u:user name", RFC 4513 §5.2.1.8), or any form resolver takes. A name the store
// does not know is taken as it is (a "dn:" authzId without its prefix).
func (n *resolver) upstreamDN(name string) string {
	switch {
	case len(name) >= 3 && strings.EqualFold(name[:3], "dn:"):
		name = name[3:]
	case len(name) >= 2 && strings.EqualFold(name[:2], "u:"):
		if u := n.user(name[2:]); u != nil {
			return u.DN
		}
		return name
	}
	if u := n.user(name); u != nil {
		return u.DN
	}
	return name
}

// identityDN returns the key that identifies whoever name stands for, whatever form
// names it: the normalised upstream DN of the synced user it resolves to, else the
// normalised name itself. Two names are the same identity when their identityDNs are
// equal: "EXAMPLE\jsmith", "john.smith@example.org", the served DN and the upstream DN
// of one user all give the same key. A session's bound DN is one such name.
func (n *resolver) identityDN(name string) string {
	return directory.NormalizeDN(n.upstreamDN(name))
}

// servedDN is the DN a user has in the served tree.
func servedDN(u *cache.User) string {
	if u.Path != "" {
		return u.Path
	}
	return u.DN
}
