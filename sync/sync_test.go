package sync_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/mapping"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

func TestOpenLDAPDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	ids := e.uuids()
	begin := time.Now()
	sn := e.sync(config(t, nil))

	if users, groups := sn.Counts(); users != e.srv.Users || groups != e.srv.Groups {
		t.Fatalf("stored %d users and %d groups, want %d and %d", users, groups, e.srv.Users, e.srv.Groups)
	}
	for i := 1; i <= e.srv.Users; i++ {
		dn, name := e.srv.UserDN(i), slapdtest.UserName(i)
		u, ok := sn.UserByDN(dn)
		if !ok {
			t.Fatalf("user %s not stored", dn)
		}
		num := strings.TrimPrefix(name, "user")
		want := cache.User{
			ID: id(t, ids, dn), DN: dn, Username: name, Name: "User " + num, Email: name + "@example.org", IsActive: true,
		}
		if u.ID != want.ID || u.DN != want.DN || u.Username != want.Username || u.Name != want.Name ||
			u.Email != want.Email || u.IsActive != want.IsActive || u.Path != "" {
			t.Errorf("user %d = %+v, want %+v", i, *u, want)
		}
		if u.Attributes["given_name"] != "User" || u.Attributes["surname"] != num {
			t.Errorf("user %d attributes = %v", i, u.Attributes)
		}
		var groups []string
		for _, g := range e.srv.UserGroups(i) {
			groups = append(groups, id(t, ids, e.srv.GroupDN(g)))
		}
		slices.Sort(groups)
		if !slices.Equal(u.Groups, groups) {
			t.Errorf("user %d groups = %v, want %v (groups %v)", i, u.Groups, groups, e.srv.UserGroups(i))
		}
		if byName, ok := sn.UserByUsername(strings.ToUpper(name)); !ok || byName.ID != u.ID {
			t.Errorf("UserByUsername(%s) = %v, %v", strings.ToUpper(name), byName, ok)
		}
		if byID, ok := sn.UserByID(want.ID); !ok || byID.DN != dn {
			t.Errorf("UserByID(%s) = %v, %v", want.ID, byID, ok)
		}
	}
	for g := 1; g <= e.srv.Groups; g++ {
		dn := e.srv.GroupDN(g)
		gr, ok := sn.GroupByID(id(t, ids, dn))
		if !ok {
			t.Fatalf("group %s not stored under its entryUUID", dn)
		}
		if gr.DN != dn || gr.Name != slapdtest.GroupName(g) || gr.Attributes["description"] != fmt.Sprintf("sample group %d", g) {
			t.Errorf("group %d = %+v", g, *gr)
		}
		var want []string
		for i := 1; i <= e.srv.Users; i++ {
			if slices.Contains(e.srv.UserGroups(i), g) {
				want = append(want, id(t, ids, e.srv.UserDN(i)))
			}
		}
		slices.Sort(want)
		if users, _ := sn.Members(gr.ID); !slices.Equal(users, want) {
			t.Errorf("members of group %d = %v, want %v", g, users, want)
		}
	}
	g1, g2 := id(t, ids, e.srv.GroupDN(1)), id(t, ids, e.srv.GroupDN(2))
	if gr, _ := sn.GroupByID(g2); !slices.Equal(gr.Parents, []string{g1}) {
		t.Errorf("group002 parents = %v, want [group001 %s]", gr.Parents, g1)
	}
	if gr, _ := sn.GroupByID(g1); len(gr.Parents) != 0 {
		t.Errorf("group001 parents = %v, want none", gr.Parents)
	}
	if _, groups := sn.Members(g1); !slices.Equal(groups, []string{g2}) {
		t.Errorf("group members of group001 = %v, want [%s]", groups, g2)
	}
	if got, want := graphOf(t, sn), sampleGraph(e.srv); !equalGraph(got, want) {
		t.Errorf("membership graph %v, want %v", got, want)
	}

	for _, want := range []struct {
		kind string
		n    int
	}{{cache.KindUsers, e.srv.Users}, {cache.KindGroups, e.srv.Groups}} {
		st := e.status(want.kind)
		if st.Result != cache.ResultSuccess || st.Objects != want.n || st.Created != want.n || st.Updated != 0 ||
			st.Deleted != 0 || st.Skipped != 0 || len(st.Errors) != 0 {
			t.Errorf("%s status = %+v, want success with %d objects created", want.kind, st, want.n)
		}
		if st.Started.Before(begin.Add(-time.Second)) || st.Ended.Before(st.Started) || st.Ended.After(time.Now()) {
			t.Errorf("%s status times: started %v, ended %v (sync began %v)", want.kind, st.Started, st.Ended, begin)
		}
	}
}

