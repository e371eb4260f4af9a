package proxy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/parallel"
)

// ServedOptions say how synced objects become the entries cached searches serve.
type ServedOptions struct {
	// BaseDN is the naming context: the root of the served tree.
	BaseDN string
	// NestedGroups makes a user's memberOf list every ancestor group, and a group's
	// memberOf every ancestor of it.
	NestedGroups bool
	// MembershipField is sync.membership_field: a group's member or uniqueMember values
	// naming synced objects are served from the synced memberships, under that name.
	MembershipField string
	// UserFields and GroupFields are the mapped attributes.* fields served on top of the
	// upstream's attributes (sync.mappings' own; the presets' fields only restate
	// attributes served as they are).
	UserFields, GroupFields []string
	// ActiveDirectory makes the served tree follow Active Directory's own filter
	// conventions: objectCategory short names and ambiguous name resolution (anr). The
	// active-directory preset sets it.
	ActiveDirectory bool
}

// ServedEntries turns a snapshot of the store into the entries of the served tree: each
// synced object with its upstream attributes as they are (see servedUser), and the
// containers (the base DN, OUs) between them. No password or hash is ever among them:
// the store holds none.
func ServedEntries(sn *cache.Snapshot, o ServedOptions) []*directory.Entry {
	n, at := servedSource(sn, o)
	entries := make([]*directory.Entry, n)
	parallel.Ranges(n, parallelChunk, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			entries[i] = at(i)
		}
	})
	return entries
}

// servedSource is ServedEntries as directory.NewTreeFrom takes them: how many, and a
// function that makes the i-th anew each time (the containers first, then the users,
// the groups and the entries of sync.extra sets), safe to call from several goroutines.
// Only the containers, the decoded groups (a few thousand, whose entries name their
// members) and every user's served DN are kept; a user is decoded whole only when its
// entry is made, and let go with it.
func servedSource(sn *cache.Snapshot, o ServedOptions) (int, func(int) *directory.Entry) {
	groupDN := map[string]string{}
	parents := map[string][]string{}
	var groups []*cache.Group
	sn.Groups(func(g *cache.Group) bool {
		groupDN[g.ID] = g.DN
		parents[g.ID] = g.Parents
		groups = append(groups, g)
		return true
	})
	// The users' served DNs, from their names alone: what groups' members and users'
	// managers refer to, and where the containers are.
	nUsers, _ := sn.Counts()
	userDN := make(map[string]string, nUsers)
	dns := make([]string, 0, nUsers+len(groups))
	for i := range nUsers {
		u := sn.BriefUserAt(i)
		dn := servedDN(u)
		userDN[u.ID] = dn
		dns = append(dns, dn)
	}
	refs := &servedRefs{
		groupDN: func(id string) (string, bool) { dn, ok := groupDN[id]; return dn, ok },
		parents: func(id string) []string { return parents[id] },
		userDN:  func(id string) (string, bool) { dn, ok := userDN[id]; return dn, ok },
		members: sn.Members,
		synced:  sn.HasObjectDN,
	}
	for _, g := range groups {
		dns = append(dns, g.DN)
	}
	var extras []*cache.Entry
	for _, name := range sn.EntrySetNames() {
		set, _ := sn.EntrySet(name)
		for i := range set {
			extras = append(extras, &set[i])
			dns = append(dns, set[i].DN)
		}
	}
	conts := containers(o.BaseDN, dns)
	n := len(conts) + nUsers + len(groups) + len(extras)
	return n, func(i int) *directory.Entry {
		if i < len(conts) {
			return conts[i]
		}
		if i -= len(conts); i < nUsers {
			u := sn.UserAt(i)
			e := servedUser(u, o, refs)
			e.Source = sn.UserSource(u.ID)
			return e
		}
		if i -= nUsers; i < len(groups) {
			e := servedGroup(groups[i], o, refs)
			e.Source = sn.GroupSource(groups[i].ID)
			return e
		}
		return servedExtra(extras[i-len(groups)])
	}
}

// parallelChunk is the least number of entries worth a goroutine of its own.
const parallelChunk = 2048

