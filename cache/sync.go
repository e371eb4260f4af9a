package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
)

// errSyncDone is returned by a Sync's methods after Commit or Abort.
var errSyncDone = errors.New("sync already committed or aborted")

// Sync is one sync run being written: the users and/or groups it was begun
// for, streamed in with PutUser and PutGroup, then applied at once by Commit
// or dropped by Abort. Its methods may be called from several goroutines.
type Sync struct {
	s    *Store
	base *Snapshot // the state the run started from
	gen  uint64    // the generation it writes

	mu   sync.Mutex
	done bool
	err  error // the first write error: the run cannot commit
	wb   *badger.WriteBatch
	buf  []byte // encoding scratch

	// loading is set for the first sync of an empty store, whose records Commit writes
	// (loadFirst, firstload.go) instead of wb as they come: the users' from users, the
	// others' from pending. loadBegun is set once loadFirst has begun to write.
	loading   bool
	loadBegun bool
	pending   []record

	users  map[string]*userRec  // Put in this run; nil when users are not synced
	arena  *arena               // where the run's records of users are: base's, its own
	groups map[string]*groupRec // the same for groups

	// obsolete are the versions the run replaces or deletes, and markers
	// its deletion markers: both are removed once the new generation is
	// committed.
	obsolete [][]byte
	markers  [][]byte
	status   map[string]*Status
	counts   map[string]*counts
	// domain is what SetDomain gave; nil: the run keeps the stored one.
	domain *Domain
	// schema is what SetSchema gave; nil: the run keeps the stored one.
	schema *Schema
	// cookies are what SetCookie gave, committed with the generation.
	cookies map[string][]byte
	// entrySets are the entry sets SetEntrySets gave, stored or written; nil: the run
	// keeps the stored ones. entrySetWrites counts the sets it wrote or deleted.
	entrySets      map[string]*entrySetRec
	entrySetWrites int
}

// counts is what a run changed of one kind.
type counts struct{ put, created, updated, deleted int }

