package sync_test

import (
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// An extra set is read with the sync, one level or a whole subtree; a set whose base
// does not exist upstream is empty, and the sync succeeds.
func TestExtraSetScopesAndMissingBase(t *testing.T) {
	e := newEnv(t, slapdtest.Options{Users: 5, Groups: 2})
	sn := e.sync(config(t, func(c *ldapsync.Config) {
		c.Extra = []ldapsync.ExtraSet{
			{Name: "services", BaseDN: "ou=services", Scope: "one"},
			{Name: "tree", BaseDN: "ou=services"},
			{Name: "missing", BaseDN: "ou=sudoers", Filter: "(objectClass=sudoRole)"},
		}
	}))
	one, ok := sn.EntrySet("services")
	if !ok || len(one) != 1 || one[0].DN != e.srv.ServiceDN {
		t.Errorf("one-level set: %+v, want the service account only", one)
	}
	if tree, _ := sn.EntrySet("tree"); len(tree) != 2 {
		t.Errorf("subtree set: %d entries, want ou=services and the service account", len(tree))
	}
	if missing, ok := sn.EntrySet("missing"); !ok || len(missing) != 0 {
		t.Errorf("a set whose base is missing: %v %v, want stored and empty", missing, ok)
	}
}
