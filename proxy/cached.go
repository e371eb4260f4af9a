package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/gcpolicy"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// cached answers searches and compares from the synced store. It feeds the directory
// engine the served entries of the store's latest generation (served.go): at start a
// whole tree, then at each commit only what the sync changed (Tree.Apply), so a search
// always sees one complete generation, a sync that changed nothing changes nothing, and
// paged searches under way go on across syncs. The tree matches with the upstream's
// schema as the store holds it (schema.go); a sync that brings another schema has the
// tree built anew.
type cached struct {
	store *cache.Store
	opts  ServedOptions
	log   *slog.Logger
	tree  atomic.Pointer[directory.Tree]
	// synced is set once the tree serves a synced generation: before the first sync,
	// searches and compares are unavailable, never an empty directory.
	synced atomic.Bool
	// access limits what each session sees (access.go); nil: everything.
	access *access

	mu         sync.Mutex        // one update at a time
	sn         *cache.Snapshot   // the snapshot the tree serves
	containers *servedContainers // the containers of that tree; nil until needed when read from its image
	// mapped is set once a tree read from its image serves (at start, or when the image of
	// the first tree built is written); imaged is the tree whose image was last written.
	mapped bool
	imaged *directory.Tree
	// building is set while the first tree of a large directory is built in the
	// background (buildFirst): commits meanwhile leave it to catch up with them.
	building atomic.Bool
	// parsed is the last upstream schema parsed (schemaOf), from parsedFrom; guarded by mu.
	parsed     *directory.Schema
	parsedFrom *cache.Schema
	// imageTries is how many more image writes the first tree built in the background
	// (buildFirst) asks for, until it has moved to its image: each commit applied
	// meanwhile asks (Store.DerivedReady), as a write tried while a commit is on its way
	// finds the tree behind the store and writes nothing, and one that a commit follows
	// before the move is of a tree no longer served, and the next checkpoint may be
	// minutes away. Only the writes made count, so that a write that fails (a full disk),
	// or a stream of commits that keeps coming between a write and the move, does not
	// have the image written at every commit.
	imageTries int
}

func newCached(store *cache.Store, opts ServedOptions, log *slog.Logger) *cached {
	c := &cached{store: store, opts: opts, log: log}
	programIdentity() // once per process: the executable as it started, before an upgrade replaces it
	store.OnCommit(c.update)
	c.update(store.Snapshot())
	store.AddDerived(cache.DerivedFile{Name: servedImage, Write: c.writeImage, Written: c.imageWritten}, c.mapped)
	return c
}

// servedImage is the served tree's image beside the store (cache.Store.AddDerived): a
// start on the generation it was written for reads the tree from it instead of
// building it (directory.ReadTree).
const servedImage = "served.img"

// imageKey is what an image must have been written with to be read: the options that
// made the served entries from the snapshot sn (the store checks the snapshot's commit),
// the program that made them: another build may make other entries of the same
// records, or normalise their values otherwise, and the tree's schema fingerprint
// sees neither; and the sum of sn's sources (SourcesSum): two checkpoints of one commit
// may hold a group's record with other bytes, which the image refers into.
func (c *cached) imageKey(sn *cache.Snapshot) []byte {
	return fmt.Appendf(nil, "served entries %#v by %s of sources %x", c.opts, programIdentity(), sn.SourcesSum())
}

// programIdentity identifies the running program: a SHA-256 of its executable, read
// once. When it cannot be read, a random value: images are then never read again.
var programIdentity = sync.OnceValue(func() string {
	h := sha256.New()
	if err := hashExecutable(h); err != nil {
		var r [16]byte
		rand.Read(r[:])
		return "unknown program " + hex.EncodeToString(r[:])
	}
	return hex.EncodeToString(h.Sum(nil))
})

