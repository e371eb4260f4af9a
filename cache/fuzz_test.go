package cache

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/ldapproxy/ldapproxy/internal/view"
)

// FuzzDecodeRecord: whatever a record's bytes, decodeUser, checkUser, decodeGroup and
// checkGroup return an object or an error and never panic; checkUser and decodeUser
// agree (a record the check accepts is one the snapshot may decode at any time, and
// decodes), and so do checkGroup and decodeGroup; the strings of what they decode are
// slices of the record; and the encoding of a decoded object decodes to an object that
// encodes the same (what an unchanged object is recognised by). The seeds are users and
// groups in every format; the corpus under testdata/fuzz/FuzzDecodeRecord keeps what
// earlier runs found interesting. `go test` runs the seeds only; `go test -run '^$'
// -fuzz FuzzDecodeRecord ./cache/` looks for more.
func FuzzDecodeRecord(f *testing.F) {
	defer func(v byte) { upstreamFormat = v }(upstreamFormat)
	u := testUser(12345, 3, "x")
	if err := normalizeAttributes(u.Attributes); err != nil {
		f.Fatal(err)
	}
	u.Groups = sortedSet(u.Groups)
	u.Upstream = []Attribute{
		{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
		{Name: "uid", Values: []string{u.Username}},
		{Name: "cn", Values: []string{u.Name}},
		{Name: "gecos", Values: []string{u.Name}},
		{Name: "mail", Values: []string{u.Email}},
		{Name: "x-Unlisted", Values: []string{"v"}},
		{Name: "structuralObjectClass", Values: []string{"inetOrgPerson"}},
	}
	g := testGroup(3, "y")
	f.Add(appendUser(nil, &User{ID: "plain", DN: "uid=p,dc=x", IsActive: true}))
	f.Add(appendGroup(nil, g))
	for _, format := range []byte{formatV3, formatV4, formatV5, formatV6, formatV7} {
		upstreamFormat = format
		f.Add(appendUser(nil, u))
		f.Add(appendGroup(nil, &Group{ID: g.ID, DN: g.DN, Name: g.Name, Parents: g.Parents, Upstream: []Attribute{{Name: "cn", Values: []string{g.Name}}}}))
	}
	upstreamFormat = formatV7
	f.Fuzz(func(t *testing.T, b []byte) {
		val := string(b)
		within := func(what, s string) {
			if _, ok := view.Offset(s, val); !ok && s != "" {
				t.Fatalf("%s %q is not a slice of the record", what, s)
			}
		}
		du, derr := decodeUser("id", val)
		_, cerr := checkUser(val)
		if (derr == nil) != (cerr == nil) {
			t.Fatalf("decodeUser: %v, checkUser: %v", derr, cerr)
		}
		for range userGroups(val) {
		}
		if derr == nil {
			if _, err := decodeUserAs("id", val, false); err != nil {
				t.Fatalf("checked, but the head does not decode: %v", err)
			}
			if _, err := newArena(nil).put("id", val, 1, strings.ToLower); err != nil {
				t.Fatalf("checked, but no record: %v", err)
			}
			for what, s := range map[string]string{"DN": du.DN, "user name": du.Username, "name": du.Name, "mail": du.Email, "path": du.Path, "password marker": du.PasswordMarker} {
				within(what, s)
			}
			for _, a := range du.Upstream {
				for _, v := range a.Values {
					within("upstream value", v)
				}
			}
			for _, v := range du.Attributes {
				switch x := v.(type) {
				case string:
					within("attribute value", x)
				case []string:
					for _, s := range x {
						within("attribute value", s)
					}
				}
			}
			du2 := roundTrip(t, "user", du, appendUser, decodeUser)
			du.Attributes, du2.Attributes = nil, nil // times: equal instants, not equal structs
			if !reflect.DeepEqual(du, du2) {
				t.Fatalf("user %+v decodes, encoded again, as %+v", du, du2)
			}
		}
		dg, derr := decodeGroup("id", val)
		_, cerr = checkGroup(val, "")
		if (derr == nil) != (cerr == nil) {
			t.Fatalf("decodeGroup: %v, checkGroup: %v", derr, cerr)
		}
		for range groupParents(val) {
		}
		if derr == nil {
			within("DN", dg.DN)
			within("name", dg.Name)
			dg2 := roundTrip(t, "group", dg, appendGroup, decodeGroup)
			dg.Attributes, dg2.Attributes = nil, nil
			if !reflect.DeepEqual(dg, dg2) {
				t.Fatalf("group %+v decodes, encoded again, as %+v", dg, dg2)
			}
		}
	})
}

// FuzzParseCheckpoint: whatever a checkpoint's bytes after its magic (its checksum made
// right, so that the parser itself is reached), parseCheckpoint returns its records or
// an error and never panics; the users of records it returns are in strictly ascending
// ID order (how a snapshot finds them) and every record's ID and value, and a group's
// values (which may be other records' bytes), lie within the file. The seed is the
// checkpoint of a few users and groups whose IDs their values hold (written as places
// in them), whose member values are users' DNs (written as places in the file), and of
// an entry set.
func FuzzParseCheckpoint(f *testing.F) {
	seed, gen, commit := testCheckpoint(f)
	f.Add(seed[len(checkpointMagic) : len(seed)-4])
	s := &Store{normDN: strings.ToLower}
	f.Fuzz(func(t *testing.T, rest []byte) {
		checkParsedCheckpoint(t, s, checkpointMagic, rest, gen, commit)
	})
}

// FuzzParseOlderCheckpoint is FuzzParseCheckpoint for the formats a start still reads
// and converts: 3 (the seed written as the version before wrote it) and, with v2, 2
// (the same seed with each record's generation a u64).
func FuzzParseOlderCheckpoint(f *testing.F) {
	checkpointRefs = false
	seed, gen, commit := testCheckpoint(f)
	checkpointRefs = true
	f.Cleanup(func() { checkpointRefs = true }) // also when testCheckpoint failed
	if !bytes.HasPrefix(seed, []byte(checkpointMagicV3)) {
		f.Fatalf("the seed is not in format 3: %q", seed[:len(checkpointMagicV3)])
	}
	v2 := checkpointV2(f, seed)
	s := &Store{normDN: strings.ToLower}
	for _, b := range [][]byte{seed, v2} {
		if _, err := s.parseCheckpoint(b, gen, commit); err != nil {
			f.Fatalf("the seed in format %d does not parse: %v", b[len(checkpointMagicV2)-1], err)
		}
	}
	f.Add(false, seed[len(checkpointMagicV3):len(seed)-4])
	f.Add(true, v2[len(checkpointMagicV2):len(v2)-4])
	f.Fuzz(func(t *testing.T, v2 bool, rest []byte) {
		magic := checkpointMagicV3
		if v2 {
			magic = checkpointMagicV2
		}
		checkParsedCheckpoint(t, s, magic, rest, gen, commit)
	})
}

// checkParsedCheckpoint parses the checkpoint of magic, rest and a valid checksum, and
// fails t if it is accepted with a record out of order or anything read outside it.
func checkParsedCheckpoint(t *testing.T, s *Store, magic string, rest []byte, gen uint64, commit [16]byte) {
	d := append(append([]byte(magic), rest...), 0, 0, 0, 0)
	body := d[:len(d)-4]
	binary.LittleEndian.PutUint32(d[len(body):], crc32.Checksum(body, castagnoli))
	// The generation and commit the store would ask for: the file's own when it has
	// them, the seed's otherwise.
	g, id := gen, commit
	if p := body[len(magic):]; len(p) >= 24 {
		g = binary.LittleEndian.Uint64(p)
		copy(id[:], p[8:24])
	}
	recs, err := s.parseCheckpoint(d, g, id)
	if err != nil {
		return
	}
	in := func(v string) bool { _, ok := view.Offset(v, unsafe.String(&d[0], len(d))); return ok || v == "" }
	for i, r := range recs.userList {
		rs := recs.regions
		if i > 0 && recs.userList[i-1].id(rs) >= r.id(rs) {
			t.Fatalf("users %q and %q out of order", recs.userList[i-1].id(rs), r.id(rs))
		}
		if !in(r.id(rs)) || !in(r.val(rs)) {
			t.Fatalf("user %q outside the file", r.id(rs))
		}
		r.user(rs)
	}
	for _, r := range recs.groups {
		if !in(r.id) || !in(r.val) {
			t.Fatalf("group %q outside the file", r.id)
		}
		for _, a := range r.group().Upstream {
			for _, v := range a.Values {
				if !in(v) {
					t.Fatalf("group %q: a value of %s outside the file", r.id, a.Name)
				}
			}
		}
	}
	serveCheckpoint(t, s, g, recs)
}

// serveCheckpoint makes the snapshot a start makes of a checkpoint's records
// (moveToCheckpoint) and reads it as the proxy and the sync do: every user and group
// decoded, found again by each of its names and DNs, its members and source, the
// sources' list and sum, the entry sets, and the changes since an empty store; none of
// it may panic, and each user and group is found by its ID.
func serveCheckpoint(t *testing.T, s *Store, gen uint64, recs *checkpointRecords) {
	sn := newSnapshotSorted(gen, nil, recs.userList, recs.regions, recs.groups, s.normDN)
	if len(recs.sets) > 0 {
		sn.entrySets = recs.sets
	}
	users, groups := sn.Counts()
	if users != len(recs.userList) || groups != len(recs.groups) {
		t.Fatalf("the snapshot counts %d users and %d groups of %d and %d", users, groups, len(recs.userList), len(recs.groups))
	}
	names := sn.Names()
	for i := range users {
		u, brief := sn.UserAt(i), sn.BriefUserAt(i)
		if got, ok := sn.UserByID(u.ID); !ok || got.ID != u.ID || brief.ID != u.ID {
			t.Fatalf("user %d (%q) is not found by its ID", i, u.ID)
		}
		sn.UserByDN(u.DN)
		sn.UserByPath(u.Path)
		sn.UserByBindDN(u.DN)
		sn.UserByUsername(u.Username)
		sn.UserByLoginName(u.Username)
		names.UserByBindDN(u.DN)
		names.UserByUsername(u.Username)
		names.UserByLoginName(u.Username)
		sn.UserDNs(u.ID)
		sn.UserSource(u.ID)
		sn.HasObjectDN(u.DN)
	}
	for u := range sn.Users {
		_ = u.Attributes
	}
	for g := range sn.Groups {
		if got, ok := sn.GroupByID(g.ID); !ok || got.ID != g.ID {
			t.Fatalf("group %q is not found by its ID", g.ID)
		}
		sn.GroupByDN(g.DN)
		sn.HasObjectDN(g.DN)
		sn.GroupSource(g.ID)
		sn.Members(g.ID)
	}
	sn.Sources()
	sn.SourcesSum()
	for _, name := range sn.EntrySetNames() {
		sn.EntrySet(name)
	}
	sn.ChangesSince(nil)
}

// testCheckpoint returns the bytes of the checkpoint of a few users and groups with
// upstream attributes (their IDs among them) and of one entry set, and the generation
// and commit ID it was written for.
func testCheckpoint(t testing.TB) ([]byte, uint64, [16]byte) {
	t.Helper()
	s := &Store{dir: t.TempDir(), normDN: strings.ToLower}
	users, groups := map[string]*userRec{}, map[string]*groupRec{}
	a := newArena(nil)
	var dns []string
	for i := range 4 {
		u := testUser(i, 2, "c")
		if err := normalizeAttributes(u.Attributes); err != nil {
			t.Fatal(err)
		}
		u.Groups = sortedSet(u.Groups)
		u.Upstream = []Attribute{{Name: "uid", Values: []string{u.Username}}, {Name: "entryUUID", Values: []string{u.ID}}}
		r, err := a.put(u.ID, string(appendUser(nil, u)), 3, s.normDN)
		if err != nil {
			t.Fatal(err)
		}
		users[u.ID] = r
		dns = append(dns, u.DN)
	}
	for i := range 2 {
		g := testGroup(i, "c")
		g.Upstream = []Attribute{{Name: "cn", Values: []string{g.Name}}, {Name: "entryUUID", Values: []string{g.ID}},
			{Name: "member", Values: dns[i : i+2]}}
		r, err := newGroupRec(g.ID, string(appendGroup(nil, g)), 3, s.normDN)
		if err != nil {
			t.Fatal(err)
		}
		groups[g.ID] = r
	}
	sn := newSnapshot(5, users, a.rs, groups, s.normDN)
	sn.commit = [16]byte{1, 2, 3}
	sn.entrySets = map[string]*entrySetRec{"sudo": {name: "sudo", gen: 4, val: string(appendEntrySet(nil, []Entry{{DN: "cn=x,dc=y",
		Upstream: []Attribute{{Name: "sudoOption", Values: []string{"!authenticate"}}}}}))}}
	if err := s.writeCheckpoint(sn, true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, checkpointName))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.parseCheckpoint(b, sn.gen, sn.commit)
	if err != nil {
		t.Fatalf("the test checkpoint does not parse: %v", err)
	}
	if g := recs.groups[groupID(0)]; checkpointRefs && (g == nil || g.val[0] != formatV8) {
		t.Fatal("the test checkpoint's groups do not refer to their members")
	}
	return b, sn.gen, sn.commit
}

// roundTrip encodes v, a decoded object, decodes that and requires the result to
// encode as v did; it returns the result.
func roundTrip[T any](t *testing.T, kind string, v *T, encode func([]byte, *T) []byte, decode func(id, val string) (*T, error)) *T {
	t.Helper()
	again := encode(nil, v)
	v2, err := decode("id", string(again))
	if err != nil {
		t.Fatalf("a decoded %s encodes as %x, which does not decode: %v", kind, again, err)
	}
	if third := encode(nil, v2); string(third) != string(again) {
		t.Fatalf("a decoded %s encodes as %x, decoded again as %x", kind, again, third)
	}
	return v2
}
