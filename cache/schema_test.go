package cache

import "testing"

func TestSchema(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	if got := s.Snapshot().Schema(); got != nil {
		t.Fatalf("empty store: %+v", got)
	}
	commit := func(set func(*Sync)) {
		t.Helper()
		w, err := s.BeginSync(KindUsers)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		if err := w.PutUser(testUser(1, 1, "")); err != nil {
			t.Fatal(err)
		}
		if set != nil {
			set(w)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	schema := Schema{
		DN:             "cn=Subschema",
		AttributeTypes: []string{"( 1.3.6.1.1.1.1.0 NAME 'uidNumber' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )"},
		ObjectClasses:  []string{"( 2.5.6.0 NAME 'top' ABSTRACT MUST objectClass )"},
		MatchingRules:  []string{"( 2.5.13.14 NAME 'integerMatch' SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 )"},
		LDAPSyntaxes:   []string{"( 1.3.6.1.4.1.1466.115.121.1.27 DESC 'Integer' )"},
	}
	commit(func(w *Sync) { w.SetSchema(schema) })
	first := s.Snapshot().Schema()
	if !first.Equal(&schema) {
		t.Fatalf("after a sync that read it: %+v", first)
	}
	// The same schema read again is not written again: the snapshot keeps the one it has.
	written := s.written.Load()
	commit(func(w *Sync) { w.SetSchema(schema) })
	if got := s.Snapshot().Schema(); got != first {
		t.Error("the same schema replaced the stored one")
	}
	// A run that could not read it keeps the stored one.
	commit(nil)
	if got := s.Snapshot().Schema(); got != first {
		t.Fatalf("after a sync that did not read it: %+v", got)
	}
	if n := s.written.Load() - written; n > 4096 {
		t.Errorf("%d bytes written by two syncs that changed nothing", n)
	}
	// An aborted run changes nothing.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	w.SetSchema(Schema{DN: "cn=other"})
	w.Abort()
	if got := s.Snapshot().Schema(); got != first {
		t.Fatalf("after an aborted sync: %+v", got)
	}
	// A batch (a change stream's) keeps it.
	b, err := s.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutUser(testUser(2, 1, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := s.Snapshot().Schema(); got != first {
		t.Fatalf("after a batch: %+v", got)
	}
	// It survives a restart: the served tree matches by it before any upstream answers.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer func() { s.Close() }()
	if got := s.Snapshot().Schema(); !got.Equal(&schema) {
		t.Fatalf("after reopening: %+v", got)
	}
	// A changed schema replaces it.
	changed := schema
	changed.AttributeTypes = append([]string{"( 2.5.4.3 NAME 'cn' SUP name )"}, schema.AttributeTypes...)
	commit(func(w *Sync) { w.SetSchema(changed) })
	if got := s.Snapshot().Schema(); !got.Equal(&changed) || got.Equal(&schema) {
		t.Fatalf("after a sync that read another: %+v", got)
	}
}
