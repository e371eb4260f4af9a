package cache

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapproxy/ldapproxy/directory"
)

func TestLookups(t *testing.T) {
	s := openMem(t)
	if sn := s.Snapshot(); sn.Generation() != 0 {
		t.Fatalf("empty store: generation %d", sn.Generation())
	}
	writeSync(t, s, 10, 3, "a", nil)
	sn := s.Snapshot()
	if sn.Generation() != 1 {
		t.Fatalf("generation %d, want 1", sn.Generation())
	}
	if u, g := sn.Counts(); u != 10 || g != 3 {
		t.Fatalf("counts %d users, %d groups", u, g)
	}
	want := testUser(4, 3, "a")
	for _, tc := range []struct {
		name string
		get  func() (*User, bool)
	}{
		{"id", func() (*User, bool) { return sn.UserByID(userID(4)) }},
		{"dn", func() (*User, bool) { return sn.UserByDN("uid=user000004,ou=people,dc=example,dc=org") }},
		{"dn case", func() (*User, bool) { return sn.UserByDN("UID=User000004,OU=People,DC=Example,DC=ORG") }},
		{"dn spaces", func() (*User, bool) { return sn.UserByDN("uid = user000004 , ou=people,  dc=example ,dc=org") }},
		{"dn escaped", func() (*User, bool) { return sn.UserByDN(`uid=user\30\30\30\30\30\34,ou=people,dc=example,dc=org`) }},
		{"path is dn", func() (*User, bool) { return sn.UserByPath("uid=USER000004,ou=people,dc=example,dc=org") }},
		{"username", func() (*User, bool) { return sn.UserByUsername("user000004") }},
		{"username case", func() (*User, bool) { return sn.UserByUsername("USER000004") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, ok := tc.get()
			if !ok {
				t.Fatal("not found")
			}
			if u.ID != want.ID || u.DN != want.DN || u.Username != want.Username || u.Email != want.Email {
				t.Fatalf("got %+v", u)
			}
		})
	}
	for _, tc := range []struct {
		name string
		get  func() (*User, bool)
	}{
		{"id", func() (*User, bool) { return sn.UserByID("nope") }},
		{"dn", func() (*User, bool) { return sn.UserByDN("uid=user000004,ou=other,dc=example,dc=org") }},
		{"username", func() (*User, bool) { return sn.UserByUsername("user00000") }},
		{"group dn as user", func() (*User, bool) { return sn.UserByDN("cn=group0001,ou=groups,dc=example,dc=org") }},
	} {
		t.Run("missing "+tc.name, func(t *testing.T) {
			if u, ok := tc.get(); ok {
				t.Fatalf("found %s", u.DN)
			}
		})
	}

	g, ok := sn.GroupByDN("CN=Group0001, OU=Groups, DC=example, DC=org")
	if !ok || g.ID != groupID(1) || g.Name != "group0001" || !slices.Equal(g.Parents, []string{groupID(0)}) {
		t.Fatalf("GroupByDN: %+v %v", g, ok)
	}
	if _, ok := sn.GroupByID(groupID(2)); !ok {
		t.Fatal("GroupByID")
	}

	var ids []string
	for u := range sn.Users {
		ids = append(ids, u.ID)
	}
	if len(ids) != 10 || !slices.IsSorted(ids) {
		t.Fatalf("Users: %v", ids)
	}
	for i, id := range ids {
		if u := sn.UserAt(i); u.ID != id {
			t.Fatalf("UserAt(%d) = %s, Users has %s", i, u.ID, id)
		}
	}
	n := 0
	sn.Groups(func(*Group) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("Groups did not stop: %d calls", n)
	}

	// Members is the reverse of User.Groups and Group.Parents.
	for gi := range 3 {
		users, groups := sn.Members(groupID(gi))
		var want []string
		for u := range sn.Users {
			if slices.Contains(u.Groups, groupID(gi)) {
				want = append(want, u.ID)
			}
		}
		if !slices.Equal(users, want) {
			t.Errorf("Members(group %d) users %v, want %v", gi, users, want)
		}
		if gi == 0 && !slices.Equal(groups, []string{groupID(1), groupID(2)}) {
			t.Errorf("Members(group 0) groups %v", groups)
		}
	}
}

