package directory

import (
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"testing"
	"unsafe"
)

// FuzzReadTree: whatever an image's bytes (its checksum made right, so that the
// parser itself is reached), ReadTree returns a tree or an error and never panics, and
// the DNs, outside values, index keys and constants (class names) of a tree it returns
// lie within the image or the sources, its constants each once and within their bound.
// The seeds are images of the test directory, with and without sources; the corpus
// under testdata/fuzz/FuzzReadTree keeps what earlier runs found interesting.
func FuzzReadTree(f *testing.F) {
	tree, _, sources := sourcedTree(f)
	f.Add(image(f, tree, "k", sources)[len(imageMagic):])
	f.Add(image(f, testTree(f), "k", nil)[len(imageMagic):])
	// The built-in schema logs each type it does not describe through the default
	// logger: a fuzzed image names them by the thousand, and a fuzzing worker's log
	// lines fill a pipe that nobody reads, which stops the worker.
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, rest []byte) {
		// The magic stays: without it nothing is parsed.
		d := append(append(append([]byte(nil), imageMagic...), rest...), 0, 0, 0, 0)
		body := d[:len(d)-4]
		binary.LittleEndian.PutUint32(d[len(body):], crc32.Checksum(body, castagnoli))
		read, err := ReadTree(nil, []string{testBase}, d, []byte("k"), sources)
		if err != nil {
			return
		}
		if uintptr(unsafe.Pointer(&d[0]))%4 != 0 {
			return // ReadTree read an aligned copy
		}
		all := unsafe.String(&d[0], len(d))
		inImage := func(s string) bool {
			_, ok := within(s, all)
			return ok || s == ""
		}
		inSources := func(s string) bool {
			for _, src := range sources {
				if _, ok := within(s, src); ok {
					return true
				}
			}
			return false
		}
		for id := range read.entries.next {
			e := read.entry(id)
			if e == nil {
				continue
			}
			_, inSrc := within(e.dn(), e.src())
			if !inImage(e.dn()) && !inSrc || !inImage(e.meta()) {
				t.Fatalf("entry %d: DN or meta outside the image and its source", id)
			}
			if e.canon() != e.dn() && !inImage(e.canon()) {
				t.Fatalf("entry %d: canonical DN outside the image", id)
			}
			for _, v := range e.extList() {
				if !inImage(v) && !inSources(v) {
					t.Fatalf("entry %d: an outside value outside the image and the sources", id)
				}
			}
		}
		seen := map[string]bool{}
		for i, c := range read.consts {
			if !inImage(c) || seen[c] || i >= maxConsts {
				t.Fatalf("constant %d: outside the image, a duplicate or past the bound", i)
			}
			seen[c] = true
		}
		if tt := read.typeTable; len(tt.consts) != len(read.consts) || len(tt.constIDs) != len(read.consts) {
			t.Fatalf("the type table numbers %d constants (%d IDs), the tree %d", len(tt.consts), len(tt.constIDs), len(read.consts))
		}
		for at, ix := range read.index {
			ix.base.each(func(k string, l []entryID) {
				for _, id := range l {
					if id >= read.entries.next {
						t.Fatalf("index %s: ID %d past the tree's next", at.name, id)
					}
				}
				if !inImage(k) && !inSources(k) {
					t.Fatalf("index %s: a key outside the image and the sources", at.name)
				}
			})
		}
	})
}