// servedExtra is the served entry of an entry of a sync.extra set: as the upstream has
// it.
func servedExtra(x *cache.Entry) *directory.Entry {
	return fromUpstream(x.DN, x.Upstream, nil, false, "", nil, nil, nil, nil)
}

// entrySetByDN returns the entries of sn's set name by normalised DN.
func entrySetByDN(sn *cache.Snapshot, name string) map[string]*cache.Entry {
	set, _ := sn.EntrySet(name)
	out := make(map[string]*cache.Entry, len(set))
	for i := range set {
		out[directory.NormalizeDN(set[i].DN)] = &set[i]
	}
	return out
}

// servedRefs is what the served entry of an object takes from other objects: the DNs of
// its groups and members, and for nested groups the groups above them.
type servedRefs struct {
	groupDN func(id string) (string, bool)
	parents func(id string) []string
	userDN  func(id string) (string, bool) // the DN in the served tree
	members func(groupID string) (users, groups []string)
	// synced tells whether an upstream DN is a synced object's.
	synced func(dn string) bool
}

// snapshotRefs looks objects up in sn, each once.
func snapshotRefs(sn *cache.Snapshot) *servedRefs {
	groups := map[string]*cache.Group{}
	group := func(id string) *cache.Group {
		g, seen := groups[id]
		if !seen {
			g, _ = sn.GroupByID(id)
			groups[id] = g
		}
		return g
	}
	userDN := map[string]string{}
	return &servedRefs{
		groupDN: func(id string) (string, bool) {
			if g := group(id); g != nil {
				return g.DN, true
			}
			return "", false
		},
		parents: func(id string) []string {
			if g := group(id); g != nil {
				return g.Parents
			}
			return nil
		},
		userDN: func(id string) (string, bool) {
			dn, seen := userDN[id]
			if !seen {
				if up, path, ok := sn.UserDNs(id); ok {
					dn = servedDN(&cache.User{DN: up, Path: path})
				}
				userDN[id] = dn
			}
			return dn, dn != ""
		},
		members: sn.Members,
		synced:  sn.HasObjectDN,
	}
}

// ancestors returns the groups whose DNs memberOf lists for an object directly in the
// groups direct: those, and with nested groups every group above them.
func (r *servedRefs) ancestors(direct []string, o ServedOptions) []string {
	if !o.NestedGroups {
		return direct
	}
	seen := map[string]bool{}
	var out []string
	var walk func(ids []string)
	walk = func(ids []string) {
		for _, id := range ids {
			if seen[id] {
				continue // cycles happen in real directories
			}
			seen[id] = true
			out = append(out, id)
			walk(r.parents(id))
		}
	}
	walk(direct)
	return out
}

// groupDNs returns the DNs of the groups ids that exist.
func (r *servedRefs) groupDNs(ids []string) [][]byte {
	var out [][]byte
	for _, id := range ids {
		if dn, ok := r.groupDN(id); ok {
			out = append(out, bytesOf(dn))
		}
	}
	return out
}

// The object classes of users and groups: one copy shared by every entry (the tree
// never modifies values), not four small allocations per user.
var (
	userClasses  = [][]byte{[]byte("top"), []byte("person"), []byte("organizationalPerson"), []byte("inetOrgPerson")}
	groupClasses = [][]byte{[]byte("top"), []byte("groupOfNames")}
)

// servedUser is the served entry of u: its upstream attributes as they are (see
// fromUpstream), or for a user stored without them (by an earlier version, until the
// next sync) the entry cleanUser makes.
func servedUser(u *cache.User, o ServedOptions, r *servedRefs) *directory.Entry {
	if len(u.Upstream) == 0 {
		return cleanUser(u, o, r)
	}
	memberOf := r.groupDNs(r.ancestors(u.Groups, o))
	return fromUpstream(servedDN(u), u.Upstream, memberOf, o.NestedGroups, "", nil, u.Attributes, o.UserFields, r)
}

