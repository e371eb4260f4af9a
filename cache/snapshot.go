package cache

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/ldapproxy/ldapproxy/internal/view"
)

// Snapshot is an immutable view of the store as of one committed sync. Taking
// one is a pointer load; it stays valid and unchanged however many syncs
// commit after it, and any number of goroutines may read it at once.
//
// It holds each object in its stored encoding (a third of the memory of the
// decoded form) and decodes it on access: every User or Group it returns is
// a fresh copy that the caller may keep or change.
type Snapshot struct {
	gen uint64
	// commit is the random ID of the commit that made generation gen (checkpoint.go).
	commit [16]byte
	// norm is the store's DN normaliser, which the DN maps are keyed by.
	norm func(string) string

	userList    []userRec           // in ID order: by ID through userRec
	regions     regions             // those that userList's records are in
	usersByDN   *userIndex          // by norm(DN)
	usersByPath map[string]*userRec // by norm(Path), users with a Path only
	usersByName *userIndex          // by lower-case Username
	usersByUPN  map[string]*userRec // by each lower-case UPNAttribute value; nil: several users
	usersByMail *userIndex          // by lower-case Email

	groups     map[string]*groupRec
	groupList  []*groupRec
	groupsByDN map[string]*groupRec

	members memberIndex

	// entrySets are the sync.extra sets, by name (see entries.go).
	entrySets map[string]*entrySetRec

	// domain is the upstream's domain as the last sync that read it found it.
	domain Domain
	// schema is the upstream's schema as the last sync that read it found it; nil: none.
	schema *Schema
}

// userRec is a user as the store holds it: 36 bytes and no pointer, so that the
// snapshot's list of them is nothing the collector looks into. Its encoding is n bytes
// at at in the region numbered seg (regions.go), which the snapshot's regions give. Its
// ID and keys (norm(DN), the lower-case Username and Email) are slices of its encoding
// when the encoding holds them as they are, which it usually does (the ID among the
// upstream attributes, the keys where the encoding is already normalised): they are then
// kept as a 16-bit offset and an 8-bit length from its start, with no string header,
// and in its userKeys otherwise. An ID that the encoding does not hold follows it in
// the region (in the checkpoint's file, or in the arena's chunk) and is kept in the same
// way. The generation is kept in 32 bits, in its userKeys beyond them.
type userRec struct {
	at, n uint32 // the encoding (see appendUser): n bytes at at in region seg
	seg   uint32
	g     uint32 // the generation in the key of the Badger record; genElsewhere: keys' gen
	// more is 1 + the index of r's userKeys in its region's keys; 0 for most users, which
	// have none; pendingKeys while the record is made.
	more uint32
	off  [numFields]uint16
	len  [numFields]uint8
	// elsewhere has bit f set when field f is in r's userKeys (fields[f]).
	elsewhere uint8
}

// The fields of a userRec kept as slices of its encoding, by their index in off and len.
const (
	fieldID = iota
	keyDN
	keyName
	keyMail
	numFields
)

// genElsewhere in userRec.g says that the generation is in the record's userKeys.
const genElsewhere = ^uint32(0)

// pendingKeys in userRec.more says, while a record is made, that it needs userKeys,
// which keep then puts in its region.
const pendingKeys = ^uint32(0)

// val is r's encoding. rs are the regions of the snapshot or writer that holds r, here
// and in every method that takes them.
func (r *userRec) val(rs regions) string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(rs[r.seg].data)), r.at)), r.n)
}

// keys returns r's userKeys; r has some (more != 0).
func (r *userRec) keys(rs regions) *userKeys { return &rs[r.seg].keys[r.more-1] }

// id is r's ID.
func (r *userRec) id(rs regions) string { return r.field(rs, fieldID) }

// gen is the generation in the key of r's Badger record.
func (r *userRec) gen(rs regions) uint64 {
	if r.g == genElsewhere {
		return r.keys(rs).gen
	}
	return uint64(r.g)
}

