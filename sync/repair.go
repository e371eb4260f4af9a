package sync

import (
	"context"
	"fmt"
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
//     upstream's time then, as upstreamClock follows it, less stampOverlap): adds,
//     removals and, where the upstream rewrites member values on a rename (OpenLDAP's
//     refint), moves;
//   - those listing a member value that no user read now has but that a stored user had:
//     the user moved (Active Directory rewrites no group when a member moves: the value
//     changes but the group's time does not).
//
// Their members are then resolved again against the users of this run, by DN (or name),
// and each user whose groups differ is written again, in the same commit.
func (r *run) repair(ctx context.Context) error {
	s := r.s
	if s.cfg.MembershipField == "memberOf" || len(r.groups) == 0 {
		return nil // memberOf comes with the user, as it is when the user is read
	}
	base := r.w.Base()
	suspect := map[string]bool{} // group IDs
	for key, gids := range r.memberOf {
		if r.seen[key] {
			continue
		}
		if _, isGroup := r.groupsByDN[key]; isGroup {
			continue
		}
		var known bool
		if s.cfg.MembershipField == "memberUid" {
			_, known = base.UserByUsername(key)
		} else {
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
		all := len(suspect) > maxRepairReads
		since, known := r.clock.at(r.groupsStart)
		if all || repairByTime && known {
			filter := s.cfg.GroupFilter
			if !all {
				from := since.Add(-stampOverlap).UTC().Format(stampLayout)
				filter = "(&" + filter + "(modifyTimestamp>=" + from + "))"
			}
			if err := pagedSearch(ctx, lc, s.cfg.PageSize, join(s.cfg.GroupDN, s.base), filter, s.groupAttributes(), add); err != nil {
				return fmt.Errorf("groups changed during the read: %w", err)
			}
		}
		if all {
			return nil
		}
		for _, g := range r.groups {
			if !suspect[g.obj.ID] || slices.ContainsFunc(entries, func(n *group) bool { return n.obj.ID == g.obj.ID }) {
				continue
			}
			res, err := lc.Search(ldap.NewSearchRequest(g.obj.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
				s.cfg.GroupFilter, dedupe(s.groupAttributes()), nil))
			switch {
			case ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject):
				continue // moved or gone since: the next read sees it
			case err != nil:
				return fmt.Errorf("read group %s again: %w", g.obj.DN, err)
			}
			for _, e := range res.Entries {
				if err := add(e); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil || len(entries) == 0 {
		return err
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