// BeginSync starts a sync run of the given kinds (KindUsers, KindGroups).
// Objects of these kinds that the run does not Put are deleted by Commit.
// Only one run may be open at a time: a second gets ErrSyncRunning.
func (s *Store) BeginSync(kinds ...string) (*Sync, error) {
	if len(kinds) == 0 {
		return nil, errors.New("begin sync: no object kind")
	}
	w := &Sync{s: s, status: map[string]*Status{}, counts: map[string]*counts{}}
	now := time.Now()
	for _, kind := range kinds {
		switch kind {
		case KindUsers:
			w.users = map[string]*userRec{}
		case KindGroups:
			w.groups = map[string]*groupRec{}
		default:
			return nil, fmt.Errorf("begin sync: unknown object kind %q", kind)
		}
		w.status[kind] = &Status{Kind: kind, Started: now, Result: ResultRunning}
		w.counts[kind] = &counts{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case s.active != nil:
		return nil, ErrSyncRunning
	}
	w.base = s.snap.Load()
	w.gen = w.base.gen + 1
	w.arena = newArena(w.base.regions)
	// Nothing committed: the run loads the store (loadFirst), which drops whatever
	// leftovers it holds with the rest.
	w.loading = w.base.gen == 0
	if s.dirty && !w.loading {
		if _, err := s.discardStale(w.base.gen); err != nil {
			return nil, fmt.Errorf("begin sync: remove leftovers of an aborted sync: %w", err)
		}
		s.dirty = false
	}
	if !w.loading {
		w.wb = s.db.NewWriteBatch()
		w.wb.SetMaxPendingTxns(maxPendingTxns)
	}
	for kind, st := range w.status {
		s.status[kind] = *st
	}
	s.active = w
	return w, nil
}

// PutUser records u as present upstream. The store takes u over: the caller
// must not modify it afterwards. On the way in, u.Groups is sorted with
// duplicates removed, attribute values of other integer types become int64,
// float32 becomes float64, []any of strings becomes []string, and nil values
// are dropped; other types are an error. A user equal to the stored one costs
// no write.
func (w *Sync) PutUser(u *User) error {
	if err := prepareUser(u); err != nil {
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(w.users != nil, KindUsers); err != nil {
		return err
	}
	if _, dup := w.users[u.ID]; dup {
		return fmt.Errorf("user %s: ID %q already put in this sync", u.DN, u.ID)
	}
	c := w.counts[KindUsers]
	c.put++
	cur := w.base.userRec(u.ID)
	r, err := w.writeUser(u, cur)
	if err != nil {
		return err
	}
	w.users[r.id(w.arena.rs)] = r // not u.ID: it may share a larger string's memory
	switch {
	case r == cur:
	case cur == nil:
		c.created++
	default:
		c.updated++
		w.obsolete = append(w.obsolete, objectKey(prefixUsers, u.ID, cur.gen(w.arena.rs)))
	}
	return nil
}

// writeUser returns the record of u: cur itself when u encodes as cur does (nothing is
// written), else a new one of this run's generation, queued for writing (over the
// record this run may have written for the ID before).
func (w *Sync) writeUser(u *User, cur *userRec) (*userRec, error) {
	w.buf = appendUser(w.buf[:0], u)
	if cur != nil && cur.val(w.arena.rs) == string(w.buf) {
		return cur, nil
	}
	r, err := w.arena.put(u.ID, bytesView(w.buf), w.gen, w.s.normDN)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", u.DN, err)
	}
	if w.loading {
		return r, nil // loadFirst writes it from w.users
	}
	if err := w.setShared(objectKey(prefixUsers, u.ID, w.gen), r.val(w.arena.rs)); err != nil {
		return nil, err
	}
	return r, nil
}

// PutGroup records g as present upstream, as PutUser does for a user
// (g.Parents is sorted and deduplicated).
func (w *Sync) PutGroup(g *Group) error {
	if err := prepareGroup(g); err != nil {
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(w.groups != nil, KindGroups); err != nil {
		return err
	}
	if _, dup := w.groups[g.ID]; dup {
		return fmt.Errorf("group %s: ID %q already put in this sync", g.DN, g.ID)
	}
	c := w.counts[KindGroups]
	c.put++
	w.buf = appendGroup(w.buf[:0], g)
	cur := w.base.groups[g.ID]
	if cur != nil && cur.encodes(w.buf) {
		w.groups[cur.id] = cur
		return nil
	}
	val := string(w.buf)
	r, err := groupRecIn(w.base, w.s.mapping.Load(), g.ID, g, val, w.gen, w.s.normDN)
	if err != nil {
		return fmt.Errorf("group %s: %w", g.DN, err)
	}
	if err := w.setShared(objectKey(prefixGroups, g.ID, w.gen), val); err != nil {
		return err
	}
	w.groups[r.id] = r
	if cur == nil {
		c.created++
	} else {
		c.updated++
		w.obsolete = append(w.obsolete, objectKey(prefixGroups, g.ID, cur.gen))
	}
	return nil
}

// Base is the snapshot the run started from: the store's state when it began.
func (w *Sync) Base() *Snapshot { return w.base }

// User returns the user put in this run with the ID id, as it was put.
func (w *Sync) User(id string) (*User, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.users[id]
	if r == nil {
		return nil, false
	}
	return r.user(w.arena.rs), true
}

// UserIDs returns the IDs of the users put in this run that have one of keys as their
// normalised DN or, byName, their lower-case Username: key → ID. One pass over the run's
// users.
func (w *Sync) UserIDs(keys map[string]bool, byName bool) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	if len(keys) == 0 {
		return out
	}
	for id, r := range w.users {
		k := r.key(w.arena.rs, keyDN)
		if byName {
			k = r.key(w.arena.rs, keyName)
		}
		if keys[k] {
			out[k] = id
		}
	}
	return out
}

// ReplaceUser replaces the user of u's ID put earlier in this run by u: a run that
// learns before it commits that what it put is out of date (a membership that moved)
// corrects it. The conversions and the takeover of u are PutUser's.
func (w *Sync) ReplaceUser(u *User) error {
	if err := prepareUser(u); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(w.users != nil, KindUsers); err != nil {
		return err
	}
	prev := w.users[u.ID]
	if prev == nil {
		return fmt.Errorf("user %s: ID %q not put in this sync", u.DN, u.ID)
	}
	r, err := w.writeUser(u, prev)
	if err != nil || r == prev {
		return err
	}
	// A version this run wrote is written over (same key); one the run kept from the
	// base becomes an update.
	if prev.gen(w.arena.rs) != w.gen {
		w.counts[KindUsers].updated++
		w.obsolete = append(w.obsolete, objectKey(prefixUsers, u.ID, prev.gen(w.arena.rs)))
	}
	w.users[r.id(w.arena.rs)] = r
	return nil
}

func checkObject(kind, id, dn string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s %s: empty ID", kind, dn)
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("%s %s: ID holds a NUL byte", kind, dn)
	case dn == "":
		return fmt.Errorf("%s %q: empty DN", kind, id)
	}
	return nil
}

