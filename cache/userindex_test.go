package cache

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/ldapproxy/ldapproxy/directory"
)

// TestUserIndex: a key one user has finds that user, one two users share finds neither
// (but is told apart from a key none has), and an empty key is never indexed.
func TestUserIndex(t *testing.T) {
	var list []userRec
	var rs regions
	for i := range 5000 {
		keys := map[int]string{keyName: fmt.Sprintf("user%d", i)}
		if i%7 != 0 {
			keys[keyMail] = fmt.Sprintf("u%d@x", i%2500)
		}
		list = append(list, recWithID(&rs, fmt.Sprint(i), keys))
	}
	byName, byMail := newUserIndex(list, rs, keyName), newUserIndex(list, rs, keyMail)
	for i := range list {
		r := &list[i]
		if got, ok := byName.get(r.key(rs, keyName)); !ok || got != r {
			t.Fatalf("user %d by name: %v %v", i, got, ok)
		}
		if r.key(rs, keyMail) == "" {
			continue
		}
		other := &list[(i+2500)%5000]
		got, ok := byMail.get(r.key(rs, keyMail))
		switch {
		case other.key(rs, keyMail) == r.key(rs, keyMail) && (got != nil || !ok):
			t.Fatalf("mail %s, shared: %v %v", r.key(rs, keyMail), got, ok)
		case other.key(rs, keyMail) != r.key(rs, keyMail) && got != r:
			t.Fatalf("mail %s: %v %v", r.key(rs, keyMail), got, ok)
		}
	}
	for _, k := range []string{"", "user5000", "nobody"} {
		if got, ok := byName.get(k); ok || got != nil {
			t.Fatalf("%q: %v %v", k, got, ok)
		}
	}
	if got, ok := byMail.get(""); ok || got != nil {
		t.Fatalf("the empty mail finds %v %v", got, ok)
	}
	var none *userIndex
	if got, ok := none.get("x"); ok || got != nil {
		t.Fatal("a nil index finds a user")
	}
}

// indexMap is what x finds for every key of its users, as a map kept by addUnique.
func indexMap(x *userIndex) map[string]*userRec {
	m := map[string]*userRec{}
	for i := range x.list {
		if k := x.keyOf(&x.list[i]); k != "" {
			m[k], _ = x.get(k)
		}
	}
	return m
}

// TestSnapshotUserByID: a snapshot finds each of its users by ID in its sorted list, and
// no user for an ID it lacks, before, between or after its own.
func TestSnapshotUserByID(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 1000} {
		sn := &Snapshot{}
		for i := range n {
			sn.userList = append(sn.userList, recWithID(&sn.regions, fmt.Sprintf("id%05d", 2*i+1), nil))
		}
		rs := sn.regions
		for i := range sn.userList {
			r := &sn.userList[i]
			if got := sn.userRec(r.id(rs)); got != r {
				t.Fatalf("%d users: user %d (%s) found as %v", n, i, r.id(rs), got)
			}
		}
		for i := 0; i <= 2*n; i += 2 {
			if got := sn.userRec(fmt.Sprintf("id%05d", i)); got != nil {
				t.Fatalf("%d users: id%05d found as %s", n, i, got.id(rs))
			}
		}
		if got := sn.userRec(""); got != nil {
			t.Fatalf("%d users: the empty ID found as %s", n, got.id(rs))
		}
	}
}

