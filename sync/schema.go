package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// schemaAttributes are the subschema subentry's attributes a full sync reads. They are
// operational (OpenLDAP, 389-DS) or not returned unless asked for (Active Directory),
// so they are named.
var schemaAttributes = []string{"attributeTypes", "objectClasses", "matchingRules", "ldapSyntaxes"}

// readSchema records the upstream's own schema, by which the served tree matches every
// attribute. A failure to read it does not fail the run: the store keeps the schema it
// has (or, having none, the proxy its built-in one), and only a cancelled run stops
// here.
func (r *run) readSchema(ctx context.Context) error {
	sc, err := r.s.schema(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		keeps := "the built-in schema"
		if r.s.store.Snapshot().Schema() != nil {
			keeps = "the last one read"
		}
		r.s.log.Warn("sync: cannot read the upstream's schema; cached searches match by "+keeps, "err", err)
		return nil
	}
	if stored := r.s.store.Snapshot().Schema(); !sc.Equal(stored) {
		r.s.log.Info("sync: the upstream's schema", "subschema", sc.DN, "attribute_types", len(sc.AttributeTypes),
			"object_classes", len(sc.ObjectClasses), "changed", stored != nil)
	}
	r.w.SetSchema(sc)
	return nil
}

// schema reads the upstream's subschema (RFC 4512 §4.2): the root DSE names its
// subschema subentry (subschemaSubentry), and a base search of that entry returns the
// descriptions. That entry is large (OpenLDAP's, some 250 KB; Active Directory's, more):
// it is read over a raw connection, as the objects are.
func (s *Syncer) schema(ctx context.Context) (cache.Schema, error) {
	var sc cache.Schema
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"subschemaSubentry"}, nil))
		if err != nil {
			return fmt.Errorf("read the root DSE: %w", err)
		}
		for _, e := range res.Entries {
			sc.DN = e.GetAttributeValue("subschemaSubentry")
		}
		return nil
	})
	if err != nil {
		return cache.Schema{}, err
	}
	if sc.DN == "" {
		return cache.Schema{}, errors.New("the root DSE names no subschema subentry")
	}
	n := 0
	err = s.rawSearch(ctx, "read the subschema subentry "+sc.DN, sc.DN, ldap.ScopeBaseObject, "(objectClass=*)", schemaAttributes, 0,
		func(e *ldap.Entry) error {
			n++
			sc.AttributeTypes = e.GetEqualFoldAttributeValues("attributeTypes")
			sc.ObjectClasses = e.GetEqualFoldAttributeValues("objectClasses")
			sc.MatchingRules = e.GetEqualFoldAttributeValues("matchingRules")
			sc.LDAPSyntaxes = e.GetEqualFoldAttributeValues("ldapSyntaxes")
			return nil
		})
	switch {
	case err != nil:
		return cache.Schema{}, err
	case n != 1:
		return cache.Schema{}, fmt.Errorf("read the subschema subentry %s: %d entries", sc.DN, n)
	case len(sc.AttributeTypes) == 0:
		return cache.Schema{}, fmt.Errorf("the subschema subentry %s has no attributeTypes", sc.DN)
	}
	return sc, nil
}
