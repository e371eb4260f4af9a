package sync_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/sambatest"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestFullSyncChangesDuringPass is the regression test of the move-during-sync race: a
// full read reads the groups (with their member DNs) first and the users afterwards.
// Between the two, upstream moves a user to another OU (modrdn with newSuperior), renames
// another (modrdn), adds an existing user to a group and creates a user that joins a
// group. slapd's refint overlay rewrites the member values as Active Directory's links
// do. After the run, every one of them is in the groups upstream lists it in. With and
// without a store from an earlier run, and with the re-read of the groups changed during
// the pass turned off, as on Active Directory (where renaming a member does not change
// the group's modifyTimestamp): then the groups naming a member that moved are re-read.
func TestFullSyncChangesDuringPass(t *testing.T) {
	for _, tt := range []struct {
		name      string
		earlier   bool // a run before the one that races
		byTime    bool
		wantAdded bool // the added memberships are caught by this run
	}{
		{"first run", false, true, true},
		{"later run", true, true, true},
		{"later run, groups' times unchanged", true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const suffix = slapdtest.DefaultSuffix
			e := newEnv(t, slapdtest.Options{Users: 12, Groups: 3, RefInt: true,
				ExtraLDIF: "dn: ou=moved," + suffix + "\nobjectClass: organizationalUnit\nou: moved\n"})
			defer ldapsync.SetRepairByTime(tt.byTime)()
			srv := e.srv
			cfg := config(t, nil)
			if tt.earlier {
				e.sync(cfg)
			}
			admin := srv.Conn(t)
			movedDN := "uid=" + slapdtest.UserName(1) + ",ou=moved," + suffix
			renamed := "renamed" + slapdtest.UserName(2)
			newUser := "newcomer"
			group := func(i int) string { return "cn=" + slapdtest.GroupName(i) + ",ou=groups," + suffix }
			calls := 0
			defer ldapsync.SetAfterGroupsRead(func() {
				calls++
				must := func(what string, err error) {
					if err != nil {
						t.Errorf("%s: %v", what, err)
					}
				}
				mv := ldap.NewModifyDNRequest(srv.UserDN(1), "uid="+slapdtest.UserName(1), true, "ou=moved,"+suffix)
				must("move", admin.ModifyDN(mv))
				must("rename", admin.ModifyDN(ldap.NewModifyDNRequest(srv.UserDN(2), "uid="+renamed, true, "")))
				add := ldap.NewAddRequest("uid="+newUser+","+srv.PeopleDN, nil)
				add.Attribute("objectClass", []string{"inetOrgPerson"})
				add.Attribute("uid", []string{newUser})
				add.Attribute("cn", []string{"New Comer"})
				add.Attribute("sn", []string{"Comer"})
				must("add user", admin.Add(add))
				modify(t, admin, group(3), func(r *ldap.ModifyRequest) {
					r.Add("member", []string{"uid=" + newUser + "," + srv.PeopleDN, srv.UserDN(4)})
				})
			})()
			sn := e.sync(cfg)
			if calls != 1 {
				t.Fatalf("the hook ran %d times, want 1", calls)
			}

			// What upstream holds now, read as the admin: the groups' members by DN.
			want := map[string][]string{}
			res, err := admin.Search(ldap.NewSearchRequest(srv.GroupsDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
				"(objectClass=groupOfNames)", []string{"cn", "member"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range res.Entries {
				for _, m := range g.GetAttributeValues("member") {
					dn, _ := ldap.ParseDN(m)
					if dn.RDNs[0].Attributes[0].Type == "uid" {
						name := dn.RDNs[0].Attributes[0].Value
						want[name] = append(want[name], g.GetAttributeValue("cn"))
					}
				}
			}
			for k := range want {
				slices.Sort(want[k])
			}
			if !slices.Contains(want[slapdtest.UserName(1)], slapdtest.GroupName(1)) || len(want[renamed]) == 0 {
				t.Fatalf("refint did not carry the memberships over the modrdns: %v", want)
			}
			got := graphOf(t, sn).users
			check := func(name string) {
				t.Helper()
				if !slices.Equal(got[name], want[name]) {
					t.Errorf("%s is in %v, upstream in %v", name, got[name], want[name])
				}
			}
			u, ok := sn.UserByUsername(slapdtest.UserName(1))
			if !ok || u.DN != movedDN {
				t.Fatalf("moved user: %+v, want DN %s", u, movedDN)
			}
			check(slapdtest.UserName(1))
			check(renamed)
			if tt.wantAdded {
				check(newUser)
				check(slapdtest.UserName(4))
			}
			// Everyone else as the sample data has them.
			for i := 3; i <= srv.Users; i++ {
				if i != 4 {
					check(slapdtest.UserName(i))
				}
			}
			if t.Failed() {
				t.Logf("store: %v", fmt.Sprint(got))
			}
		})
	}
}

// TestFullSyncMoveDuringPassAD is the race as reported against Active Directory, on a
// Samba AD domain controller: between the group and the user read of a full read, a
// user moves to another OU, another is renamed and a third joins a group. AD rewrites
// the member values on a move but not the groups' modifyTimestamp: the groups naming a
// stored user that no longer has that DN are read again; the group the third joined
// (which names no moved user) is read again by time.
func TestFullSyncMoveDuringPassAD(t *testing.T) {
	dc := sambatest.New(t, sambatest.Options{})
	e := newEnvAt(t, dc.LDAPURL, dc.ServiceDN, dc.ServicePassword, sambatest.BaseDN)
	cfg := config(t, func(c *ldapsync.Config) { c.Preset = "active-directory" })
	before := e.sync(cfg)
	groupsOf := func(sn *cache.Snapshot, name string) []string {
		u, ok := sn.UserByUsername(name)
		if !ok {
			t.Fatalf("no user %s", name)
		}
		return groupNamesOf(sn, u)
	}
	want := map[string][]string{"alice": groupsOf(before, "alice"), "jsmith": groupsOf(before, "jsmith"), "bob": groupsOf(before, "bob")}
	if !slices.Contains(want["alice"], "Engineering") || !slices.Contains(want["jsmith"], "Engineering") || slices.Contains(want["bob"], "VPN Users") {
		t.Fatalf("before: %v", want)
	}
	want["bob"] = append(slices.Clone(want["bob"]), "VPN Users")
	slices.Sort(want["bob"])
	admin := dc.Conn(t)
	defer ldapsync.SetAfterGroupsRead(func() {
		if err := admin.ModifyDN(ldap.NewModifyDNRequest(dc.User("alice").DN, "CN=Alice Adams", true, "OU=Staff,"+sambatest.BaseDN)); err != nil {
			t.Errorf("move: %v", err)
		}
		if err := admin.ModifyDN(ldap.NewModifyDNRequest(dc.User("jsmith").DN, "CN=Johnny Smith", true, "")); err != nil {
			t.Errorf("rename: %v", err)
		}
		req := ldap.NewModifyRequest(dc.Group("VPN Users").DN, nil)
		req.Add("member", []string{dc.User("bob").DN})
		if err := admin.Modify(req); err != nil {
			t.Errorf("join: %v", err)
		}
	})()
	after := e.sync(cfg)
	for name, groups := range want {
		if got := groupsOf(after, name); !slices.Equal(got, groups) {
			t.Errorf("%s is in %v after the run, upstream in %v", name, got, groups)
		}
	}
	if u, _ := after.UserByUsername("alice"); directory.NormalizeDN(u.DN) != directory.NormalizeDN("CN=Alice Adams,OU=Staff,"+sambatest.BaseDN) {
		t.Errorf("alice at %s", u.DN)
	}
}

// After a bulk load every group may be stamped within a second or two of the newest
// entry: the re-read by time then asks only for the groups' versions (entryCSN), and
// reads again in full only the group that changed during the read, not all of them.
func TestFullSyncReadsChangedGroupsAgainOnly(t *testing.T) {
	const groups = 300 // more than the 256 the run reads again one by one
	e := newEnv(t, slapdtest.Options{Users: groups + 20, Groups: groups})
	srv := e.srv
	admin := srv.Conn(t)
	defer ldapsync.SetAfterGroupsRead(func() {
		modify(t, admin, "cn="+slapdtest.GroupName(7)+","+srv.GroupsDN, func(r *ldap.ModifyRequest) {
			r.Add("member", []string{srv.UserDN(groups + 1)})
		})
	})()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := ldapsync.New(config(t, nil), e.pool, e.store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn := e.run(s)
	if !strings.Contains(buf.String(), `msg="sync: groups read again before the commit" groups=1`) {
		t.Errorf("want one group read again; the log:\n%s", grepLines(buf.String(), "read again"))
	}
	u, ok := sn.UserByDN(srv.UserDN(groups + 1))
	if !ok {
		t.Fatal("user not synced")
	}
	g, _ := sn.GroupByDN("cn=" + slapdtest.GroupName(7) + "," + srv.GroupsDN)
	if g == nil || !slices.Contains(u.Groups, g.ID) {
		t.Errorf("the user added to %s during the read has groups %v", slapdtest.GroupName(7), u.Groups)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
