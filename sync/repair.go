package sync

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Variables for the tests.
var (
	// stampOverlap is how far before the upstream's time it starts from a re-read by
	// time starts: timestamps have a granularity of a second, and an entry can be
	// committed after one stamped later.
	stampOverlap = 2 * time.Second
	// maxRepairReads is how many groups a full read re-reads one by one at most; past it,
	// it reads every group again.
	maxRepairReads = 256
)

// repair settles the memberships that changed upstream while a full read ran. The
// groups, and so their member values, are read before the users: a user moved or
// renamed in between is read at a DN that no group listed when the groups were read, and
// a user added to a group in between is in no list read. Before the commit, the groups
// that may have changed are read again, with the member values they have now:
//   - those changed since the group read began (modifyTimestamp at or after the
//     upstream's time then, as upstreamClock follows it, less stampOverlap) whose
//     version (entryCSN, uSNChanged) differs from the one the group read saw, or that
//     have none: adds and removals (changedGroups);
//   - those listing a member value that no user read now has but that a stored user had
//     or, on a first run (no stored users), that lies below the users' base DN: the user
//     moved or was renamed (Active Directory rewrites no group when a member moves, and
//     OpenLDAP's refint rewrites the value without changing the group's time or
//     entryCSN).
//
// Their members are then resolved again against the users of this run, by DN (or name),
// and each user whose groups differ is written again, in the same commit.
func (r *run) repair(ctx context.Context) error {
	s := r.s
	if s.cfg.MembershipField == "memberOf" || len(r.groups) == 0 {
		return nil // memberOf comes with the user, as it is when the user is read
	}
	base := r.w.Base()
	stored, _ := base.Counts()
	userBase := s.store.NormalizeDN(join(s.cfg.UserDN, s.base))
	suspect := map[string]bool{} // group IDs
	for key, gids := range r.memberOf {
		if r.seen[key] {
			continue
		}
		if _, isGroup := r.groupsByDN[key]; isGroup {
			continue
		}
		var known bool
		switch {
		case s.cfg.MembershipField == "memberUid":
			_, known = base.UserByUsername(key)
		case stored == 0:
			known = strings.HasSuffix(key, ","+userBase)
		default:
			_, known = base.UserByDN(key)
		}
		if known {
			for _, gid := range gids {
				suspect[gid] = true
			}
		}
	}

	var entries []*group
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		entries = entries[:0]
		add := func(e *ldap.Entry) error {
			g, err := r.readGroup(ctx, lc, e)
			if g != nil {
				entries = append(entries, g)
			}
			return err
		}
		// again are the groups to read again one by one: DN → ID.
		again := map[string]string{}
		for _, g := range r.groups {
			if suspect[g.obj.ID] {
				again[g.obj.DN] = g.obj.ID
			}
		}
		all := len(again) > maxRepairReads
		if since, known := r.clock.at(r.groupsStart); !all && repairByTime && known {
			changed, err := r.changedGroups(ctx, lc, since.Add(-stampOverlap))
			if err != nil {
				return err
			}
			maps.Copy(again, changed)
			all = len(again) > maxRepairReads
		}
		if all {
			if err := pagedSearch(ctx, lc, s.cfg.PageSize, join(s.cfg.GroupDN, s.base), s.cfg.GroupFilter, s.groupAttributes(), add); err != nil {
				return fmt.Errorf("groups changed during the read: %w", err)
			}
			return nil
		}
		for _, dn := range slices.Sorted(maps.Keys(again)) {
			res, err := lc.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
				s.cfg.GroupFilter, dedupe(s.groupAttributes()), nil))
			switch {
			case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
				continue // moved or gone since: the next read sees it
			case err != nil:
				return fmt.Errorf("read group %s again: %w", dn, err)
			}
			for _, e := range res.Entries {
				if err := add(e); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Debug("sync: groups read again before the commit", "groups", len(entries))
	if len(entries) == 0 {
		return nil
	}

	// Replace the groups read again, noting every member key they had or have.
	affected := map[string]bool{}
	byID := make(map[string]int, len(r.groups))
	for i, g := range r.groups {
		byID[g.obj.ID] = i
	}
	for _, n := range entries {
		i, ok := byID[n.obj.ID]
		if !ok {
			r.groups = append(r.groups, n) // added during the read
			byID[n.obj.ID] = len(r.groups) - 1
		} else {
			old := r.groups[i]
			if slices.Equal(old.members, n.members) && old.obj.DN == n.obj.DN {
				r.groups[i] = n
				continue
			}
			for _, m := range old.members {
				affected[s.memberKey(m)] = true
			}
			delete(r.groupsByDN, s.store.NormalizeDN(old.obj.DN))
			r.groups[i] = n
		}
		r.groupsByDN[s.store.NormalizeDN(n.obj.DN)] = n.obj.ID
		for _, m := range n.members {
			affected[s.memberKey(m)] = true
		}
	}
	clear(r.memberOf)
	for _, g := range r.groups {
		for _, m := range g.members {
			key := s.memberKey(m)
			r.memberOf[key] = append(r.memberOf[key], g.obj.ID)
		}
	}

	// Resolve the members of those groups again, among the users of this run.
	byName := s.cfg.MembershipField == "memberUid"
	repaired := 0
	for key, id := range r.w.UserIDs(affected, byName) {
		u, ok := r.w.User(id)
		if !ok {
			continue
		}
		groups := slices.Clone(r.memberOf[key])
		slices.Sort(groups)
		groups = slices.Compact(groups)
		if slices.Equal(groups, u.Groups) {
			continue
		}
		u.Groups = groups
		if err := r.w.ReplaceUser(u); err != nil {
			return err
		}
		repaired++
	}
	if repaired > 0 {
		s.log.Info("sync: memberships that changed during the read settled", "groups_read_again", len(entries), "users_corrected", repaired)
	}
	return nil
}

