package cache

import "testing"

// putUsers commits one sync of users only.
func putUsers(t *testing.T, s *Store, users ...*User) {
	t.Helper()
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, u := range users {
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// loginUser is a user with the given user name, mail and UPN values (a string when
// there is one, a list otherwise; none: no UPN attribute).
func loginUser(i int, username, mail string, upns ...string) *User {
	u := testUser(i, 1, "")
	u.Username, u.Email = username, mail
	switch len(upns) {
	case 0:
	case 1:
		u.Attributes[UPNAttribute] = upns[0]
	default:
		u.Attributes[UPNAttribute] = upns
	}
	return u
}

func TestUserByLoginName(t *testing.T) {
	s := openMem(t)
	putUsers(t, s,
		// A UPN whose local part is not the user name: the common case in AD.
		loginUser(1, "jsmith", "john.smith@example.org", "John.Smith@corp.example.com"),
		// UPN and mail the same, as often.
		loginUser(2, "alice", "alice@example.org", "alice@example.org"),
		// Two users with one mail address: it names neither.
		loginUser(3, "bob", "shared@example.org"),
		loginUser(4, "carol", "shared@example.org"),
		// One user's mail is another's user name: the name names neither.
		loginUser(5, "dave@example.org", "dave.other@example.org"),
		loginUser(6, "erin", "dave@example.org"),
		// One user's UPN is another's mail.
		loginUser(7, "frank", "frank@example.org", "grace@example.org"),
		loginUser(8, "grace", "grace@example.org"),
		// Several principal names (FreeIPA's krbPrincipalName), one of them twice.
		loginUser(9, "heidi", "", "heidi@EXAMPLE.ORG", "h.alias@EXAMPLE.ORG", "HEIDI@example.org"),
	)
	sn := s.Snapshot()
	tests := []struct {
		name string
		want int // user number; 0: none
	}{
		{"jsmith", 1},
		{"JSMITH", 1},
		{"john.smith@corp.example.com", 1},
		{"john.smith@example.org", 1},
		{"jsmith@corp.example.com", 0}, // not a name the store knows (AD's implicit UPN)
		{"alice@example.org", 2},
		{"ALICE@EXAMPLE.ORG", 2},
		{"shared@example.org", 0},
		{"bob", 3},
		{"dave@example.org", 0},
		{"dave.other@example.org", 5},
		{"grace@example.org", 0},
		{"frank@example.org", 7},
		{"grace", 8},
		{"heidi@example.org", 9},
		{"h.alias@example.org", 9},
		{"", 0},
		{"nobody", 0},
	}
	for _, tt := range tests {
		u, ok := sn.UserByLoginName(tt.name)
		switch {
		case tt.want == 0 && ok:
			t.Errorf("%q resolved to %s, want nobody", tt.name, u.Username)
		case tt.want != 0 && (!ok || u.ID != userID(tt.want)):
			t.Errorf("%q resolved to %+v, %v; want user %d", tt.name, u, ok, tt.want)
		}
	}
	// The UPN index follows the attribute: a user whose UPN changes is found by the new one.
	putUsers(t, s, loginUser(1, "jsmith", "john.smith@example.org", "js@corp.example.com"))
	if _, ok := s.Snapshot().UserByLoginName("john.smith@corp.example.com"); ok {
		t.Error("the old UPN still resolves")
	}
	if u, ok := s.Snapshot().UserByLoginName("js@corp.example.com"); !ok || u.ID != userID(1) {
		t.Errorf("the new UPN resolves to %+v, %v", u, ok)
	}
}

func TestNetBIOSDomain(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	if got := s.Snapshot().NetBIOSDomain(); got != "" {
		t.Fatalf("empty store: %q", got)
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
	commit(func(w *Sync) { w.SetNetBIOSDomain("EXAMPLE") })
	before := s.Snapshot()
	if got := before.NetBIOSDomain(); got != "EXAMPLE" {
		t.Fatalf("after a sync that read it: %q", got)
	}
	// A run that could not read it keeps the stored name.
	commit(nil)
	if got := s.Snapshot().NetBIOSDomain(); got != "EXAMPLE" {
		t.Fatalf("after a sync that did not read it: %q", got)
	}
	// An aborted run changes nothing.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	w.SetNetBIOSDomain("OTHER")
	w.Abort()
	if got := s.Snapshot().NetBIOSDomain(); got != "EXAMPLE" {
		t.Fatalf("after an aborted sync: %q", got)
	}
	// It survives a restart: down-level names resolve before any upstream answers.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer func() { s.Close() }()
	if got := s.Snapshot().NetBIOSDomain(); got != "EXAMPLE" {
		t.Fatalf("after reopening: %q", got)
	}
	if got := before.NetBIOSDomain(); got != "EXAMPLE" {
		t.Fatalf("an older snapshot changed: %q", got)
	}
	// A directory without one (the upstream now says so) clears it.
	commit(func(w *Sync) { w.SetNetBIOSDomain("") })
	if got := s.Snapshot().NetBIOSDomain(); got != "" {
		t.Fatalf("after a sync that found none: %q", got)
	}
}
