package directory

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// imageSections parses an image (the layout of image.go) and returns the bytes of each
// of its parts, so that the image's size can be told apart: the entries' numbers, DNs,
// meta and outside values, and per index its keys, its posting lists and the padding
// before them. Every byte of the image is counted once.
func imageSections(t testing.TB, data []byte) (map[string]int, error) {
	r := imageReader{data: data[:len(data)-4], off: len(imageMagic)}
	if !bytes.HasPrefix(data, imageMagic) {
		return nil, fmt.Errorf("not an image of format %d", imageFormat)
	}
	sec := map[string]int{"crc": 4}
	mark := 0
	add := func(name string) {
		sec[name] += r.off - mark
		mark = r.off
	}
	add("header")
	skipImageHeader(&r)
	count := r.count()
	add("header")
	for range count {
		for range 4 { // ID, parent, depth, children
			r.uvar()
		}
		if r.uvar() > 0 { // source
			r.uvar()
		}
		add("entries: numbers")
		if x := r.uvar(); x&1 == 1 {
			r.uvar()
			add("entries: DN as a place in the source")
		} else {
			r.strN(x >> 1)
			add("entries: DN bytes")
		}
		if n := r.uvar(); n > 0 {
			r.strN(n - 1)
			add("entries: canonical DN bytes")
		} else {
			add("entries: numbers")
		}
		r.str()
		add("entries: meta")
		n := r.count()
		add("entries: numbers")
		for range n {
			switch x := r.uvar(); x & 3 {
			case extBytes:
				r.strN(x >> 2)
				add("entries: outside values' bytes")
			case extEarlier:
				r.uvar()
				add("entries: outside values as earlier bytes")
			default:
				r.uvar()
				r.uvar()
				add("entries: outside values as places in sources")
			}
		}
	}
	if r.uvar() == 1 {
		add("header")
		r.off = (r.off+3)&^3 + 4*count
		add("the entries' IDs (for runs)")
	}
	n := r.count()
	add("header")
	for range n {
		name := r.str()
		keys := r.count()
		add("header")
		for range keys {
			if x := r.uvar(); x&3 == keyBytes {
				r.strN(x >> 2)
				add("index " + name + ": keys' bytes")
			} else {
				r.uvar()
				r.uvar()
				add("index " + name + ": keys as places")
			}
			switch l := r.count(); l {
			case listKeyEntry:
				add("index " + name + ": lists of the key's entry")
			case listOne:
				r.uvar()
				add("index " + name + ": lists of one entry")
			case listRun:
				r.uvar()
				r.uvar()
				add("index " + name + ": runs")
			default:
				add("index " + name + ": list lengths")
				r.off = (r.off + 3) &^ 3
				add("index " + name + ": padding")
				r.off += 4 * (l - listIDs + 2)
				add("index " + name + ": longer lists")
			}
		}
	}
	if r.err != nil || r.off != len(r.data) {
		return nil, fmt.Errorf("image not parsed to its end: %v at %d of %d", r.err, r.off, len(r.data))
	}
	total := 0
	for _, n := range sec {
		total += n
	}
	if total != len(data) {
		t.Fatalf("sections add up to %d bytes, the image has %d", total, len(data))
	}
	return sec, nil
}

func printSections(t testing.TB, sec map[string]int, entries int) {
	names := make([]string, 0, len(sec))
	total := 0
	for k, n := range sec {
		names = append(names, k)
		total += n
	}
	slices.SortFunc(names, func(a, b string) int { return sec[b] - sec[a] })
	var b strings.Builder
	fmt.Fprintf(&b, "%d bytes, %d entries (%.1f bytes an entry)\n", total, entries, float64(total)/float64(entries))
	for _, k := range names {
		fmt.Fprintf(&b, "  %10d  %5.1f%%  %6.1f/entry  %s\n", sec[k], 100*float64(sec[k])/float64(total), float64(sec[k])/float64(entries), k)
	}
	t.Log(b.String())
}

// TestImageSections accounts for every byte of the image of 10,000 users (benchEntries)
// by part, and with -v prints the parts of the image of 100,000. IMAGE=FILE prints
// those of an image file instead (the proxy's served.img: the header of a derived file
// is skipped).
func TestImageSections(t *testing.T) {
	if f := os.Getenv("IMAGE"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, []byte("LPXTREE")); i > 0 {
			data = data[i:]
		}
		sec, err := imageSections(t, data)
		if err != nil {
			t.Fatal(err)
		}
		printSections(t, sec, entriesOf(data))
		return
	}
	users := 10_000 // the figures printed (-v) are of 100,000
	if testing.Verbose() {
		users = 100_000
	}
	_, data, _ := sourcedImage(t, users)
	sec, err := imageSections(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if sec["entries: meta"] == 0 || sec["index uid: keys as places"] == 0 || sec["index objectClass: runs"] == 0 {
		t.Errorf("parts missing: %v", sec)
	}
	// A key an entry's source holds (a uid) is a place there, and its list of that one
	// entry a byte.
	for _, k := range []string{"index uid: keys' bytes", "index uid: lists of one entry", "index uid: list lengths"} {
		if sec[k] != 0 {
			t.Errorf("%s: %d bytes", k, sec[k])
		}
	}
	printSections(t, sec, entriesOf(data))
}

// entriesOf returns the number of entries an image holds.
func entriesOf(data []byte) int {
	r := imageReader{data: data[:len(data)-4], off: len(imageMagic)}
	skipImageHeader(&r)
	return r.count()
}

// skipImageHeader reads past what an image holds before its entries: key, line,
// version, schema, type table.
func skipImageHeader(r *imageReader) {
	r.bytes()
	r.fixed64()
	r.fixed64()
	r.uvar()
	r.strings()
	if r.uvar() == 1 {
		r.str()
	}
	r.strings()
	r.strings()
	for n := r.uvar(); n > 0 && r.err == nil; n-- {
		r.str()
		r.uvar()
	}
	r.strings()
	r.strings()
	r.uvar()
}
