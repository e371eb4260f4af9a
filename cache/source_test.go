package cache

import (
	"testing"
	"unsafe"
)

// TestObjectSources checks what UserSource and GroupSource promise: the strings of the
// users and groups a snapshot returns lie within them (the served tree keeps them as
// offsets into the source on that promise), and an unknown ID has none.
func TestObjectSources(t *testing.T) {
	s := openMem(t)
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	g := testGroup(1, "x")
	g.Upstream = []Attribute{{Name: "cn", Values: []string{"group0001"}}, {Name: "description", Values: []string{"the first group"}}}
	u := testUser(1, 2, "x")
	u.Groups = []string{g.ID}
	u.Upstream = []Attribute{{Name: "uid", Values: []string{u.Username}}, {Name: "objectGUID", Values: []string{"\x00\x01\x02\xff"}},
		{Name: "mail", Values: []string{u.Email, "second@example.org"}}}
	if err := w.PutGroup(g); err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(u); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshot()

	in := func(what, v, src string) {
		t.Helper()
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(v))), uintptr(unsafe.Pointer(unsafe.StringData(src)))
		if v != "" && (p < lo || p+uintptr(len(v)) > lo+uintptr(len(src))) {
			t.Errorf("%s %q is not within its source", what, v)
		}
	}
	gotU, ok := sn.UserByID(u.ID)
	if !ok {
		t.Fatal("user missing")
	}
	src := sn.UserSource(u.ID)
	in("user DN", gotU.DN, src)
	in("username", gotU.Username, src)
	for _, a := range gotU.Upstream {
		for _, v := range a.Values {
			in(a.Name, v, src)
		}
	}
	gotG, ok := sn.GroupByID(g.ID)
	if !ok {
		t.Fatal("group missing")
	}
	src = sn.GroupSource(g.ID)
	in("group DN", gotG.DN, src)
	for _, a := range gotG.Upstream {
		for _, v := range a.Values {
			in(a.Name, v, src)
		}
	}
	if sn.UserSource("no such user") != "" || sn.GroupSource(u.ID) != "" {
		t.Error("a source for an unknown ID")
	}
}
