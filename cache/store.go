package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Badger keys. Objects are versioned by the generation of the sync that wrote
// them (see the package comment); the rest are single keys. Prefix "c/" is
// reserved for the credential cache (bind.cache_passwords).
const (
	prefixUsers   = "u/" // + ID + 0x00 + generation (8 bytes, big-endian)
	prefixGroups  = "g/" // same
	prefixStatus  = "s/" // + kind: Status as JSON
	keyGeneration = "m/generation"
	keyFormat     = "m/format"  // storeFormat, so that a future layout is not misread
	keyDomain     = "m/domain"  // the upstream's Domain as JSON, see Sync.SetDomain
	prefixCookie  = "m/cookie/" // + name: a change stream's position, see Store.Cookie
	storeFormat   = 1
)

// statusFileName is the copy of the statuses that ReadStatus reads.
const statusFileName = "status.json"

// badgerLockErrMsg is how Badger says that another process holds the
// directory; it does not wrap the flock error, so the text is matched (a test
// notices when Badger changes it).
const badgerLockErrMsg = "Another process is using this Badger database"

// Badger tuning for a sidecar; README.md has the measurements behind it.
// Badger's defaults (64 MB memtables ×5, a 256 MB block cache, 1 GB value-log
// files) are sized for a database server, not for 100,000 small objects.
const (
	memTableSize   = 2 << 20  // ×numMemtables, allocated whole; each flush builds a table of it in memory
	level0Tables   = 10       // level-0 tables before a compaction starts (default 5); writes stall at twice as many
	numMemtables   = 2        // one filling, one flushing
	blockCacheSize = 4 << 20  // reads happen only at Open: the snapshot serves them
	indexCacheSize = 4 << 20  // bounds the table indexes and bloom filters kept in memory
	valueThreshold = 64 << 10 // objects stay in the LSM tree, where compaction reclaims them
	vlogFileSize   = 64 << 20 // the value log holds only the rare larger object
	numCompactors  = 2        // Badger's minimum; the machine has few cores
	maxPendingTxns = 2        // write batches in flight during a sync (default 16 × 1.2 MB)
	// baseTableSize is the size of the tables compactions and the first sync's load
	// write (default 2 MB), compressed; a table's builder holds it uncompressed and
	// compressed, about five times its size with the directory's records, in buffers
	// that double: 14 MiB at 1 MB, 28 MiB at 2 MB. The first sync's load
	// (firstload.go) has two of them at once, at the sync's end.
	baseTableSize = 1 << 20
	// tableSizeMultiplier keeps every table at baseTableSize rather than doubling it at
	// each level below the base level: the first sync's load writes the last level's
	// tables, whose builders would otherwise start at 2 × baseTableSize × 2^5. Only a
	// store large enough for a level below its base level (some tens of MB) has tables
	// of other sizes by default.
	tableSizeMultiplier = 1
)

// ErrSyncRunning is returned by BeginSync while another sync is open.
var ErrSyncRunning = errors.New("a sync is already running")

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store closed")

// Store is the Badger store of synced users and groups, with their last
// committed state held in memory as a Snapshot.
type Store struct {
	db  *badger.DB
	dir string // "" in memory
	// mapDir is dir as the process's list of mappings names it (releaseBadgerPages).
	mapDir string
	log    *slog.Logger

	snap   atomic.Pointer[Snapshot]
	normDN func(string) string

	mu sync.Mutex
	// active is the open Sync or Batch: one writer at a time.
	active   interface{ Abort() }
	cookies  map[string]string // by name, as committed
	closed   bool
	status   map[string]Status
	onCommit []func(*Snapshot)
	// dirty is set when an aborted sync's records could not be removed:
	// the next BeginSync must find them by a scan.
	dirty bool

	// ckpt writes the checkpoints (checkpoint.go); nil in memory.
	ckpt *checkpointer
	// derived are the derived files (derived.go), derivedGen the generation of each
	// one's file on disk.
	// recordsMapped is set once the snapshot's records are the checkpoint's (a start
	// from it, or moveToCheckpoint).
	recordsMapped atomic.Bool
	// mapping is, once recordsMapped is set, the bytes of the checkpoint the snapshot's
	// records are in: what a group's record made at a commit refers to its members'
	// DNs in (Snapshot.refsInto).
	mapping atomic.Pointer[string]
	// recordMaps are the checkpoints' mappings that records are slices of
	// (RecordMappings).
	recordMaps atomic.Pointer[[]string]
	// settled is closed once the records are where they stay (RecordsSettled).
	settled    chan struct{}
	settleOnce sync.Once

	derivedMu      sync.Mutex
	derived        []*DerivedFile
	derivedGen     map[string]uint64
	derivedWriting sync.Mutex     // held while derived files are written
	derivedWriters sync.WaitGroup // writes begun by AddDerived
	// closeSoon is set by CloseSoon: commits do not start a checkpoint's write.
	closeSoon atomic.Bool
	// fromCheckpoint is set when Open read the records from the checkpoint.
	fromCheckpoint bool

	// replacing is held for writing while the first sync's load replaces Badger's
	// contents (firstload.go): Badger refuses other writes then and replaces its
	// transaction oracle at the end. The credential cache, the one user of Badger
	// besides the open sync or batch, holds it for reading around each access, taken
	// before its own lock (Credentials.lockWrite).
	replacing sync.RWMutex

	// written counts the bytes of keys and values handed to Badger, so that
	// tests can check that an unchanged sync writes (almost) nothing.
	written atomic.Int64
}

