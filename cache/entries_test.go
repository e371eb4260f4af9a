package cache

import (
	"path/filepath"
	"reflect"
	"testing"
)

// Entry sets are committed with a sync, kept by runs that do not set them, changed and
// deleted whole, and read back after a restart.
func TestEntrySets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := openDir(t, dir)
	t.Cleanup(func() { s.Close() })
	sudo := []Entry{
		{DN: "cn=defaults,ou=sudoers,dc=example,dc=org", Upstream: []Attribute{{Name: "objectClass", Values: []string{"top", "sudoRole"}}, {Name: "sudoOption", Values: []string{"!authenticate"}}}},
		{DN: "cn=admins,ou=sudoers,dc=example,dc=org", Upstream: []Attribute{{Name: "sudoUser", Values: []string{"%admins"}}, {Name: "sudoCommand", Values: []string{"ALL"}}}},
	}
	maps := []Entry{{DN: "nisMapName=auto.master,dc=example,dc=org", Upstream: []Attribute{{Name: "nisMapName", Values: []string{"auto.master"}}}}}

	commit := func(sets map[string][]Entry) *Snapshot {
		t.Helper()
		w, err := s.BeginSync(KindUsers, KindGroups)
		if err != nil {
			t.Fatal(err)
		}
		if sets != nil {
			if err := w.SetEntrySets(sets); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		return s.Snapshot()
	}
	first := commit(map[string][]Entry{"sudo": sudo, "automount": maps})
	if got, ok := first.EntrySet("sudo"); !ok || !reflect.DeepEqual(got, sudo) {
		t.Fatalf("sudo set %v %v", got, ok)
	}
	if names := first.EntrySetNames(); !reflect.DeepEqual(names, []string{"automount", "sudo"}) {
		t.Fatalf("names %v", names)
	}

	kept := commit(nil)
	if ch := kept.ChangesSince(first); !ch.Empty() {
		t.Fatalf("a run that sets no entry sets changed %+v", ch)
	}
	same := commit(map[string][]Entry{"sudo": sudo, "automount": maps})
	if ch := same.ChangesSince(kept); !ch.Empty() {
		t.Fatalf("the same sets again changed %+v", ch)
	}

	changed := commit(map[string][]Entry{"sudo": sudo[:1]})
	if ch := changed.ChangesSince(same); !reflect.DeepEqual(ch.EntrySets, []string{"automount", "sudo"}) {
		t.Fatalf("changes %+v, want both sets", ch)
	}
	if _, ok := changed.EntrySet("automount"); ok {
		t.Fatal("a set no longer set is still there")
	}
	if got, _ := changed.EntrySet("sudo"); len(got) != 1 {
		t.Fatalf("sudo set after the change: %v", got)
	}
	if got, _ := same.EntrySet("sudo"); len(got) != 2 {
		t.Fatal("an earlier snapshot changed")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	reopened := s.Snapshot()
	if got, ok := reopened.EntrySet("sudo"); !ok || !reflect.DeepEqual(got, sudo[:1]) {
		t.Fatalf("after a restart: %v %v", got, ok)
	}
	if _, ok := reopened.EntrySet("automount"); ok {
		t.Fatal("the deleted set is back after a restart")
	}

	// An aborted run leaves the sets as they were, also after a restart.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetEntrySets(map[string][]Entry{"other": maps}); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, ok := s.Snapshot().EntrySet("other"); ok {
		t.Fatal("an aborted run's set is served")
	}
	s.Close()
	s = openDir(t, dir)
	if names := s.Snapshot().EntrySetNames(); !reflect.DeepEqual(names, []string{"sudo"}) {
		t.Fatalf("after an aborted run and a restart: %v", names)
	}
}