// key returns r's key k (keyDN, keyName, keyMail).
func (r *userRec) key(rs regions, k int) string { return r.field(rs, k) }

func (r *userRec) field(rs regions, f int) string {
	if r.elsewhere&(1<<f) != 0 {
		return r.keys(rs).fields[f]
	}
	base := unsafe.Add(unsafe.Pointer(unsafe.StringData(rs[r.seg].data)), r.at)
	return unsafe.String((*byte)(unsafe.Add(base, r.off[f])), int(r.len[f]))
}

// setField sets r's field f to v: as its place in in, a string that starts with r's
// encoding (and may go on past it), when v is a slice of in there, or, with search, when
// in holds its bytes; in k, r's userKeys being made, otherwise.
func (r *userRec) setField(f int, v, in string, search bool, k *userKeys) {
	if v == "" {
		return
	}
	off, ok := view.Offset(v, in)
	if !ok && search {
		if i := strings.Index(in, v); i >= 0 {
			off, ok = i, true
		}
	}
	if ok && off <= 0xffff && len(v) <= 0xff {
		r.off[f], r.len[f] = uint16(off), uint8(len(v))
		return
	}
	k.fields[f] = v
	r.elsewhere |= 1 << f
	r.more = pendingKeys
}

// setKey sets r's key k to key, found in val, r's encoding, when it is orig, the field
// of the encoding it was made from, unchanged.
func (r *userRec) setKey(k int, key, orig, val string, keys *userKeys) {
	if key != orig {
		if key != "" {
			keys.fields[k] = key
			r.elsewhere |= 1 << k
			r.more = pendingKeys
		}
		return
	}
	// orig, not key: the normaliser may give an equal string of its own, which is no
	// slice of the encoding.
	r.setField(k, orig, val, false, keys)
}

// keep puts k, r's userKeys, in reg, r's region, when r needs them (pendingKeys). Only
// the writer that fills reg calls it, before any snapshot holds reg.
func (r *userRec) keep(reg *region, k *userKeys) {
	if r.more == pendingKeys {
		reg.keys = append(reg.keys, *k)
		r.more = uint32(len(reg.keys))
	}
}

// userKeys are what few users have: fields not kept in the record, a generation beyond
// 32 bits, a path, UPNs.
type userKeys struct {
	fields  [numFields]string // those not slices of the encoding
	gen     uint64
	pathKey string // norm(Path); empty when Path is
	upnKeys []string
}

// pathKey is r's norm(Path), "" when it has none.
func (r *userRec) pathKey(rs regions) string {
	if r.more == 0 {
		return ""
	}
	return r.keys(rs).pathKey
}

// upnKeys are r's lower-case UPNAttribute values.
func (r *userRec) upnKeys(rs regions) []string {
	if r.more == 0 {
		return nil
	}
	return r.keys(rs).upnKeys
}

// groupRec is a group as the store holds it.
type groupRec struct {
	id    string
	val   string // see appendGroup, and appendGroupRefs for format 8
	gen   uint64
	dnKey string
	// in is, for a record in format 8, the checkpoint's bytes its references are offsets
	// in: those before it in its checkpoint, or all of the checkpoint that the snapshot's
	// records were in when a commit made it; "" for any other.
	in string
}

// bytesView is b as a string, without a copy: for a call that does not keep it.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// start sets r to the record of generation gen whose encoding is n bytes at at in reg,
// before its ID (setField) and its keys (index); k is its userKeys being made.
func (r *userRec) start(reg *region, at, n int, gen uint64, k *userKeys) {
	*r = userRec{seg: reg.id, at: uint32(at), n: uint32(n), g: uint32(gen)}
	if gen >= uint64(genElsewhere) {
		r.g = genElsewhere
		k.gen = gen
		r.more = pendingKeys
	}
}