// Open opens (creating if needed) the store at cfg.Path and loads its last
// committed state into memory, so that Snapshot serves it at once. Leftovers
// of an interrupted sync are discarded here. A store another process has open
// is refused.
//
// normalizeDN is the project's DN normaliser (directory.NormalizeDN): the store keys its
// DN and path lookups by it, so that every spelling a directory takes for a DN finds the
// same object.
func Open(cfg Config, log *slog.Logger, normalizeDN func(string) string) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store.%w", err)
	}
	if normalizeDN == nil {
		return nil, errors.New("store: no DN normaliser")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{log: log, status: map[string]Status{}, cookies: map[string]string{}, normDN: normalizeDN, derivedGen: map[string]uint64{},
		settled: make(chan struct{})}
	var opts badger.Options
	if cfg.Path == InMemory {
		opts = badger.DefaultOptions("").WithInMemory(true)
	} else {
		s.dir = cfg.Path
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, fmt.Errorf("create store %s: %w", s.dir, err)
		}
		if err := removeEmptyMemtables(s.dir); err != nil {
			return nil, fmt.Errorf("open store %s: %w", s.dir, err)
		}
		opts = badger.DefaultOptions(s.dir)
		s.mapDir = mappingDir(s.dir)
	}
	opts = opts.
		WithLogger(badgerLogger{log.With("component", "badger")}).
		WithLoggingLevel(badger.WARNING).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithNumLevelZeroTables(level0Tables).
		WithNumLevelZeroTablesStall(2 * level0Tables).
		WithBlockCacheSize(blockCacheSize).
		WithIndexCacheSize(indexCacheSize).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(vlogFileSize).
		WithNumCompactors(numCompactors).
		WithBaseTableSize(baseTableSize).
		WithCompression(options.Snappy). // a quarter of the disk and of the mapped pages, at no measurable cost
		WithMetricsEnabled(false).
		WithDetectConflicts(false) // one writer at a time, by construction
	opts.TableSizeMultiplier = tableSizeMultiplier // no With method
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), badgerLockErrMsg) {
			return nil, fmt.Errorf("store %s is in use by another ldapproxy process", cfg.Path)
		}
		return nil, fmt.Errorf("open store %s: %w", cfg.Path, err)
	}
	s.db = db
	start := time.Now()
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("load store %s: %w", cfg.Path, err)
	}
	sn := s.snap.Load()
	users, groups := sn.Counts()
	log.Info("store loaded", "path", cfg.Path, "generation", sn.gen,
		"users", users, "groups", groups, "from_checkpoint", s.fromCheckpoint, "duration", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// Close aborts a sync still open and closes the store. Snapshots taken
// before stay readable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	active := s.active
	s.mu.Unlock()
	if active != nil {
		active.Abort()
	}
	s.derivedWriters.Wait()
	s.stopCheckpointer()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// CloseSoon says that the store will be closed after the next commit (a process that
// syncs once and ends, ldapproxy sync): commits then leave the checkpoint to Close,
// which writes it, instead of starting to write it at once and reading the records back
// from it, which would hold them twice at the end of the sync.
func (s *Store) CloseSoon() { s.closeSoon.Store(true) }

// Snapshot returns the state of the last committed sync.
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// NormalizeDN returns the form the store compares DNs in (the normaliser given to Open).
func (s *Store) NormalizeDN(dn string) string { return s.normDN(dn) }

// Status returns the last status of each object kind, users first: the one
// of the sync running now, or the last one recorded (which survives restarts).
func (s *Store) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return statusList(s.status)
}

