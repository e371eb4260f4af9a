package cache

import (
	"maps"
	"slices"
)

// patch returns the snapshot of generation gen that differs from sn by a few objects:
// users and groups map IDs to their new records, nil for deleted ones; the users' are
// in own's regions. It is what
// derive makes of the whole new maps, but updates sn's indexes instead of rebuilding
// them: a batch of a few changes costs copies of the maps, not a sort and a rehash of
// every object (100,000 users: about 200 ms per batch with derive). A kind without
// changes keeps its lists, as with derive.
func (sn *Snapshot) patch(gen uint64, users map[string]*userRec, own regions, groups map[string]*groupRec) *Snapshot {
	next := *sn
	next.gen = gen
	var moved []int32
	if len(users) > 0 {
		moved = next.patchUsers(sn, users, own)
	}
	if len(groups) > 0 {
		all := maps.Clone(sn.groups)
		for id, r := range groups {
			if r == nil {
				delete(all, id)
			} else {
				all[id] = r
			}
		}
		next.setGroups(all) // a few thousand at most: rebuilt
	}
	switch {
	case len(groups) > 0:
		next.setMembers() // groups that appear or go change what every list may hold
	case len(users) > 0:
		next.patchMembers(sn, users, moved)
	}
	return &next
}

// patchUsers sets next's users to prev's with changes, whose records are in own's
// regions, applied. It returns where each user of prev's list is in next's: its
// position, or -1 for the changed ones.
func (next *Snapshot) patchUsers(prev *Snapshot, changes map[string]*userRec, own regions) []int32 {
	ids := slices.Sorted(maps.Keys(changes))
	list := make([]userRec, 0, len(prev.userList)+len(changes))
	moved := make([]int32, len(prev.userList))
	at := make([]int, len(ids)) // where each changed user is in list; -1: deleted
	j := 0
	put := func() {
		at[j] = -1
		if c := changes[ids[j]]; c != nil {
			at[j] = len(list)
			list = append(list, *c)
		}
		j++
	}
	for p := range prev.userList {
		r := &prev.userList[p]
		id := r.id(prev.regions)
		for j < len(ids) && ids[j] < id {
			put()
		}
		if j < len(ids) && ids[j] == id {
			put()
			moved[p] = -1
			continue
		}
		moved[p] = int32(len(list))
		list = append(list, *r)
	}
	for j < len(ids) {
		put()
	}
	next.userList = list
	next.regions = prev.regions.merged(own).of(list)
	rs := next.regions

	one := func(k string) []string {
		if k == "" {
			return nil
		}
		return []string{k}
	}
	wg := next.indexUsers() // DN, name and mail: built anew over the list
	defer wg.Wait()
	indexes := []struct {
		m    *map[string]*userRec
		prev map[string]*userRec
		keys func(regions, *userRec) []string
	}{
		{&next.usersByPath, prev.usersByPath, func(rs regions, r *userRec) []string { return one(r.pathKey(rs)) }},
		{&next.usersByUPN, prev.usersByUPN, func(rs regions, r *userRec) []string { return r.upnKeys(rs) }},
	}
	for _, ix := range indexes {
		// prev's index with its records moved to next's list; the keys of the changed
		// users are left out.
		m := make(map[string]*userRec, len(ix.prev))
		for k, r := range ix.prev {
			if r == nil {
				m[k] = nil
			} else if p := moved[prev.indexOf(r)]; p >= 0 {
				m[k] = &list[p]
			}
		}
		// A key two users shared maps to nil, and which of them still holds it after
		// one leaves cannot be told without looking at all: those keys are counted
		// again from the list.
		recount := map[string]bool{}
		for _, id := range ids {
			if old := prev.userRec(id); old != nil {
				for _, k := range ix.keys(prev.regions, old) {
					if cur, ok := m[k]; ok && cur == nil {
						recount[k] = true
					}
				}
			}
		}
		for _, p := range at {
			if p < 0 {
				continue
			}
			r := &list[p]
			for _, key := range ix.keys(rs, r) {
				if !recount[key] {
					addUnique(m, key, r)
				}
			}
		}
		if len(recount) > 0 {
			for k := range recount {
				delete(m, k)
			}
			for i := range list {
				r := &list[i]
				for _, k := range ix.keys(rs, r) {
					if recount[k] {
						addUnique(m, k, r)
					}
				}
			}
		}
		*ix.m = m
	}
	return moved
}

// patchMembers updates the member lists for the changed users; the groups themselves
// are prev's. moved is patchUsers' map of prev's user positions to next's. Each list
// is prev's with its users' positions moved and the changed users taken out, then the
// changed users that are members put in: O(memberships), without decoding the users
// that did not change.
func (next *Snapshot) patchMembers(prev *Snapshot, changes map[string]*userRec, moved []int32) {
	pos := next.groupPositions()
	var joined []uint64 // group position << 32 | position in next.userList
	for id, r := range changes {
		if r == nil {
			continue
		}
		p, _ := next.userPos(id)
		for gid := range userGroups(r.val(next.regions)) {
			if g, ok := pos[gid]; ok {
				joined = append(joined, uint64(g)<<32|uint64(p))
			}
		}
	}
	slices.Sort(joined) // by group, then by position
	pm := prev.members
	start := make([]uint32, len(next.groupList)+1)
	users := make([]uint32, 0, len(pm.users)+len(joined))
	for g := range next.groupList {
		var add []uint64
		for len(joined) > 0 && int(joined[0]>>32) == g {
			add = append(add, joined[0])
			joined = joined[1:]
		}
		for _, p := range span(pm.userStart, pm.users, g) {
			m := moved[p]
			if m < 0 {
				continue
			}
			for len(add) > 0 && uint32(add[0]) < uint32(m) {
				users = append(users, uint32(add[0]))
				add = add[1:]
			}
			users = append(users, uint32(m))
		}
		for _, a := range add {
			users = append(users, uint32(a))
		}
		start[g+1] = uint32(len(users))
	}
	if len(users) == 0 {
		start, users = nil, nil
	}
	next.members.userStart, next.members.users = start, users
}