// index checks val, r's encoding, and sets r's keys; k is its userKeys being made.
func (r *userRec) index(val string, norm func(string) string, k *userKeys) error {
	h, err := checkUser(val)
	if err != nil {
		return err
	}
	r.setKey(keyDN, norm(h.dn), h.dn, val, k)
	r.setKey(keyName, strings.ToLower(h.username), h.username, val, k)
	r.setKey(keyMail, strings.ToLower(h.email), h.email, val, k)
	var path string
	if h.path != "" {
		path = norm(h.path)
	}
	var upns []string
	for _, upn := range h.upns {
		if upn != "" {
			upns = append(upns, strings.ToLower(upn))
		}
	}
	if path != "" || upns != nil {
		k.pathKey, k.upnKeys = path, upns
		r.more = pendingKeys
	}
	return nil
}

// newGroupRec indexes the group id encoded in val, written by generation gen.
func newGroupRec(id, val string, gen uint64, norm func(string) string) (*groupRec, error) {
	return newGroupRecIn(id, val, "", gen, norm)
}

// newGroupRecIn is newGroupRec for a record that may refer into the checkpoint bytes in
// (groupRec.in).
func newGroupRecIn(id, val, in string, gen uint64, norm func(string) string) (*groupRec, error) {
	h, err := checkGroup(val, in)
	if err != nil {
		return nil, err
	}
	r := &groupRec{id: id, val: val, gen: gen, dnKey: norm(h.dn)}
	if val[0] == formatV8 {
		r.in = in
	}
	return r, nil
}

// user decodes r. The encoding was checked when r was made, so an error here
// is a bug.
func (r *userRec) user(rs regions) *User {
	return r.decode(rs, true)
}

// decode decodes r, whole or without User.Attributes and User.Upstream.
func (r *userRec) decode(rs regions, whole bool) *User {
	u, err := decodeUserAs(r.id(rs), r.val(rs), whole)
	if err != nil {
		panic(fmt.Sprintf("cache: stored user %s does not decode: %v", r.id(rs), err))
	}
	return u
}

func (r *groupRec) group() *Group {
	g, err := decodeGroupIn(r.id, r.val, r.in)
	if err != nil {
		panic(fmt.Sprintf("cache: stored group %s does not decode: %v", r.id, err))
	}
	return g
}

// encodes tells whether r is the group that enc, an encoding of appendGroup, encodes:
// whether enc is r's record, or, for a record that a checkpoint holds in format 8, the
// record Badger holds of it (the same group written as appendGroup writes it).
func (r *groupRec) encodes(enc []byte) bool {
	if r.val == string(enc) {
		return true
	}
	return r.in != "" && string(appendGroup(nil, r.group())) == string(enc)
}

// refsInto returns what finds where mapping, the checkpoint whose bytes sn's records
// are in, holds a value byte for byte as the DN of one of sn's users, for a group's
// record in format 8 made of sn's users (appendGroupRefs): the records in the heap (a
// sync's) are not referred to.
func (sn *Snapshot) refsInto(mapping string) func(v string) (uint32, bool) {
	return func(v string) (uint32, bool) {
		r := sn.usersByDN.lookup(sn.norm(v)) // nil too when two users have the DN
		if r == nil {
			return 0, false
		}
		d := decoder{s: r.val(sn.regions)}
		var u User
		d.userHead(&u)
		off, ok := view.Offset(u.DN, mapping)
		if d.err != nil || !ok || u.DN != v || uint64(off)+uint64(len(v)) > math.MaxUint32 {
			return 0, false
		}
		return uint32(off), true
	}
}

// groupRecIn returns the record of the group id, g, encoded as enc (appendGroup), written
// by generation gen, for a snapshot made from base: when base's records are in the
// checkpoint's bytes mapping (nil: not), in format 8, referring to its members' DNs
// there, when it has any.
func groupRecIn(base *Snapshot, mapping *string, id string, g *Group, enc string, gen uint64, norm func(string) string) (*groupRec, error) {
	if mapping != nil {
		if val := appendGroupRefs(nil, g, base.refsInto(*mapping)); val[0] == formatV8 {
			return newGroupRecIn(strings.Clone(id), string(val), *mapping, gen, norm)
		}
	}
	return newGroupRec(strings.Clone(id), enc, gen, norm)
}

