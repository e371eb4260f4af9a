package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Entry sets are the further objects sync.extra mirrors (sudo rules, automount maps,
// netgroups, service accounts, ...): entries kept as the upstream has them, by set. A
// set is small (hundreds of entries) and read whole, so it is stored as one record,
// keyed by its name like an object (prefixEntrySets + name + generation), and written
// and deleted with the generation of the sync that read it: a set changes atomically
// with the users and groups of the same sync.

// prefixEntrySets is the key prefix of entry sets: + name + 0x00 + generation.
const prefixEntrySets = "x/"

// entrySetFormat is the first byte of an encoded entry set:
//
//	0x01 count (DN upstream)...   upstream as in an object (see appendUpstream)
const entrySetFormat = 1

// Entry is one entry of an entry set.
type Entry struct {
	DN       string
	Upstream []Attribute
}

// entrySetRec is an entry set as the store holds it.
type entrySetRec struct {
	name string
	val  string
	gen  uint64
}

func appendEntrySet(b []byte, entries []Entry) []byte {
	b = append(b, entrySetFormat)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = appendString(b, e.DN)
		b = appendUpstream(b, e.Upstream)
	}
	return b
}

func decodeEntrySet(val string) ([]Entry, error) {
	d := decoder{s: val}
	if v := d.readByte(); d.err == nil && v != entrySetFormat {
		return nil, fmt.Errorf("unknown entry set format %d", v)
	}
	n := d.count()
	out := make([]Entry, 0, n)
	for range n {
		e := Entry{DN: d.str()}
		e.Upstream = d.upstream(true, formatV3)
		out = append(out, e)
	}
	return out, d.finish()
}

// SetEntrySets records the entry sets as this run read them, by name: sets whose
// entries differ from the stored ones are written, sets not in sets are deleted (a set
// no longer configured). A run that does not call it keeps the stored sets. The store
// takes sets over.
func (w *Sync) SetEntrySets(sets map[string][]Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(true, ""); err != nil {
		return err
	}
	for name, entries := range sets {
		if name == "" {
			return errors.New("entry set: empty name")
		}
		for _, e := range entries {
			if e.DN == "" {
				return fmt.Errorf("entry set %s: an entry without a DN", name)
			}
		}
	}
	w.entrySets = map[string]*entrySetRec{}
	for name, entries := range sets {
		val := string(appendEntrySet(nil, entries))
		if cur := w.base.entrySets[name]; cur != nil && cur.val == val {
			w.entrySets[name] = cur
			continue
		}
		r := &entrySetRec{name: name, val: val, gen: w.gen}
		if err := w.set(objectKey(prefixEntrySets, name, w.gen), []byte(val)); err != nil {
			return err
		}
		if cur := w.base.entrySets[name]; cur != nil {
			w.obsolete = append(w.obsolete, objectKey(prefixEntrySets, name, cur.gen))
		}
		w.entrySets[name] = r
		w.entrySetWrites++
	}
	for name, cur := range w.base.entrySets {
		if _, ok := sets[name]; ok {
			continue
		}
		marker := objectKey(prefixEntrySets, name, w.gen)
		if err := w.set(marker, nil); err != nil {
			return err
		}
		w.obsolete = append(w.obsolete, objectKey(prefixEntrySets, name, cur.gen))
		w.markers = append(w.markers, marker)
		w.entrySetWrites++
	}
	return nil
}

// EntrySetNames returns the names of the snapshot's entry sets, sorted.
func (sn *Snapshot) EntrySetNames() []string {
	return slices.Sorted(maps.Keys(sn.entrySets))
}

// EntrySet returns the entries of the set name, as read; false when there is no such
// set. The entries are a fresh copy the caller may keep.
func (sn *Snapshot) EntrySet(name string) ([]Entry, bool) {
	r := sn.entrySets[name]
	if r == nil {
		return nil, false
	}
	entries, err := decodeEntrySet(r.val)
	if err != nil {
		panic(fmt.Sprintf("cache: stored entry set %s does not decode: %v", name, err))
	}
	return entries, true
}

// changedEntrySets returns the names of the sets that differ between prev and sn.
func (sn *Snapshot) changedEntrySets(prev *Snapshot) []string {
	var out []string
	for name, r := range sn.entrySets {
		if p := prev.entrySets[name]; p != r && (p == nil || p.val != r.val) {
			out = append(out, name)
		}
	}
	for name := range prev.entrySets {
		if _, ok := sn.entrySets[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