func TestUserPath(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	u := testUser(1, 1, "")
	u.Path = "uid=user000001,ou=users,o=proxy"
	if err := w.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(testUser(2, 1, "")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if got, ok := sn.UserByPath("UID=user000001, OU=users, O=proxy"); !ok || got.ID != userID(1) {
		t.Fatalf("UserByPath(path): %v %v", got, ok)
	}
	if _, ok := sn.UserByPath(testUser(1, 1, "").DN); ok {
		t.Fatal("UserByPath found a user with a Path by its upstream DN")
	}
	if got, ok := sn.UserByDN(testUser(1, 1, "").DN); !ok || got.Path != u.Path {
		t.Fatalf("UserByDN: %v %v", got, ok)
	}
	if got, ok := sn.UserByPath(testUser(2, 1, "").DN); !ok || got.ID != userID(2) {
		t.Fatalf("UserByPath(dn) for a user without Path: %v %v", got, ok)
	}
}

func TestRename(t *testing.T) {
	s := openMem(t)
	writeSync(t, s, 3, 1, "", nil)
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		u := testUser(i, 1, "")
		if i == 1 {
			u.DN = "uid=renamed,ou=moved,dc=example,dc=org"
			u.Username = "renamed"
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if _, ok := sn.UserByDN(testUser(1, 1, "").DN); ok {
		t.Error("old DN still found")
	}
	if _, ok := sn.UserByUsername("user000001"); ok {
		t.Error("old user name still found")
	}
	u, ok := sn.UserByDN("uid=renamed,ou=moved,dc=example,dc=org")
	if !ok || u.ID != userID(1) {
		t.Fatalf("new DN: %v %v", u, ok)
	}
	if u, _ := sn.UserByUsername("Renamed"); u == nil || u.ID != userID(1) {
		t.Fatal("new user name not found")
	}
	if users, _ := sn.Counts(); users != 3 {
		t.Fatalf("%d users after a rename, want 3", users)
	}
	if st := s.Status()[0]; st.Updated != 1 || st.Created != 0 || st.Deleted != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestDeletion(t *testing.T) {
	s := openMem(t)
	writeSync(t, s, 20, 4, "", nil)
	old := s.Snapshot()
	if users, _ := old.Members(groupID(3)); len(users) == 0 {
		t.Fatal("group 3 has no members to lose")
	}

	// Users 5..9 and group 3 are gone upstream.
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := w.PutGroup(testGroup(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if i >= 5 && i < 10 {
			continue
		}
		if err := w.PutUser(testUser(i, 4, "")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if users, groups := sn.Counts(); users != 15 || groups != 3 {
		t.Fatalf("counts %d, %d", users, groups)
	}
	for i := 5; i < 10; i++ {
		if _, ok := sn.UserByID(userID(i)); ok {
			t.Errorf("user %d still there", i)
		}
		if _, ok := sn.UserByUsername(testUser(i, 4, "").Username); ok {
			t.Errorf("user %d still found by name", i)
		}
	}
	if _, ok := sn.GroupByID(groupID(3)); ok {
		t.Error("group 3 still there")
	}
	if users, groups := sn.Members(groupID(3)); users != nil || groups != nil {
		t.Errorf("deleted group 3 still has members %v %v", users, groups)
	}
	for gi := range 3 {
		users, _ := sn.Members(groupID(gi))
		for _, id := range users {
			if _, ok := sn.UserByID(id); !ok {
				t.Errorf("group %d lists deleted user %s", gi, id)
			}
		}
	}
	_, groups := sn.Members(groupID(0))
	if slices.Contains(groups, groupID(3)) {
		t.Error("group 0 still lists group 3")
	}
	st := s.Status()
	if st[0].Kind != KindUsers || st[0].Deleted != 5 || st[0].Objects != 15 || st[1].Kind != KindGroups || st[1].Deleted != 1 {
		t.Fatalf("status %+v", st)
	}
	// The old snapshot is untouched.
	if users, groups := old.Counts(); users != 20 || groups != 4 {
		t.Fatalf("old snapshot changed: %d, %d", users, groups)
	}
	if _, ok := old.UserByID(userID(7)); !ok {
		t.Fatal("old snapshot lost user 7")
	}
}

// A run of one kind leaves the other alone.
func TestSyncOneKind(t *testing.T) {
	s := openMem(t)
	writeSync(t, s, 5, 2, "", nil)
	w, err := s.BeginSync(KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(testUser(1, 2, "")); err == nil {
		t.Fatal("PutUser accepted in a groups-only sync")
	}
	if err := w.PutGroup(testGroup(0, "")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()
	if users, groups := sn.Counts(); users != 5 || groups != 1 {
		t.Fatalf("counts %d, %d", users, groups)
	}
	// Users keep naming group 1, but it is gone: Members knows only group 0.
	if u, _ := sn.UserByID(userID(1)); !slices.Contains(u.Groups, groupID(1)) {
		t.Fatalf("user 1 groups %v", u.Groups)
	}
	if users, _ := sn.Members(groupID(1)); users != nil {
		t.Fatal("Members of a deleted group")
	}
	if users, _ := sn.Members(groupID(0)); len(users) == 0 {
		t.Fatal("group 0 lost its members")
	}
}

func TestAbort(t *testing.T) {
	s := openMem(t)
	writeSync(t, s, 10, 2, "a", nil)
	before := s.Snapshot()
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.PutUser(testUser(i+100, 2, "b")); err != nil {
			t.Fatal(err)
		}
	}
	if s.Snapshot().Generation() != before.Generation() {
		t.Fatal("snapshot changed before commit")
	}
	w.SetStatus(Status{Kind: KindUsers, Errors: []string{"upstream went away"}})
	w.Abort()
	w.Abort() // harmless
	if err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if err := w.PutUser(testUser(1, 2, "")); err == nil {
		t.Fatal("PutUser after Abort succeeded")
	}
	if s.Snapshot().Generation() != before.Generation() {
		t.Fatal("Abort changed the snapshot")
	}
	st := s.Status()
	if st[0].Result != ResultFailed || st[0].Errors[0] != "upstream went away" || st[0].Created != 0 {
		t.Fatalf("status after Abort: %+v", st[0])
	}
	// The store is free again, and the aborted records are gone.
	writeSync(t, s, 10, 2, "a", nil)
	if sn := s.Snapshot(); sn.Generation() != 2 {
		t.Fatalf("generation %d", sn.Generation())
	}
	if _, ok := s.Snapshot().UserByID(userID(100)); ok {
		t.Fatal("aborted user appeared")
	}
	if st := s.Status()[0]; st.Created+st.Updated+st.Deleted != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestSecondBeginSync(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginSync(KindGroups); !errors.Is(err, ErrSyncRunning) {
		t.Fatalf("second BeginSync: %v", err)
	}
	w.Abort()
	w, err = s.BeginSync(KindGroups)
	if err != nil {
		t.Fatalf("BeginSync after Abort: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginSync(KindUsers, KindGroups); err != nil {
		t.Fatalf("BeginSync after Commit: %v", err)
	}
	if _, err := s.BeginSync(); err == nil {
		t.Fatal("BeginSync without kinds")
	}
}

func TestPutErrors(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, tc := range []struct {
		name string
		u    *User
		want string
	}{
		{"no id", &User{DN: "uid=a,dc=x"}, "empty ID"},
		{"nul in id", &User{ID: "a\x00b", DN: "uid=a,dc=x"}, "NUL"},
		{"no dn", &User{ID: "a"}, "empty DN"},
		{"bad type", &User{ID: "a", DN: "uid=a,dc=x", Attributes: map[string]any{"x": struct{}{}}}, `attribute "x": unsupported type`},
		{"bad list", &User{ID: "a", DN: "uid=a,dc=x", Attributes: map[string]any{"x": []any{"a", 1}}}, `attribute "x": list element`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := w.PutUser(tc.u)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if err := w.PutUser(testUser(1, 1, "")); err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(testUser(1, 1, "")); err == nil || !strings.Contains(err.Error(), "already put") {
		t.Fatalf("duplicate ID: %v", err)
	}
	if err := w.PutGroup(&Group{ID: "g"}); err == nil {
		t.Fatal("group without DN accepted")
	}
}

// Two users with the same user name (or DN): neither is found by it, since
// resolving a bind name to the wrong user is worse than to none.
func TestAmbiguousNames(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	a, b := testUser(1, 1, ""), testUser(2, 1, "")
	b.Username = "USER000001"
	if err := w.PutUser(a); err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if u, ok := s.Snapshot().UserByUsername("user000001"); ok {
		t.Fatalf("ambiguous name resolved to %s", u.ID)
	}
	if _, ok := s.Snapshot().UserByID(userID(2)); !ok {
		t.Fatal("user 2 missing")
	}
}

func TestReturnedObjectsAreCopies(t *testing.T) {
	s := openMem(t)
	writeSync(t, s, 2, 1, "", nil)
	u, _ := s.Snapshot().UserByID(userID(1))
	u.Attributes["sn"] = "changed"
	u.Groups[0] = "changed"
	u2, _ := s.Snapshot().UserByID(userID(1))
	if u2.Attributes["sn"] != "Surnameuser000001" || u2.Groups[0] != groupID(0) {
		t.Fatalf("a change to a returned user reached the store: %+v", u2)
	}
}

func TestAttributeTypes(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	berlin := time.FixedZone("CET", 3600)
	attrs := map[string]any{
		"s":        "text",
		"empty":    "",
		"list":     []string{"b", "a", "b"},
		"one":      []string{"x"},
		"none":     []string{},
		"yes":      true,
		"no":       false,
		"int":      int64(-1 << 40),
		"small":    int(7),
		"u32":      uint32(4000000000),
		"float":    1.5,
		"f32":      float32(0.25),
		"utc":      time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC),
		"zoned":    time.Date(1999, 12, 31, 12, 0, 0, 0, berlin),
		"zero":     time.Time{},
		"anylist":  []any{"p", "q"},
		"nil":      nil,
		"unicode":  "Jürgen Ōtsuka ☃",
		"bin-like": "\x00\xff",
	}
	want := map[string]any{
		"s":        "text",
		"empty":    "",
		"list":     []string{"b", "a", "b"},
		"one":      []string{"x"},
		"none":     []string{},
		"yes":      true,
		"no":       false,
		"int":      int64(-1 << 40),
		"small":    int64(7),
		"u32":      int64(4000000000),
		"float":    1.5,
		"f32":      0.25,
		"utc":      time.Date(2024, 2, 29, 23, 59, 58, 123456789, time.UTC),
		"zoned":    time.Date(1999, 12, 31, 12, 0, 0, 0, berlin),
		"zero":     time.Time{},
		"anylist":  []string{"p", "q"},
		"unicode":  "Jürgen Ōtsuka ☃",
		"bin-like": "\x00\xff",
	}
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(&User{ID: "u", DN: "uid=u,dc=x", Attributes: attrs, Groups: []string{"g", "g", "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.PutGroup(&Group{ID: "g", DN: "cn=g,dc=x", Attributes: map[string]any{"n": int64(3)}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(when string, sn *Snapshot) {
		u, ok := sn.UserByID("u")
		if !ok {
			t.Fatalf("%s: user missing", when)
		}
		if !slices.Equal(u.Groups, []string{"a", "g"}) {
			t.Errorf("%s: groups %v", when, u.Groups)
		}
		if len(u.Attributes) != len(want) {
			t.Errorf("%s: %d attributes, want %d", when, len(u.Attributes), len(want))
		}
		for name, wv := range want {
			gv := u.Attributes[name]
			same := false
			switch wv := wv.(type) {
			case time.Time:
				gt, ok := gv.(time.Time)
				_, wo := wv.Zone()
				_, goff := gt.Zone()
				same = ok && gt.Equal(wv) && wo == goff
			case []string:
				gs, ok := gv.([]string)
				same = ok && gs != nil && slices.Equal(gs, wv)
			default:
				same = gv == wv
			}
			if !same {
				t.Errorf("%s: %s = %#v (%T), want %#v (%T)", when, name, gv, gv, wv, wv)
			}
		}
		if g, _ := sn.GroupByID("g"); g.Attributes["n"] != int64(3) {
			t.Errorf("%s: group attribute %#v", when, g.Attributes["n"])
		}
	}
	check("after commit", s.Snapshot())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	check("after reopening", s.Snapshot())
}

func TestWarmStart(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 50, 5, "a", nil)
	writeSync(t, s, 50, 5, "b", func(i int) bool { return i%10 == 0 })
	want := s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := want.UserByID(userID(1)); !ok {
		t.Fatal("a snapshot taken before Close no longer reads")
	}

	s = openDir(t, dir)
	defer s.Close()
	got := s.Snapshot()
	if got.Generation() != 2 {
		t.Fatalf("generation %d after reopening, want 2", got.Generation())
	}
	sameSnapshot(t, got, want)
	st := s.Status()
	if len(st) != 2 || st[0].Result != ResultSuccess || st[0].Deleted != 5 || st[0].Updated != 45 {
		t.Fatalf("status after reopening: %+v", st)
	}
	// The next sync carries on from the loaded state: nothing to write.
	writeSync(t, s, 50, 5, "b", func(i int) bool { return i%10 == 0 })
	if st := s.Status()[0]; st.Created+st.Updated+st.Deleted != 0 {
		t.Fatalf("unchanged sync after reopening wrote: %+v", st)
	}
}

// sameSnapshot compares two snapshots object by object, and their indexes.
func sameSnapshot(t *testing.T, got, want *Snapshot) {
	t.Helper()
	gu, gg := got.Counts()
	wu, wg := want.Counts()
	if gu != wu || gg != wg {
		t.Fatalf("counts %d/%d, want %d/%d", gu, gg, wu, wg)
	}
	for u := range want.Users {
		g, ok := got.UserByDN(u.DN)
		if !ok {
			t.Fatalf("user %s missing", u.DN)
		}
		if a, b := appendUser(nil, g), appendUser(nil, u); string(a) != string(b) || g.ID != u.ID {
			t.Fatalf("user %s differs", u.DN)
		}
	}
	for g := range want.Groups {
		h, ok := got.GroupByDN(g.DN)
		if !ok || string(appendGroup(nil, h)) != string(appendGroup(nil, g)) {
			t.Fatalf("group %s differs", g.DN)
		}
		gu, gg := got.Members(g.ID)
		wu, wg := want.Members(g.ID)
		if !slices.Equal(gu, wu) || !slices.Equal(gg, wg) {
			t.Fatalf("members of %s differ", g.DN)
		}
	}
}

// An unchanged sync writes no object, and only a few hundred bytes.
func TestUnchangedSync(t *testing.T) {
	s := openDir(t, t.TempDir())
	defer s.Close()
	writeSync(t, s, 2000, 50, "a", nil)
	first := s.written.Load()
	// The records move to the first checkpoint: after that, the snapshot stays.
	waitFor(t, "the records to move to the checkpoint", s.recordsMapped.Load)
	before := s.Snapshot()
	writeSync(t, s, 2000, 50, "a", nil)
	written := s.written.Load() - first
	for _, st := range s.Status() {
		if st.Created+st.Updated+st.Deleted != 0 || st.Result != ResultSuccess {
			t.Fatalf("unchanged sync: %+v", st)
		}
	}
	if written > 4096 {
		t.Fatalf("unchanged sync wrote %d bytes (first %d)", written, first)
	}
	t.Logf("first sync wrote %d bytes, unchanged sync %d", first, written)
	after := s.Snapshot()
	if after.Generation() != before.Generation()+1 {
		t.Fatal("generation did not move")
	}
	if &after.userList[0] != &before.userList[0] {
		t.Fatal("an unchanged sync rebuilt the user index")
	}

	// One change writes one object.
	w, err := s.BeginSync(KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		u := testUser(i, 50, "a")
		if i == 1234 {
			u.IsActive = !u.IsActive
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if st := s.Status()[0]; st.Updated != 1 || st.Created+st.Deleted != 0 {
		t.Fatalf("one change: %+v", st)
	}
}

// Readers taking snapshots while syncs commit see one sync or the next,
// never a mixture: every user carries its sync's tag, and the set of users
// is the one that sync wrote.
func TestConcurrentReaders(t *testing.T) {
	s := openMem(t)
	const users, groups, syncs = 300, 5, 15
	// Generation g leaves out the first g%7 users.
	writeSync(t, s, users, groups, "1", func(i int) bool { return i < 1 })
	var stop atomic.Bool
	var wg sync.WaitGroup
	var checked atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				sn := s.Snapshot()
				tag := ""
				n := 0
				for u := range sn.Users {
					got := u.Attributes["tag"].(string)
					if tag == "" {
						tag = got
					}
					if got != tag {
						t.Errorf("generation %d mixes tags %s and %s", sn.Generation(), tag, got)
						return
					}
					n++
				}
				if want := users - int(sn.Generation())%7; n != want {
					t.Errorf("generation %d has %d users, want %d", sn.Generation(), n, want)
					return
				}
				checked.Add(1)
			}
		})
	}
	for gen := 2; gen <= syncs; gen++ {
		writeSync(t, s, users, groups, string(rune('a'+gen)), func(i int) bool { return i < gen%7 })
	}
	stop.Store(true)
	wg.Wait()
	if checked.Load() == 0 {
		t.Fatal("readers checked nothing")
	}
}

func TestInUse(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	defer s.Close()
	_, err := Open(Config{Path: dir}, testLogger(t), directory.NormalizeDN)
	if err == nil || !strings.Contains(err.Error(), "is in use by another ldapproxy process") {
		t.Fatalf("second Open: %v", err)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st) != 2 || st[0].Result != ResultRunning || st[0].Started.IsZero() {
		t.Fatalf("status while running: %+v", st)
	}
	for i := range 3 {
		if err := w.PutUser(testUser(i, 1, "")); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]string, 30)
	for i := range errs {
		errs[i] = "entry " + string(rune('A'+i)) + " has no entryUUID"
	}
	w.SetStatus(Status{Kind: KindUsers, Objects: 3, Skipped: 30, Errors: errs})
	w.SetStatus(Status{Kind: "computers"}) // ignored, logged
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(when string, st []Status) {
		t.Helper()
		if len(st) != 2 {
			t.Fatalf("%s: %d statuses", when, len(st))
		}
		u, g := st[0], st[1]
		if u.Kind != KindUsers || u.Result != ResultSuccess || u.Objects != 3 || u.Skipped != 30 ||
			u.Created != 3 || len(u.Errors) != MaxStatusErrors || u.Errors[0] != errs[0] ||
			u.Started.IsZero() || u.Ended.Before(u.Started) {
			t.Errorf("%s: users %+v", when, u)
		}
		if g.Kind != KindGroups || g.Result != ResultSuccess || g.Objects != 0 {
			t.Errorf("%s: groups %+v", when, g)
		}
	}
	check("after commit", s.Status())
	read, err := ReadStatus(Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	check("ReadStatus while open", read)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	check("after reopening", s.Status())

	if st, err := ReadStatus(Config{Path: t.TempDir()}); err != nil || st != nil {
		t.Fatalf("ReadStatus of an empty directory: %v %v", st, err)
	}
}

// Records an interrupted sync wrote are discarded at Open; records of a
// crash after the commit point are kept.
func TestLeftoversDiscarded(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	writeSync(t, s, 10, 2, "a", nil)
	dieDuringSync(t, s, 20, 2)

	s = openDir(t, dir)
	defer s.Close()
	sn := s.Snapshot()
	if sn.Generation() != 1 {
		t.Fatalf("generation %d", sn.Generation())
	}
	if u, g := sn.Counts(); u != 10 || g != 2 {
		t.Fatalf("counts %d, %d", u, g)
	}
	for u := range sn.Users {
		if u.Attributes["tag"] != "a" {
			t.Fatalf("user %s from the interrupted sync", u.ID)
		}
	}
	if n := countRecords(t, s); n != 12 {
		t.Fatalf("%d object records after reopening, want 12", n)
	}
}

// dieDuringSync begins a sync of users 0..users-1 (tag "b", in numGroups groups),
// writes their records to Badger and closes Badger without Abort or Commit, as a
// process killed during a sync leaves the store.
func dieDuringSync(t *testing.T, s *Store, users, numGroups int) {
	t.Helper()
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i := range users {
		if err := w.PutUser(testUser(i, numGroups, "b")); err != nil {
			t.Fatal(err)
		}
	}
	flush := func() error { return w.wb.Flush() }
	if w.loading { // an empty store: the first sync's records, as its commit writes them
		flush = w.loadFirst
	}
	if err := flush(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.active = nil
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
}

// countRecords counts every object record in Badger, all versions, once leftovers are
// removed as the next writer removes them.
func countRecords(t *testing.T, s *Store) int {
	t.Helper()
	s.mu.Lock()
	if s.dirty { // a start from the checkpoint leaves them to the first writer: be it
		if _, err := s.discardStale(s.snap.Load().gen); err != nil {
			t.Fatal(err)
		}
		s.dirty = false
	}
	s.mu.Unlock()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range []string{prefixUsers, prefixGroups} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil || c.Path != DefaultPath {
		t.Fatalf("default: %v %q", err, c.Path)
	}
	c = Config{Path: "store_test.go"}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "path: ") {
		t.Fatalf("a file as path: %v", err)
	}
	c = Config{Path: t.TempDir() + "/new/sub"}
	if err := c.Validate(); err != nil {
		t.Fatalf("a path to create: %v", err)
	}
}