// referGroupsInto makes each group record of sn in format 7 one in format 8 referring to
// its members' DNs in mapping (refsInto), in place: for a snapshot not yet published.
func (sn *Snapshot) referGroupsInto(mapping string) {
	find := sn.refsInto(mapping)
	for _, r := range sn.groupList {
		if r.val[0] != formatV7 {
			continue
		}
		if val := appendGroupRefs(nil, r.group(), find); val[0] == formatV8 {
			r.val, r.in = string(val), mapping
		}
	}
}

// memberIndex is the reverse of User.Groups and Group.Parents: for the group at
// position i of the snapshot's groupList, users[userStart[i]:userStart[i+1]] are the
// positions of its member users in userList, and groups[groupStart[i]:groupStart[i+1]]
// those of its member groups in groupList, each in ID order. 4 bytes a membership, in
// two arrays the collector need not look into, where a list per group held a string
// header (16 bytes) per member.
type memberIndex struct {
	userStart, users   []uint32
	groupStart, groups []uint32
}

// span returns the part of list that start gives the group at position i.
func span(start, list []uint32, i int) []uint32 {
	if start == nil {
		return nil
	}
	return list[start[i]:start[i+1]]
}

// newSnapshot indexes users, whose records are in rs, and groups (by ID), which it keeps.
func newSnapshot(gen uint64, users map[string]*userRec, rs regions, groups map[string]*groupRec, norm func(string) string) *Snapshot {
	return newSnapshotSorted(gen, users, nil, rs, groups, norm)
}

// newSnapshotSorted is newSnapshot given also the users in ID order (nil: not known),
// as a checkpoint holds them.
func newSnapshotSorted(gen uint64, users map[string]*userRec, userList []userRec, rs regions, groups map[string]*groupRec, norm func(string) string) *Snapshot {
	sn := &Snapshot{gen: gen, norm: norm}
	sn.setUsers(users, userList, rs)
	sn.setGroups(groups)
	sn.setMembers()
	return sn
}

// derive returns the snapshot of generation gen that differs from sn by the
// given object maps; a nil map means that kind is unchanged, and its indexes
// are shared rather than rebuilt. The records of users are in sn's regions or own's.
func (sn *Snapshot) derive(gen uint64, users map[string]*userRec, own regions, groups map[string]*groupRec) *Snapshot {
	next := *sn
	next.gen = gen
	if users != nil {
		next.setUsers(users, nil, sn.regions.merged(own))
	}
	if groups != nil {
		next.setGroups(groups)
	}
	if users != nil || groups != nil {
		next.setMembers()
	}
	return &next
}

// setUsers indexes users, whose records are in rs. sorted, when not nil, is users'
// records in ID order, which the snapshot keeps; users is then not read. Otherwise the
// records of users are copied into one array in ID order: 36 bytes a user and one object
// that the collector does not look into, with no pointer per user to them. The snapshot
// keeps the regions of rs that its records are in. A user is found by its ID in the sorted list: a map by
// ID (40 bytes a user) is not kept. With many users (a first sync, a start) the indexes
// by DN, name and mail are built on goroutines of their own while this one builds the
// others.
func (sn *Snapshot) setUsers(users map[string]*userRec, sorted []userRec, rs regions) {
	byID := func(a, b *userRec) int { return strings.Compare(a.id(rs), b.id(rs)) }
	if sorted == nil {
		recs := slices.SortedFunc(maps.Values(users), byID)
		sorted = make([]userRec, len(recs))
		for i, r := range recs {
			sorted[i] = *r
		}
	} else if !slices.IsSortedFunc(sorted, func(a, b userRec) int { return byID(&a, &b) }) {
		sorted = slices.Clone(sorted)
		slices.SortFunc(sorted, func(a, b userRec) int { return byID(&a, &b) })
	}
	sn.userList = sorted
	sn.regions = rs.of(sorted)
	wg := sn.indexUsers()
	sn.usersByPath = map[string]*userRec{}
	sn.usersByUPN = map[string]*userRec{}
	for i := range sn.userList {
		r := &sn.userList[i]
		if r.more == 0 {
			continue
		}
		if k := r.pathKey(sn.regions); k != "" {
			addUnique(sn.usersByPath, k, r)
		}
		for _, k := range r.upnKeys(sn.regions) {
			addUnique(sn.usersByUPN, k, r)
		}
	}
	wg.Wait()
}