// OnCommit registers fn to be called with the new snapshot after each
// commit, in the committing goroutine, after readers have switched to it.
// fn must not call BeginSync.
func (s *Store) OnCommit(fn func(*Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCommit = append(s.onCommit, fn)
}

// ReadStatus returns the statuses recorded in the store at cfg.Path without
// opening it, so that it works while a serving process holds the store. A
// store that never recorded one gives an empty list.
func ReadStatus(cfg Config) ([]Status, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("store.%w", err)
	}
	if cfg.Path == InMemory {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(cfg.Path, statusFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sync status: %w", err)
	}
	var list []Status
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("read sync status %s: %w", filepath.Join(cfg.Path, statusFileName), err)
	}
	return list, nil
}

func statusList(m map[string]Status) []Status {
	var list []Status
	for _, kind := range []string{KindUsers, KindGroups} {
		if st, ok := m[kind]; ok {
			st.Errors = slices.Clone(st.Errors)
			list = append(list, st)
		}
	}
	return list
}

// load reads the committed generation, every object and the statuses, and
// removes what an interrupted sync left behind.
func (s *Store) load() (err error) {
	var (
		gen      uint64
		commit   [16]byte
		domain   Domain
		schema   *Schema
		stale    [][]byte
		fromCkpt bool
		userList []userRec // by ID, when the checkpoint gave them
		rs       regions   // the users' records': the checkpoint's, or arena's chunks
		ckptData []byte    // the checkpoint's mapping, when it gave them
		ckptRefs bool      // it is of format 4, whose group records refer to the users'
	)
	users := map[string]*userRec{}
	arena := newArena(nil) // the users' records read from Badger
	groups := map[string]*groupRec{}
	sets := map[string]*entrySetRec{}
	defer func() {
		// A start that fails after mapping the checkpoint leaves nothing that refers to
		// its records: the mapping goes, or every failed Open would keep one.
		if err != nil && ckptData != nil {
			unmapFile(ckptData)
		}
	}()
	err = s.db.View(func(txn *badger.Txn) error {
		if err := checkFormat(txn); err != nil {
			return err
		}
		var err error
		if gen, err = readGeneration(txn); err != nil {
			return err
		}
		if domain, err = readDomain(txn); err != nil {
			return err
		}
		if schema, err = readSchema(txn); err != nil {
			return err
		}
		if commit, err = readCommitID(txn); err != nil {
			return err
		}
		if s.dir != "" && gen > 0 {
			recs, err := s.readCheckpoint(gen, commit)
			if err == nil {
				users, userList, rs, groups, sets, fromCkpt = nil, recs.userList, recs.regions, recs.groups, recs.sets, true
				ckptData, ckptRefs = recs.data, recs.refs
				if err := s.loadCookies(txn); err != nil {
					return err
				}
				return s.loadStatus(txn)
			}
			if !errors.Is(err, os.ErrNotExist) {
				s.log.Info("store: not using the checkpoint; reading the records from the store", "err", err)
			}
		}
		stale = s.loadObjects(txn, prefixUsers, gen, stale, func(id string, val []byte, kgen uint64) error {
			delete(users, id)
			if len(val) == 0 {
				return nil
			}
			r, err := arena.put(id, bytesView(val), kgen, s.normDN)
			if err != nil {
				return err
			}
			users[id] = r
			return nil
		})
		stale = s.loadObjects(txn, prefixGroups, gen, stale, func(id string, val []byte, kgen uint64) error {
			delete(groups, id)
			if len(val) == 0 {
				return nil
			}
			r, err := newGroupRec(id, string(val), kgen, s.normDN)
			if err != nil {
				return err
			}
			groups[id] = r
			return nil
		})
		stale = s.loadObjects(txn, prefixEntrySets, gen, stale, func(name string, val []byte, kgen uint64) error {
			delete(sets, name)
			if len(val) == 0 {
				return nil
			}
			if _, err := decodeEntrySet(string(val)); err != nil {
				return err
			}
			sets[name] = &entrySetRec{name: name, val: string(val), gen: kgen}
			return nil
		})
		if err := s.loadCookies(txn); err != nil {
			return err
		}
		return s.loadStatus(txn)
	})
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		if err := s.deleteKeys(stale); err != nil {
			return fmt.Errorf("discard leftovers: %w", err)
		}
		s.log.Info("store: discarded superseded records and leftovers of an interrupted sync", "records", len(stale))
	}
	// A start that read Badger gives the state it read an ID of its own: a checkpoint
	// is then used only for what this version wrote or read itself (a store written
	// by a version without commit IDs keeps one ID across its commits).
	newID := gen > 0 && !fromCkpt
	if newID {
		commit = newCommitID()
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		if newID {
			if err := s.setCommitID(txn, commit); err != nil {
				return err
			}
		}
		return txn.Set([]byte(keyFormat), []byte{storeFormat})
	}); err != nil {
		return err
	}
	if !fromCkpt {
		rs = arena.rs
	}
	sn := newSnapshotSorted(gen, users, userList, rs, groups, s.normDN)
	sn.domain, sn.schema, sn.commit = domain, schema, commit
	if len(sets) > 0 {
		sn.entrySets = sets
	}
	if ckptData != nil {
		m := unsafe.String(unsafe.SliceData(ckptData), len(ckptData))
		s.mapping.Store(&m)
		if !ckptRefs {
			// A checkpoint of the version before: its groups, as their records in format
			// 8 (the next checkpoint writes them so, and the served tree, built anew by a
			// new version, refers into them).
			sn.referGroupsInto(m)
		}
		dropPages(ckptData) // read by the check and the indexes; served pages come back as needed
		s.noteRecordMapping(ckptData)
	}
	s.snap.Store(sn)
	s.fromCheckpoint = fromCkpt
	if fromCkpt {
		// The leftovers that reading Badger removes (records of an interrupted sync,
		// superseded versions, deletion markers) are not looked for now: nothing reads
		// them but a writer, and the first sync or batch removes them (discardStale)
		// before it writes, sparing the start a scan of every key.
		s.dirty = true
	}
	if s.dir != "" {
		written := uint64(0)
		if fromCkpt {
			written = gen
		}
		s.startCheckpointer(written)
		if !fromCkpt {
			s.checkpointDue()
		}
	} else {
		s.settle() // in memory: the records stay on the heap
	}
	return nil
}