// hashExecutable writes the running executable to w: on Linux the file the process
// runs (/proc/self/exe, also after an upgrade replaced the path), elsewhere the file
// at its path.
func hashExecutable(w io.Writer) error {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		path, err := os.Executable()
		if err != nil {
			return err
		}
		if f, err = os.Open(path); err != nil {
			return err
		}
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// writeImage writes the served tree of sn as its image, if the tree serves sn.
func (c *cached) writeImage(w io.Writer, sn *cache.Snapshot) error {
	c.mu.Lock()
	t, cur := c.tree.Load(), c.sn
	ready := t != nil && cur != nil && cur.Generation() == sn.Generation()
	if ready && cur != sn && cur.SourcesSum() != sn.SourcesSum() {
		// sn is the tree's snapshot with its records moved to the store's checkpoint,
		// where a group's record refers to its members' DNs, laid out otherwise: the
		// entries of those groups are made again of sn's records (as a sync's changes
		// are applied: paged searches go on), which a start reads the image with.
		ready = c.applySame(sn)
		t, cur = c.tree.Load(), c.sn
	}
	if ready && c.imageTries > 0 {
		c.imageTries--
	}
	c.mu.Unlock()
	if !ready {
		return cache.ErrDerivedNotReady
	}
	// The sources of the snapshot the tree was made of: sn may be the same generation
	// with its records moved to the store's checkpoint.
	if err := t.WriteImage(w, c.imageKey(cur), cur.Sources()); err != nil {
		return err
	}
	c.mu.Lock()
	if !c.mapped {
		c.imaged = t
	}
	c.mu.Unlock()
	return nil
}

// applySame brings the served tree to sn, a snapshot of the generation it serves whose
// records differ from its snapshot's in their bytes (ChangesSince), and reports whether
// it did; c.mu is held.
func (c *cached) applySame(sn *cache.Snapshot) bool {
	if c.containers == nil { // a tree read from its image
		c.containers = newServedContainers(c.sn, c.opts)
	}
	sc := c.containers.clone()
	next, err := c.tree.Load().Apply(servedChanges(c.sn, sn, c.opts, sc))
	if err != nil {
		c.log.Warn("cannot make the served tree of the records moved to the store's checkpoint; its image waits for the next commit",
			"generation", sn.Generation(), "err", err)
		return false
	}
	c.serve(next, sn)
	c.sn, c.containers = sn, sc
	return true
}

// imageWritten replaces a served tree built in memory by the same tree read from the
// image just written, once per process: the entries, DNs and normalised values then
// live in the mapped file's pages, outside the Go heap, as after a start from the
// image. Later images are for the next start only: a mapping stays for the life of the
// process, as versions may refer to it.
func (c *cached) imageWritten(sn *cache.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, imaged := c.tree.Load(), c.imaged
	c.imaged = nil // not kept alive by this
	if c.mapped || t == nil || t != imaged || c.sn.Generation() != sn.Generation() {
		return // a commit came since the write (when it was applied, it may have asked for another)
	}
	c.imageTries = 0
	start := time.Now()
	// Reading the image brings its pages in and makes a tree beside the one built: the
	// garbage of the build and of writing the image is handed back first (once per
	// process), so that they do not add up.
	debug.FreeOSMemory()
	// The same schema as the tree built: not parsed again, nor its undescribed types logged again.
	if mapped := c.readImage(sn, t.Schema()); mapped != nil {
		c.serve(mapped, sn)
		c.sn, c.mapped = sn, true // sn's records may be the checkpoint's: the tree's are
		releaseGarbage()
		c.log.Info("served tree moved to its image", "generation", sn.Generation(), "entries", mapped.Len(),
			"took", time.Since(start).Round(time.Millisecond))
	}
}

// readImage reads the served tree of sn from its image, matching with sch (schemaOf(sn));
// nil when there is none for sn or it cannot be read.
func (c *cached) readImage(sn *cache.Snapshot, sch *directory.Schema) *directory.Tree {
	data, done := c.store.ReadDerived(servedImage, sn)
	if data == nil {
		return nil
	}
	t, err := directory.ReadTree(sch, []string{c.opts.BaseDN}, data, c.imageKey(sn), sn.Sources(), c.treeOptions()...)
	done(err == nil)
	if err != nil {
		level := slog.LevelWarn
		if errors.Is(err, directory.ErrImageStale) {
			level = slog.LevelInfo // written with other options or by another version, or of a tree that lost most of its entries
		}
		c.log.Log(context.Background(), level, "served tree image not used", "generation", sn.Generation(), "reason", err)
		return nil
	}
	return t
}

// update brings the served tree to the snapshot sn: the changes since the snapshot it
// serves, applied as one batch; or, for the first snapshot and when the batch does not
// apply, a tree built anew (paged searches under way then fail once). On an error the
// previous tree stays, and the next commit tries again from it.
func (c *cached) update(sn *cache.Snapshot) {
	if c.building.Load() {
		return // buildFirst applies sn when its tree is ready; the commit does not wait for it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sn != nil && sn.Generation() <= c.sn.Generation() {
		return // a commit that the callback has already seen
	}
	if c.imageTries > 0 {
		defer c.store.DerivedReady() // the tree may have caught up with the store now
	}
	t := c.tree.Load()
	if t == nil {
		c.rebuild(sn)
		return
	}
	if c.building.Load() {
		return // buildFirst applies sn when its tree is ready
	}
	if users, groups := sn.Counts(); c.sn.Generation() == 0 && users+groups >= backgroundBuildMin {
		c.building.Store(true)
		go c.buildFirst()
		return
	}
	if !sn.Schema().Equal(c.sn.Schema()) {
		c.log.Info("the upstream's schema changed; building the served tree anew, paged searches under way must start again",
			"generation", sn.Generation())
		c.rebuild(sn)
		return
	}
	start := time.Now()
	if c.containers == nil { // a tree read from its image
		c.containers = newServedContainers(c.sn, c.opts)
	}
	sc := c.containers.clone()
	changes := servedChanges(c.sn, sn, c.opts, sc)
	next, err := t.Apply(changes)
	if err != nil {
		c.log.Warn("cannot apply the sync's changes to the served tree; building it anew, paged searches under way must start again",
			"generation", sn.Generation(), "err", err)
		c.rebuild(sn)
		return
	}
	c.sn, c.containers = sn, sc
	if next == t {
		c.serve(t, sn) // the same tree, now known to be sn's: a first sync that changed nothing is a sync
		c.log.Info("served tree unchanged", "generation", sn.Generation(), "version", t.Version())
		return
	}
	c.serve(next, sn)
	if len(changes) >= bigBatch && len(changes) >= next.Len()/4 {
		releaseGarbage()
	}
	c.log.Info("served tree updated", "generation", sn.Generation(), "version", next.Version(), "changes", len(changes),
		"entries", next.Len(), "took", time.Since(start).Round(time.Microsecond))
}

// backgroundBuildMin is the number of users and groups from which the first sync's tree
// is built in the background (buildFirst) rather than in the commit (a variable for the
// tests).
var backgroundBuildMin = 10000

// firstBuildStarts, when set (by the tests), is called as buildFirst is about to build
// the snapshot it took, holding the lock the build holds.
var firstBuildStarts func()

// firstImageTries bounds the image writes the first tree built in the background asks
// for before the next checkpoint (cached.imageTries; a variable for the tests).
var firstImageTries = 3

// settleWait bounds how long buildFirst waits for the store's records to settle.
const settleWait = time.Minute

// buildFirst builds the tree of the first sync of a large directory, then serves it,
// applies the commits that came meanwhile and has its image written. It runs on a
// goroutine of its own, so that the sync that committed returns first and its working
// state (what it read, the objects it mapped) is garbage before the build begins; and
// it waits for the store to move the records to its checkpoint (RecordsSettled), so that
// the tree's values are slices of the checkpoint's pages and the heap's copies of the
// records go. Until the tree serves, searches are unavailable as before the first sync
// (the tree of generation 0 serves, not synced). A start builds the first tree of
// 100,000 users with a third less memory at its peak than in the commit.
func (c *cached) buildFirst() {
	select {
	case <-c.store.RecordsSettled():
	case <-time.After(settleWait):
	}
	c.mu.Lock()
	sn := c.store.Snapshot()
	if firstBuildStarts != nil {
		firstBuildStarts()
	}
	c.rebuild(sn)
	built := c.sn.Generation() == sn.Generation()
	if built && !c.mapped {
		c.imageTries = firstImageTries
	}
	c.building.Store(false)
	c.mu.Unlock()
	if built {
		c.store.DerivedReady() // the image, which waited for the tree
	}
	// The commits that came during the build returned without waiting for it (a store
	// publishes a snapshot before it calls back): the latest is applied now, or, when
	// the build failed, built from.
	if latest := c.store.Snapshot(); latest.Generation() > sn.Generation() {
		c.update(latest)
	}
}

// rebuild makes the served tree of a snapshot anew. On an error the previous tree stays.
func (c *cached) rebuild(sn *cache.Snapshot) {
	start := time.Now()
	sch := c.schemaOf(sn) // parsed once, for the image or the build
	if c.tree.Load() == nil {
		if t := c.readImage(sn, sch); t != nil {
			c.serve(t, sn)
			// The containers are found when the first sync needs them.
			c.sn, c.containers, c.mapped = sn, nil, true
			c.log.Info("served tree ready", "generation", sn.Generation(), "entries", t.Len(), "from_image", true,
				"took", time.Since(start).Round(time.Millisecond))
			return
		}
	}
	// A build makes a heap that stays (the tree) and about as much garbage (the entries
	// it is made of): the collector is paced so that the peak stays nearer what is kept.
	stopPacing := gcpolicy.Bounded(buildHeadroom, buildMinPercent)
	defer stopPacing()
	// The entries are made as the build asks for them (twice each), never all at once.
	n, at := servedSource(sn, c.opts)
	t, err := directory.NewTreeFrom(sch, []string{c.opts.BaseDN}, n, at, c.treeOptions()...)
	if err != nil {
		c.log.Error("cannot build the served tree; keeping the previous one", "generation", sn.Generation(), "err", err)
		return
	}
	c.serve(t, sn)
	releaseGarbage()
	c.sn, c.containers = sn, newServedContainers(sn, c.opts)
	schema := "built-in"
	if !t.Schema().Builtin() {
		schema = sn.Schema().DN
	}
	c.log.Info("served tree ready", "generation", sn.Generation(), "entries", n, "schema", schema, "from_image", false,
		"took", time.Since(start).Round(time.Millisecond))
}

// treeOptions are the served tree's options: the conventions it follows beyond LDAP's,
// and the store's mapped checkpoints, which the entries' sources are mostly slices of
// (the tree keeps them as offsets into those, which the collector does not follow).
func (c *cached) treeOptions() []directory.TreeOption {
	return append(c.opts.treeOptions(), directory.WithSourceBases(c.store.RecordMappings))
}

// treeOptions are the conventions the served tree follows beyond LDAP's.
func (o ServedOptions) treeOptions() []directory.TreeOption {
	if !o.ActiveDirectory {
		return nil
	}
	return []directory.TreeOption{directory.WithActiveDirectory(directory.ADOptions{})}
}

// buildHeadroom and buildMinPercent pace the collector while the served tree is built
// (gcpolicy.Bounded): the heap may grow by 64 MiB, or a quarter of what is live, between
// collections.
const (
	buildHeadroom   = 64 << 20
	buildMinPercent = 25
)

// bigBatch is the number of changes from which a batch that changes a quarter of the
// tree or more (the first sync into an empty store) releases its garbage.
const bigBatch = 1000

// releaseGarbage returns the memory that building a tree, or applying a batch that
// changed much of it, left as garbage (the entries made for it, the sync's reads, the
// previous version) to the OS, once, shortly after the sync that made it has finished.
// Without it the process would keep the high-water mark of the build, about twice the
// tree, until the collector's scavenger slowly gave it back.
func releaseGarbage() {
	time.AfterFunc(releaseDelay, debug.FreeOSMemory)
}

// releaseDelay leaves the sync that committed the generation time to return.
const releaseDelay = 2 * time.Second

// serve makes t, the tree of sn, the one searches see.
func (c *cached) serve(t *directory.Tree, sn *cache.Snapshot) {
	c.tree.Store(t)
	if sn.Generation() > 0 {
		c.synced.Store(true)
	}
}

// notSynced is the answer to a search or compare before the first sync: the entries
// are not known yet, and an empty answer would tell the client that they do not exist.
func notSynced() *ldapserver.Result {
	return &ldapserver.Result{Code: ldap.LDAPResultUnavailable, Diagnostic: "the directory is not synced yet: the first sync, or the building of what it read, is running"}
}

func (c *cached) search(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	if !c.synced.Load() {
		w.WriteResult(notSynced())
		return
	}
	t := c.tree.Load()
	// Answered on the connection's read loop (Handler.Inline) unless it goes through
	// much of the tree: then the connection reads on while it does.
	res := t.SearchWithinLong(r.Context(), r.Search, r.Controls, c.within(t, r), func(e *directory.Entry) error { return w.WriteEntry(e) },
		func() { ldapserver.Detach(w) })
	if res != nil {
		w.WriteResult(res)
	}
}

func (c *cached) compare(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	if !c.synced.Load() {
		w.WriteResult(notSynced())
		return
	}
	t := c.tree.Load()
	w.WriteResult(t.CompareWithin(r.Compare, c.within(t, r)))
}

// within is the part of t the session of r may read; nil: all of it.
func (c *cached) within(t *directory.Tree, r *ldapserver.Request) *directory.Within {
	if c.access == nil {
		return nil
	}
	v := c.access.viewOf(r)
	if v.all {
		return nil
	}
	return t.Within(v.dns)
}