// indexUsers builds the indexes by DN, name and mail over sn.userList: on goroutines
// of their own when there are many users, which the caller waits for.
func (sn *Snapshot) indexUsers() *sync.WaitGroup {
	var wg sync.WaitGroup
	build := func(dst **userIndex, key int) {
		if len(sn.userList) >= parallelIndexing {
			wg.Go(func() { *dst = newUserIndex(sn.userList, sn.regions, key) })
		} else {
			*dst = newUserIndex(sn.userList, sn.regions, key)
		}
	}
	build(&sn.usersByDN, keyDN)
	build(&sn.usersByName, keyName)
	build(&sn.usersByMail, keyMail)
	return &wg
}

// parallelIndexing is the number of users from which setUsers uses two goroutines (a
// variable for the benchmarks).
var parallelIndexing = 4096

func (sn *Snapshot) setGroups(groups map[string]*groupRec) {
	sn.groups = groups
	sn.groupList = slices.SortedFunc(maps.Values(groups), func(a, b *groupRec) int {
		return strings.Compare(a.id, b.id)
	})
	sn.groupsByDN = make(map[string]*groupRec, len(groups))
	for _, r := range sn.groupList {
		addUnique(sn.groupsByDN, r.dnKey, r)
	}
}

// addUnique indexes v under key; a key two objects claim maps to nil, so that a
// name two objects share finds neither: binding the wrong user is worse than
// binding none. One object may claim a key more than once (a UPN listed twice).
func addUnique[V any](m map[string]*V, key string, v *V) {
	if old, dup := m[key]; dup {
		if old != v {
			m[key] = nil
		}
		return
	}
	m[key] = v
}

// setMembers computes the reverse membership, leaving out references to
// groups the snapshot does not hold.
func (sn *Snapshot) setMembers() {
	pos := sn.groupPositions()
	var pairs []uint64 // group position << 32 | member position, in member order
	for p := range sn.userList {
		for gid := range userGroups(sn.userList[p].val(sn.regions)) {
			if g, ok := pos[gid]; ok {
				pairs = append(pairs, uint64(g)<<32|uint64(p))
			}
		}
	}
	sn.members.userStart, sn.members.users = memberSpans(len(sn.groupList), pairs)
	pairs = pairs[:0]
	for p, r := range sn.groupList {
		for gid := range groupParents(r.val) {
			if g, ok := pos[gid]; ok {
				pairs = append(pairs, uint64(g)<<32|uint64(p))
			}
		}
	}
	sn.members.groupStart, sn.members.groups = memberSpans(len(sn.groupList), pairs)
}

// groupPositions maps the ID of each group of sn.groupList to its position there.
func (sn *Snapshot) groupPositions() map[string]uint32 {
	pos := make(map[string]uint32, len(sn.groupList))
	for i, r := range sn.groupList {
		pos[r.id] = uint32(i)
	}
	return pos
}

// memberSpans lays out the memberships of groups groups, pairs of a group's position
// and a member's, in memberIndex's form: start, nil when there are none, and the
// members, of each group in the order pairs give them.
func memberSpans(groups int, pairs []uint64) (start, members []uint32) {
	if len(pairs) == 0 {
		return nil, nil
	}
	start = make([]uint32, groups+1)
	for _, pr := range pairs {
		start[pr>>32+1]++
	}
	for i := 1; i <= groups; i++ {
		start[i] += start[i-1]
	}
	members = make([]uint32, len(pairs))
	next := slices.Clone(start[:groups])
	for _, pr := range pairs {
		g := pr >> 32
		members[next[g]] = uint32(pr)
		next[g]++
	}
	return start, members
}

