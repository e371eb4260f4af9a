package sync_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestPreviewWithoutStore: a preview reads the upstream only, so a syncer without a
// store previews (mapping preview runs while serve holds the store); a group's preview
// carries the group as a sync stores it and its members.
func TestPreviewWithoutStore(t *testing.T) {
	for _, memberOf := range []bool{false, true} {
		e := newEnv(t, slapdtest.Options{Users: 4, Groups: 2, MemberOf: memberOf})
		cfg := config(t, func(c *ldapsync.Config) {
			if memberOf {
				c.MembershipField = "memberOf"
			}
		})
		s, err := ldapsync.New(cfg, e.pool, nil, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := runErr(s); err == nil || !strings.Contains(err.Error(), "no store") {
			t.Errorf("Run without a store = %v", err)
		}

		p, err := s.Preview(t.Context(), e.srv.UserDN(2))
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != cache.KindUsers || p.Object == nil || p.Object.Username != "user0002" || p.Group != nil || p.Members != nil {
			t.Errorf("user preview = %+v", p)
		}

		p, err = s.Preview(t.Context(), e.srv.GroupDN(2))
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != cache.KindGroups || p.Group == nil || p.Group.Name != "group002" || p.Group.ID == "" || p.Group.ID != p.ID ||
			!strings.EqualFold(p.Group.DN, e.srv.GroupDN(2)) {
			t.Fatalf("group preview = %+v, group %+v", p, p.Group)
		}
		want := []string{e.srv.UserDN(2), e.srv.UserDN(4)} // group002's members
		if memberOf {
			want = []string{e.srv.GroupDN(1)} // the group group002 is in
		}
		got := slices.Clone(p.Members)
		for i := range got {
			got[i] = strings.ToLower(got[i])
		}
		for i := range want {
			want[i] = strings.ToLower(want[i])
		}
		slices.Sort(got)
		if p.MembershipField != cfg.MembershipField || !slices.Equal(got, want) {
			t.Errorf("memberOf=%v: members (%s) = %q, want %q", memberOf, p.MembershipField, p.Members, want)
		}
	}
}
