package cache

import (
	"maps"
	"slices"
	"strings"
)

// patch returns the snapshot of generation gen that differs from sn by a few objects:
// users and groups map IDs to their new records, nil for deleted ones. It is what
// derive makes of the whole new maps, but updates sn's indexes instead of rebuilding
// them: a batch of a few changes costs copies of the maps, not a sort and a rehash of
// every object (100,000 users: about 200 ms per batch with derive). A kind without
// changes keeps its lists, as with derive.
func (sn *Snapshot) patch(gen uint64, users map[string]*userRec, groups map[string]*groupRec) *Snapshot {
	next := *sn
	next.gen = gen
	if len(users) > 0 {
		next.patchUsers(sn, users)
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
		next.patchMembers(sn, users)
	}
	return &next
}

// patchUsers sets next's users to prev's with changes applied.
func (next *Snapshot) patchUsers(prev *Snapshot, changes map[string]*userRec) {
	ids := slices.Sorted(maps.Keys(changes))
	list := make([]*userRec, 0, len(prev.userList)+len(changes))
	j := 0
	for _, r := range prev.userList {
		for j < len(ids) && ids[j] < r.id {
			if c := changes[ids[j]]; c != nil {
				list = append(list, c)
			}
			j++
		}
		if j < len(ids) && ids[j] == r.id {
			if c := changes[ids[j]]; c != nil {
				list = append(list, c)
			}
			j++
			continue
		}
		list = append(list, r)
	}
	for ; j < len(ids); j++ {
		if c := changes[ids[j]]; c != nil {
			list = append(list, c)
		}
	}
	next.userList = list

	type index struct {
		m    map[string]*userRec
		keys func(*userRec) []string
	}
	one := func(k string) []string {
		if k == "" {
			return nil
		}
		return []string{k}
	}
	wg := next.indexUsers() // DN, name and mail: built anew over the list
	defer wg.Wait()
	indexes := []*index{
		{prev.usersByPath, func(r *userRec) []string { return one(r.pathKey()) }},
		{prev.usersByUPN, func(r *userRec) []string { return r.upnKeys() }},
	}
	for _, ix := range indexes {
		m := maps.Clone(ix.m)
		// A key two users shared maps to nil, and which of them still holds it after
		// one leaves cannot be told without looking at all: those keys are counted
		// again from the list.
		recount := map[string]bool{}
		for _, id := range ids {
			if old := prev.userRec(id); old != nil {
				for _, k := range ix.keys(old) {
					switch cur, ok := m[k]; {
					case !ok:
					case cur == old:
						delete(m, k)
					case cur == nil:
						recount[k] = true
					}
				}
			}
		}
		for _, id := range ids {
			if r := changes[id]; r != nil {
				for _, k := range ix.keys(r) {
					if !recount[k] {
						addUnique(m, k, r)
					}
				}
			}
		}
		if len(recount) > 0 {
			for k := range recount {
				delete(m, k)
			}
			for _, r := range list {
				for _, k := range ix.keys(r) {
					if recount[k] {
						addUnique(m, k, r)
					}
				}
			}
		}
		ix.m = m
	}
	next.usersByPath, next.usersByUPN = indexes[0].m, indexes[1].m
}

// patchMembers updates the member lists of the groups that the changed users left or
// joined; the groups themselves are prev's.
func (next *Snapshot) patchMembers(prev *Snapshot, changes map[string]*userRec) {
	affected := map[string]bool{}
	for id, r := range changes {
		if old := prev.userRec(id); old != nil {
			for gid := range userGroups(old.val) {
				affected[gid] = true
			}
		}
		if r != nil {
			for gid := range userGroups(r.val) {
				affected[gid] = true
			}
		}
	}
	next.members = maps.Clone(prev.members)
	for gid := range affected {
		if _, ok := next.groups[gid]; !ok {
			continue
		}
		var users, groups []string
		if m := prev.members[gid]; m != nil {
			users, groups = slices.Clone(m.users), m.groups
		}
		users = slices.DeleteFunc(users, func(id string) bool { _, changed := changes[id]; return changed })
		for id, r := range changes {
			if r == nil {
				continue
			}
			for g := range userGroups(r.val) {
				if g == gid {
					i, _ := slices.BinarySearchFunc(users, id, strings.Compare)
					users = slices.Insert(users, i, id)
					break
				}
			}
		}
		if len(users) == 0 && len(groups) == 0 {
			delete(next.members, gid)
			continue
		}
		next.members[gid] = &memberList{users: users, groups: groups}
	}
}
