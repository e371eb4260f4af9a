package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Batch is a small set of changes from a change stream (syncrepl): some users and
// groups put or deleted, the others left as they are, applied at once by Commit as the
// next generation. Readers see the state before the batch or after it, never a part.
// Unlike a Sync, a Batch is used by one goroutine; an object put or deleted twice in
// one batch counts as its last Put or Delete.
type Batch struct {
	s    *Store
	base *Snapshot
	gen  uint64

	// mu is held by Commit and Abort: Store.Close may abort a batch from another
	// goroutine.
	mu   sync.Mutex
	done bool

	users   map[string]*User  // nil: delete
	groups  map[string]*Group // nil: delete
	cookies map[string][]byte
}

// BatchCounts is what a committed batch changed.
type BatchCounts struct {
	UsersCreated, UsersUpdated, UsersDeleted    int
	GroupsCreated, GroupsUpdated, GroupsDeleted int
}

// Writes is the number of objects the batch wrote or deleted.
func (c BatchCounts) Writes() int {
	return c.UsersCreated + c.UsersUpdated + c.UsersDeleted + c.GroupsCreated + c.GroupsUpdated + c.GroupsDeleted
}

// BeginBatch starts a batch. Like BeginSync it holds the store's one writer slot until
// Commit or Abort: a second gets ErrSyncRunning.
func (s *Store) BeginBatch() (*Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case s.active != nil:
		return nil, ErrSyncRunning
	}
	b := &Batch{s: s, base: s.snap.Load(), users: map[string]*User{}, groups: map[string]*Group{}}
	b.gen = b.base.gen + 1
	if s.dirty {
		if _, err := s.discardStale(b.base.gen); err != nil {
			return nil, fmt.Errorf("begin batch: remove leftovers of an aborted sync: %w", err)
		}
		s.dirty = false
	}
	s.active = b
	return b, nil
}

// Base is the snapshot the batch applies to: the store's state when it began.
func (b *Batch) Base() *Snapshot { return b.base }

// PutUser records u as it is now upstream, replacing the stored user of the same ID or
// adding it; the conversions are PutUser's of a Sync. The batch takes u over.
func (b *Batch) PutUser(u *User) error {
	if err := prepareUser(u); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return errSyncDone
	}
	b.users[u.ID] = u
	return nil
}

// PutGroup records g as it is now upstream, as PutUser does for a user.
func (b *Batch) PutGroup(g *Group) error {
	if err := prepareGroup(g); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return errSyncDone
	}
	b.groups[g.ID] = g
	return nil
}

// DeleteUser records that the user id is gone; an ID the store does not hold is no
// change.
func (b *Batch) DeleteUser(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.users[id] = nil
	}
}

// DeleteGroup records that the group id is gone.
func (b *Batch) DeleteGroup(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.groups[id] = nil
	}
}

// User returns the user id as the batch would leave it: put or deleted in it, else as
// the base snapshot holds it. The user is the batch's: change it only to Put it again.
func (b *Batch) User(id string) (*User, bool) {
	if u, ok := b.users[id]; ok {
		return u, u != nil
	}
	return b.base.UserByID(id)
}

// Group returns the group id as the batch would leave it.
func (b *Batch) Group(id string) (*Group, bool) {
	if g, ok := b.groups[id]; ok {
		return g, g != nil
	}
	return b.base.GroupByID(id)
}

// PendingUsers calls fn for each user put (u) or deleted (u nil) in the batch so far.
func (b *Batch) PendingUsers(fn func(id string, u *User)) {
	for id, u := range b.users {
		fn(id, u)
	}
}

// PendingGroups calls fn for each group put or deleted in the batch so far.
func (b *Batch) PendingGroups(fn func(id string, g *Group)) {
	for id, g := range b.groups {
		fn(id, g)
	}
}

// UserDiffers reports whether the user id, as the batch would leave it, differs from the
// base snapshot's (added, changed or deleted): a change stream that reads objects again
// (timestamp mode's overlap) counts only those that change.
func (b *Batch) UserDiffers(id string) bool {
	u, ok := b.users[id]
	if !ok {
		return false
	}
	cur := b.base.userRec(id)
	if u == nil || cur == nil {
		return (u == nil) != (cur == nil)
	}
	return cur.val(b.base.regions) != string(appendUser(nil, u))
}

// GroupDiffers is UserDiffers for the group id.
func (b *Batch) GroupDiffers(id string) bool {
	g, ok := b.groups[id]
	if !ok {
		return false
	}
	cur := b.base.groups[id]
	if g == nil || cur == nil {
		return (g == nil) != (cur == nil)
	}
	return !cur.encodes(appendGroup(nil, g))
}

// Len is the number of objects put or deleted in the batch.
func (b *Batch) Len() int { return len(b.users) + len(b.groups) }

// SetCookie records a change stream's position (nil: none), stored in the transaction
// that commits the batch; see Sync.SetCookie.
func (b *Batch) SetCookie(name string, cookie []byte) {
	if b.cookies == nil {
		b.cookies = map[string][]byte{}
	}
	b.cookies[name] = bytes.Clone(cookie)
}