// removeEmptyMemtables deletes memtable files of zero bytes. Badger creates
// such a file and then sizes it; a kill between the two leaves it empty, and
// Badger then refuses to open ("while opening memtables ... Create a new
// file", dgraph-io/badger#2207). An empty file holds no data, so removing it
// loses nothing.
func removeEmptyMemtables(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Size() == 0 {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFormat refuses a store written in a layout this version does not know.
func checkFormat(txn *badger.Txn) error {
	item, err := txn.Get([]byte(keyFormat))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error {
		if len(v) != 1 || v[0] != storeFormat {
			return fmt.Errorf("store format %v is not %d: written by another version of ldapproxy", v, storeFormat)
		}
		return nil
	})
}

// readDomain reads the stored Domain; none stored is the zero one.
func readDomain(txn *badger.Txn) (Domain, error) {
	var d Domain
	item, err := txn.Get([]byte(keyDomain))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &d) })
	if err != nil {
		return d, fmt.Errorf("domain record: %w", err)
	}
	return d, nil
}

func readGeneration(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get([]byte(keyGeneration))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var gen uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("bad generation record of %d bytes", len(v))
		}
		gen = binary.BigEndian.Uint64(v)
		return nil
	})
	return gen, err
}

// loadObjects walks the object records under prefix. Records of one ID are
// adjacent and in generation order (IDs hold no 0x00 byte), so the last one
// not newer than the committed generation gen is the current version: each is
// passed to put, and replaced by the next. Newer ones (an interrupted sync)
// and older ones (superseded) are appended to stale, as are deletion markers,
// which put receives as an empty value. A record put cannot decode is logged
// and dropped, so that one bad value does not keep the proxy from starting;
// put must then forget the object, which the next sync writes again. A nil
// put only finds the stale keys, without reading a value.
func (s *Store) loadObjects(txn *badger.Txn, prefix string, gen uint64, stale [][]byte,
	put func(id string, val []byte, kgen uint64) error) [][]byte {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: put != nil, PrefetchSize: 256, Prefix: []byte(prefix)})
	defer it.Close()
	var prevID, prevKey []byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		id, kgen, ok := parseObjectKey(item.Key(), prefix)
		if !ok || kgen > gen {
			stale = append(stale, item.KeyCopy(nil))
			continue
		}
		if prevKey != nil && bytes.Equal(id, prevID) {
			stale = append(stale, prevKey)
		}
		prevID = append(prevID[:0], id...)
		prevKey = item.KeyCopy(nil)
		deletion := false
		var err error
		if put == nil {
			deletion = item.ValueSize() == 0
		} else {
			err = item.Value(func(val []byte) error {
				deletion = len(val) == 0
				return put(string(id), val, kgen)
			})
		}
		if err != nil {
			s.log.Error("store: dropping a record that does not decode", "key", string(prevKey), "err", err)
		}
		if err != nil || deletion {
			stale = append(stale, prevKey)
			prevKey = nil
		}
	}
	return stale
}

