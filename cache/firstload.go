package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"
)

// The first sync into an empty store (no generation committed) writes its records at
// Commit with Badger's StreamWriter, in key order, as tables of the last level, instead
// of through memtables and level 0. At 100,000 users a sync through level 0 flushes some
// twenty level-0 tables, and when compactions lag, Badger compacts four or more of them
// into one level-0 table whose builder takes a 256 MiB buffer (the table size set to
// 2^32, the buffer twice it, capped), on the Go heap in a build without jemalloc: the
// first start's rare peaks of 400–500 MiB. A stream writes no level-0 table and runs no
// compaction, so that buffer cannot be taken; its builders start at twice the table size
// (2 MiB: baseTableSize, tableSizeMultiplier) and double as they fill. The records are
// in memory anyway (the run's arena and group records), so holding them until Commit
// costs nothing.
//
// The stream replaces Badger's contents (StreamWriter.Prepare drops everything): what
// the store holds without a committed generation is kept by reading it first and
// writing it in the stream (the credential cache's hashes, the statuses, the format
// key), and object records, all of them leftovers of an interrupted sync, are dropped
// with the rest. While it runs, Badger refuses other writes and at its end replaces its
// transaction oracle, so the store's other user of Badger, the credential cache, waits
// on Store.replacing. A kill before the generation is committed leaves a store without
// one: Open discards the records the load wrote as an interrupted sync's, and what the
// load had not written again is lost (a hash: the credential cache loses it, and a login
// stores it again).

// loadChunk is how many bytes of records are handed to the stream writer at a time. It
// queues up to four such, each copied twice on the way in.
const loadChunk = 256 << 10

// loadAhead is how many bytes of records the load lets the stream hold beyond those its
// tables hold: the stream builds each table in memory (about five times its size, see
// baseTableSize) and writes it out on a goroutine of its own, up to 16 at once, so
// records handed to it faster than tables reach the disk pile up as builders (40–60 MiB
// of the Go heap at 100,000 users). A builder being filled and one or two being written
// hold about this much.
const loadAhead = 8 << 20

// loadStall is how long the load waits for the stream's next table before handing it
// more: the builder being filled may hold more than loadAhead (very compressible
// records), and then only more records make it write.
const loadStall = 200 * time.Millisecond

// loadVersion is the Badger version of the keys the stream writes: any will do, as the
// store holds one version of each key; the transactions after it count on from there.
const loadVersion = 1

// record is a key and value to write.
type record struct {
	key []byte
	val string
}

// isObjectKey reports whether key is an object record's (a user's, a group's, an entry
// set's), which a store without a committed generation holds only as leftovers.
func isObjectKey(key []byte) bool {
	for _, p := range []string{prefixUsers, prefixGroups, prefixEntrySets} {
		if bytes.HasPrefix(key, []byte(p)) {
			return true
		}
	}
	return false
}

