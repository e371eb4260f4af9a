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
	// Group is, for a group that maps, the group as a sync stores it, without its
	// parents: they come from the other groups.
	Group *cache.Group
	// MembershipField is sync.membership_field. For a group, Members are its
	// membership values as a sync reads them (range retrieval included): member DNs,
	// or user names with memberUid. With memberOf, memberships are read from the
	// members instead, and Members are the DNs of the groups this group is in.
	MembershipField string
	Members         []string
	// Mappings are the mappings applied, in order.
	Mappings []mapping.Mapping
}

// Preview reads the entry at dn and maps it as the next sync would, so that a user can
// see what each mapping makes of it (and whether a value is a list) before relying on it.
// It reads the upstream only, never the store.
func (s *Syncer) Preview(ctx context.Context, dn string) (*Preview, error) {
	p := &Preview{MembershipField: s.cfg.MembershipField}
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
		e := res.Entries[0]
		p.Entry = entryOf(e)
		for _, k := range []struct{ kind, filter string }{{cache.KindUsers, s.cfg.UserFilter}, {cache.KindGroups, s.cfg.GroupFilter}} {
			res, err := lc.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
				k.filter, []string{"1.1"}, nil))
			if err == nil && len(res.Entries) == 1 {
				p.Kind = k.kind
				break
			}
		}
		if p.Kind != cache.KindGroups {
			return nil
		}
		if s.cfg.MembershipField == "memberOf" {
			p.Members = e.GetAttributeValues("memberOf")
			return nil
		}
		p.Members, err = s.membershipValues(ctx, lc, e)
		return err
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
	if p.Kind == cache.KindGroups && p.MapErr == nil {
		// As readGroups builds it.
		p.Group = &cache.Group{ID: p.ID, DN: p.Entry.DN, Name: p.Object.Name, Attributes: p.Object.Attributes}
	}
	return p, nil
}
