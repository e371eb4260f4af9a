package cache

import (
	"reflect"
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

// An object's upstream attributes come back as they went in: names as spelled, order,
// and binary values byte for byte; one without them keeps its earlier format.
func TestUpstreamAttributesRoundTrip(t *testing.T) {
	guid := string([]byte{0x00, 0xff, 0x10, 0x80, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xfe})
	up := []Attribute{
		{Name: "objectClass", Values: []string{"top", "person", "organizationalPerson", "user"}},
		{Name: "objectGUID", Values: []string{guid}},
		{Name: "cn", Values: []string{"Alice Smith"}},
		{Name: "userCertificate;binary", Values: []string{"\x30\x82\x00", ""}},
	}
	u := testUser(1, 2, "r")
	u.Upstream = up
	val := appendUser(nil, u)
	if val[0] != formatV3 {
		t.Fatalf("format %d, want %d", val[0], formatV3)
	}
	got, err := decodeUser("id", string(val))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Upstream, up) {
		t.Fatalf("upstream attributes:\n got %q\nwant %q", got.Upstream, up)
	}
	if got.Username != u.Username || !reflect.DeepEqual(got.Groups, u.Groups) {
		t.Fatal("other fields lost")
	}
	if _, err := checkUser(string(val)); err != nil {
		t.Fatal(err)
	}
	for n := range len(val) {
		if _, err := decodeUser("id", string(val[:n])); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decodes", n, len(val))
		}
	}

	g := testGroup(3, "y")
	g.Upstream = up[:2]
	gval := appendGroup(nil, g)
	gg, err := decodeGroup("id", string(gval))
	if err != nil || !reflect.DeepEqual(gg.Upstream, up[:2]) {
		t.Fatalf("group: %v %q", err, gg.Upstream)
	}
	if _, err := checkGroup(string(gval)); err != nil {
		t.Fatal(err)
	}

	plain := testUser(1, 2, "r")
	if b := appendUser(nil, plain); b[0] == formatV3 {
		t.Fatal("a user without upstream attributes changed format")
	}
	if b := appendGroup(nil, testGroup(3, "y")); b[0] != formatV1 {
		t.Fatal("a group without upstream attributes changed format")
	}
}