// Generation numbers the committed syncs: it increases with every commit, and
// is 0 for a store that never had one.
func (sn *Snapshot) Generation() uint64 { return sn.gen }

// Counts returns how many users and groups the snapshot holds.
func (sn *Snapshot) Counts() (users, groups int) { return len(sn.userList), len(sn.groups) }

// userRec returns the user id's record, nil when the snapshot has none.
func (sn *Snapshot) userRec(id string) *userRec {
	if i, ok := sn.userPos(id); ok {
		return &sn.userList[i]
	}
	return nil
}

// indexOf returns the position of r, a record of sn's list, there.
func (sn *Snapshot) indexOf(r *userRec) int {
	return int((uintptr(unsafe.Pointer(r)) - uintptr(unsafe.Pointer(unsafe.SliceData(sn.userList)))) / unsafe.Sizeof(userRec{}))
}

// userPos returns the position of the user id in the list, or where it would be, and
// whether it is there: a binary search (17 steps for 100,000 users).
func (sn *Snapshot) userPos(id string) (int, bool) {
	l := sn.userList
	i, j := 0, len(l)
	for i < j {
		h := int(uint(i+j) >> 1)
		if l[h].id(sn.regions) < id {
			i = h + 1
		} else {
			j = h
		}
	}
	return i, i < len(l) && l[i].id(sn.regions) == id
}

// UserByID returns the user with the uniqueness value id.
func (sn *Snapshot) UserByID(id string) (*User, bool) {
	return sn.userOf(sn.userRec(id))
}

// UserByDN returns the user whose upstream DN equals dn, compared as the
// store's DN normaliser does. A DN two users share finds neither.
func (sn *Snapshot) UserByDN(dn string) (*User, bool) {
	return sn.userOf(sn.usersByDN.lookup(sn.norm(dn)))
}

// UserByPath returns the user served under dn: the one whose Path equals dn,
// or, among users without a Path, the one whose DN does.
func (sn *Snapshot) UserByPath(dn string) (*User, bool) {
	key := sn.norm(dn)
	if r, ok := sn.usersByPath[key]; ok {
		return sn.userOf(r)
	}
	if r := sn.usersByDN.lookup(key); r != nil && r.pathKey(sn.regions) == "" {
		return r.user(sn.regions), true
	}
	return nil, false
}

// UserByBindDN returns the user a bind DN names: the user served under dn, or else the
// one whose upstream DN dn is. dn is normalised once for both lookups.
func (sn *Snapshot) UserByBindDN(dn string) (*User, bool) {
	return sn.userOf(sn.byBindDN(dn))
}

func (sn *Snapshot) byBindDN(dn string) *userRec {
	key := sn.norm(dn)
	if r := sn.usersByPath[key]; r != nil {
		return r
	}
	return sn.usersByDN.lookup(key)
}

// UserByUsername returns the user with the user name name, compared without
// regard to case. A name two users share finds neither.
func (sn *Snapshot) UserByUsername(name string) (*User, bool) {
	return sn.userOf(sn.usersByName.lookup(strings.ToLower(name)))
}

// UserByLoginName returns the one user whose user name, UPN (the UPNAttribute's values)
// or mail is name, or whose implicit UPN it is (user name@the Domain's DNS name, as
// Active Directory takes it whatever the user's userPrincipalName), compared without
// regard to case. A name that stands for more than one user finds none, whether two
// users share it in one of these fields (two users with one mail address) or in
// different ones (one's user name, another's mail): a bind name must never be given to
// a user picked among several.
func (sn *Snapshot) UserByLoginName(name string) (*User, bool) {
	return sn.userOf(sn.byLoginName(name))
}