// loadFirst writes the records of w, the first sync of an empty store, into Badger with
// a stream (see above): what the write batch does for a later sync. Commit then makes
// them durable and commits the generation, as for any sync.
func (w *Sync) loadFirst() error {
	s := w.s
	s.replacing.Lock()
	defer s.replacing.Unlock()
	others, err := s.recordsToKeep()
	if err != nil {
		return fmt.Errorf("read the records to keep: %w", err)
	}
	others = append(others, w.pending...)
	// A key written twice (SetEntrySets called again) keeps its last value: a stable
	// sort, then the last of each run of equal keys.
	slices.SortStableFunc(others, func(a, b record) int { return bytes.Compare(a.key, b.key) })
	last := others[:0]
	for i, o := range others {
		if i+1 == len(others) || !bytes.Equal(others[i+1].key, o.key) {
			last = append(last, o)
		}
	}
	others = last
	users := make([]*userRec, 0, len(w.users))
	for _, r := range w.users {
		if r.gen(w.arena.rs) == w.gen {
			users = append(users, r)
		}
	}
	slices.SortFunc(users, func(a, b *userRec) int { return strings.Compare(a.id(w.arena.rs), b.id(w.arena.rs)) })

	sw := s.db.NewStreamWriter()
	defer sw.Cancel() // after Flush: nothing left to cancel
	w.loadBegun = true
	if err := sw.Prepare(); err != nil {
		return err
	}
	s.mu.Lock()
	s.dirty = false // the leftovers went with the rest
	s.mu.Unlock()
	buf := z.NewBuffer(loadChunk+loadChunk/4, "cache.loadFirst")
	defer buf.Release()
	pace := loadPace{db: s.db, sent: make([]int64, 0, len(users)+len(others))}
	var kv pb.KV
	put := func(key []byte, val string) error {
		kv = pb.KV{Key: key, Value: unsafe.Slice(unsafe.StringData(val), len(val)), Version: loadVersion}
		badger.KVToBuffer(&kv, buf)
		s.written.Add(int64(len(key) + len(val)))
		pace.add(len(key) + len(val))
		if buf.LenNoPadding() < loadChunk {
			return nil
		}
		if err := sw.Write(buf); err != nil {
			return err
		}
		buf.Reset()
		pace.wait()
		return nil
	}
	// Merge the user records, in ID order, and the others, by key.
	var key []byte
	for _, r := range users {
		key = append(key[:0], prefixUsers...)
		key = append(key, r.id(w.arena.rs)...)
		key = append(key, 0)
		key = binary.BigEndian.AppendUint64(key, w.gen)
		for len(others) > 0 && bytes.Compare(others[0].key, key) < 0 {
			if err := put(others[0].key, others[0].val); err != nil {
				return err
			}
			others = others[1:]
		}
		if err := put(key, r.val(w.arena.rs)); err != nil {
			return err
		}
	}
	for _, o := range others {
		if err := put(o.key, o.val); err != nil {
			return err
		}
	}
	if err := sw.Write(buf); err != nil {
		return err
	}
	if err := sw.Flush(); err != nil {
		return err
	}
	// The stream's builders and copies are garbage now, on a heap at the sync's largest:
	// a collection now sets the heap's goal from what stays live, where the goal set
	// during the load would let the commit's garbage grow by half the load's peak
	// (an RSS of up to 230 MiB in first starts at 100,000 users).
	runtime.GC()
	return nil
}

// recordsToKeep returns the store's records other than objects', in key order: what a
// store without a committed generation holds that the first load must write again.
func (s *Store) recordsToKeep() ([]record, error) {
	var kept []record
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if isObjectKey(item.Key()) {
				continue
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("record %q: %w", item.Key(), err)
			}
			kept = append(kept, record{key: item.KeyCopy(nil), val: string(val)})
		}
		return nil
	})
	return kept, err
}

// loadPace keeps the records a load has handed its stream but the stream's tables do not
// hold yet under loadAhead bytes (see there).
type loadPace struct {
	db   *badger.DB
	sent []int64 // sent[i]: the bytes of the first i+1 records handed to the stream
	// keys is the number of records in the stream's tables at the last look, and
	// stalled is set when no table came for loadStall since that number changed.
	keys    int
	stalled bool
}

func (p *loadPace) add(n int) {
	total := int64(n)
	if len(p.sent) > 0 {
		total += p.sent[len(p.sent)-1]
	}
	p.sent = append(p.sent, total)
}

// wait returns once the stream's tables hold all but loadAhead bytes of the records,
// or no table has come for loadStall; after such a stall it waits for nothing until a
// table comes.
func (p *loadPace) wait() {
	since := time.Now()
	for {
		keys := 0
		for _, t := range p.db.Tables() {
			keys += int(t.KeyCount)
		}
		if keys != p.keys {
			p.keys, p.stalled, since = keys, false, time.Now()
		}
		written := int64(0)
		if keys > 0 {
			written = p.sent[min(keys, len(p.sent))-1]
		}
		if p.stalled || p.sent[len(p.sent)-1]-written <= loadAhead {
			return
		}
		if time.Since(since) > loadStall {
			p.stalled = true
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