func TestUsersAndGroupsToggles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	for _, tt := range []struct {
		name          string
		users, groups bool
	}{{"users only", true, false}, {"groups only", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvAt(t, e.srv.URL, e.srv.ServiceDN, e.srv.ServicePassword, e.srv.Suffix)
			sn := e.sync(config(t, func(c *ldapsync.Config) { c.Users, c.Groups = tt.users, tt.groups }))
			users, groups := sn.Counts()
			wantUsers, wantGroups := 0, 0
			if tt.users {
				wantUsers = 20
			}
			if tt.groups {
				wantGroups = 5
			}
			if users != wantUsers || groups != wantGroups {
				t.Errorf("stored %d users and %d groups, want %d and %d", users, groups, wantUsers, wantGroups)
			}
			var kinds []string
			for _, st := range e.store.Status() {
				kinds = append(kinds, st.Kind)
			}
			want := []string{cache.KindUsers}
			if !tt.users {
				want = []string{cache.KindGroups}
			}
			if !slices.Equal(kinds, want) {
				t.Errorf("status kinds %v, want %v", kinds, want)
			}
		})
	}
	t.Run("neither", func(t *testing.T) {
		s := e.syncer(config(t, func(c *ldapsync.Config) { c.Users, c.Groups = false, false }), nil)
		if err := runErr(s); err == nil {
			t.Error("a sync of nothing succeeded")
		}
	})
}

func TestUserDNAndGroupDN(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{ExtraLDIF: `
dn: ou=contractors,dc=example,dc=org
objectClass: organizationalUnit
ou: contractors

dn: uid=contractor1,ou=contractors,dc=example,dc=org
objectClass: inetOrgPerson
uid: contractor1
cn: Contractor One
sn: One

dn: ou=teams,dc=example,dc=org
objectClass: organizationalUnit
ou: teams

dn: cn=team1,ou=teams,dc=example,dc=org
objectClass: groupOfNames
cn: team1
member: uid=contractor1,ou=contractors,dc=example,dc=org
member: uid=user0001,ou=people,dc=example,dc=org
`})

	// Without user_dn and group_dn the extra entries are synced: the base is the suffix.
	sn := e.sync(config(t, nil))
	if got := userNames(sn); !slices.Contains(got, "contractor1") || len(got) != 21 {
		t.Fatalf("without user_dn: users %v, want the 20 sample users and contractor1", got)
	}
	if got := groupNames(sn); !slices.Contains(got, "team1") || len(got) != 6 {
		t.Fatalf("without group_dn: groups %v, want the 5 sample groups and team1", got)
	}

	sn = e.sync(config(t, func(c *ldapsync.Config) { c.UserDN, c.GroupDN = "ou=people", "ou=groups" }))
	if got := userNames(sn); slices.Contains(got, "contractor1") || len(got) != 20 {
		t.Errorf("user_dn ou=people: users %v, want the 20 sample users only", got)
	}
	if got := groupNames(sn); slices.Contains(got, "team1") || len(got) != 5 {
		t.Errorf("group_dn ou=groups: groups %v, want the 5 sample groups only", got)
	}
	if st := e.status(cache.KindUsers); st.Deleted != 1 {
		t.Errorf("users status %+v: want contractor1 deleted", st)
	}

	// Each setting on its own: user_dn does not restrict the groups, nor group_dn the users.
	sn = e.sync(config(t, func(c *ldapsync.Config) { c.UserDN = "ou=contractors" }))
	if got, groups := userNames(sn), groupNames(sn); !slices.Equal(got, []string{"contractor1"}) || len(groups) != 6 {
		t.Errorf("user_dn ou=contractors: users %v and groups %v, want contractor1 and all 6 groups", got, groups)
	}
	sn = e.sync(config(t, func(c *ldapsync.Config) { c.GroupDN = "ou=teams" }))
	if users, got := userNames(sn), groupNames(sn); !slices.Equal(got, []string{"team1"}) || len(users) != 21 {
		t.Errorf("group_dn ou=teams: groups %v and %d users, want team1 and all 21 users", got, len(users))
	}
	if u, ok := sn.UserByUsername("contractor1"); !ok || len(u.Groups) != 1 {
		t.Errorf("contractor1 = %+v: want a member of team1", u)
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{ExtraLDIF: `
dn: uid=plainaccount,ou=people,dc=example,dc=org
objectClass: account
uid: plainaccount

dn: uid=posixonly,ou=people,dc=example,dc=org
objectClass: account
objectClass: posixAccount
uid: posixonly
cn: Posix Only
uidNumber: 20001
gidNumber: 20001
homeDirectory: /home/posixonly

dn: cn=posixgroup,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: posixgroup
gidNumber: 20001
memberUid: posixonly

dn: cn=uniquegroup,ou=groups,dc=example,dc=org
objectClass: groupOfUniqueNames
cn: uniquegroup
uniqueMember: uid=user0001,ou=people,dc=example,dc=org

dn: cn=role,ou=groups,dc=example,dc=org
objectClass: organizationalRole
cn: role
`})
	t.Run("custom", func(t *testing.T) {
		sn := e.sync(config(t, func(c *ldapsync.Config) {
			c.UserFilter = "(uid=user000*)"
			c.GroupFilter = "(|(cn=group001)(cn=group002))"
		}))
		want := []string{"user0001", "user0002", "user0003", "user0004", "user0005", "user0006", "user0007", "user0008", "user0009"}
		if got := userNames(sn); !slices.Equal(got, want) {
			t.Errorf("user_filter (uid=user000*): users %v, want %v", got, want)
		}
		if got := groupNames(sn); !slices.Equal(got, []string{"group001", "group002"}) {
			t.Errorf("group_filter: groups %v, want group001 and group002", got)
		}
	})
	t.Run("preset", func(t *testing.T) {
		sn := e.sync(config(t, func(c *ldapsync.Config) { c.UserFilter, c.GroupFilter = "", "" }))
		users := userNames(sn)
		if len(users) != 21 || !slices.Contains(users, "posixonly") || slices.Contains(users, "plainaccount") {
			t.Errorf("openldap preset user filter: users %v, want the 20 sample users and posixonly (not plainaccount)", users)
		}
		want := []string{"group001", "group002", "group003", "group004", "group005", "posixgroup", "uniquegroup"}
		if got := groupNames(sn); !slices.Equal(got, want) {
			t.Errorf("openldap preset group filter: groups %v, want %v", got, want)
		}
	})
}

