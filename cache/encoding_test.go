package cache

import (
	"testing"
)

// Every prefix and every single-byte corruption of a valid encoding decodes
// to an error or to something, never to a panic; check and decode agree.
func TestDecodeDamaged(t *testing.T) {
	u := testUser(12345, 100, "x")
	if err := normalizeAttributes(u.Attributes); err != nil {
		t.Fatal(err)
	}
	u.Groups = sortedSet(u.Groups)
	val := appendUser(nil, u)
	if _, err := decodeUser("id", string(val)); err != nil {
		t.Fatalf("valid value: %v", err)
	}
	try := func(b []byte) {
		_, derr := decodeUser("id", string(b))
		_, cerr := checkUser(string(b))
		if (derr == nil) != (cerr == nil) {
			t.Fatalf("decodeUser %v, checkUser %v for %x", derr, cerr, b)
		}
		for range userGroups(string(b)) {
		}
	}
	for n := range len(val) {
		if _, err := decodeUser("id", string(val[:n])); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decodes", n, len(val))
		}
		try(val[:n])
	}
	for i := range val {
		for _, c := range []byte{0, 0x7f, 0x80, 0xff} {
			b := append([]byte(nil), val...)
			b[i] = c
			try(b)
		}
	}

	g := testGroup(3, "y")
	gval := appendGroup(nil, g)
	for n := range len(gval) {
		if _, err := decodeGroup("id", string(gval[:n])); err == nil {
			t.Fatalf("a group cut to %d bytes decodes", n)
		}
	}
	if _, err := decodeUser("id", "\x02"); err == nil {
		t.Fatal("unknown format decodes")
	}
}

// The encoding does not depend on map order, so equal objects compare equal.
func TestEncodingDeterministic(t *testing.T) {
	first := string(appendUser(nil, testUser(7, 10, "t")))
	for range 50 {
		if got := string(appendUser(nil, testUser(7, 10, "t"))); got != first {
			t.Fatal("two encodings of the same user differ")
		}
	}
}

func BenchmarkEncodeUser(b *testing.B) {
	u := testUser(12345, 2000, "x")
	var buf []byte
	for b.Loop() {
		buf = appendUser(buf[:0], u)
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

func BenchmarkDecodeUser(b *testing.B) {
	val := string(appendUser(nil, testUser(12345, 2000, "x")))
	for b.Loop() {
		if _, err := decodeUser("id", val); err != nil {
			b.Fatal(err)
		}
	}
}
