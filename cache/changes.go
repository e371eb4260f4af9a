package cache

import "strings"

// Changes are the objects that differ between two snapshots, by ID: added, changed or
// deleted. Readers that keep something made from a snapshot (the served directory)
// redo only these objects and what depends on them.
type Changes struct {
	// Users and Groups are the IDs, in ID order.
	Users, Groups []string
	// EntrySets are the names of the entry sets (sync.extra) that differ, sorted.
	EntrySets []string
}

// Empty reports whether nothing differs.
func (c Changes) Empty() bool {
	return len(c.Users) == 0 && len(c.Groups) == 0 && len(c.EntrySets) == 0
}

// ChangesSince returns the objects that differ between prev and sn; prev nil is an
// empty store. A commit keeps the record of every object it did not change, and the
// whole list of a kind it changed nothing of, so this costs nothing for a kind no
// commit between the two changed, and one pointer comparison per object otherwise:
// a sync that changed nothing is found unchanged without decoding anything.
func (sn *Snapshot) ChangesSince(prev *Snapshot) Changes {
	if prev == nil {
		prev = &Snapshot{}
	}
	return Changes{
		Users: diffRecords(prev.userList, sn.userList,
			func(a, b *userRec) bool { return *a == *b },
			func(r *userRec) (string, string) { return r.id(prev.regions), r.val(prev.regions) },
			func(r *userRec) (string, string) { return r.id(sn.regions), r.val(sn.regions) }),
		Groups: diffRecords(prev.groupList, sn.groupList,
			func(a, b **groupRec) bool { return *a == *b },
			groupKey, groupKey),
		EntrySets: sn.changedEntrySets(prev),
	}
}

func groupKey(r **groupRec) (id, val string) { return (*r).id, (*r).val }

// diffRecords merges two lists in ID order and returns the IDs whose record is missing
// from one or differs; same tells whether two elements are the same record (a user's
// record copied from one snapshot's list to the next is the same: the same encoding in
// the same place), oldKey and key give an element's ID and encoding in old and cur.
func diffRecords[R any](old, cur []R, same func(a, b *R) bool, oldKey, key func(*R) (id, val string)) []string {
	if len(old) == len(cur) && (len(old) == 0 || &old[0] == &cur[0]) {
		return nil // the same list: no commit in between changed this kind
	}
	var out []string
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur):
			id, _ := oldKey(&old[i])
			out = append(out, id)
			i++
		case i == len(old):
			id, _ := key(&cur[j])
			out = append(out, id)
			j++
		case same(&old[i], &cur[j]): // the same record: the same object, unchanged
			i++
			j++
		default:
			oid, oval := oldKey(&old[i])
			cid, cval := key(&cur[j])
			switch c := strings.Compare(oid, cid); {
			case c < 0:
				out = append(out, oid)
				i++
			case c > 0:
				out = append(out, cid)
				j++
			default:
				if oval != cval {
					out = append(out, cid)
				}
				i++
				j++
			}
		}
	}
	return out
}

// UserDNs returns the upstream DN and the Path of the user id, without decoding the rest
// of it: what an entry that names the user (a group's member) needs.
func (sn *Snapshot) UserDNs(id string) (dn, path string, ok bool) {
	r := sn.userRec(id)
	if r == nil {
		return "", "", false
	}
	d := decoder{s: r.val(sn.regions)}
	var u User
	d.userHead(&u)
	return u.DN, u.Path, true
}
