package proxy

import (
	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// schemaOf is the schema the served tree of sn matches with: the upstream's, as the
// last sync that read it stored it; nil, the built-in schema, when the store holds none
// (written by a version that did not read schemas, or an upstream that publishes none)
// or when it does not parse. A schema is parsed once: every build with the same
// descriptions matches with the Schema parsed first (and serves its subschema subentry,
// made once). The caller holds c.mu.
func (c *cached) schemaOf(sn *cache.Snapshot) *directory.Schema {
	stored := sn.Schema()
	if stored == nil {
		return nil
	}
	if c.parsed != nil && stored.Equal(c.parsedFrom) {
		return c.parsed
	}
	sch, err := directory.ParseSchema(directory.Descriptions{
		AttributeTypes: stored.AttributeTypes, ObjectClasses: stored.ObjectClasses,
		MatchingRules: stored.MatchingRules, LDAPSyntaxes: stored.LDAPSyntaxes,
	}, c.log)
	if err != nil {
		c.log.Warn("cannot use the upstream's schema; matching with the built-in one", "subschema", stored.DN, "err", err)
		return nil
	}
	c.parsed, c.parsedFrom = sch, stored
	return sch
}

// schema is the schema the served tree matches with, which the subschema subentry
// describes.
func (c *cached) schema() *directory.Schema {
	if t := c.tree.Load(); t != nil {
		return t.Schema()
	}
	return directory.BuiltinSchema()
}