// servedGroup is the served entry of g, as servedUser's.
func servedGroup(g *cache.Group, o ServedOptions, r *servedRefs) *directory.Entry {
	if len(g.Upstream) == 0 {
		return cleanGroup(g, o, r)
	}
	memberOf := r.groupDNs(r.ancestors(g.Parents, o))
	memberAttr := ""
	var members [][]byte
	if f := o.MembershipField; f == "member" || f == "uniqueMember" || f == "" {
		memberAttr = cmp.Or(f, "member")
		members = r.memberDNs(g.ID)
	}
	return fromUpstream(g.DN, g.Upstream, memberOf, o.NestedGroups, memberAttr, members, g.Attributes, o.GroupFields, r)
}

// fromUpstream is the served entry at dn of an object with the upstream attributes up,
// values shared, not copied (the tree never modifies them). Two attributes say what
// other objects are and where they are served, so they are served from the synced
// memberships: memberOf lists memberOf (the object's groups, every ancestor with nested
// groups) where the upstream entry has a memberOf or alwaysMemberOf says so (an upstream
// without a memberOf overlay serves none, nor does the proxy), and a group's memberAttr
// (member, uniqueMember) lists members, both at the DNs the tree serves them at. Values
// of the upstream's that name no synced object (groups outside the synced ones, members
// of other kinds) are kept as they are. Then the mapped fields named in fields are
// served on top, each replacing an upstream attribute of the same name.
func fromUpstream(dn string, up []cache.Attribute, memberOf [][]byte, alwaysMemberOf bool, memberAttr string, members [][]byte, mapped map[string]any, fields []string, r *servedRefs) *directory.Entry {
	e := &directory.Entry{DN: dn, Attributes: make([]directory.Attribute, 0, len(up)+2)}
	hasMemberOf := alwaysMemberOf
	// The values of all attributes share one array: an allocation per entry, not one
	// per attribute (a start builds every entry at once).
	n := 0
	for _, a := range up {
		n += len(a.Values)
	}
	slab := make([][]byte, n)
	for _, a := range up {
		vals := slab[:len(a.Values):len(a.Values)]
		slab = slab[len(a.Values):]
		for i, v := range a.Values {
			vals[i] = bytesOf(v)
		}
		switch {
		case r == nil: // an entry of an extra set: as it is
		case strings.EqualFold(a.Name, "memberOf"):
			memberOf = append(memberOf, foreign(vals, r)...)
			hasMemberOf = true
			continue
		case memberAttr != "" && strings.EqualFold(a.Name, memberAttr):
			members = append(members, foreign(vals, r)...)
			continue
		}
		e.Attributes = append(e.Attributes, directory.Attribute{Name: a.Name, Values: vals})
	}
	if len(members) > 0 {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: memberAttr, Values: members})
	}
	if len(memberOf) > 0 && hasMemberOf {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "memberOf", Values: memberOf})
	}
	for _, f := range fields {
		v, ok := mapped[f]
		if !ok {
			continue
		}
		name := ldapAttrName(f)
		e.Attributes = slices.DeleteFunc(e.Attributes, func(a directory.Attribute) bool { return strings.EqualFold(a.Name, name) })
		if vals := mappedValues(v); len(vals) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: name, Values: vals})
		}
	}
	return e
}

// foreign returns the DN values that name no synced object. A uniqueMember value's
// optional unique identifier ("#'0101'B") is not part of the DN it names.
func foreign(vals [][]byte, r *servedRefs) [][]byte {
	var out [][]byte
	for _, v := range vals {
		dn := string(v)
		if i := strings.LastIndex(dn, "#'"); i > 0 && strings.HasSuffix(dn, "'B") {
			dn = dn[:i]
		}
		if !r.synced(dn) {
			out = append(out, v)
		}
	}
	return out
}