// versionAttributes hold an entry's version: a value that every change of the entry
// replaces (OpenLDAP's entryCSN, Active Directory's uSNChanged), which modifyTimestamp is
// not (two changes within a second share it).
var versionAttributes = []string{"entryCSN", "uSNChanged"}

// entryVersion is e's version, or "" when it has none (then any change time is a change).
func entryVersion(e *ldap.Entry) string {
	for _, name := range versionAttributes {
		if v := e.GetEqualFoldAttributeValue(name); v != "" {
			return name + ":" + v
		}
	}
	return ""
}

// changedGroups returns the groups stamped at or after since that may differ from what
// the group read saw (DN → ID): the groups it did not read, and those whose version it
// did not see or that have another version now. Only identities, stamps and versions
// are read: after a bulk load, every group may be stamped within stampOverlap of the
// newest stamp the run saw, and reading them all again would cost a second group read.
func (r *run) changedGroups(ctx context.Context, lc *ldap.Conn, since time.Time) (map[string]string, error) {
	s := r.s
	seen := make(map[string]string, len(r.groups)) // ID → version
	for _, g := range r.groups {
		seen[g.obj.ID] = g.version
	}
	filter := "(&" + s.cfg.GroupFilter + "(modifyTimestamp>=" + since.UTC().Format(stampLayout) + "))"
	attrs := append([]string{s.cfg.UniquenessField, "modifyTimestamp"}, versionAttributes...)
	changed := map[string]string{}
	err := pagedSearch(ctx, lc, s.cfg.PageSize, join(s.cfg.GroupDN, s.base), filter, attrs, func(e *ldap.Entry) error {
		r.stamp(e)
		id, err := s.identity(e)
		if err != nil {
			return nil // skipped at the group read too
		}
		if v, ok := seen[id]; !ok || v == "" || v != entryVersion(e) {
			changed[e.DN] = id
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("groups changed during the read: %w", err)
	}
	return changed, nil
}

// stampLayout writes a GeneralizedTime for a filter; parseStamp reads one, with or
// without a fraction (Active Directory writes "20261206041755.0Z").
const stampLayout = "20060102150405.0Z"

func parseStamp(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405Z0700", strings.TrimSpace(v))
	return t, err == nil
}

// pagedSearch runs a paged subtree search on lc and calls fn for each entry.
// More controls may go with it.
func pagedSearch(ctx context.Context, lc *ldap.Conn, pageSize int, base, filter string, attrs []string, fn func(*ldap.Entry) error, controls ...ldap.Control) error {
	paging := ldap.NewControlPaging(uint32(pageSize))
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, dedupe(attrs), append([]ldap.Control{paging}, controls...))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := lc.Search(req)
		if err != nil {
			return err
		}
		for _, e := range res.Entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if ctl == nil || len(ctl.Cookie) == 0 {
			return nil
		}
		paging.SetCookie(ctl.Cookie)
	}
}
