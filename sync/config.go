// Package sync keeps the local copy of the directory: it reads users and groups from the
// upstream with paged searches, maps them with the property mappings, resolves group
// memberships, and writes the result to the store in one atomic commit per run; in
// syncrepl mode it then applies the changes the upstream pushes (RFC 4533), in small
// atomic batches.
//
// Data flows one way: sync reads from upstream, maps with mapping, writes to cache.
package sync

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/errlist"
	"github.com/ldapproxy/ldapproxy/mapping"
)

// Config is the `sync:` section of the configuration file; the keys are the seed's LDAP
// source settings.
type Config struct {
	// Enabled runs the syncer at start and every Interval. Default true.
	Enabled bool `yaml:"enabled"`
	// Users and Groups toggle the two object kinds. Default true.
	Users  bool `yaml:"users"`
	Groups bool `yaml:"groups"`
	// Interval between runs in full mode. Default 5m.
	Interval time.Duration `yaml:"interval"`
	// Mode is how changes reach the store: full (a complete read every Interval),
	// syncrepl (RFC 4533 refreshAndPersist: changes pushed as they happen, OpenLDAP with
	// syncprov), timestamp (any directory: the objects whose modifyTimestamp moved are
	// read every PollInterval), usn (Active Directory: the objects whose uSNChanged is
	// above the DC's last highestCommittedUSN, every PollInterval), dirsync (Active
	// Directory with the Replicating Directory Changes right: the objects a DirSync
	// search from the stored cookie names, every PollInterval; needs UniquenessField
	// objectGUID), or auto (syncrepl when the root DSE advertises the Content
	// Synchronization control, else full). Default full.
	Mode string `yaml:"mode"`
	// FullInterval is how often syncrepl, timestamp, usn and dirsync modes read everything again
	// (a reconciliation that writes only differences), to catch what a stream missed
	// and, in timestamp mode, the deletions. Default 24h.
	FullInterval time.Duration `yaml:"full_interval"`
	// PollInterval is the time between two polls in timestamp, usn and dirsync modes.
	// Default 30s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// PageSize of the paged searches (RFC 2696). Default 500.
	PageSize int `yaml:"page_size"`
	// Preset chooses the defaults below and the default property mappings:
	// active-directory, openldap or freeipa. Default openldap.
	Preset string `yaml:"preset"`
	// UserDN and GroupDN are prepended to upstream.base_dn for the user and group
	// searches ("additional user DN", e.g. "ou=people").
	UserDN  string `yaml:"user_dn"`
	GroupDN string `yaml:"group_dn"`
	// UserFilter and GroupFilter select the objects; the preset's when empty.
	UserFilter  string `yaml:"user_filter"`
	GroupFilter string `yaml:"group_filter"`
	// MembershipField is member or uniqueMember (DNs on groups), memberUid (user names on
	// groups), or memberOf (group DNs on users). The preset's when empty.
	MembershipField string `yaml:"membership_field"`
	// UniquenessField identifies an object across renames: objectGUID, objectSid,
	// entryUUID, ipaUniqueID or nsUniqueId. The preset's when empty.
	UniquenessField string `yaml:"uniqueness_field"`
	// NestedGroups makes a user's memberOf list every ancestor group, not only the
	// groups the user is directly in.
	NestedGroups bool `yaml:"nested_groups"`
	// ParentGroup, when set, is the name of a group the proxy adds to its tree, of which
	// every synced group is a member (e.g. "imported-from-ad").
	ParentGroup string `yaml:"parent_group"`
	// UserPath is a DN template for where users appear in the served tree, with
	// {username} and {base_dn}, e.g. "uid={username},ou=users,{base_dn}". Empty: the
	// upstream DN, so client configurations written for the upstream work unchanged.
	UserPath string `yaml:"user_path"`
	// Attributes are the upstream attributes each synced user and group keeps and is
	// served with, as the upstream has them. ["*"] (the default) keeps every attribute
	// the service account reads, operational ones included (entryUUID, createTimestamp,
	// modifyTimestamp, memberOf, ...); a list of names keeps those and objectClass.
	// Secrets (userPassword, unicodePwd, NT hashes, Kerberos keys, ...) are never kept.
	Attributes []string `yaml:"attributes"`
	// ExcludeAttributes are upstream attributes not kept, e.g. thumbnailPhoto.
	ExcludeAttributes []string `yaml:"exclude_attributes"`
	// Extra are further sets of upstream entries mirrored as they are and served beside
	// the users and groups (sudoRole entries, automount maps, netgroups, ...), read with
	// every full read and committed with it.
	Extra []ExtraSet `yaml:"extra"`
	// Mappings add to or replace (by name) the preset's property mappings.
	Mappings mapping.Config `yaml:"mappings"`
}

// Default returns the sync section's defaults.
func Default() Config {
	return Config{Enabled: true, Users: true, Groups: true, Interval: 5 * time.Minute, PageSize: 500, Preset: "openldap",
		Mode: ModeFull, FullInterval: 24 * time.Hour, Attributes: []string{"*"},
		PollInterval: 30 * time.Second}
}

// preset holds the directory-specific defaults.
type preset struct {
	userFilter, groupFilter string
	membership, uniqueness  string
	// passwordMarker lists the attributes that change with the password.
	passwordMarker []string
}

