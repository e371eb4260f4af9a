package sync_test

import (
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestChangesShowUpAfterNextSync changes the upstream between two syncs (add, delete,
// rename, move, membership changes) and checks that the second sync brings exactly those.
func TestChangesShowUpAfterNextSync(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	srv := e.srv
	s := e.syncer(config(t, nil), nil)
	before := e.run(s)
	ids := e.uuids()
	c := srv.Conn(t)

	// Add a user, in group003.
	add := ldap.NewAddRequest("uid=newbie,"+srv.PeopleDN, nil)
	add.Attribute("objectClass", []string{"inetOrgPerson"})
	add.Attribute("uid", []string{"newbie"})
	add.Attribute("cn", []string{"New Bie"})
	add.Attribute("sn", []string{"Bie"})
	add.Attribute("mail", []string{"newbie@example.org"})
	if err := c.Add(add); err != nil {
		t.Fatal(err)
	}
	modify(t, c, srv.GroupDN(3), func(m *ldap.ModifyRequest) { m.Add("member", []string{"uid=newbie," + srv.PeopleDN}) })

	// Delete user 3 (group003 still lists its DN, as without referential integrity).
	if err := c.Del(ldap.NewDelRequest(srv.UserDN(3), nil)); err != nil {
		t.Fatal(err)
	}

	// Rename user 4, and its group follows, as with referential integrity.
	renamed := "uid=renamed04," + srv.PeopleDN
	if err := c.ModifyDN(ldap.NewModifyDNRequest(srv.UserDN(4), "uid=renamed04", true, "")); err != nil {
		t.Fatal(err)
	}
	modify(t, c, srv.GroupDN(4), func(m *ldap.ModifyRequest) {
		m.Delete("member", []string{srv.UserDN(4)})
		m.Add("member", []string{renamed})
	})

	// Move user 5 to another OU; its group follows.
	staff := "ou=staff," + srv.Suffix
	ou := ldap.NewAddRequest(staff, nil)
	ou.Attribute("objectClass", []string{"organizationalUnit"})
	ou.Attribute("ou", []string{"staff"})
	if err := c.Add(ou); err != nil {
		t.Fatal(err)
	}
	moved := "uid=" + slapdtest.UserName(5) + "," + staff
	if err := c.ModifyDN(ldap.NewModifyDNRequest(srv.UserDN(5), "uid="+slapdtest.UserName(5), true, staff)); err != nil {
		t.Fatal(err)
	}
	modify(t, c, srv.GroupDN(5), func(m *ldap.ModifyRequest) {
		m.Delete("member", []string{srv.UserDN(5)})
		m.Add("member", []string{moved})
	})

	// Membership changes: user 6 leaves group001, user 7 joins group004.
	modify(t, c, srv.GroupDN(1), func(m *ldap.ModifyRequest) { m.Delete("member", []string{srv.UserDN(6)}) })
	modify(t, c, srv.GroupDN(4), func(m *ldap.ModifyRequest) { m.Add("member", []string{srv.UserDN(7)}) })

	after := e.run(s)
	gid := func(g int) string { return id(t, ids, srv.GroupDN(g)) }

	newbie, ok := after.UserByUsername("newbie")
	if !ok || newbie.Email != "newbie@example.org" || !slices.Equal(newbie.Groups, []string{gid(3)}) {
		t.Errorf("added user: %+v, %v; want it in group003", newbie, ok)
	}

	deletedID := id(t, ids, srv.UserDN(3))
	if u, ok := after.UserByID(deletedID); ok {
		t.Errorf("deleted user still stored: %+v", u)
	}
	if _, ok := after.UserByDN(srv.UserDN(3)); ok {
		t.Error("deleted user still found by DN")
	}
	if members, _ := after.Members(gid(3)); slices.Contains(members, deletedID) {
		t.Errorf("group003 still lists the deleted user: %v", members)
	}
	if members, _ := before.Members(gid(3)); !slices.Contains(members, deletedID) {
		t.Errorf("the earlier snapshot lost the deleted user from group003: %v", members)
	}

	u4 := id(t, ids, srv.UserDN(4))
	if u, ok := after.UserByID(u4); !ok || u.DN != renamed || u.Username != "renamed04" || !slices.Equal(u.Groups, []string{gid(4)}) {
		t.Errorf("renamed user: %+v, %v; want the same ID with DN %s, user name renamed04, in group004", u, ok, renamed)
	}
	if _, ok := after.UserByDN(srv.UserDN(4)); ok {
		t.Error("renamed user still found by its old DN")
	}
	if _, ok := after.UserByUsername(slapdtest.UserName(4)); ok {
		t.Error("renamed user still found by its old user name")
	}

	u5 := id(t, ids, srv.UserDN(5))
	if u, ok := after.UserByDN(moved); !ok || u.ID != u5 || !slices.Equal(u.Groups, []string{gid(5)}) {
		t.Errorf("moved user: %+v, %v; want ID %s in group005", u, ok, u5)
	}
	if _, ok := after.UserByDN(srv.UserDN(5)); ok {
		t.Error("moved user still found by its old DN")
	}

	if u, _ := after.UserByDN(srv.UserDN(6)); len(u.Groups) != 0 {
		t.Errorf("user 6 left group001 but has groups %v", u.Groups)
	}
	if members, _ := after.Members(gid(1)); slices.Contains(members, id(t, ids, srv.UserDN(6))) {
		t.Errorf("group001 still lists user 6: %v", members)
	}
	if u, _ := after.UserByDN(srv.UserDN(7)); !slices.Equal(u.Groups, sorted(gid(2), gid(4))) {
		t.Errorf("user 7 groups %v, want group002 and group004", u.Groups)
	}
	if users, groups := after.Counts(); users != srv.Users || groups != srv.Groups {
		t.Errorf("%d users and %d groups after the changes, want %d and %d", users, groups, srv.Users, srv.Groups)
	}

	// Created: newbie; deleted: user 3; updated: users 4 (renamed), 5 (moved), 6 and 7
	// (memberships). Groups 1, 3, 4 and 5 have other member values upstream: they are
	// stored with their upstream attributes, so they are updated too; group 2 is not.
	if st := e.status(cache.KindUsers); st.Result != cache.ResultSuccess || st.Created != 1 || st.Updated != 4 || st.Deleted != 1 {
		t.Errorf("users status after the changes %+v, want 1 created, 4 updated, 1 deleted", st)
	}
	if st := e.status(cache.KindGroups); st.Result != cache.ResultSuccess || st.Created+st.Deleted != 0 || st.Updated != 4 {
		t.Errorf("groups status after the changes %+v, want 4 updated", st)
	}

	again := e.run(s)
	for _, kind := range []string{cache.KindUsers, cache.KindGroups} {
		if st := e.status(kind); st.Result != cache.ResultSuccess || st.Created+st.Updated+st.Deleted != 0 || st.Objects == 0 {
			t.Errorf("%s status of a sync without changes %+v, want nothing created, updated or deleted", kind, st)
		}
	}
	if got, want := graphOf(t, again), graphOf(t, after); !equalGraph(got, want) {
		t.Errorf("graph changed by a sync without changes: %v, was %v", got, want)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
