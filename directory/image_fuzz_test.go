package directory

import (
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"strings"
	"testing"
	"unsafe"
)

// FuzzReadTree: whatever an image's bytes (its checksum made right, so that the
// parser itself is reached), ReadTree returns a tree or an error and never panics, and
// the DNs, outside values, index keys and constants (class names) of a tree it returns
// lie within the image or the sources, its constants each once and within their bound;
// and a tree it returns answers searches (every scope, the filter types, attribute
// lists, paged results), compares and lookups without panicking (fuzzSearches). The
// tree is read as the proxy reads it: most sources slices of a base
// (WithSourceBases, the store's mapped checkpoint), the others the heap's. The seeds
// are images the package writes: of the test directory with and without sources, after
// batches, and of users whose posting lists are runs; the corpus under
// testdata/fuzz/FuzzReadTree keeps what earlier runs found interesting.
func FuzzReadTree(f *testing.F) {
	tree, _, sources := sourcedTree(f)
	users, usersSources := sourcedUsers(f, 60)
	// One list of sources for every seed: an image names its sources by their place in
	// it. The first ones are slices of one base, as the store's checkpoint records are.
	base := strings.Join(sources, "")
	srcs := make([]string, 0, len(sources)+len(usersSources))
	for off, s := 0, sources; len(s) > 0; off, s = off+len(s[0]), s[1:] {
		srcs = append(srcs, base[off:off+len(s[0])])
	}
	srcs = append(srcs, usersSources...)
	opts := []TreeOption{WithSourceBases(func() []string { return []string{base} })}
	searches := imageSearches(f)
	for _, seed := range [][]byte{image(f, tree, "k", srcs), image(f, testTree(f), "k", nil), image(f, users, "k", srcs)} {
		read, err := ReadTree(nil, []string{testBase}, seed, []byte("k"), srcs, opts...)
		if err != nil {
			f.Fatalf("a seed is not read: %v", err)
		}
		searches(read)
		f.Add(seed[len(imageMagic) : len(seed)-4])
	}
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
		read, err := ReadTree(nil, []string{testBase}, d, []byte("k"), srcs, opts...)
		if err != nil {
			return
		}
		searches(read)
		if uintptr(unsafe.Pointer(&d[0]))%4 != 0 {
			return // ReadTree read an aligned copy
		}
		all := unsafe.String(&d[0], len(d))
		inImage := func(s string) bool {
			_, ok := within(s, all)
			return ok || s == ""
		}
		inSources := func(s string) bool {
			for _, src := range srcs {
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

// sourcedUsers is a tree of users in groups whose values are slices of their sources:
// most of its posting lists are runs of the entries' IDs (listRun).
func sourcedUsers(tb testing.TB, users int) (*Tree, []string) {
	tb.Helper()
	entries := benchEntries(users)
	sources := make([]string, len(entries))
	for i, e := range entries {
		entries[i] = withSource(e)
		sources[i] = entries[i].Source
	}
	tree, err := NewTree([]string{testBase}, entries)
	if err != nil {
		tb.Fatal(err)
	}
	return tree, sources
}
