package proxy

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// uidSchema is an upstream schema in which uid is matched case-exactly, unlike the
// built-in schema's uid.
func uidSchema(eq string) *cache.Schema {
	return &cache.Schema{
		DN: "cn=Subschema",
		AttributeTypes: []string{
			"( 2.5.4.0 NAME 'objectClass' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )",
			"( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) EQUALITY " + eq + " SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
			"( 2.5.4.3 NAME ( 'cn' 'commonName' ) EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
		},
		ObjectClasses: []string{"( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )"},
	}
}

// TestCachedUsesStoredSchema: the served tree matches with the schema the store holds;
// a sync that keeps it updates the tree in place, one that changes it has the tree
// built anew with the new one; the subschema subentry describes it.
func TestCachedUsesStoredSchema(t *testing.T) {
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	users := []*cache.User{{ID: "id-alice", DN: "uid=Alice,ou=people," + servedBase, Username: "Alice", Name: "Alice"}}
	commit := func(sc *cache.Schema) {
		t.Helper()
		w, err := store.BeginSync(cache.KindUsers, cache.KindGroups)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		for _, u := range users {
			if err := w.PutUser(u); err != nil {
				t.Fatal(err)
			}
		}
		if sc != nil {
			w.SetSchema(*sc)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	find := func(c *cached, filter string) []string {
		t.Helper()
		f, err := ldap.CompileFilter(filter)
		if err != nil {
			t.Fatal(err)
		}
		var dns []string
		res := c.tree.Load().Search(context.Background(), &directory.SearchRequest{BaseDN: servedBase, Scope: directory.ScopeSubtree, Filter: f}, nil,
			func(e *directory.Entry) error { dns = append(dns, strings.ToLower(e.DN)); return nil })
		if res == nil || res.Code != 0 {
			t.Fatalf("%s: %+v", filter, res)
		}
		slices.Sort(dns)
		return dns
	}

	// No schema stored: the built-in one, whose uid is case-insensitive.
	commit(nil)
	c := newCached(store, ServedOptions{BaseDN: servedBase}, slog.New(slog.DiscardHandler))
	if got := find(c, "(uid=alice)"); len(got) != 1 || !c.schema().Builtin() {
		t.Fatalf("built-in schema: (uid=alice) found %q", got)
	}

	commit(uidSchema("caseExactMatch"))
	upstream := c.schema()
	if upstream.Builtin() || c.tree.Load().Version() != 0 {
		t.Fatal("the tree was not built anew with the stored schema")
	}
	if got := find(c, "(uid=alice)"); len(got) != 0 {
		t.Errorf("case-exact uid: (uid=alice) found %q", got)
	}
	if got := find(c, "(uid=Alice)"); len(got) != 1 {
		t.Errorf("case-exact uid: (uid=Alice) found %q", got)
	}

	// The same schema again, with a user more: the tree is updated, not built anew.
	users = append(users, &cache.User{ID: "id-bob", DN: "uid=Bob,ou=people," + servedBase, Username: "Bob", Name: "Bob"})
	commit(uidSchema("caseExactMatch"))
	if c.tree.Load().Version() != 1 || c.schema() != upstream {
		t.Errorf("the same schema rebuilt the tree: version %d", c.tree.Load().Version())
	}
	if got := find(c, "(uid=Bob)"); len(got) != 1 {
		t.Errorf("the user added: %q", got)
	}

	// A tree built anew with the same schema (a batch that did not apply) matches with
	// the schema parsed before: parsed once per schema, not per build.
	c.mu.Lock()
	c.rebuild(store.Snapshot())
	c.mu.Unlock()
	if c.tree.Load().Version() != 0 || c.schema() != upstream {
		t.Errorf("a build with the same schema parsed it again (version %d)", c.tree.Load().Version())
	}

	// Another schema: built anew with it.
	commit(uidSchema("caseIgnoreMatch"))
	if c.tree.Load().Version() != 0 || c.schema() == upstream {
		t.Error("a changed schema did not rebuild the tree")
	}
	if got := find(c, "(uid=alice)"); len(got) != 1 {
		t.Errorf("case-insensitive uid again: (uid=alice) found %q", got)
	}

	// The subschema subentry the proxy serves describes the tree's schema.
	loc := &local{schema: c.schema}
	var types []string
	req := &directory.SearchRequest{BaseDN: directory.SubschemaDN, Scope: directory.ScopeBase, Attributes: []string{"attributeTypes"}}
	if res := loc.subschema().SearchSubschema(req, func(e *directory.Entry) error {
		for _, a := range e.Attributes {
			for _, v := range a.Values {
				types = append(types, string(v))
			}
		}
		return nil
	}); res == nil || res.Code != 0 {
		t.Fatalf("subschema: %+v", res)
	}
	if !slices.Contains(types, uidSchema("caseIgnoreMatch").AttributeTypes[1]) || slices.ContainsFunc(types, func(v string) bool { return strings.Contains(v, "'mail'") }) {
		t.Errorf("the subschema does not describe the stored schema: %q", types)
	}
}

// A stored schema that does not parse leaves the tree on the built-in schema, with a
// warning.
func TestCachedSchemaThatDoesNotParse(t *testing.T) {
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w, err := store.BeginSync(cache.KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.PutUser(&cache.User{ID: "id-alice", DN: "uid=alice,ou=people," + servedBase, Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	w.SetSchema(cache.Schema{DN: "cn=Subschema", AttributeTypes: []string{"not a description"}})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	var warned []string
	log := slog.New(recordWarnings{&warned})
	c := newCached(store, ServedOptions{BaseDN: servedBase}, log)
	if !c.schema().Builtin() || c.tree.Load().Len() == 0 {
		t.Error("the tree is not on the built-in schema")
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "built-in") {
		t.Errorf("warnings: %q", warned)
	}
}

// recordWarnings keeps the messages of warnings and errors.
type recordWarnings struct{ msgs *[]string }

func (h recordWarnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h recordWarnings) Handle(_ context.Context, r slog.Record) error {
	*h.msgs = append(*h.msgs, r.Message)
	return nil
}
func (h recordWarnings) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordWarnings) WithGroup(string) slog.Handler      { return h }