// TestUserRecKeys: a user's keys are offsets into its record when the record holds them
// already normalised, and kept apart when it does not; either way they read back right.
func TestUserRecKeys(t *testing.T) {
	norm := func(dn string) string { return strings.ToLower(strings.ReplaceAll(dn, ", ", ",")) }
	for _, tc := range []struct {
		u                 User
		dn, name, mail    string
		inRecord, hasMore bool
	}{
		{User{ID: "1", DN: "uid=a,dc=x", Username: "a", Email: "a@x"}, "uid=a,dc=x", "a", "a@x", true, false},
		{User{ID: "2", DN: "UID=B, DC=X", Username: "B", Email: "B@X"}, "uid=b,dc=x", "b", "b@x", false, true},
		{User{ID: "3", DN: "uid=c,dc=x", Username: "C"}, "uid=c,dc=x", "c", "", false, true},
		{User{ID: "4", DN: "uid=d,dc=x", Username: "d", Path: "UID=D,OU=Y"}, "uid=d,dc=x", "d", "", true, true},
	} {
		a := newArena(nil)
		r, err := a.put(tc.u.ID, string(appendUser(nil, &tc.u)), 1, norm)
		if err != nil {
			t.Fatal(err)
		}
		rs := a.rs
		if got := [3]string{r.key(rs, keyDN), r.key(rs, keyName), r.key(rs, keyMail)}; got != [3]string{tc.dn, tc.name, tc.mail} {
			t.Fatalf("user %s: keys %q", tc.u.ID, got)
		}
		if (r.elsewhere&^(1<<fieldID) != 0 || r.pathKey(rs) != "") != tc.hasMore {
			t.Fatalf("user %s: more %v, want it: %v", tc.u.ID, r.more, tc.hasMore)
		}
		if tc.hasMore != (r.more != 0) {
			t.Fatalf("user %s: userKeys %d, want some: %v", tc.u.ID, r.more, tc.hasMore)
		}
		if tc.inRecord != (r.elsewhere&(1<<keyDN|1<<keyName) == 0) {
			t.Fatalf("user %s: keys elsewhere %b, want them in the record: %v", tc.u.ID, r.elsewhere, tc.inRecord)
		}
		if r.id(rs) != tc.u.ID || r.gen(rs) != 1 {
			t.Fatalf("user %s: ID %q, generation %d", tc.u.ID, r.id(rs), r.gen(rs))
		}
	}
}

