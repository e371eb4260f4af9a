package cache

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// memberGroups are groups whose member values name users of upstreamUser as their DNs
// are (referred to in the checkpoint), in other case (not: a reference serves the bytes
// it refers to), and no synced object; the second group has the first as a member (not
// referred to: only users' DNs are). tag goes into an attribute of the first.
func memberGroups(tag string) []*Group {
	var groups []*Group
	for i := range 2 {
		g := testGroup(i, "m")
		if i == 0 {
			g = testGroup(i, tag)
		}
		g.Upstream = []Attribute{
			{Name: "objectClass", Values: []string{"groupOfNames"}},
			{Name: "cn", Values: []string{g.Name}},
			{Name: "member", Values: []string{
				upstreamUser(i).DN,
				upstreamUser(i + 2).DN,
				strings.ToUpper(upstreamUser(i + 4).DN),
				"uid=nobody,ou=people,dc=example,dc=org",
			}},
			{Name: "owner", Values: []string{upstreamUser(i).DN}},
		}
		if i == 1 {
			g.Upstream[2].Values = append(g.Upstream[2].Values, groups[0].DN)
		}
		groups = append(groups, g)
	}
	return groups
}

// syncMembers syncs n upstreamUsers, each changed by change when it is set, and
// memberGroups(tag), and returns the groups' status.
func syncMembers(t *testing.T, s *Store, n int, change func(*User), tag string) Status {
	t.Helper()
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, g := range memberGroups(tag) {
		if err := w.PutGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		u := upstreamUser(i)
		if change != nil {
			change(u)
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, st := range s.Status() {
		if st.Kind == KindGroups {
			return st
		}
	}
	t.Fatal("no groups' status")
	return Status{}
}

// checkpointGroups returns the group records of the checkpoint of the store in dir, and
// how many references each holds.
func checkpointGroups(t *testing.T, dir string) (magic string, vals []string, refs []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if err != nil {
		t.Fatal(err)
	}
	const head = len(checkpointMagic) + 8 + 16 + 3*8
	p := b[len(checkpointMagic):]
	r := ckptReader{s: string(b[:len(b)-4]), i: head}
	nUsers, nGroups := binary.LittleEndian.Uint64(p[24:]), binary.LittleEndian.Uint64(p[32:])
	for k := range nUsers + nGroups {
		if k == nUsers && string(b[:len(checkpointMagic)]) == checkpointMagic {
			r.str() // the DNs no user holds
		}
		_, _, val := r.record()
		if k >= nUsers {
			vals = append(vals, val)
			n := 0
			d := decoder{s: val, file: r.s[:r.valAt], refs: func(int, string) { n++ }}
			format := d.groupHead(&Group{})
			d.skipIDs(format)
			d.attributes(false, format)
			d.upstream(false, format)
			refs = append(refs, n)
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return string(b[:len(checkpointMagic)]), vals, refs
}

// The checkpoint holds a group's member values that are a user's DN, byte for byte, as
// where it holds that DN (record format 8, checkpoint format 4);
// the group read from it is the group synced, value for value; a sync of the same
// groups writes none of them; and a user renamed after leaves the group's member value
// as the group has it.
func TestCheckpointMemberRefs(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	syncMembers(t, s, 10, nil, "m")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	magic, vals, refs := checkpointGroups(t, dir)
	if magic != checkpointMagic || len(vals) != 2 || vals[0][0] != formatV8 || vals[1][0] != formatV8 {
		t.Fatalf("checkpoint format %q, group records in formats %d and %d, want 8", magic, vals[0][0], vals[1][0])
	}
	// Two users' DNs as members, one as owner.
	if refs[0] != 3 || refs[1] != 3 {
		t.Fatalf("the groups refer to %d and %d DNs, want 3 each", refs[0], refs[1])
	}
	for k, g := range memberGroups("m") {
		if stored := len(appendGroup(nil, g)); len(vals[k]) >= stored-60 {
			t.Errorf("group %d: %d bytes in the checkpoint, %d as stored", k, len(vals[k]), stored)
		}
	}

	s = openDir(t, dir)
	if !s.fromCheckpoint {
		t.Fatal("the store was read from Badger, not from its checkpoint")
	}
	sameGroups(t, s.Snapshot(), "m", "from the checkpoint")
	if st := syncMembers(t, s, 10, nil, "m"); st.Created+st.Updated+st.Deleted != 0 {
		t.Fatalf("an unchanged sync on the checkpoint's groups wrote %+v", st)
	}
	renamed := "uid=renamed,ou=people,dc=example,dc=org"
	rename := func(u *User) {
		if u.ID == userID(0) {
			u.DN = renamed
		}
	}
	if st := syncMembers(t, s, 10, rename, "m"); st.Created+st.Updated+st.Deleted != 0 {
		t.Fatalf("a user's rename rewrote groups: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	if !s.fromCheckpoint {
		t.Fatal("the store was read from Badger, not from its checkpoint")
	}
	if u, ok := s.Snapshot().UserByID(userID(0)); !ok || u.DN != renamed {
		t.Fatalf("the renamed user: %+v", u)
	}
	sameGroups(t, s.Snapshot(), "m", "after the member's rename")
}

// A process's snapshot and the one the next start reads from the checkpoint it wrote
// have the same SourcesSum, and sources of the same lengths, also when the offsets of
// the groups' references moved (a user before them changed) and a group changed in the
// process, whose record it made referring to its checkpoint's users (not to one changed
// in the process, whose record is the heap's): the served tree's
// image written of the one serves the other. The first commit's records, moved to the
// checkpoint, the same.
func TestSourcesSumAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	var committed *Snapshot
	s.OnCommit(func(sn *Snapshot) {
		if committed == nil {
			committed = sn
		}
	})
	syncMembers(t, s, 10, nil, "m")
	same := func(a, b *Snapshot, what string) {
		t.Helper()
		as, bs := a.Sources(), b.Sources()
		if len(as) != len(bs) {
			t.Fatalf("%s: %d and %d sources", what, len(as), len(bs))
		}
		for i := range as {
			if len(as[i]) != len(bs[i]) {
				t.Fatalf("%s: source %d of %d and %d bytes", what, i, len(as[i]), len(bs[i]))
			}
		}
		if a.SourcesSum() != b.SourcesSum() {
			t.Fatalf("%s: sources sums %x and %x", what, a.SourcesSum(), b.SourcesSum())
		}
	}
	moved := waitMoved(t, s, committed)
	if v := moved.GroupSource(groupID(0)); v[0] != formatV8 {
		t.Fatalf("the moved group's record is in format %d", v[0])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	same(moved, s.Snapshot(), "the first commit's records moved, and read at the next start")
	// The user changed is a member of the group changed after, when its record is the
	// heap's: the group's record holds its DN.
	longer := func(u *User) {
		if u.ID == userID(0) {
			u.Name += " with a longer name"
		}
	}
	syncMembers(t, s, 10, longer, "n")
	syncMembers(t, s, 10, longer, "o")
	before := s.Snapshot()
	if v := before.GroupSource(groupID(0)); v[0] != formatV8 {
		t.Fatalf("the group changed on a started store: its record in format %d", v[0])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	after := s.Snapshot()
	if before.GroupSource(groupID(1)) == after.GroupSource(groupID(1)) {
		t.Fatal("the unchanged group's references did not move: the test shows nothing")
	}
	same(before, after, "a process's snapshot, and the next start's")

	// A member renamed, its group not: the checkpoint holds the DN the group refers to.
	syncMembers(t, s, 10, func(u *User) {
		longer(u)
		if u.ID == userID(2) {
			u.DN = "uid=renamed,ou=people,dc=example,dc=org"
		}
	}, "o")
	before = s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	same(before, s.Snapshot(), "a member renamed")
	sameGroups(t, s.Snapshot(), "o", "after its member's rename")
}

// A checkpoint in format 3, as the version before wrote it (group records as stored),
// is used at a start, and the next one is written in format 4.
func TestCheckpointFormat3Starts(t *testing.T) {
	dir := t.TempDir()
	checkpointRefs = false
	s := openDir(t, dir)
	syncMembers(t, s, 10, nil, "m")
	want := s.Snapshot()
	err := s.Close()
	checkpointRefs = true
	if err != nil {
		t.Fatal(err)
	}
	if magic, vals, _ := checkpointGroups(t, dir); magic != checkpointMagicV3 || vals[0][0] != formatV7 {
		t.Fatalf("checkpoint format %q, a group in format %d", magic, vals[0][0])
	}
	s = openDir(t, dir)
	if !s.fromCheckpoint {
		t.Fatal("the store was read from Badger, not from its format 3 checkpoint")
	}
	sameSnapshot(t, s.Snapshot(), want)
	syncMembers(t, s, 11, nil, "m")
	want = s.Snapshot()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if magic, vals, _ := checkpointGroups(t, dir); magic != checkpointMagic || vals[0][0] != formatV8 {
		t.Fatalf("the next checkpoint: format %q, a group in format %d", magic, vals[0][0])
	}
	s = openDir(t, dir)
	defer s.Close()
	sameSnapshot(t, s.Snapshot(), want)
}

// A format 8 record reads only with the bytes of the checkpoint before it, and refers
// within them only.
func TestFormat8NeedsItsCheckpoint(t *testing.T) {
	g := memberGroups("m")[0]
	file := "0123" + g.Upstream[2].Values[0] + "tail"
	val := string(appendGroupRefs(nil, g, func(v string) (uint32, bool) {
		return 4, v == g.Upstream[2].Values[0]
	}))
	if val[0] != formatV8 {
		t.Fatalf("format %d, want 8", val[0])
	}
	if got, err := decodeGroupIn(g.ID, val, file); err != nil || !reflect.DeepEqual(got.Upstream, g.Upstream) {
		t.Fatalf("with its checkpoint: %+v, %v", got, err)
	}
	for _, file := range []string{"", file[:len(file)-5]} {
		if _, err := decodeGroupIn(g.ID, val, file); err == nil {
			t.Errorf("decoded with %d bytes before it", len(file))
		}
		if _, err := checkGroup(val, file); err == nil {
			t.Errorf("checked with %d bytes before it", len(file))
		}
	}
}

// SourcesSum is the same for a group's record whose references point elsewhere (the
// same group in another checkpoint of the commit), and differs when a value is held
// where it was referred to.
func TestSourcesSum(t *testing.T) {
	g := memberGroups("m")[0]
	dn := g.Upstream[2].Values[0]
	sum := func(val, in string) [16]byte {
		r, err := newGroupRecIn(g.ID, val, in, 1, strings.ToLower)
		if err != nil {
			t.Fatal(err)
		}
		return (&Snapshot{groupList: []*groupRec{r}}).SourcesSum()
	}
	at := func(off uint32) string {
		return string(appendGroupRefs(nil, g, func(v string) (uint32, bool) { return off, v == dn }))
	}
	a, b := sum(at(0), dn+"xx"), sum(at(2), "xx"+dn)
	if a != b {
		t.Fatalf("sums %x and %x of one group referring to other places", a, b)
	}
	if c := sum(string(appendGroup(nil, g)), ""); c == a {
		t.Fatal("the same sum for the group holding its values")
	}
}

// A member value naming a DN that two users share (as the store compares DNs) is held
// as it is: the checkpoint refers only to the DN of the one user a value names.
func TestCheckpointSharedDNHeld(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range 2 {
		u := upstreamUser(i)
		u.DN = "uid=twice,ou=people,dc=example,dc=org"
		if i == 1 {
			u.DN = strings.ToUpper(u.DN)
		}
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	g := testGroup(0, "s")
	g.Upstream = []Attribute{{Name: "cn", Values: []string{g.Name}}, {Name: "member", Values: []string{"uid=twice,ou=people,dc=example,dc=org"}}}
	if err := w.PutGroup(g); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, vals, refs := checkpointGroups(t, dir); vals[0][0] != formatV7 || refs[0] != 0 {
		t.Fatalf("the group's record in format %d, with %d references", vals[0][0], refs[0])
	}
	s = openDir(t, dir)
	defer s.Close()
	if got, ok := s.Snapshot().GroupByID(g.ID); !ok || !reflect.DeepEqual(got.Upstream, g.Upstream) {
		t.Fatalf("the group: %+v", got)
	}
}

// sameGroups fails t unless sn holds memberGroups(tag) with their upstream values as
// synced; what says when.
func sameGroups(t *testing.T, sn *Snapshot, tag, what string) {
	t.Helper()
	for _, want := range memberGroups(tag) {
		got, ok := sn.GroupByID(want.ID)
		if !ok || !reflect.DeepEqual(got.Upstream, want.Upstream) {
			t.Fatalf("group %s %s: %+v, want %+v", want.ID, what, got, want)
		}
	}
}
