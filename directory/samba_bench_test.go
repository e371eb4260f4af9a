package directory

import (
	"log/slog"
	"testing"
)

// BenchmarkSambaSchema measures, with a Samba DC's schema and the entries a proxy
// serves of it (sambaADFile: 1,473 attribute types, 264 classes, 57 entries), what
// building the served tree costs: parsing the upstream's subschema (once per schema),
// building the tree with it (every build), making the subschema subentry (the first
// cn=Subschema search of a schema), and writing and reading the tree's image (a
// checkpoint, a start).
//
//	go test -run '^$' -bench SambaSchema -count 5 ./directory/
func BenchmarkSambaSchema(b *testing.B) {
	ad := loadSambaAD(b)
	log := slog.New(slog.DiscardHandler)
	roots := []string{ad.BaseDN}
	entries := ad.entries(b)
	adOpts := []TreeOption{WithActiveDirectory(ADOptions{})}
	parsed, err := ParseSchema(ad.descriptions(), log)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseSchema(ad.descriptions(), log); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := NewTreeSchema(parsed, roots, entries, adOpts...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sch, err := ParseSchema(ad.descriptions(), log)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := NewTreeSchema(sch, roots, entries, adOpts...); err != nil {
				b.Fatal(err)
			}
		}
	})
	tree, err := NewTreeSchema(parsed, roots, entries, adOpts...)
	if err != nil {
		b.Fatal(err)
	}
	data := image(b, tree, "k", nil)
	b.Run("image-write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := tree.WriteImage(discard{}, []byte("k"), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("image-read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ReadTree(parsed, roots, data, []byte("k"), nil, adOpts...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subschema", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sch, err := ParseSchema(ad.descriptions(), log)
			if err != nil {
				b.Fatal(err)
			}
			sch.entry()
		}
	})
}
