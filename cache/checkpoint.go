package cache

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapproxy/ldapproxy/internal/view"
)

// A checkpoint is the committed snapshot's records in one file beside Badger's
// (checkpointName): every user, group and entry set record as stored, one after the
// other. Open maps it into memory instead of reading the records out of Badger one by
// one, which makes a start several times faster, and the snapshot's records (and the
// served values that are slices of them) then live in the file's pages, outside the
// Go heap: clean pages, which the kernel may drop under memory pressure and read again.
//
// The checkpoint is derived data. Badger stays the store of record: a checkpoint is
// used only when it names the generation Badger committed last and that commit's
// random ID (keyCommitID, written in the commit's transaction), and its checksum
// holds; otherwise, or when it is missing, Open reads Badger as before and writes a
// new one. It is written after a commit (at most once per checkpointInterval while
// syncs keep committing) and when the store closes, to a temporary file that is
// then renamed over the old one, so a crash at any moment leaves either
// the old checkpoint or the new one (it is not synced to disk: one that a power cut
// garbled fails its checksum). A process keeps the file it mapped mapped until
// it exits; renaming a new one over it does not disturb it.
//
// Layout (integers little-endian):
//
//	"ldapproxy-ckpt\x00\x04"  magic and format
//	generation u64, commit ID [16]byte
//	users u64, groups u64, entry sets u64
//	per record: record generation uvarint, value (uvarint length, bytes), id
//	            (the users', then after them the DNs that the groups' records refer to
//	            and no user holds, uvarint length and bytes, then the groups' and the
//	            entry sets')
//	CRC-32C (Castagnoli) of everything before it, u32
//
// A group's record may be in record format 8 (formatV8): each of its upstream values
// that is byte for byte the DN of a user of the file (a member value; the users come
// before the groups) written as the offset of those bytes, 6 bytes where the DN took 40
// or more. It reads only with the bytes before it in its file. Which groups are written
// so, and which of their values are referred to, memberRefs says; every other record is
// written as stored. Format 3, which the version before wrote, is this without format
// 8's records; format 2, the one before it, the same with each record's generation a
// u64 (7 bytes more a record). Both still read, so that an upgrade starts from them.
//
// A record's id is a uvarint x and, when x is even, x/2 bytes: the id; when x is odd,
// the id is the x/2 bytes of the value at the offset that a second uvarint gives. A
// user's ID is its uniqueness attribute's value (entryUUID, objectGUID …), which its
// value holds among its upstream attributes: the file holds it once.
const (
	checkpointName  = "snapshot.ckpt"
	checkpointMagic = "ldapproxy-ckpt\x00\x04"
	// checkpointMagicV3 and checkpointMagicV2 are formats 3's and 2's magics.
	checkpointMagicV3 = "ldapproxy-ckpt\x00\x03"
	checkpointMagicV2 = "ldapproxy-ckpt\x00\x02"
	keyCommitID       = "m/commit"
)

// checkpointInterval is the least time between two checkpoints written while syncs
// keep committing (a variable for the tests). The first commit after Open, and Close,
// write one at once.
var checkpointInterval = 10 * time.Minute

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkpointRefs makes the checkpoint refer to member DNs (format 4); off, it is written
// in format 3, as the version before wrote it (a variable for the tests).
var checkpointRefs = true

// newCommitID returns a random ID for a commit.
func newCommitID() [16]byte {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic(fmt.Sprintf("cache: no randomness for a commit ID: %v", err))
	}
	return id
}

// setCommitID records id as the ID of the commit txn makes.
func (s *Store) setCommitID(txn *badger.Txn, id [16]byte) error {
	if err := txn.Set([]byte(keyCommitID), id[:]); err != nil {
		return err
	}
	s.written.Add(int64(len(keyCommitID) + len(id)))
	return nil
}

// readCommitID returns the ID of the last commit; zero when the store has none (it was
// written by a version that did not record it).
func readCommitID(txn *badger.Txn) ([16]byte, error) {
	var id [16]byte
	item, err := txn.Get([]byte(keyCommitID))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return id, nil
	}
	if err != nil {
		return id, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != len(id) {
			return fmt.Errorf("bad commit ID record of %d bytes", len(v))
		}
		copy(id[:], v)
		return nil
	})
	return id, err
}

