package sync_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/errlist"
	"github.com/ldapproxy/ldapproxy/mapping"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestValidateReportsEveryError: a section with several independent mistakes reports
// each of them, not only the first.
func TestValidateReportsEveryError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*ldapsync.Config)
		want   []string
	}{
		{"preset and interval", func(c *ldapsync.Config) { c.Preset, c.Interval = "novell", 0 },
			[]string{`preset: "novell" is not one of`, "interval: must be positive"}},
		{"preset and a set filter", func(c *ldapsync.Config) { c.Preset, c.UserFilter = "novell", "(uid=x" },
			[]string{`preset: "novell"`, `user_filter: "(uid=x"`}},
		{"page_size and user_dn", func(c *ldapsync.Config) { c.PageSize, c.UserDN = 0, "not a dn" },
			[]string{"page_size: 0 is not between", `user_dn: "not a dn" is not a DN`}},
		{"membership and uniqueness fields", func(c *ldapsync.Config) { c.MembershipField, c.UniquenessField = "owner", "cn" },
			[]string{"membership_field: not one of", "uniqueness_field: not one of"}},
		{"dirsync without objectGUID, and full_interval", func(c *ldapsync.Config) { c.Mode, c.FullInterval = ldapsync.ModeDirSync, 0 },
			[]string{"mode: dirsync identifies deleted objects by their objectGUID", "full_interval: must be positive"}},
		{"timestamp and poll_interval", func(c *ldapsync.Config) { c.Mode, c.PollInterval = ldapsync.ModeTimestamp, 0 },
			[]string{"poll_interval: must be positive"}},
		{"unknown mode", func(c *ldapsync.Config) { c.Mode = "push" },
			[]string{`mode: "push" is not one of full, syncrepl, timestamp, usn, dirsync, auto`}},
		{"syncrepl without entryUUID", func(c *ldapsync.Config) { c.Mode, c.UniquenessField = ldapsync.ModeSyncrepl, "nsUniqueId" },
			[]string{"mode: syncrepl identifies deleted entries by their entryUUID"}},
		{"parent_group and a mapping", func(c *ldapsync.Config) {
			c.ParentGroup = "cn=x,dc=y"
			c.Mappings = mapping.Config{Users: []mapping.Mapping{{Name: "m", Field: "emial", Expression: "1"}}}
		}, []string{"parent_group: ", "mappings.users[0].field: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ldapsync.Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			parts := errlist.Flatten(err)
			if len(parts) != len(tt.want) {
				t.Errorf("Validate() reported %d errors, want %d: %q", len(parts), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(parts, func(e error) bool { return strings.HasPrefix(e.Error(), w) }) {
					t.Errorf("Validate() = %q, want an error starting with %q", err, w)
				}
			}
		})
	}
}