func (sn *Snapshot) byLoginName(name string) *userRec {
	key := strings.ToLower(name)
	implicit := "" // the user name of an implicit UPN
	if local, domain, ok := strings.Cut(key, "@"); ok && local != "" && sn.domain.DNS != "" && domain == strings.ToLower(sn.domain.DNS) {
		implicit = local
	}
	var found *userRec
	byUPN := func(k string) (*userRec, bool) { r, ok := sn.usersByUPN[k]; return r, ok }
	for _, l := range [...]struct {
		index func(string) (*userRec, bool)
		key   string
	}{{sn.usersByName.get, key}, {byUPN, key}, {sn.usersByMail.get, key}, {sn.usersByName.get, implicit}} {
		if l.key == "" {
			continue
		}
		r, ok := l.index(l.key)
		switch {
		case !ok:
			continue
		case r == nil || found != nil && found != r:
			return nil
		}
		found = r
	}
	return found
}

// Domain returns the upstream's domain names as the last sync that read them stored
// them; the zero Domain when the directory has none or no sync read them.
func (sn *Snapshot) Domain() Domain { return sn.domain }

// Names returns the snapshot's lookups by name (UserByBindDN, UserByUsername,
// UserByLoginName) for deciding whom a name stands for, as at a bind: the users they
// return carry their identity, account state and groups, but neither Attributes nor
// Upstream (the entry's attributes as the upstream returned them), which are most of a
// stored user and which resolving a name never reads.
func (sn *Snapshot) Names() Names { return Names{sn: sn} }

// Names finds users by name, without their attributes (Snapshot.Names).
type Names struct{ sn *Snapshot }

// UserByBindDN is Snapshot.UserByBindDN, without User.Attributes and User.Upstream.
func (n Names) UserByBindDN(dn string) (*User, bool) { return n.sn.briefOf(n.sn.byBindDN(dn)) }

// UserByUsername is Snapshot.UserByUsername, without User.Attributes and User.Upstream.
func (n Names) UserByUsername(name string) (*User, bool) {
	return n.sn.briefOf(n.sn.usersByName.lookup(strings.ToLower(name)))
}

// UserByLoginName is Snapshot.UserByLoginName, without User.Attributes and
// User.Upstream.
func (n Names) UserByLoginName(name string) (*User, bool) {
	return n.sn.briefOf(n.sn.byLoginName(name))
}

func (sn *Snapshot) briefOf(r *userRec) (*User, bool) {
	if r == nil {
		return nil, false
	}
	return r.decode(sn.regions, false), true
}

func (sn *Snapshot) userOf(r *userRec) (*User, bool) {
	if r == nil {
		return nil, false
	}
	return r.user(sn.regions), true
}

// Users calls fn for each user in ID order until fn returns false. It has the
// shape of an iter.Seq, so `for u := range sn.Users` works.
func (sn *Snapshot) Users(fn func(*User) bool) {
	for i := range sn.userList {
		if !fn(sn.userList[i].user(sn.regions)) {
			return
		}
	}
}

// UserAt returns the i-th user in ID order, 0 <= i < the number of users (Counts): with
// it, users can be decoded on several goroutines at once.
func (sn *Snapshot) UserAt(i int) *User { return sn.userList[i].user(sn.regions) }

// BriefUserAt is UserAt without User.Attributes and User.Upstream (Snapshot.Names).
func (sn *Snapshot) BriefUserAt(i int) *User { return sn.userList[i].decode(sn.regions, false) }

// UserSource returns the stored encoding of the user id, which the strings of every
// User the snapshot returns for id are slices of (its DN, names, upstream values, …):
// whoever keeps those strings may keep offsets into it instead (directory's
// Entry.Source). "" when the snapshot has no such user.
func (sn *Snapshot) UserSource(id string) string {
	if r := sn.userRec(id); r != nil {
		return r.val(sn.regions)
	}
	return ""
}