// bytesOf returns s's bytes without copying them. The served tree never modifies a
// value; an object's strings are slices of its stored record, which its entry names as
// its Source, so the tree keeps them as offsets into that record and an entry's values
// cost no memory of their own.
func bytesOf(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// memberDNs returns the served DNs of the group id's direct members.
func (r *servedRefs) memberDNs(id string) [][]byte {
	users, groups := r.members(id)
	var members [][]byte
	for _, id := range users {
		if dn, ok := r.userDN(id); ok {
			members = append(members, bytesOf(dn))
		}
	}
	return append(members, r.groupDNs(groups)...)
}

// cleanUser is the entry of a user stored without its upstream attributes, as versions
// before them served it: uid, cn, displayName, sn, givenName, mail, memberOf,
// objectClass, entryUUID and every mapped attributes.* field.
func cleanUser(u *cache.User, o ServedOptions, r *servedRefs) *directory.Entry {
	e := &directory.Entry{DN: servedDN(u)}
	add := func(name string, vals ...string) {
		var vs [][]byte
		for _, v := range vals {
			if v != "" {
				vs = append(vs, bytesOf(v))
			}
		}
		if len(vs) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: name, Values: vs})
		}
	}
	e.Attributes = append(e.Attributes, directory.Attribute{Name: "objectClass", Values: userClasses})
	add("uid", u.Username)
	cn := u.Name
	if cn == "" {
		cn = u.Username
	}
	add("cn", cn)
	add("displayName", u.Name)
	sn := attrString(u.Attributes["surname"])
	if sn == "" {
		sn = cn
	}
	add("sn", sn)
	add("givenName", attrString(u.Attributes["given_name"]))
	add("mail", u.Email)
	add("entryUUID", u.ID)
	if m := r.groupDNs(r.ancestors(u.Groups, o)); len(m) > 0 {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "memberOf", Values: m})
	}
	addMapped(e, u.Attributes)
	return e
}

// cleanGroup is cleanUser for a group: cn, member, memberOf and objectClass.
func cleanGroup(g *cache.Group, o ServedOptions, r *servedRefs) *directory.Entry {
	e := &directory.Entry{DN: g.DN}
	e.Attributes = append(e.Attributes,
		directory.Attribute{Name: "objectClass", Values: groupClasses},
		directory.Attribute{Name: "cn", Values: [][]byte{bytesOf(g.Name)}},
		directory.Attribute{Name: "entryUUID", Values: [][]byte{bytesOf(g.ID)}})
	if members := r.memberDNs(g.ID); len(members) > 0 {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "member", Values: members})
	}
	if m := r.groupDNs(r.ancestors(g.Parents, o)); len(m) > 0 {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "memberOf", Values: m})
	}
	addMapped(e, g.Attributes)
	return e
}

// addMapped adds the mapped attributes.* fields, sorted by name so entries are stable.
// A field's name becomes an LDAP attribute name in lower camel case (given_name →
// givenName), since LDAP names allow no underscore; a field whose name the entry already
// has (givenName, sn from the presets) is not repeated.
func addMapped(e *directory.Entry, attrs map[string]any) {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		name := ldapAttrName(k)
		if name == "surname" {
			name = "sn"
		}
		if slices.ContainsFunc(e.Attributes, func(a directory.Attribute) bool { return strings.EqualFold(a.Name, name) }) {
			continue
		}
		if vals := mappedValues(attrs[k]); len(vals) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: name, Values: vals})
		}
	}
}

// mappedValues are the LDAP values of a mapped field's value.
func mappedValues(v any) [][]byte {
	var vals [][]byte
	switch v := v.(type) {
	case []string:
		for _, s := range v {
			vals = append(vals, bytesOf(s))
		}
	default:
		if s := attrString(v); s != "" {
			vals = [][]byte{bytesOf(s)}
		}
	}
	return vals
}

