package sync

import (
	"context"
	"fmt"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/mapping"
)

// Preview is what a sync makes of one upstream entry.
type Preview struct {
	// Kind is cache.KindUsers or cache.KindGroups: which object filter the entry matches;
	// empty when it matches neither (it is then mapped as a user, for a look).
	Kind string
	// Entry is the entry as the upstream returned it, binary values included.
	Entry mapping.Entry
	// ID is the identity taken from uniqueness_field, or IDErr why there is none.
	ID    string
	IDErr error
	// Object is the mapped result, or MapErr why the mappings failed.
	Object *mapping.Object
	MapErr error
	// Mappings are the mappings applied, in order.
	Mappings []mapping.Mapping
}

// Preview reads the entry at dn and maps it as the next sync would, so that a user can
// see what each mapping makes of it (and whether a value is a list) before relying on it.
func (s *Syncer) Preview(ctx context.Context, dn string) (*Preview, error) {
	p := &Preview{}
	err := s.pool.WithService(ctx, "preview", func(lc *ldap.Conn) error {
		attrs := append([]string{"*", "+", s.cfg.UniquenessField}, s.users.Attributes()...)
		attrs = append(attrs, s.groups.Attributes()...)
		res, err := lc.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", dedupe(attrs), nil))
		if err != nil {
			return fmt.Errorf("read %s: %w", dn, err)
		}
		if len(res.Entries) == 0 {
			return fmt.Errorf("read %s: no entry", dn)
		}
		p.Entry = entryOf(res.Entries[0])
		for _, k := range []struct{ kind, filter string }{{cache.KindUsers, s.cfg.UserFilter}, {cache.KindGroups, s.cfg.GroupFilter}} {
			res, err := lc.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
				k.filter, []string{"1.1"}, nil))
			if err == nil && len(res.Entries) == 1 {
				p.Kind = k.kind
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.ID, p.IDErr = s.uniqueness(p.Entry)
	set := s.users
	if p.Kind == cache.KindGroups {
		set = s.groups
	}
	p.Mappings = set.Mappings()
	p.Object, p.MapErr = set.Map(p.Entry)
	return p, nil
}