// Sources returns the stored records of every user and then every group, the strings
// that UserSource and GroupSource return, in an order that a given commit fixes: what
// is made of a snapshot may name a source by its index in the list, for a later
// snapshot of the same commit whose SourcesSum is the same (a group's record that a
// checkpoint holds refers to its member DNs where that checkpoint has them: two
// checkpoints of one commit may hold it with other bytes there, see formatV8).
func (sn *Snapshot) Sources() []string {
	out := make([]string, 0, len(sn.userList)+len(sn.groupList))
	for i := range sn.userList {
		out = append(out, sn.userList[i].val(sn.regions))
	}
	for _, r := range sn.groupList {
		out = append(out, r.val)
	}
	return out
}

// SourcesSum is a checksum of the groups' records of Sources but for the offsets of
// their references to other records (formatV8): two snapshots of one commit with the
// same sum hold the same bytes at the same places of every source, but for those
// offsets, which only the store reads. A user's record is the same in every snapshot of
// a commit. The sum is 128 bits of SHA-256: an image read with records laid out
// otherwise than it was made with would serve wrong values, so two layouts must never
// share a sum, not just seldom (a 32-bit checksum would, once in 4 billion rewrites).
func (sn *Snapshot) SourcesSum() [16]byte {
	sum := sha256.New()
	var buf []byte
	for _, r := range sn.groupList {
		if r.in == "" {
			sum.Write([]byte(r.val))
			continue
		}
		buf = append(buf[:0], r.val...)
		d := decoder{s: r.val, file: r.in, refs: func(at int, _ string) { clear(buf[at : at+refOffsetLen]) }}
		var g Group
		format := d.groupHead(&g)
		d.skipIDs(format)
		d.attributes(false, format)
		d.upstream(false, format)
		if d.finish() != nil {
			panic(fmt.Sprintf("cache: stored group %s does not decode: %v", r.id, d.err))
		}
		sum.Write(buf)
	}
	var out [16]byte
	copy(out[:], sum.Sum(nil))
	return out
}

// GroupSource is UserSource for the group id.
func (sn *Snapshot) GroupSource(id string) string {
	if r := sn.groups[id]; r != nil {
		return r.val
	}
	return ""
}

// GroupByID returns the group with the uniqueness value id.
func (sn *Snapshot) GroupByID(id string) (*Group, bool) {
	return groupOf(sn.groups[id])
}

// GroupByDN returns the group whose upstream DN equals dn, compared as the
// store's DN normaliser does. A DN two groups share finds neither.
func (sn *Snapshot) GroupByDN(dn string) (*Group, bool) {
	return groupOf(sn.groupsByDN[sn.norm(dn)])
}

// HasObjectDN tells whether a user or group of the snapshot has the upstream DN dn (as
// the store's DN normaliser compares DNs), without decoding either.
func (sn *Snapshot) HasObjectDN(dn string) bool {
	n := sn.norm(dn)
	if _, ok := sn.usersByDN.get(n); ok {
		return true
	}
	_, ok := sn.groupsByDN[n]
	return ok
}

func groupOf(r *groupRec) (*Group, bool) {
	if r == nil {
		return nil, false
	}
	return r.group(), true
}

// Groups calls fn for each group in ID order until fn returns false.
func (sn *Snapshot) Groups(fn func(*Group) bool) {
	for _, r := range sn.groupList {
		if !fn(r.group()) {
			return
		}
	}
}

// Members returns the IDs of the users and of the groups that are direct
// members of the group groupID, each in ID order. Both are nil when the group
// has no members or does not exist. The slices are the caller's.
func (sn *Snapshot) Members(groupID string) (users, groups []string) {
	i, ok := slices.BinarySearchFunc(sn.groupList, groupID, func(r *groupRec, id string) int { return strings.Compare(r.id, id) })
	if !ok {
		return nil, nil
	}
	if us := span(sn.members.userStart, sn.members.users, i); len(us) > 0 {
		users = make([]string, len(us))
		for k, p := range us {
			users[k] = sn.userList[p].id(sn.regions)
		}
	}
	if gs := span(sn.members.groupStart, sn.members.groups, i); len(gs) > 0 {
		groups = make([]string, len(gs))
		for k, p := range gs {
			groups[k] = sn.groupList[p].id
		}
	}
	return users, groups
}