// objectKey is the key of the version of object id written by sync gen.
func objectKey(prefix, id string, gen uint64) []byte {
	k := make([]byte, 0, len(prefix)+len(id)+9)
	k = append(k, prefix...)
	k = append(k, id...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, gen)
}

func parseObjectKey(k []byte, prefix string) (id []byte, gen uint64, ok bool) {
	if len(k) < len(prefix)+9 || k[len(k)-9] != 0 {
		return nil, 0, false
	}
	return k[len(prefix) : len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:]), true
}

func (s *Store) loadCookies(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(prefixCookie)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		name := strings.TrimPrefix(string(it.Item().Key()), prefixCookie)
		err := it.Item().Value(func(v []byte) error {
			s.cookies[name] = string(v)
			return nil
		})
		if err != nil {
			return fmt.Errorf("cookie %s: %w", name, err)
		}
	}
	return nil
}

// Cookie returns the change-stream position stored under name (a syncrepl cookie) by
// the last commit that set it, or nil: a stream resumes from it after a restart.
func (s *Store) Cookie(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cookies[name]; ok {
		return []byte(c)
	}
	return nil
}

// saveCookies writes cookies (nil: delete) in txn, the transaction that commits a
// generation, so that a stream's position never gets ahead of or behind the data.
func (s *Store) saveCookies(txn *badger.Txn, cookies map[string][]byte) error {
	for name, c := range cookies {
		key := []byte(prefixCookie + name)
		var err error
		if c == nil {
			err = txn.Delete(key)
		} else {
			err = txn.Set(key, bytes.Clone(c))
		}
		if err != nil {
			return err
		}
		s.written.Add(int64(len(key) + len(c)))
	}
	return nil
}

// setCookies records committed cookies in memory.
func (s *Store) setCookies(cookies map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range cookies {
		if c == nil {
			delete(s.cookies, name)
		} else {
			s.cookies[name] = string(c)
		}
	}
}

func (s *Store) loadStatus(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(prefixStatus)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		err := it.Item().Value(func(v []byte) error {
			var st Status
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			s.status[st.Kind] = st
			return nil
		})
		if err != nil {
			return fmt.Errorf("sync status: %w", err)
		}
	}
	return nil
}

// deleteKeys removes keys in batches of whatever size Badger allows.
func (s *Store) deleteKeys(keys [][]byte) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
		s.written.Add(int64(len(k)))
	}
	return wb.Flush()
}

// discardStale removes every object record that does not count at the committed
// generation gen, finding them by their keys alone: records newer than gen (a sync that
// could not clean up after itself), versions superseded by a newer one not above gen,
// and deletion markers with what they deleted (a commit whose clean-up failed). A
// superseded version left behind would come back as the object once the newer ones are
// deleted, so a writer begins only once they are gone. It returns how many it removed.
func (s *Store) discardStale(gen uint64) (int, error) {
	var stale [][]byte
	if err := s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range []string{prefixUsers, prefixGroups, prefixEntrySets} {
			stale = s.loadObjects(txn, prefix, gen, stale, nil)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	return len(stale), s.deleteKeys(stale)
}

// markDirty has the next writer look for stale records first (discardStale).
func (s *Store) markDirty() {
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
}

// saveStatus records statuses in Badger and in status.json (for ReadStatus).
func (s *Store) saveStatus(txn *badger.Txn, list []Status) error {
	for _, st := range list {
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := txn.Set([]byte(prefixStatus+st.Kind), v); err != nil {
			return err
		}
		s.written.Add(int64(len(prefixStatus) + len(st.Kind) + len(v)))
	}
	return nil
}

// writeStatusFile mirrors the statuses to status.json, replacing it
// atomically. A failure is logged: the statuses in Badger are the record.
func (s *Store) writeStatusFile(all []Status) {
	if s.dir == "" {
		return
	}
	data, err := json.MarshalIndent(all, "", "  ")
	if err == nil {
		tmp := filepath.Join(s.dir, statusFileName+".tmp")
		if err = os.WriteFile(tmp, append(data, '\n'), 0o600); err == nil {
			err = os.Rename(tmp, filepath.Join(s.dir, statusFileName))
		}
	}
	if err != nil {
		s.log.Warn("store: cannot write the status file", "err", err)
	}
}

// badgerLogger passes Badger's warnings and errors to slog; Open sets
// Badger's level to warnings, so its chatty start-up information is not sent.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Infof(format string, args ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Debugf(format string, args ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
}