// usable reports why the run cannot take an object of kind, if it cannot.
// Called with w.mu held.
func (w *Sync) usable(synced bool, kind string) error {
	switch {
	case w.done:
		return errSyncDone
	case w.err != nil:
		return w.err
	case !synced:
		return fmt.Errorf("%s are not part of this sync", kind)
	}
	return nil
}

// set queues a record for writing. Badger keeps the slices until the batch
// is written, so the value is copied out of the scratch buffer.
func (w *Sync) set(key, val []byte) error {
	return w.setShared(key, string(val))
}

// setShared queues a record for writing whose value is the record the snapshot keeps:
// Badger reads the bytes of val, never writes them, so one copy serves both.
func (w *Sync) setShared(key []byte, val string) error {
	if w.loading {
		w.pending = append(w.pending, record{key: key, val: val})
		return nil
	}
	if err := w.wb.Set(key, unsafe.Slice(unsafe.StringData(val), len(val))); err != nil {
		w.err = fmt.Errorf("store write: %w", err)
		return w.err
	}
	w.s.written.Add(int64(len(key) + len(val)))
	return nil
}

// SetStatus records the run's status for st.Kind, which must be one of the
// run's kinds; Store.Status shows it at once. Commit fills in Created,
// Updated and Deleted, and Ended and Result ("success") when left empty;
// Objects defaults to the number of objects Put. Errors are cut to the first
// MaxStatusErrors. The status is saved by Commit or Abort.
func (w *Sync) SetStatus(st Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
		w.s.log.Warn("store: status ignored: the sync is over", "kind", st.Kind)
		return
	case w.status[st.Kind] == nil:
		w.s.log.Warn("store: status ignored: not a kind of this sync", "kind", st.Kind)
		return
	}
	if len(st.Errors) > MaxStatusErrors {
		st.Errors = st.Errors[:MaxStatusErrors:MaxStatusErrors]
	}
	if st.Started.IsZero() {
		st.Started = w.status[st.Kind].Started
	}
	w.status[st.Kind] = &st
	w.s.mu.Lock()
	w.s.status[st.Kind] = st
	w.s.mu.Unlock()
}

// SetDomain records the upstream's domain names (the zero Domain for a directory that
// has none), which Commit stores with the generation: they survive restarts, so that
// down-level (EXAMPLE\alice) and implicit-UPN (alice@example.com) bind names resolve
// while no upstream answers. A run that does not call it keeps what was stored before
// (a run that could not read them).
func (w *Sync) SetDomain(d Domain) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.domain = &d
}

// SetCookie records a change stream's position (nil: none), which Commit stores in the
// transaction that commits the generation: a stream that resumes from Store.Cookie
// resumes exactly where the data it left stands. A run that does not call it keeps the
// stored cookie.
func (w *Sync) SetCookie(name string, cookie []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cookies == nil {
		w.cookies = map[string][]byte{}
	}
	w.cookies[name] = bytes.Clone(cookie)
}

// Commit applies the run: objects Put and changed are written, objects of
// the run's kinds that were not Put are deleted (their memberships with
// them), unchanged ones are left as they are. Readers switch to the new
// generation when Commit returns, and functions given to OnCommit have been
// called. On an error nothing has changed, as after Abort.
func (w *Sync) Commit() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return errSyncDone
	}
	w.done = true
	s := w.s
	defer s.release(w)

	if err := w.commit(); err != nil {
		w.discard()
		w.finishStatus(ResultFailed)
		s.saveStatusLogged(w.statusList())
		return fmt.Errorf("commit sync: %w", err)
	}
	return nil
}