func TestUniquenessField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	ids := e.uuids()

	sn := e.sync(config(t, func(c *ldapsync.Config) { c.UniquenessField = "entryUUID" }))
	for i := 1; i <= e.srv.Users; i++ {
		if u, ok := sn.UserByID(id(t, ids, e.srv.UserDN(i))); !ok || u.DN != e.srv.UserDN(i) {
			t.Errorf("user %d not stored under its entryUUID: %v", i, u)
		}
	}

	// OpenLDAP has no nsUniqueId: every object lacks its identity and is left out.
	s := e.syncer(config(t, func(c *ldapsync.Config) { c.UniquenessField = "nsUniqueId" }), nil)
	if err := runErr(s); err != nil {
		t.Fatalf("sync with nsUniqueId: %v", err)
	}
	if users, groups := e.store.Snapshot().Counts(); users != 0 || groups != 0 {
		t.Errorf("with nsUniqueId: %d users and %d groups stored, want none", users, groups)
	}
	for _, want := range []struct {
		kind string
		n    int
	}{{cache.KindUsers, e.srv.Users}, {cache.KindGroups, e.srv.Groups}} {
		st := e.status(want.kind)
		if st.Result != cache.ResultSuccess || st.Skipped != want.n || st.Objects != 0 || st.Deleted != want.n {
			t.Errorf("%s status %+v: want %d skipped (and deleted from the store), none stored", want.kind, st, want.n)
		}
		if len(st.Errors) == 0 {
			t.Errorf("%s status has no errors", want.kind)
		}
		for _, msg := range st.Errors {
			if !strings.Contains(msg, "nsUniqueId") {
				t.Errorf("%s error %q does not name nsUniqueId", want.kind, msg)
			}
		}
	}
}

func TestParentGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	sn := e.sync(config(t, func(c *ldapsync.Config) { c.ParentGroup = "imported-from-ldap" }))

	var parent *cache.Group
	for g := range sn.Groups {
		if g.Name == "imported-from-ldap" {
			parent = g
		}
	}
	if parent == nil {
		t.Fatalf("no parent group in %v", groupNames(sn))
	}
	if len(parent.Parents) != 0 {
		t.Errorf("parent group has parents %v", parent.Parents)
	}
	var synced []string
	for g := range sn.Groups {
		if g.ID == parent.ID {
			continue
		}
		synced = append(synced, g.ID)
		if !slices.Contains(g.Parents, parent.ID) {
			t.Errorf("group %s parents %v lack the parent group %s", g.Name, g.Parents, parent.ID)
		}
	}
	if len(synced) != e.srv.Groups {
		t.Errorf("%d synced groups besides the parent, want %d", len(synced), e.srv.Groups)
	}
	if _, groups := sn.Members(parent.ID); !slices.Equal(groups, synced) {
		t.Errorf("parent group members %v, want every synced group %v", groups, synced)
	}
	// Nesting upstream is kept beside it.
	if g2, _ := sn.GroupByDN(e.srv.GroupDN(2)); len(g2.Parents) != 2 {
		t.Errorf("group002 parents %v, want group001 and the parent group", g2.Parents)
	}

	sn = e.sync(config(t, nil))
	for g := range sn.Groups {
		if g.Name == "imported-from-ldap" || len(g.Parents) > 1 {
			t.Errorf("without parent_group: group %+v", *g)
		}
	}
}

func TestUserPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	sn := e.sync(config(t, func(c *ldapsync.Config) { c.UserPath = "uid={username},ou=users,{base_dn}" }))
	for i := 1; i <= e.srv.Users; i++ {
		u, ok := sn.UserByDN(e.srv.UserDN(i))
		want := "uid=" + slapdtest.UserName(i) + ",ou=users,dc=example,dc=org"
		if !ok || u.Path != want {
			t.Fatalf("user %d path %q, want %q", i, u.Path, want)
		}
		if byPath, ok := sn.UserByPath(want); !ok || byPath.ID != u.ID {
			t.Errorf("UserByPath(%s) = %v, %v", want, byPath, ok)
		}
	}
	sn = e.sync(config(t, nil))
	for u := range sn.Users {
		if u.Path != "" {
			t.Errorf("without user_path: user %s has path %q", u.Username, u.Path)
		}
	}
}

func TestMappingErrorSkipsOneEntry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	const bad = "user0007"
	sn := e.sync(config(t, func(c *ldapsync.Config) {
		c.Mappings.Users = []mapping.Mapping{{
			Name:       "openldap-is-active",
			Field:      "is_active",
			Expression: `int(list_flatten(ldap.uid) == "` + bad + `" ? "not a number" : "1") == 1`,
		}}
	}))
	users := userNames(sn)
	if len(users) != e.srv.Users-1 || slices.Contains(users, bad) {
		t.Fatalf("users %v: want every sample user but %s", users, bad)
	}
	st := e.status(cache.KindUsers)
	if st.Result != cache.ResultSuccess || st.Skipped != 1 || st.Objects != e.srv.Users-1 || len(st.Errors) != 1 {
		t.Fatalf("users status %+v: want success, %d stored, 1 skipped with its error", st, e.srv.Users-1)
	}
	if msg := st.Errors[0]; !strings.Contains(msg, "uid="+bad) || !strings.Contains(msg, "openldap-is-active") {
		t.Errorf("error %q names neither the entry nor the mapping", msg)
	}
	g, _ := sn.GroupByDN(e.srv.GroupDN(e.srv.UserGroups(7)[0]))
	members, _ := sn.Members(g.ID)
	if len(members) != 3 { // users 2, 12 and 17 (and the skipped 7) are in group002
		t.Errorf("group %s members %v: want its 3 users other than %s", g.Name, members, bad)
	}
}

func TestLoopSyncsAtOnceAndEveryInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, slapdtest.Options{})
	s := e.syncer(config(t, func(c *ldapsync.Config) { c.Interval = time.Second }), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Loop(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitFor := func(what string, ok func(*cache.Snapshot) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(e.store.Snapshot()) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10s (generation %d)", what, e.store.Snapshot().Generation())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	start := time.Now()
	waitFor("first sync", func(sn *cache.Snapshot) bool { n, _ := sn.Counts(); return n == e.srv.Users })
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Errorf("first sync after %v: want it at once, not after the interval", d)
	}
	if err := e.srv.Conn(t).Del(ldap.NewDelRequest(e.srv.UserDN(1), nil)); err != nil {
		t.Fatal(err)
	}
	waitFor("sync of the deletion", func(sn *cache.Snapshot) bool { _, ok := sn.UserByDN(e.srv.UserDN(1)); return !ok })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not return after its context ended")
	}
}