var presets = map[string]preset{
	"active-directory": {
		userFilter:     "(&(objectCategory=person)(objectClass=user))",
		groupFilter:    "(objectClass=group)",
		membership:     "member",
		uniqueness:     "objectGUID",
		passwordMarker: []string{"pwdLastSet"},
	},
	"openldap": {
		userFilter:     "(|(objectClass=inetOrgPerson)(objectClass=posixAccount))",
		groupFilter:    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
		membership:     "member",
		uniqueness:     "entryUUID",
		passwordMarker: []string{"pwdChangedTime"},
	},
	"freeipa": {
		userFilter:     "(objectClass=inetOrgPerson)",
		groupFilter:    "(objectClass=groupOfNames)",
		membership:     "member",
		uniqueness:     "ipaUniqueID",
		passwordMarker: []string{"krbLastPwdChange"},
	},
}

// Modes of Config.Mode.
const (
	ModeFull      = "full"
	ModeSyncrepl  = "syncrepl"
	ModeTimestamp = "timestamp"
	ModeUSN       = "usn"
	ModeDirSync   = "dirsync"
	ModeAuto      = "auto"
)

var (
	membershipFields = []string{"member", "uniqueMember", "memberUid", "memberOf"}
	uniquenessFields = []string{"objectGUID", "objectSid", "entryUUID", "ipaUniqueID", "nsUniqueId"}
)

// Validate fills in the preset's defaults and checks the section. Every mistake is
// reported (errors.Join), each with the key that holds it; with an unknown preset, the
// keys it would have filled in are checked only when set.
func (c *Config) Validate() error {
	var errs []error
	p, ok := presets[c.Preset]
	if !ok {
		errs = append(errs, fmt.Errorf("preset: %q is not one of active-directory, openldap, freeipa", c.Preset))
	}
	if c.UserFilter == "" {
		c.UserFilter = p.userFilter
	}
	if c.GroupFilter == "" {
		c.GroupFilter = p.groupFilter
	}
	if c.MembershipField == "" {
		c.MembershipField = p.membership
	}
	if c.UniquenessField == "" {
		c.UniquenessField = p.uniqueness
	}
	if c.Interval <= 0 {
		errs = append(errs, errors.New("interval: must be positive"))
	}
	switch c.Mode {
	case ModeFull, ModeSyncrepl, ModeTimestamp, ModeUSN, ModeDirSync, ModeAuto:
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not one of full, syncrepl, timestamp, usn, dirsync, auto", c.Mode))
	}
	if c.Mode == ModeDirSync && c.UniquenessField != "" && !strings.EqualFold(c.UniquenessField, "objectGUID") && ok {
		errs = append(errs, fmt.Errorf("mode: dirsync identifies deleted objects by their objectGUID: it needs uniqueness_field objectGUID, not %s", c.UniquenessField))
	}
	if c.Mode == ModeSyncrepl && c.UniquenessField != "" && !strings.EqualFold(c.UniquenessField, "entryUUID") && ok {
		errs = append(errs, fmt.Errorf("mode: syncrepl identifies deleted entries by their entryUUID: it needs uniqueness_field entryUUID, not %s", c.UniquenessField))
	}
	if c.FullInterval <= 0 {
		errs = append(errs, errors.New("full_interval: must be positive"))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll_interval: must be positive"))
	}
	errs = append(errs, validateAttributeLists(c)...)
	errs = append(errs, validateExtra(c.Extra)...)
	if c.PageSize <= 0 || c.PageSize > 100000 {
		errs = append(errs, fmt.Errorf("page_size: %d is not between 1 and 100000", c.PageSize))
	}
	for _, f := range []struct{ key, filter string }{{"user_filter", c.UserFilter}, {"group_filter", c.GroupFilter}} {
		if f.filter == "" {
			continue // no preset to take it from: reported as preset
		}
		if _, err := ldap.CompileFilter(f.filter); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", f.key, f.filter, err))
		}
	}
	for _, d := range []struct{ key, dn string }{{"user_dn", c.UserDN}, {"group_dn", c.GroupDN}} {
		if d.dn == "" {
			continue
		}
		if _, err := ldap.ParseDN(d.dn); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a DN: %w", d.key, d.dn, err))
		}
	}
	for _, f := range []struct {
		key   string
		value *string
		list  []string
	}{{"membership_field", &c.MembershipField, membershipFields}, {"uniqueness_field", &c.UniquenessField, uniquenessFields}} {
		if *f.value == "" && !ok {
			continue // no preset to take it from: reported as preset
		}
		if *f.value = canonical(*f.value, f.list); *f.value == "" {
			errs = append(errs, fmt.Errorf("%s: not one of %s", f.key, strings.Join(f.list, ", ")))
		}
	}
	if c.UserPath != "" {
		probe := strings.NewReplacer("{username}", "x", "{base_dn}", "dc=x").Replace(c.UserPath)
		if strings.ContainsAny(probe, "{}") {
			errs = append(errs, fmt.Errorf("user_path: %q: only {username} and {base_dn} can be used", c.UserPath))
		} else if _, err := ldap.ParseDN(probe); err != nil {
			errs = append(errs, fmt.Errorf("user_path: %q does not make a DN: %w", c.UserPath, err))
		}
	}
	if strings.ContainsAny(c.ParentGroup, ",=+<>#;\\\"") {
		errs = append(errs, fmt.Errorf("parent_group: %q must be a plain group name, not a DN", c.ParentGroup))
	}
	errs = append(errs, errlist.Flatten(errlist.Prefix("mappings.", c.Mappings.Validate()))...)
	return errors.Join(errs...)
}

// canonical returns the spelling of name in list (compared case-insensitively), or "".
func canonical(name string, list []string) string {
	for _, n := range list {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return ""
}

// join prepends an additional DN to the base DN.
func join(extra, base string) string {
	switch {
	case extra == "":
		return base
	case base == "":
		return extra
	}
	return extra + "," + base
}