func (w *Sync) commit() error {
	s := w.s
	if w.err != nil {
		return w.err
	}
	// Deletions are written as markers in the new generation, so that
	// until the generation is committed the old versions still count.
	if w.users != nil {
		for _, cur := range w.base.userList {
			if _, ok := w.users[cur.id(w.base.regions)]; !ok {
				if err := w.markDeleted(prefixUsers, cur.id(w.base.regions), cur.gen(w.base.regions), KindUsers); err != nil {
					return err
				}
			}
		}
	}
	if w.groups != nil {
		for id, cur := range w.base.groups {
			if _, ok := w.groups[id]; !ok {
				if err := w.markDeleted(prefixGroups, id, cur.gen, KindGroups); err != nil {
					return err
				}
			}
		}
	}
	if w.loading {
		if err := w.loadFirst(); err != nil {
			return fmt.Errorf("store load: %w", err)
		}
	} else if err := w.wb.Flush(); err != nil {
		return fmt.Errorf("store write: %w", err)
	}
	if s.dir != "" {
		// Make the records durable before the generation that makes them
		// count: after a power cut the marker must not exist without them.
		if err := s.db.Sync(); err != nil {
			return fmt.Errorf("store sync: %w", err)
		}
	}

	setDomain := w.domain != nil && *w.domain != w.base.domain
	newSchema := w.schemaChange()
	// makeNext makes the run's snapshot on base: w.base, or the same generation with
	// its records moved to the checkpoint since the run began (moveToCheckpoint), whose
	// records the objects the run did not change then take, or the heap's copies would
	// come back for good (the move is made once).
	makeNext := func(base *Snapshot) *Snapshot {
		if base != w.base {
			onMoved(w.base, base, w.users, w.groups, w.entrySets)
		}
		next := base.derive(w.gen, changed(w.users, w.counts[KindUsers]), w.arena.rs, changed(w.groups, w.counts[KindGroups]))
		if w.entrySets != nil && w.entrySetWrites > 0 {
			next.entrySets = w.entrySets
		}
		if setDomain {
			next.domain = *w.domain
		}
		if newSchema != nil {
			next.schema = newSchema
		}
		return next
	}
	base := w.base
	if cur := s.snap.Load(); cur.gen == base.gen {
		base = cur
	}
	next := makeNext(base)
	w.finishStatus(ResultSuccess)
	statuses := w.statusList()
	next.commit = newCommitID()
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyGeneration), binary.BigEndian.AppendUint64(nil, w.gen)); err != nil {
			return err
		}
		s.written.Add(int64(len(keyGeneration) + 8))
		if err := s.setCommitID(txn, next.commit); err != nil {
			return err
		}
		if setDomain {
			v, err := json.Marshal(next.domain)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(keyDomain), v); err != nil {
				return err
			}
			s.written.Add(int64(len(keyDomain) + len(v)))
		}
		if newSchema != nil {
			n, err := writeSchema(txn, newSchema)
			if err != nil {
				return err
			}
			s.written.Add(int64(n))
		}
		if err := s.saveCookies(txn, w.cookies); err != nil {
			return err
		}
		return s.saveStatus(txn, statuses)
	})
	if err != nil {
		return fmt.Errorf("store commit: %w", err)
	}

	// Committed: from here on, failures only leave garbage that Open removes.
	if !s.snap.CompareAndSwap(base, next) {
		// The records moved since: the snapshot is made again of the moved ones.
		if cur := s.snap.Load(); cur.gen == w.base.gen {
			id := next.commit
			next = makeNext(cur)
			next.commit = id
		}
		s.snap.Store(next)
	}
	s.setCookies(w.cookies)
	s.mu.Lock()
	for _, st := range statuses {
		s.status[st.Kind] = st
	}
	all := statusList(s.status)
	callbacks := append([]func(*Snapshot){}, s.onCommit...)
	s.mu.Unlock()
	s.writeStatusFile(all)
	if garbage := append(w.obsolete, w.markers...); len(garbage) > 0 {
		if err := s.deleteKeys(garbage); err != nil {
			s.log.Warn("store: cannot remove superseded records; the next sync or start will", "err", err)
			s.markDirty()
		}
		if s.dir != "" {
			// Objects larger than valueThreshold live in the value log,
			// which only this reclaims. Usually it finds nothing to do.
			_ = s.db.RunValueLogGC(0.5)
		}
	}
	users, groups := next.Counts()
	s.log.Info("store: sync committed", "generation", w.gen, "users", users, "groups", groups,
		"objects_written", w.objectWrites())
	if !s.closeSoon.Load() {
		s.checkpointDue()
	}
	for _, fn := range callbacks {
		fn(next)
	}
	return nil
}

// onMoved replaces, in the objects of a run that began on base, each record of base's
// own by moved's record of the same object: moved is base with its records moved to the
// checkpoint since (the same generation).
func onMoved(base, moved *Snapshot, users map[string]*userRec, groups map[string]*groupRec, sets map[string]*entrySetRec) {
	for id, r := range users {
		if r == base.userRec(id) {
			if m := moved.userRec(id); m != nil {
				users[id] = m
			}
		}
	}
	for id, g := range groups {
		if g == base.groups[id] {
			if m := moved.groups[id]; m != nil {
				groups[id] = m
			}
		}
	}
	for name, e := range sets {
		if e == base.entrySets[name] {
			if m := moved.entrySets[name]; m != nil {
				sets[name] = m
			}
		}
	}
}

// markDeleted writes the deletion marker of object id, whose current version
// was written by generation cur.
func (w *Sync) markDeleted(prefix, id string, cur uint64, kind string) error {
	marker := objectKey(prefix, id, w.gen)
	if err := w.set(marker, nil); err != nil {
		return err
	}
	w.obsolete = append(w.obsolete, objectKey(prefix, id, cur))
	w.markers = append(w.markers, marker)
	w.counts[kind].deleted++
	return nil
}

