package cache

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Derived files: what a caller computes from a committed snapshot and keeps beside the
// store, so that a start on the same generation reads it instead of computing it again
// (the proxy's served tree). The store writes them with its checkpoint, by the same
// rules (after the first commit, then at most every checkpointInterval, and at Close),
// each as a header naming the generation and commit it was made from, then what the
// caller wrote; ReadDerived gives it back only for that very commit.
const derivedMagic = "LPXDERV1"

// derivedHeader is the length of a derived file's header: magic, generation, commit ID.
const derivedHeader = len(derivedMagic) + 8 + 16

// ErrDerivedNotReady, returned by a derived file's write function, says that it cannot
// write for that snapshot yet (it has not caught up with it): nothing is written, and
// the next commit's checkpoint tries again.
var ErrDerivedNotReady = errors.New("derived file not ready for this snapshot")

// DerivedFile is a derived file and what makes it.
type DerivedFile struct {
	// Name is a plain file name, beside the store's own files.
	Name string
	// Write writes the file's contents for sn. It runs on the store's checkpoint
	// goroutine, while searches and syncs go on, and must write only what sn
	// determines; what it writes must carry its own check (a checksum): the file is not
	// synced to disk. ErrDerivedNotReady skips this snapshot.
	Write func(w io.Writer, sn *Snapshot) error
	// Written, when set, is called once the file written for sn is in place, so that
	// ReadDerived reads it; not for the last write, at Close.
	Written func(sn *Snapshot)
}

// AddDerived registers a derived file. used says that the caller read the file
// (ReadDerived) and found it good: unless that was for the latest commit, the store
// writes the file at once; then with each checkpoint. Ignored for a store in memory or
// closed.
func (s *Store) AddDerived(f DerivedFile, used bool) {
	if s.ckpt == nil {
		return
	}
	// Close waits for the writes begun here: none begins once it has begun.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	os.Remove(filepath.Join(s.dir, f.Name+".tmp")) // a write a crash cut short
	s.derivedMu.Lock()
	s.derived = append(s.derived, &f)
	if !used {
		delete(s.derivedGen, f.Name)
	}
	current := s.derivedGen[f.Name] == s.snap.Load().gen
	s.derivedMu.Unlock()
	if !current {
		// Not with the checkpoint, which may be minutes away.
		s.derivedWriters.Add(1)
		go func() {
			defer s.derivedWriters.Done()
			s.writeDerived(s.snap.Load(), false)
		}()
	}
}

// ReadDerived returns the contents of the derived file name if it was written for sn's
// commit, else nil. The bytes are mapped read-only. The caller calls done once it has
// checked them: done(false) unmaps them, for a caller that does not use them after all
// (nothing may refer to them then); done(true) keeps them mapped for the life of the
// process, so what is made of them may refer to them for good, and lets the kernel take
// back the pages the check read: they are read back from the file as they are needed.
func (s *Store) ReadDerived(name string, sn *Snapshot) (data []byte, done func(used bool)) {
	none := func(bool) {}
	if s.dir == "" || sn.commit == ([16]byte{}) {
		return nil, none
	}
	m, err := mapFile(filepath.Join(s.dir, name))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("store: cannot read a derived file", "file", name, "err", err)
		}
		return nil, none
	}
	if len(m) < derivedHeader || string(m[:len(derivedMagic)]) != derivedMagic ||
		binary.LittleEndian.Uint64(m[len(derivedMagic):]) != sn.gen ||
		[16]byte(m[len(derivedMagic)+8:derivedHeader]) != sn.commit {
		unmapFile(m)
		return nil, none
	}
	s.derivedMu.Lock()
	s.derivedGen[name] = sn.gen // until AddDerived hears that it was not used
	s.derivedMu.Unlock()
	return m[derivedHeader:], func(used bool) {
		if used {
			dropPages(m)
		} else {
			unmapFile(m)
		}
	}
}

// writeDerived writes every derived file that is not of sn's generation yet, one
// caller at a time; final is the last write, at Close, which tells no Written.
func (s *Store) writeDerived(sn *Snapshot, final bool) {
	s.derivedWriting.Lock()
	defer s.derivedWriting.Unlock()
	if sn.commit == ([16]byte{}) {
		return
	}
	s.derivedMu.Lock()
	var due []*DerivedFile
	for _, d := range s.derived {
		if s.derivedGen[d.Name] != sn.gen {
			due = append(due, d)
		}
	}
	s.derivedMu.Unlock()
	for _, d := range due {
		start := time.Now()
		switch err := s.writeDerivedFile(d, sn); {
		case errors.Is(err, ErrDerivedNotReady):
		case err != nil:
			s.log.Warn("store: cannot write a derived file; the next start computes it instead", "file", d.Name, "err", err)
		default:
			s.derivedMu.Lock()
			s.derivedGen[d.Name] = sn.gen
			s.derivedMu.Unlock()
			s.log.Info("store: derived file written", "file", d.Name, "generation", sn.gen,
				"duration", time.Since(start).Round(time.Millisecond))
			if d.Written != nil && !final {
				d.Written(sn)
			}
		}
	}
}

// writeDerivedFile writes d for sn, replacing the file on disk (a new file renamed over
// it: the old one stays intact for whoever has it mapped).
func (s *Store) writeDerivedFile(d *DerivedFile, sn *Snapshot) error {
	return replaceFile(filepath.Join(s.dir, d.Name), func(f *os.File) error {
		w := bufio.NewWriterSize(f, 1<<20)
		w.WriteString(derivedMagic)
		w.Write(binary.LittleEndian.AppendUint64(nil, sn.gen))
		w.Write(sn.commit[:])
		if err := d.Write(w, sn); err != nil {
			return err
		}
		return w.Flush()
	})
}