// ldapAttrName turns a mapped field name (letters, digits, '-', '_') into an LDAP
// attribute name: underscores dropped, the next letter upper-cased.
func ldapAttrName(field string) string {
	if !strings.Contains(field, "_") {
		return field
	}
	var b strings.Builder
	up := false
	for _, r := range field {
		switch {
		case r == '_':
			up = b.Len() > 0
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// attrString renders a mapped value in its LDAP string form.
func attrString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []string:
		if len(v) > 0 {
			return v[0]
		}
		return ""
	case bool:
		if v {
			return "TRUE"
		}
		return "FALSE"
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.UTC().Format("20060102150405Z")
	}
	return fmt.Sprint(v)
}

// containers makes the entries between the base DN and the synced objects (the base
// itself, OUs), which the directory has but the sync does not copy.
func containers(base string, dns []string) []*directory.Entry {
	baseNorm := directory.NormalizeDN(base)
	have := map[string]bool{}
	for _, dn := range dns {
		have[directory.NormalizeDN(dn)] = true
	}
	var out []*directory.Entry
	want := func(dn, n string) {
		if have[n] {
			return
		}
		have[n] = true
		out = append(out, containerEntry(dn))
	}
	want(base, baseNorm)
	// Most entries share their parent (ou=people,...): its containers are found once.
	parents := map[string]bool{}
	for _, dn := range dns {
		if p, ok := rawParent(dn); ok {
			if parents[p] {
				continue
			}
			parents[p] = true
		}
		containersOf(baseNorm, dn, func(dn, n string) { want(dn, n) })
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].DN) < len(out[j].DN) })
	return out
}

// rawParent returns dn without its first RDN, as written; ok is false for a DN that
// needs a parser to split (quoted values).
func rawParent(dn string) (string, bool) {
	for i := 0; i < len(dn); i++ {
		switch dn[i] {
		case '\\':
			i++
		case '"':
			return "", false
		case ',':
			return dn[i+1:], true
		}
	}
	return "", true
}

// containersOf calls fn with each DN between dn and the base DN (normalised baseNorm),
// parent first, and its normalised form; none for a DN not under the base.
func containersOf(baseNorm, dn string, fn func(dn, n string)) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return
	}
	for i := 1; i < len(parsed.RDNs); i++ {
		anc := &ldap.DN{RDNs: parsed.RDNs[i:]}
		s := anc.String()
		n := directory.NormalizeDN(s)
		if n == baseNorm || !strings.HasSuffix(n, ","+baseNorm) {
			break
		}
		fn(s, n)
	}
}

// servedContainers are the containers of a served tree below the base DN, as the
// synced objects under them make them: a container is there while an object is below
// it (and no object has its DN).
type servedContainers struct {
	baseNorm string
	below    map[string]int    // normalised DN → synced objects below it
	present  map[string]string // normalised DN → DN, of the containers in the tree
	extra    map[string]int    // normalised DNs of entries of the extra sets (how many sets)
}

// newServedContainers counts the containers of sn's served tree as ServedEntries makes
// them.
func newServedContainers(sn *cache.Snapshot, o ServedOptions) *servedContainers {
	sc := &servedContainers{baseNorm: directory.NormalizeDN(o.BaseDN), below: map[string]int{}, present: map[string]string{}, extra: map[string]int{}}
	spelled := map[string]string{}
	count := func(dn string) {
		containersOf(sc.baseNorm, dn, func(s, n string) {
			sc.below[n]++
			if _, ok := spelled[n]; !ok {
				spelled[n] = s
			}
		})
	}
	sn.Users(func(u *cache.User) bool { count(servedDN(u)); return true })
	sn.Groups(func(g *cache.Group) bool { count(g.DN); return true })
	for _, name := range sn.EntrySetNames() {
		set, _ := sn.EntrySet(name)
		for _, x := range set {
			count(x.DN)
			sc.extra[directory.NormalizeDN(x.DN)]++
		}
	}
	for n, s := range spelled {
		if !sc.objectAt(sn, n) {
			sc.present[n] = s
		}
	}
	return sc
}

func (sc *servedContainers) clone() *servedContainers {
	return &servedContainers{baseNorm: sc.baseNorm, below: maps.Clone(sc.below), present: maps.Clone(sc.present), extra: maps.Clone(sc.extra)}
}

// objectAt reports whether a synced object of sn, or an entry of an extra set, is
// served at the normalised DN n.
func (sc *servedContainers) objectAt(sn *cache.Snapshot, n string) bool {
	if sc.extra[n] > 0 {
		return true
	}
	if _, ok := sn.UserByPath(n); ok {
		return true
	}
	_, ok := sn.GroupByDN(n)
	return ok
}