// changed returns the run's objects of one kind, which are the new state of
// that kind, or nil when the kind was not synced or nothing in it changed.
func changed[V any](objects map[string]*V, c *counts) map[string]*V {
	if objects == nil || c.created+c.updated+c.deleted == 0 {
		return nil
	}
	return objects
}

// objectWrites is the number of objects the run wrote or deleted.
func (w *Sync) objectWrites() int {
	n := w.entrySetWrites
	for _, c := range w.counts {
		n += c.created + c.updated + c.deleted
	}
	return n
}

// Abort drops the run: the store keeps its previous state, and readers never
// saw anything else. The run's status is saved with Result "failed" (and the
// rest of what SetStatus gave, such as Errors). Abort after Commit does
// nothing, so it can be deferred.
func (w *Sync) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	defer w.s.release(w)
	w.discard()
	w.finishStatus(ResultFailed)
	w.s.saveStatusLogged(w.statusList())
}

// discard removes the records the run wrote, which no committed generation
// refers to. When that fails they stay harmless until the next BeginSync,
// which looks for them.
func (w *Sync) discard() {
	if w.loading && !w.loadBegun {
		return // nothing written
	}
	if w.wb != nil {
		w.wb.Cancel()
	}
	var keys [][]byte
	for id, r := range w.users {
		if r.gen(w.arena.rs) == w.gen {
			keys = append(keys, objectKey(prefixUsers, id, w.gen))
		}
	}
	for id, r := range w.groups {
		if r.gen == w.gen {
			keys = append(keys, objectKey(prefixGroups, id, w.gen))
		}
	}
	keys = append(keys, w.markers...)
	if err := w.s.deleteKeys(keys); err != nil {
		w.s.log.Warn("store: cannot remove the records of a failed sync; the next sync will", "err", err)
		w.s.mu.Lock()
		w.s.dirty = true
		w.s.mu.Unlock()
	}
}

// finishStatus completes the run's statuses for saving. A failed run is
// failed whatever SetStatus said, since none of it was applied.
func (w *Sync) finishStatus(result string) {
	now := time.Now()
	for kind, st := range w.status {
		c := w.counts[kind]
		if st.Result == "" || st.Result == ResultRunning || result == ResultFailed {
			st.Result = result
		}
		if st.Ended.IsZero() {
			st.Ended = now
		}
		if st.Objects == 0 {
			st.Objects = c.put
		}
		if result == ResultSuccess {
			st.Created, st.Updated, st.Deleted = c.created, c.updated, c.deleted
		} else {
			st.Created, st.Updated, st.Deleted = 0, 0, 0
		}
	}
}

func (w *Sync) statusList() []Status {
	m := make(map[string]Status, len(w.status))
	for kind, st := range w.status {
		m[kind] = *st
	}
	return statusList(m)
}

// release ends w's hold on the store.
func (s *Store) release(w interface{ Abort() }) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == w {
		s.active = nil
	}
}

// saveStatusLogged saves statuses outside a commit; a failure is logged, as
// there is nobody left to return it to.
func (s *Store) saveStatusLogged(list []Status) {
	err := s.db.Update(func(txn *badger.Txn) error { return s.saveStatus(txn, list) })
	if err != nil {
		s.log.Warn("store: cannot save the sync status", "err", err)
	}
	s.mu.Lock()
	for _, st := range list {
		s.status[st.Kind] = st
	}
	all := statusList(s.status)
	s.mu.Unlock()
	s.writeStatusFile(all)
}

// prepareUser checks a user on its way into the store and applies PutUser's conversions.
func prepareUser(u *User) error {
	if u == nil {
		return errors.New("put user: nil")
	}
	if err := checkObject("user", u.ID, u.DN); err != nil {
		return err
	}
	if err := normalizeAttributes(u.Attributes); err != nil {
		return fmt.Errorf("user %s: %w", u.DN, err)
	}
	u.Groups = sortedSet(u.Groups)
	return nil
}

// prepareGroup checks a group on its way into the store and applies PutGroup's
// conversions.
func prepareGroup(g *Group) error {
	if g == nil {
		return errors.New("put group: nil")
	}
	if err := checkObject("group", g.ID, g.DN); err != nil {
		return err
	}
	if err := normalizeAttributes(g.Attributes); err != nil {
		return fmt.Errorf("group %s: %w", g.DN, err)
	}
	g.Parents = sortedSet(g.Parents)
	return nil
}