// Commit applies the batch as the next generation, writing only the objects that
// differ from the stored ones, as a Sync commit does (records under the new
// generation, deletion markers, then m/generation and the cookies in one transaction:
// the commit point; a kill before it leaves the previous state). A batch that changes
// nothing commits no generation, but still stores its cookies. Readers and OnCommit
// functions see the new snapshot when Commit returns. On an error nothing has changed.
func (b *Batch) Commit() (BatchCounts, error) {
	var c BatchCounts
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return c, errSyncDone
	}
	b.done = true
	s := b.s
	defer s.release(b)

	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	var (
		obsolete, markers, written [][]byte
		buf                        []byte
		// users and groups are the new records of the objects that changed, nil
		// for the deleted ones; the users' are in arena's chunks.
		users  = map[string]*userRec{}
		groups = map[string]*groupRec{}
		arena  = newArena(nil)
		baseRS = b.base.regions
	)
	set := func(key, val []byte) error {
		if err := wb.Set(key, bytes.Clone(val)); err != nil {
			return fmt.Errorf("store write: %w", err)
		}
		s.written.Add(int64(len(key) + len(val)))
		written = append(written, key)
		return nil
	}
	fail := func(err error) (BatchCounts, error) {
		wb.Cancel()
		if derr := s.deleteKeys(written); derr != nil {
			s.log.Warn("store: cannot remove the records of a failed batch; the next sync will", "err", derr)
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
		return BatchCounts{}, fmt.Errorf("commit batch: %w", err)
	}
	for id, u := range b.users {
		cur := b.base.userRec(id)
		if u == nil {
			if cur == nil {
				continue
			}
			marker := objectKey(prefixUsers, id, b.gen)
			if err := set(marker, nil); err != nil {
				return fail(err)
			}
			obsolete = append(obsolete, objectKey(prefixUsers, id, cur.gen(baseRS)))
			markers = append(markers, marker)
			users[id] = nil
			c.UsersDeleted++
			continue
		}
		buf = appendUser(buf[:0], u)
		if cur != nil && cur.val(baseRS) == string(buf) {
			continue
		}
		r, err := arena.put(id, bytesView(buf), b.gen, s.normDN)
		if err != nil {
			return fail(fmt.Errorf("user %s: %w", u.DN, err))
		}
		if err := set(objectKey(prefixUsers, id, b.gen), buf); err != nil {
			return fail(err)
		}
		users[r.id(arena.rs)] = r // not id: it may share a larger string's memory
		if cur == nil {
			c.UsersCreated++
		} else {
			c.UsersUpdated++
			obsolete = append(obsolete, objectKey(prefixUsers, id, cur.gen(baseRS)))
		}
	}
	for id, g := range b.groups {
		cur := b.base.groups[id]
		if g == nil {
			if cur == nil {
				continue
			}
			marker := objectKey(prefixGroups, id, b.gen)
			if err := set(marker, nil); err != nil {
				return fail(err)
			}
			obsolete = append(obsolete, objectKey(prefixGroups, id, cur.gen))
			markers = append(markers, marker)
			groups[id] = nil
			c.GroupsDeleted++
			continue
		}
		buf = appendGroup(buf[:0], g)
		if cur != nil && cur.encodes(buf) {
			continue
		}
		r, err := groupRecIn(b.base, s.mapping.Load(), id, g, string(buf), b.gen, s.normDN)
		if err != nil {
			return fail(fmt.Errorf("group %s: %w", g.DN, err))
		}
		if err := set(objectKey(prefixGroups, id, b.gen), buf); err != nil {
			return fail(err)
		}
		groups[r.id] = r
		if cur == nil {
			c.GroupsCreated++
		} else {
			c.GroupsUpdated++
			obsolete = append(obsolete, objectKey(prefixGroups, id, cur.gen))
		}
	}

	if c.Writes() == 0 {
		if len(b.cookies) == 0 {
			return c, nil
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return s.saveCookies(txn, b.cookies) }); err != nil {
			return fail(fmt.Errorf("store cookie: %w", err))
		}
		s.setCookies(b.cookies)
		return c, nil
	}
	if err := wb.Flush(); err != nil {
		return fail(fmt.Errorf("store write: %w", err))
	}
	if s.dir != "" {
		// The records must be durable before the generation that makes them count.
		if err := s.db.Sync(); err != nil {
			return fail(fmt.Errorf("store sync: %w", err))
		}
	}
	// The base's records may have moved to the checkpoint since the batch began
	// (moveToCheckpoint: the same generation and records, in the mapped file's pages):
	// the next snapshot is made of the moved ones, or the heap's copies would come back
	// for good (the move is made once).
	base := b.base
	if cur := s.snap.Load(); cur.gen == base.gen {
		base = cur
	}
	next := base.patch(b.gen, users, arena.rs, groups)
	next.commit = newCommitID()
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyGeneration), binary.BigEndian.AppendUint64(nil, b.gen)); err != nil {
			return err
		}
		s.written.Add(int64(len(keyGeneration) + 8))
		if err := s.setCommitID(txn, next.commit); err != nil {
			return err
		}
		return s.saveCookies(txn, b.cookies)
	})
	if err != nil {
		return fail(fmt.Errorf("store commit: %w", err))
	}

	// Committed: from here on, failures only leave garbage that Open removes.
	if !s.snap.CompareAndSwap(base, next) {
		// The records moved since: the patch is made again of the moved ones.
		if cur := s.snap.Load(); cur.gen == base.gen {
			moved := cur.patch(b.gen, users, arena.rs, groups)
			moved.commit = next.commit
			next = moved
		}
		s.snap.Store(next)
	}
	s.setCookies(b.cookies)
	s.mu.Lock()
	callbacks := append([]func(*Snapshot){}, s.onCommit...)
	s.mu.Unlock()
	if garbage := append(obsolete, markers...); len(garbage) > 0 {
		if err := s.deleteKeys(garbage); err != nil {
			s.log.Warn("store: cannot remove superseded records; the next sync or start will", "err", err)
			s.markDirty()
		}
	}
	s.log.Debug("store: batch committed", "generation", b.gen, "objects_written", c.Writes())
	s.checkpointDue()
	for _, fn := range callbacks {
		fn(next)
	}
	return c, nil
}

// Abort drops the batch; nothing was written. Abort after Commit does nothing, so it
// can be deferred.
func (b *Batch) Abort() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.s.release(b)
}