// move counts an object that left oldDN for newDN (either may be ""), noting the
// containers it touched in touched (normalised DN → DN).
func (sc *servedContainers) move(oldDN, newDN string, touched map[string]string) {
	if oldDN == newDN {
		return // re-served in place: no container gains or loses it
	}
	if oldDN != "" {
		containersOf(sc.baseNorm, oldDN, func(s, n string) {
			sc.below[n]--
			if _, ok := touched[n]; !ok {
				touched[n] = s
			}
		})
	}
	if newDN != "" {
		containersOf(sc.baseNorm, newDN, func(s, n string) {
			sc.below[n]++
			touched[n] = s
		})
	}
}

// changes returns the containers to add and delete among touched, in next.
func (sc *servedContainers) changes(next *cache.Snapshot, touched map[string]string) []directory.Change {
	var out []directory.Change
	for _, n := range slices.Sorted(maps.Keys(touched)) {
		want := sc.below[n] > 0 && !sc.objectAt(next, n)
		if sc.below[n] <= 0 {
			delete(sc.below, n)
		}
		dn, have := sc.present[n]
		switch {
		case want && !have:
			sc.present[n] = touched[n]
			out = append(out, directory.Change{Entry: containerEntry(touched[n])})
		case !want && have:
			delete(sc.present, n)
			out = append(out, directory.Change{DN: dn})
		}
	}
	return out
}