// TestUserRecKeysNormalisedAlike: a key that the normaliser gives back as an equal
// string of its own (the store's DN normaliser parses a DN with non-ASCII characters and
// joins its RDNs again) is still kept as its place in the record, which holds it.
func TestUserRecKeysNormalisedAlike(t *testing.T) {
	u := &User{ID: "1", DN: "uid=jürgen,ou=people,dc=example,dc=org", Username: "jürgen", Email: "jürgen@example.org"}
	if n := directory.NormalizeDN(u.DN); n != u.DN || unsafe.StringData(n) == unsafe.StringData(u.DN) {
		t.Fatalf("the normaliser gives %q, not an equal string of its own", n)
	}
	a := newArena(nil)
	r, err := a.put(u.ID, string(appendUser(nil, u)), 1, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	if r.elsewhere != 0 || r.more != 0 {
		t.Fatalf("keys kept apart (%b): %d", r.elsewhere, r.more)
	}
	if rs := a.rs; r.key(rs, keyDN) != u.DN || r.key(rs, keyName) != u.Username || r.key(rs, keyMail) != u.Email {
		t.Fatalf("keys %q %q %q", r.key(rs, keyDN), r.key(rs, keyName), r.key(rs, keyMail))
	}
}

// recWithID is a record whose encoding is its ID alone (enough for the indexes), with
// the keys keys gives kept apart, in a region of its own, which it adds to rs.
func recWithID(rs *regions, id string, keys map[int]string) userRec {
	reg := newRegion(id)
	var k userKeys
	var r userRec
	r.start(reg, 0, len(id), 1, &k)
	r.setField(fieldID, id, id, false, &k)
	for f, v := range keys {
		r.setKey(f, v, "", id, &k)
	}
	r.keep(reg, &k)
	*rs = rs.with(reg)
	return r
}

// TestUserRecFields: a record keeps its ID as a place in its encoding when the encoding
// holds it (as a user's upstream entryUUID), else right after it, and its generation in
// 32 bits; fields beyond 255 bytes or 64 KiB from the encoding's start and a generation
// beyond 32 bits are kept apart, and everything reads back as it was given, whatever
// becomes of the buffer the record was made from.
func TestUserRecFields(t *testing.T) {
	norm := strings.ToLower
	long := strings.Repeat("x", 300)
	far := strings.Repeat("y", 70000)
	for _, tc := range []struct {
		name      string
		u         User
		gen       uint64
		elsewhere uint8 // fields expected in more
	}{
		{"id in the record", User{ID: "uuid-1", DN: "uid=a", Username: "a", Upstream: []Attribute{{Name: "entryUUID", Values: []string{"uuid-1"}}}}, 7, 0},
		{"id apart", User{ID: "uuid-2", DN: "uid=b", Username: "b"}, 7, 0},
		{"64-bit generation", User{ID: "uuid-3", DN: "uid=c", Username: "c", Upstream: []Attribute{{Name: "entryUUID", Values: []string{"uuid-3"}}}}, 1<<32 + 5, 0},
		{"largest 32-bit generation", User{ID: "uuid-3", DN: "uid=c", Username: "c", Upstream: []Attribute{{Name: "entryUUID", Values: []string{"uuid-3"}}}}, 1<<32 - 2, 0},
		{"long name", User{ID: "uuid-4", DN: "uid=d", Username: long, Upstream: []Attribute{{Name: "entryUUID", Values: []string{"uuid-4"}}}}, 1, 1 << keyName},
		{"id far in", User{ID: "uuid-5", DN: "uid=e", Username: "e", Upstream: []Attribute{{Name: "description", Values: []string{far}}, {Name: "entryUUID", Values: []string{"uuid-5"}}}}, 1, 1 << fieldID},
		{"long id apart", User{ID: long, DN: "uid=f", Username: "f"}, 1, 1 << fieldID},
	} {
		buf := appendUser(nil, &tc.u)
		val := string(buf)
		a := newArena(nil)
		r, err := a.put(strings.Clone(tc.u.ID), bytesView(buf), tc.gen, norm)
		if err != nil {
			t.Fatal(err)
		}
		clear(buf) // the record holds a copy of the buffer it was made from
		rs := a.rs
		if r.id(rs) != tc.u.ID || r.gen(rs) != tc.gen || r.val(rs) != val || r.key(rs, keyName) != tc.u.Username || r.key(rs, keyDN) != tc.u.DN {
			t.Fatalf("%s: read back ID %q, generation %d, name %q, DN %q", tc.name, r.id(rs), r.gen(rs), r.key(rs, keyName), r.key(rs, keyDN))
		}
		if r.elsewhere != tc.elsewhere {
			t.Fatalf("%s: fields apart %b, want %b", tc.name, r.elsewhere, tc.elsewhere)
		}
		if (tc.gen >= 1<<32-1) != (r.more != 0 && r.keys(rs).gen != 0) {
			t.Fatalf("%s: generation %d kept apart: %v", tc.name, tc.gen, r.more != 0)
		}
		if u := r.user(rs); u.ID != tc.u.ID || u.Username != tc.u.Username {
			t.Fatalf("%s: decodes as %q %q", tc.name, u.ID, u.Username)
		}
	}
	if size := unsafe.Sizeof(userRec{}); size != 36 {
		t.Fatalf("a userRec is %d bytes", size)
	}
}

// TestCheckpointRecordsApart: users read from a checkpoint keep nothing apart, whether
// their encoding holds their ID (the file then holds it once) or not (the file holds it
// after the encoding), and read back as they were put.
func TestCheckpointRecordsApart(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	var want []*User
	for i := range 50 {
		u := testUser(i, 5, "")
		if i%2 == 0 {
			u = sssdUser(i, 5)
		}
		want = append(want, u)
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if !s.fromCheckpoint {
		t.Fatal("not opened from the checkpoint")
	}
	sn := s.Snapshot()
	for _, u := range want {
		r := sn.userRec(u.ID)
		if r == nil || r.more != 0 || r.elsewhere != 0 || r.id(sn.regions) != u.ID {
			t.Fatalf("user %s: %+v", u.ID, r)
		}
		if got, ok := sn.UserByUsername(u.Username); !ok || got.ID != u.ID || got.DN != u.DN {
			t.Fatalf("user %s by name: %v", u.ID, got)
		}
	}
}