// checkpointRecords is what a checkpoint holds, as load wants it.
type checkpointRecords struct {
	userList []userRec // in the file's order: by ID, each once
	regions  regions   // userList's: the file's
	groups   map[string]*groupRec
	sets     map[string]*entrySetRec
	data     []byte // the mapped file the records are slices of
	refs     bool   // the file is of format 4, whose groups' records may refer to users'
}

// readCheckpoint maps the checkpoint of the store's directory and returns its records
// when it is the one of generation gen and commit id. The caller drops the mapping's
// pages (dropPages) once it has indexed them: what is served is read back as needed. It returns an error saying why
// not otherwise (os.ErrNotExist when there is none); the records are then to be read
// from Badger.
func (s *Store) readCheckpoint(gen uint64, id [16]byte) (*checkpointRecords, error) {
	if id == ([16]byte{}) {
		return nil, errors.New("the store records no commit ID")
	}
	data, err := mapFile(filepath.Join(s.dir, checkpointName))
	if err != nil {
		return nil, err
	}
	recs, err := s.parseCheckpoint(data, gen, id)
	if err != nil {
		unmapFile(data)
		return nil, err
	}
	return recs, nil
}

// parseCheckpoint checks and indexes a checkpoint's bytes, which the records it returns
// are slices of.
func (s *Store) parseCheckpoint(data []byte, gen uint64, id [16]byte) (*checkpointRecords, error) {
	const head = len(checkpointMagic) + 8 + 16 + 3*8
	if len(data) < head+4 {
		return nil, errors.New("not a checkpoint of this format")
	}
	magic := string(data[:len(checkpointMagic)])
	switch magic {
	case checkpointMagic, checkpointMagicV3, checkpointMagicV2:
	default:
		return nil, errors.New("not a checkpoint of this format")
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[len(body):]) {
		return nil, errors.New("checksum mismatch")
	}
	p := body[len(checkpointMagic):]
	if g := binary.LittleEndian.Uint64(p); g != gen {
		return nil, fmt.Errorf("it holds generation %d, the store %d", g, gen)
	}
	if !bytes.Equal(p[8:24], id[:]) {
		return nil, errors.New("it was written for another commit of this generation")
	}
	nUsers, nGroups, nSets := binary.LittleEndian.Uint64(p[24:]), binary.LittleEndian.Uint64(p[32:]), binary.LittleEndian.Uint64(p[40:])
	// The counts come from a file that passed its checksum; still, no map is sized
	// beyond what the bytes could hold (each count on its own: their sum may overflow).
	if size := uint64(len(body)); nUsers > size || nGroups > size || nSets > size || nUsers+nGroups+nSets > size {
		return nil, errors.New("record counts beyond its size")
	}
	// The strings below are views of the mapped file, which is never unmapped once
	// its records are in use and never written to. Its users' records are places in it,
	// which 32 bits give.
	if len(body) > math.MaxUint32 {
		return nil, errors.New("larger than 4 GiB")
	}
	all := unsafe.String(unsafe.SliceData(data), len(body))
	file := newRegion(all)
	r := ckptReader{s: all, i: head, genU64: magic == checkpointMagicV2}
	recs := &checkpointRecords{
		data:   data,
		refs:   magic == checkpointMagic,
		groups: make(map[string]*groupRec, nGroups),
		sets:   make(map[string]*entrySetRec, nSets),
	}
	// The users' records are read here, then checked and indexed on every core: most
	// of a start. The few that need userKeys (regions.go) have them made on the side
	// (early: those the reading here starts), then put in the file's region in order.
	slab := make([]userRec, 0, nUsers) // the snapshot's list
	early := map[int]*userKeys{}
	for range nUsers {
		id, kgen, val := r.record()
		if r.err != nil {
			break
		}
		slab = append(slab, userRec{})
		u := &slab[len(slab)-1]
		var k userKeys
		at, _ := view.Offset(val, all) // 0 for an empty one, which index refuses
		u.start(file, at, len(val), kgen, &k)
		u.setField(fieldID, id, through(val, id), false, &k) // the file holds it after val when val does not
		if u.more == pendingKeys {
			kept := k // k itself stays off the heap
			early[len(slab)-1] = &kept
		}
	}
	parts := min(runtime.GOMAXPROCS(0), 1+len(slab)/4096)
	errs := make([]error, parts)
	keys := make([][]userKeys, parts)
	rs := regions(nil).with(file)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			for i := p * len(slab) / parts; i < (p+1)*len(slab)/parts; i++ {
				u := &slab[i]
				var k userKeys
				if e := early[i]; e != nil {
					k = *e
				}
				if err := u.index(u.val(rs), s.normDN, &k); err != nil {
					// An ID kept in its userKeys is in k: they are not in the region.
					id := k.fields[fieldID]
					if u.elsewhere&(1<<fieldID) == 0 {
						id = u.id(rs)
					}
					errs[p] = fmt.Errorf("user %s: %w", id, err)
					return
				}
				if u.more == pendingKeys {
					keys[p] = append(keys[p], k)
					u.more = uint32(len(keys[p]))
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for p := range parts {
		for i := p * len(slab) / parts; i < (p+1)*len(slab)/parts; i++ {
			if u := &slab[i]; u.more != 0 {
				u.more += uint32(len(file.keys))
			}
		}
		file.keys = append(file.keys, keys[p]...)
	}
	recs.userList = slab
	recs.regions = rs
	for i := 1; i < len(recs.userList); i++ {
		if recs.userList[i-1].id(recs.regions) >= recs.userList[i].id(recs.regions) {
			return nil, errors.New("users not in ID order, or an ID twice")
		}
	}
	if magic == checkpointMagic {
		r.str() // the DNs that no user holds: what the groups' records may refer to
	}
	for range nGroups {
		id, kgen, val := r.record()
		if r.err != nil {
			break
		}
		var before string // what a format 8 record's values may be slices of
		if magic == checkpointMagic {
			before = all[:r.valAt]
		}
		g, err := newGroupRecIn(id, val, before, kgen, s.normDN)
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", id, err)
		}
		recs.groups[id] = g
	}
	for range nSets {
		name, kgen, val := r.record()
		if r.err != nil {
			break
		}
		if _, err := decodeEntrySet(val); err != nil {
			return nil, fmt.Errorf("entry set %s: %w", name, err)
		}
		recs.sets[name] = &entrySetRec{name: name, val: val, gen: kgen}
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case r.i != len(all):
		return nil, fmt.Errorf("%d bytes after its records", len(all)-r.i)
	case len(recs.userList) != int(nUsers) || len(recs.groups) != int(nGroups) || len(recs.sets) != int(nSets):
		return nil, errors.New("an ID appears twice")
	}
	return recs, nil
}

// through returns the bytes of the checkpoint from the start of val to the end of id
// when id comes after val in it (a record's ID that its value does not hold), else val.
func through(val, id string) string {
	v, i := uintptr(unsafe.Pointer(unsafe.StringData(val))), uintptr(unsafe.Pointer(unsafe.StringData(id)))
	if len(val) == 0 || len(id) == 0 || i < v+uintptr(len(val)) {
		return val
	}
	return unsafe.String(unsafe.StringData(val), int(i-v)+len(id))
}

// ckptReader reads a checkpoint's records.
type ckptReader struct {
	s      string
	i      int
	err    error
	genU64 bool // format 2: a record's generation is a u64
	valAt  int  // where the value of the last record read begins
}

func (r *ckptReader) str() string {
	n, w := uvarintString(r.s[r.i:])
	if w <= 0 || n > uint64(len(r.s)-r.i-w) {
		r.err = errors.New("truncated record")
		return ""
	}
	r.i += w
	r.valAt = r.i
	v := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return v
}

func (r *ckptReader) record() (id string, gen uint64, val string) {
	if r.genU64 {
		if len(r.s)-r.i < 8 {
			r.err = errors.New("truncated record")
			return
		}
		gen = binary.LittleEndian.Uint64([]byte(r.s[r.i : r.i+8]))
		r.i += 8
	} else {
		gen = r.uvar()
	}
	val = r.str()
	x := r.uvar()
	n := x >> 1
	if x&1 == 0 {
		if r.err == nil && n > uint64(len(r.s)-r.i) {
			r.err = errors.New("truncated record")
		}
		if r.err != nil {
			return "", 0, ""
		}
		id = r.s[r.i : r.i+int(n)]
		r.i += int(n)
		return id, gen, val
	}
	off := r.uvar()
	if r.err == nil && (off > uint64(len(val)) || n > uint64(len(val))-off) {
		r.err = errors.New("record ID beyond its value")
	}
	if r.err != nil {
		return "", 0, ""
	}
	return val[off : off+n], gen, val
}

func (r *ckptReader) uvar() uint64 {
	if r.err != nil {
		return 0
	}
	x, w := uvarintString(r.s[r.i:])
	if w <= 0 {
		r.err = errors.New("truncated record")
		return 0
	}
	r.i += w
	return x
}

// appendRecordID appends the id of a record whose value is val: where in val, when val
// holds it.
func appendRecordID(b []byte, id, val string) []byte {
	if i := strings.Index(val, id); i >= 0 && id != "" {
		b = binary.AppendUvarint(b, uint64(len(id))<<1|1)
		return binary.AppendUvarint(b, uint64(i))
	}
	b = binary.AppendUvarint(b, uint64(len(id))<<1)
	return append(b, id...)
}

// writeCheckpoint writes sn's checkpoint, replacing the previous one; convert lets it
// write group records in format 7 in format 8 (memberRefs, convertGroups).
func (s *Store) writeCheckpoint(sn *Snapshot, convert bool) error {
	return replaceFile(filepath.Join(s.dir, checkpointName), func(f *os.File) error {
		crc := crc32.New(castagnoli)
		w := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
		var b []byte
		if checkpointRefs {
			b = append(b, checkpointMagic...)
		} else {
			b = append(b, checkpointMagicV3...)
		}
		b = binary.LittleEndian.AppendUint64(b, sn.gen)
		b = append(b, sn.commit[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(len(sn.userList)))
		b = binary.LittleEndian.AppendUint64(b, uint64(len(sn.groupList)))
		b = binary.LittleEndian.AppendUint64(b, uint64(len(sn.entrySets)))
		w.Write(b)
		pos := len(b) // of the file
		// record writes a record and returns where its value begins in the file.
		record := func(id string, gen uint64, val string) int {
			b = binary.AppendUvarint(b[:0], gen)
			b = binary.AppendUvarint(b, uint64(len(val)))
			w.Write(b)
			at := pos + len(b)
			w.WriteString(val)
			b = appendRecordID(b[:0], id, val)
			w.Write(b)
			pos = at + len(val) + len(b)
			return at
		}
		var refs memberRefs
		if checkpointRefs {
			refs = memberRefs{sn: sn, userAt: make([]int, len(sn.userList)), convert: convert}
		}
		for i := range sn.userList {
			r := &sn.userList[i]
			at := record(r.id(sn.regions), r.gen(sn.regions), r.val(sn.regions))
			if refs.userAt != nil {
				refs.userAt[i] = at
			}
		}
		if checkpointRefs {
			gone := refs.gone()
			b = binary.AppendUvarint(b[:0], uint64(len(gone)))
			w.Write(b)
			refs.goneAt = pos + len(b)
			w.Write(gone)
			pos = refs.goneAt + len(gone)
		}
		for _, r := range sn.groupList {
			val := r.val
			if checkpointRefs {
				val = refs.group(r)
			}
			record(r.id, r.gen, val)
		}
		for _, name := range slices.Sorted(maps.Keys(sn.entrySets)) {
			r := sn.entrySets[name]
			record(r.name, r.gen, r.val)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		_, err := f.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32()))
		return err
	})
}

// memberRefs finds, for a checkpoint being written, where it holds a group's member
// values already: as the DN of a user (all of them come before the groups).
//
// A group's record keeps its layout from one checkpoint to the next (the values it
// refers to, so the length of each value and the place of each byte but the offsets):
// the served tree's image, written of the snapshot a process holds, refers into it, and
// a start reads the image with the records of the next checkpoint (Snapshot.SourcesSum).
// So a record in format 8 is written referring to the same values, at their places in
// this file: as a user's DN, or, a value that no user's DN is any more (the user
// renamed or deleted since, the group not), in the bytes the file holds after the users
// for them (gone); one in format 7, as it is, unless the snapshot's records move to this
// checkpoint (moveToCheckpoint) or nothing was made of them (convertGroups): then what is
// made of the records will be made of these.
type memberRefs struct {
	sn      *Snapshot
	userAt  []int // where each user's record begins in the file, by position
	convert bool
	// goneAt is where the file holds the values of goneOff: the offset of each in them.
	goneAt  int
	goneOff map[string]int
}

// gone returns the values that records in format 8 refer to and that no user's DN is,
// one after the other, and notes where each is in them.
func (m *memberRefs) gone() []byte {
	var out []byte
	m.goneOff = map[string]int{}
	for _, r := range m.sn.groupList {
		if r.val[0] != formatV8 {
			continue
		}
		_, err := decodeGroupRefs(r.id, r.val, r.in, func(_ int, v string) {
			if _, held := m.goneOff[v]; !held {
				if _, ok := m.find(v); !ok {
					m.goneOff[v] = len(out)
					out = append(out, v...)
				}
			}
		})
		if err != nil {
			panic(fmt.Sprintf("cache: stored group %s does not decode: %v", r.id, err))
		}
	}
	return out
}

// group returns r's record as the checkpoint holds it.
func (m *memberRefs) group(r *groupRec) string {
	switch {
	case r.val[0] == formatV8:
		referred := map[string]bool{}
		g, err := decodeGroupRefs(r.id, r.val, r.in, func(_ int, v string) { referred[v] = true })
		if err != nil {
			panic(fmt.Sprintf("cache: stored group %s does not decode: %v", r.id, err))
		}
		return string(appendGroupRefs(nil, g, func(v string) (uint32, bool) {
			if !referred[v] {
				return 0, false
			}
			if off, ok := m.goneOff[v]; ok {
				return offset32(m.goneAt+off, v)
			}
			return m.find(v)
		}))
	case r.val[0] == formatV7 && m.convert:
		return string(appendGroupRefs(nil, r.group(), m.find))
	}
	return r.val
}

// find returns where the file holds v, a user's DN byte for byte.
func (m *memberRefs) find(v string) (uint32, bool) {
	r := m.sn.usersByDN.lookup(m.sn.norm(v)) // nil too when two users have the DN
	if r == nil {
		return 0, false
	}
	val := r.val(m.sn.regions)
	d := decoder{s: val}
	var u User
	d.userHead(&u)
	off, ok := view.Offset(u.DN, val)
	if d.err != nil || !ok || u.DN != v {
		return 0, false
	}
	return offset32(m.userAt[m.sn.indexOf(r)]+off, v)
}

// offset32 is at, where the file holds v, as a reference writes it, if it fits.
func offset32(at int, v string) (uint32, bool) {
	if uint64(at)+uint64(len(v)) > math.MaxUint32 {
		return 0, false
	}
	return uint32(at), true
}

// replaceFile writes the file at path anew with write: into a temporary file beside
// it, then renamed over it, so that a kill at any moment leaves the old file or the new
// one, and a process that has the old one mapped keeps reading it intact. Not synced
// to disk: what the files hold carries a checksum, and one that a power cut garbled is
// not used; the rename needs no more than the kernel's ordering.
func replaceFile(path string, write func(f *os.File) error) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// checkpointer writes checkpoints in the background: kick asks for one of the latest
// snapshot, stop writes a last one if it is due and ends.
type checkpointer struct {
	kick    chan struct{}
	derived chan struct{} // DerivedReady
	stop    chan struct{}
	done    chan struct{}
}

// startCheckpointer starts the goroutine that writes s's checkpoints; written is the
// generation of the one on disk that Open used (0: none).
func (s *Store) startCheckpointer(written uint64) {
	c := &checkpointer{kick: make(chan struct{}, 1), derived: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.ckpt = c
	os.Remove(filepath.Join(s.dir, checkpointName+".tmp")) // a write a crash cut short
	s.recordsMapped.Store(written != 0)
	if written != 0 {
		s.settle()
	}
	go func() {
		defer close(c.done)
		var last time.Time // when the last one was written; zero: write the next at once
		// write writes the checkpoint and the derived files that are due; final is the
		// last write, at Close, when there is no use in moving the records.
		write := func(final bool) {
			sn := s.snap.Load()
			if sn.commit == ([16]byte{}) {
				return
			}
			if sn.gen != written {
				start := time.Now()
				if err := s.writeCheckpoint(sn, s.convertGroups(final)); err != nil {
					s.log.Warn("store: cannot write the checkpoint; the next start reads the store instead", "err", err)
					s.settle() // the records stay on the heap
					return
				}
				written, last = sn.gen, time.Now()
				s.log.Info("store: checkpoint written", "generation", sn.gen, "duration", time.Since(start).Round(time.Millisecond))
				if !s.recordsMapped.Load() && !final {
					s.recordsMapped.Store(s.moveToCheckpoint(sn))
				}
				s.settle()
			}
			s.writeDerived(s.snap.Load(), final)
		}
		// again releases Badger's pages once more a while after a write: what its
		// compactions wrote since, and what the kernel had not yet written back.
		again := time.NewTimer(time.Hour)
		again.Stop()
		defer again.Stop()
		for {
			select {
			case <-c.stop:
				write(true)
				return
			case <-again.C:
				s.releasePages()
				continue
			case <-c.derived:
				s.writeDerived(s.snap.Load(), false)
				continue
			case <-c.kick:
			}
			if wait := time.Until(last.Add(checkpointInterval)); wait > 0 {
				t := time.NewTimer(wait)
			waiting:
				for {
					select {
					case <-c.stop:
						t.Stop()
						write(true)
						return
					case <-c.derived: // not held back with the checkpoint
						s.writeDerived(s.snap.Load(), false)
					case <-t.C:
						break waiting
					}
				}
			}
			write(false)
			s.releasePages()
			again.Reset(releaseAgain)
		}
	}()
}

// moveToCheckpoint replaces the snapshot sn, whose records are in the heap (a store
// that started empty, or from Badger), by the same snapshot read from its checkpoint,
// just written: the records then live in the mapped file's pages, outside the Go heap,
// as after a start from the checkpoint, and the heap's copies go with the last reader
// of sn. Done once per process: the mapping stays for its life, as records of later
// snapshots may be its. It reports whether the records moved.
func (s *Store) moveToCheckpoint(sn *Snapshot) bool {
	// The check and the indexes read every page of the checkpoint while the heap still
	// holds the records and whatever the sync that committed them left: that garbage
	// is handed back first, so that the two do not add up (at 100,000 users the first
	// start's peak came 50 MiB lower with it and the image's read below).
	debug.FreeOSMemory()
	start := time.Now()
	recs, err := s.readCheckpoint(sn.gen, sn.commit)
	if err != nil {
		s.log.Warn("store: cannot read the checkpoint just written", "err", err)
		return false
	}
	next := newSnapshotSorted(sn.gen, nil, recs.userList, recs.regions, recs.groups, s.normDN)
	next.domain, next.schema, next.commit = sn.domain, sn.schema, sn.commit
	if len(recs.sets) > 0 {
		next.entrySets = recs.sets
	}
	for try := 0; !s.snap.CompareAndSwap(sn, next); try++ {
		// A commit came first (a change stream's, as the first sync ends): its snapshot
		// is made again of the checkpoint's records where it kept the ones written, so
		// that the heap's copies of these go all the same.
		if try == moveTries {
			unmapFile(recs.data) // nothing refers to next
			return false
		}
		sn = s.snap.Load()
		next = sn.onRecords(recs, s.normDN)
	}
	m := unsafe.String(unsafe.SliceData(recs.data), len(recs.data))
	s.mapping.Store(&m)
	dropPages(recs.data) // read by the check and the indexes; served pages come back as needed
	s.noteRecordMapping(recs.data)
	s.log.Info("store: records moved to the checkpoint", "generation", sn.gen, "duration", time.Since(start).Round(time.Millisecond))
	return true
}

// moveTries is how many times moveToCheckpoint makes the snapshot of a commit that came
// while it read the checkpoint back before it gives up until the next checkpoint.
const moveTries = 3

// onRecords returns sn with each record that recs hold in the same version (the same
// ID and generation: the same bytes) replaced by recs' one, the others kept.
func (sn *Snapshot) onRecords(recs *checkpointRecords, norm func(string) string) *Snapshot {
	users := make([]userRec, len(sn.userList))
	j := 0
	for i, r := range sn.userList { // both in ID order
		id := r.id(sn.regions)
		for j < len(recs.userList) && recs.userList[j].id(recs.regions) < id {
			j++
		}
		if j < len(recs.userList) && recs.userList[j].id(recs.regions) == id && recs.userList[j].gen(recs.regions) == r.gen(sn.regions) {
			r = recs.userList[j]
		}
		users[i] = r
	}
	groups := make(map[string]*groupRec, len(sn.groups))
	for id, g := range sn.groups {
		if m := recs.groups[id]; m != nil && m.gen == g.gen {
			g = m
		}
		groups[id] = g
	}
	next := newSnapshotSorted(sn.gen, nil, users, sn.regions.merged(recs.regions), groups, norm)
	next.domain, next.schema, next.commit = sn.domain, sn.schema, sn.commit
	if len(sn.entrySets) > 0 {
		next.entrySets = make(map[string]*entrySetRec, len(sn.entrySets))
		for name, e := range sn.entrySets {
			if m := recs.sets[name]; m != nil && m.gen == e.gen {
				e = m
			}
			next.entrySets[name] = e
		}
	}
	return next
}

// convertGroups tells whether the next checkpoint may write the snapshot's group records
// in format 7 in format 8 (memberRefs): when the records move to it, or when nothing
// will have been made of them before (the last checkpoint, at Close, of a store without
// derived files: `ldapproxy sync`'s). final says that it is the last.
func (s *Store) convertGroups(final bool) bool {
	if s.recordsMapped.Load() {
		return false
	}
	if !final {
		return true
	}
	s.derivedMu.Lock()
	defer s.derivedMu.Unlock()
	return len(s.derived) == 0
}

// releaseAgain is how long after a commit Badger's pages are released a second time.
const releaseAgain = 45 * time.Second

// releasePages hands the mapped pages of Badger's files back to the kernel
// (releaseBadgerPages): between commits nothing reads them.
func (s *Store) releasePages() {
	if s.mapDir == "" {
		return
	}
	if n := releaseBadgerPages(s.mapDir); n > 0 {
		s.log.Debug("store: Badger's mapped pages released", "mapped_bytes", n)
	}
}

// settle closes RecordsSettled's channel.
func (s *Store) settle() { s.settleOnce.Do(func() { close(s.settled) }) }

// RecordsSettled returns a channel closed once the committed records are where they
// stay: in the checkpoint's mapped pages once the first commit of a store that started
// without one has been written there and its records moved (moveToCheckpoint); at once
// when they are there already (a start from the checkpoint) or never will be (a store in
// memory); and when a checkpoint could not be written or read back (the records then
// stay on the heap). A reader that makes much of every record (the served tree, whose
// values are slices of them) waits for it, so as not to keep the heap's copies alive
// beside the checkpoint's.
func (s *Store) RecordsSettled() <-chan struct{} { return s.settled }

// DerivedReady tells the store that a derived file whose Write returned
// ErrDerivedNotReady can be written now: the derived files not yet of the current
// generation are written at once, not at the next commit.
func (s *Store) DerivedReady() {
	if s.ckpt != nil {
		signal(s.ckpt.derived)
	}
}

// checkpointDue tells the checkpointer that a generation was committed.
func (s *Store) checkpointDue() {
	if s.ckpt != nil {
		signal(s.ckpt.kick)
	}
}

// signal leaves a token in c, a channel of one, unless one waits there already.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// stopCheckpointer writes the last checkpoint if one is due and stops the writer.
func (s *Store) stopCheckpointer() {
	if s.ckpt == nil {
		return
	}
	close(s.ckpt.stop)
	<-s.ckpt.done
}