// servedChanges returns the changes that turn the served entries of prev into those of
// next, and counts the containers in sc (a copy the caller keeps if the changes apply).
// An object's served entry depends on more than its own record: a group lists its
// members' DNs, an object's memberOf its groups' DNs (with nested groups, those of every
// group above), so a user renamed or moving between groups re-serves the groups that
// list it, and a group renamed or moved between parents re-serves its members and its
// parents. Entries redone unchanged cost a comparison in Tree.Apply, nothing more.
func servedChanges(prev, next *cache.Snapshot, o ServedOptions, sc *servedContainers) []directory.Change {
	ch := next.ChangesSince(prev)
	if ch.Empty() {
		return nil
	}
	users, groups := map[string]bool{}, map[string]bool{}
	mark := func(set map[string]bool, ids []string) {
		for _, id := range ids {
			set[id] = true
		}
	}
	for _, id := range ch.Users {
		users[id] = true
		old, hadOld := prev.UserByID(id)
		cur, hasCur := next.UserByID(id)
		if hadOld && hasCur && servedDN(old) == servedDN(cur) && slices.Equal(old.Groups, cur.Groups) {
			continue
		}
		if hadOld {
			mark(groups, old.Groups)
		}
		if hasCur {
			mark(groups, cur.Groups)
		}
	}
	for _, id := range ch.Groups {
		groups[id] = true
		old, hadOld := prev.GroupByID(id)
		cur, hasCur := next.GroupByID(id)
		moved := !hadOld || !hasCur || old.DN != cur.DN
		reparented := !hadOld || !hasCur || !slices.Equal(old.Parents, cur.Parents)
		if moved || reparented {
			if hadOld {
				mark(groups, old.Parents)
			}
			if hasCur {
				mark(groups, cur.Parents)
			}
		}
		if moved || o.NestedGroups && reparented {
			for _, sn := range []*cache.Snapshot{prev, next} {
				membersBelow(sn, id, o.NestedGroups, users, groups)
			}
		}
	}

	refs := snapshotRefs(next)
	touched := map[string]string{}
	var out []directory.Change
	for _, id := range slices.Sorted(maps.Keys(users)) {
		var c directory.Change
		newDN := ""
		if old, ok := prev.UserByID(id); ok {
			c.DN = servedDN(old)
		}
		if cur, ok := next.UserByID(id); ok {
			c.Entry = servedUser(cur, o, refs)
			c.Entry.Source = next.UserSource(id)
			newDN = c.Entry.DN
		}
		if c.DN != "" || c.Entry != nil {
			sc.move(c.DN, newDN, touched)
			out = append(out, c)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		var c directory.Change
		newDN := ""
		if old, ok := prev.GroupByID(id); ok {
			c.DN = old.DN
		}
		if cur, ok := next.GroupByID(id); ok {
			c.Entry = servedGroup(cur, o, refs)
			c.Entry.Source = next.GroupSource(id)
			newDN = c.Entry.DN
		}
		if c.DN != "" || c.Entry != nil {
			sc.move(c.DN, newDN, touched)
			out = append(out, c)
		}
	}
	for _, name := range ch.EntrySets {
		old, cur := entrySetByDN(prev, name), entrySetByDN(next, name)
		for _, n := range slices.Sorted(maps.Keys(old)) {
			if cur[n] == nil {
				sc.moveExtra(old[n].DN, "", touched)
				out = append(out, directory.Change{DN: old[n].DN})
			}
		}
		for _, n := range slices.Sorted(maps.Keys(cur)) {
			c := directory.Change{Entry: servedExtra(cur[n])}
			if o := old[n]; o != nil {
				c.DN = o.DN
			} else {
				sc.moveExtra("", cur[n].DN, touched)
			}
			out = append(out, c)
		}
	}
	return replaces(append(out, sc.changes(next, touched)...))
}

// moveExtra is move for an entry of an extra set, which also decides whether a
// container is served at its DN.
func (sc *servedContainers) moveExtra(oldDN, newDN string, touched map[string]string) {
	sc.move(oldDN, newDN, touched)
	if oldDN != "" {
		n := directory.NormalizeDN(oldDN)
		if sc.extra[n]--; sc.extra[n] <= 0 {
			delete(sc.extra, n)
		}
		touched[n] = oldDN
	}
	if newDN != "" {
		n := directory.NormalizeDN(newDN)
		sc.extra[n]++
		touched[n] = newDN
	}
}

// replaces turns a deletion and an addition at the same DN (an extra set's entry taking
// a container's place, or the reverse) into one replacement, so that the entries below
// keep their parent.
func replaces(changes []directory.Change) []directory.Change {
	added := map[string]int{}
	for i, c := range changes {
		if c.DN == "" && c.Entry != nil {
			added[directory.NormalizeDN(c.Entry.DN)] = i
		}
	}
	if len(added) == 0 {
		return changes
	}
	out := changes[:0]
	drop := map[int]bool{}
	for i, c := range changes {
		if c.Entry == nil {
			if j, ok := added[directory.NormalizeDN(c.DN)]; ok {
				c.Entry = changes[j].Entry
				drop[j] = true
				changes[i] = c
			}
		}
	}
	for i, c := range changes {
		if !drop[i] {
			out = append(out, c)
		}
	}
	return out
}

// membersBelow marks the direct members of the group id in sn, and with nested every
// member of its members.
func membersBelow(sn *cache.Snapshot, id string, nested bool, users, groups map[string]bool) {
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		u, g := sn.Members(queue[0])
		queue = queue[1:]
		for _, m := range u {
			users[m] = true
		}
		for _, m := range g {
			groups[m] = true
			if nested && !seen[m] {
				seen[m] = true
				queue = append(queue, m)
			}
		}
	}
}

// containerEntry is a minimal entry for a container DN, classed by its RDN's type.
func containerEntry(dn string) *directory.Entry {
	e := &directory.Entry{DN: dn}
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return e
	}
	rdn := parsed.RDNs[0].Attributes[0]
	class := map[string][]string{
		"ou": {"top", "organizationalUnit"},
		"dc": {"top", "dcObject", "organization"},
		"o":  {"top", "organization"},
		"cn": {"top", "container"},
		"c":  {"top", "country"},
		"l":  {"top", "locality"},
	}[strings.ToLower(rdn.Type)]
	if class == nil {
		class = []string{"top", "extensibleObject"}
	}
	oc := directory.Attribute{Name: "objectClass"}
	for _, c := range class {
		oc.Values = append(oc.Values, []byte(c))
	}
	e.Attributes = append(e.Attributes, oc, directory.Attribute{Name: rdn.Type, Values: [][]byte{[]byte(rdn.Value)}})
	if strings.EqualFold(rdn.Type, "dc") {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "o", Values: [][]byte{[]byte(rdn.Value)}})
	}
	return e
}
