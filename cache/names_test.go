package cache

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
)

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
	// With the DNS domain known, AD's implicit UPN (user name@DNS domain) finds the user
	// too, unless the name is someone else's: a UPN, mail or user name of another user.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range []*User{
		loginUser(1, "jsmith", "john.smith@example.org", "John.Smith@corp.example.com"),
		loginUser(2, "alice", "alice@example.org", "alice@example.org"),
		loginUser(3, "bob", "bob@corp.example.com"),
		loginUser(4, "carol", "bob.other@example.org", "carol@corp.example.com"),
	} {
		if err := w.PutUser(u); err != nil {
			t.Fatal(i, err)
		}
	}
	w.SetDomain(Domain{NetBIOS: "CORP", DNS: "Corp.Example.com"})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn = s.Snapshot()
	for _, tt := range []struct {
		name string
		want int
	}{
		{"jsmith@corp.example.com", 1},
		{"JSmith@CORP.EXAMPLE.COM", 1},
		{"john.smith@corp.example.com", 1},
		{"bob@corp.example.com", 3},   // bob's mail and implicit UPN: one user
		{"carol@corp.example.com", 4}, // carol's UPN and implicit UPN: one user
		{"alice@corp.example.com", 2},
		{"alice@other.example.com", 0},
		{"@corp.example.com", 0},
	} {
		u, ok := sn.UserByLoginName(tt.name)
		switch {
		case tt.want == 0 && ok:
			t.Errorf("%q resolved to %s, want nobody", tt.name, u.Username)
		case tt.want != 0 && (!ok || u.ID != userID(tt.want)):
			t.Errorf("%q resolved to %+v, %v; want user %d", tt.name, u, ok, tt.want)
		}
	}
	putUsers(t, s, loginUser(1, "jsmith", "john.smith@example.org", "jsmith@corp.example.com"),
		loginUser(5, "j", "jsmith@corp.example.com"))
	if u, ok := s.Snapshot().UserByLoginName("jsmith@corp.example.com"); ok {
		t.Errorf("one user's implicit UPN and UPN, another's mail: resolved to %s, want nobody", u.Username)
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

func TestDomain(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	if got := s.Snapshot().Domain(); got != (Domain{}) {
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
	example := Domain{NetBIOS: "EXAMPLE", DNS: "example.com"}
	commit(func(w *Sync) { w.SetDomain(example) })
	before := s.Snapshot()
	if got := before.Domain(); got != example {
		t.Fatalf("after a sync that read it: %+v", got)
	}
	// A run that could not read it keeps the stored name.
	commit(nil)
	if got := s.Snapshot().Domain(); got != example {
		t.Fatalf("after a sync that did not read it: %+v", got)
	}
	// An aborted run changes nothing.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	w.SetDomain(Domain{NetBIOS: "OTHER"})
	w.Abort()
	if got := s.Snapshot().Domain(); got != example {
		t.Fatalf("after an aborted sync: %+v", got)
	}
	// It survives a restart: down-level names resolve before any upstream answers.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer func() { s.Close() }()
	if got := s.Snapshot().Domain(); got != example {
		t.Fatalf("after reopening: %+v", got)
	}
	if got := before.Domain(); got != example {
		t.Fatalf("an older snapshot changed: %+v", got)
	}
	// A directory without one (the upstream now says so) clears it.
	commit(func(w *Sync) { w.SetDomain(Domain{}) })
	if got := s.Snapshot().Domain(); got != (Domain{}) {
		t.Fatalf("after a sync that found none: %+v", got)
	}
}

// Snapshot.Names finds the users the snapshot's own lookups find, with everything but
// their attributes.
func TestNamesLeaveAttributesOut(t *testing.T) {
	s := openMem(t)
	withUpstream := func(u *User) *User {
		u.Upstream = []Attribute{{Name: "cn", Values: []string{u.Username}}, {Name: "jpegPhoto", Values: []string{"\x00\xff"}}}
		return u
	}
	alice := withUpstream(loginUser(1, "alice", "alice@example.org", "alice@corp.example.com"))
	alice.Path = "uid=alice,ou=served,dc=example,dc=org"
	putUsers(t, s, alice, withUpstream(loginUser(2, "bob", "bob@example.org")))
	sn := s.Snapshot()
	names := sn.Names()
	found := 0
	same := func(what string, full, brief *User, okFull, okBrief bool) {
		t.Helper()
		if okFull {
			found++
		}
		if okFull != okBrief || (full == nil) != (brief == nil) {
			t.Fatalf("%s: full %v, without upstream %v", what, okFull, okBrief)
		}
		if full == nil {
			return
		}
		if len(full.Upstream) == 0 || brief.Upstream != nil || len(full.Attributes) == 0 || brief.Attributes != nil {
			t.Errorf("%s: attributes %v, %v and %v, %v; want some and none", what, full.Attributes, full.Upstream, brief.Attributes, brief.Upstream)
		}
		full.Upstream, full.Attributes = nil, nil
		if !reflect.DeepEqual(full, brief) {
			t.Errorf("%s: without upstream %+v, want %+v", what, brief, full)
		}
	}
	for _, dn := range []string{alice.DN, "UID=Alice , OU=served,dc=example,dc=org", "uid=user000002,ou=people,dc=example,dc=org", "uid=nobody,dc=example,dc=org"} {
		u, ok := sn.UserByBindDN(dn)
		b, okb := names.UserByBindDN(dn)
		same("bind DN "+dn, u, b, ok, okb)
	}
	for _, name := range []string{"alice", "BOB", "nobody"} {
		u, ok := sn.UserByUsername(name)
		b, okb := names.UserByUsername(name)
		same("user name "+name, u, b, ok, okb)
	}
	for _, name := range []string{"alice@corp.example.com", "bob@example.org", "nobody@example.org"} {
		u, ok := sn.UserByLoginName(name)
		b, okb := names.UserByLoginName(name)
		same("login name "+name, u, b, ok, okb)
	}
	if found != 7 {
		t.Errorf("%d lookups found a user, want 7", found)
	}
}

// A snapshot of more users than parallelIndexing builds its indexes on two goroutines:
// every user is found by DN, name, mail and UPN, a name, a mail or a UPN two users share
// finds neither, and Users lists them in ID order.
func TestIndexesOfManyUsers(t *testing.T) {
	n := parallelIndexing + 100
	users := make([]*User, 0, n)
	for i := 1; i <= n; i++ {
		users = append(users, loginUser(i, fmt.Sprintf("u%d", i), fmt.Sprintf("u%d@example.org", i), fmt.Sprintf("p%d@corp.example.com", i)))
	}
	users[9].Username = "u11" // also user 11's name
	users[19].Email = "shared@example.org"
	users[29].Email = "shared@example.org"
	users[39].Attributes[UPNAttribute] = "p41@corp.example.com" // also user 41's UPN
	s := openMem(t)
	putUsers(t, s, users...)
	sn := s.Snapshot()
	for i, u := range users {
		id := userID(i + 1)
		if got, ok := sn.UserByDN(u.DN); !ok || got.ID != id {
			t.Fatalf("user %d by DN: %v", i+1, got)
		}
		_, byName := sn.UserByUsername(u.Username)
		_, byMail := sn.UserByLoginName(u.Email)
		_, byUPN := sn.UserByLoginName(u.Attributes[UPNAttribute].(string))
		shared := i+1 == 10 || i+1 == 11
		if byName == shared {
			t.Errorf("user %d by name %q: found %v", i+1, u.Username, byName)
		}
		shared = i+1 == 20 || i+1 == 30
		if byMail == shared {
			t.Errorf("user %d by mail %q: found %v", i+1, u.Email, byMail)
		}
		shared = i+1 == 40 || i+1 == 41
		if byUPN == shared {
			t.Errorf("user %d by UPN: found %v", i+1, byUPN)
		}
	}
	var ids []string
	sn.Users(func(u *User) bool { ids = append(ids, u.ID); return true })
	if len(ids) != n || !slices.IsSorted(ids) {
		t.Errorf("Users lists %d users, sorted: %v", len(ids), slices.IsSorted(ids))
	}
}
