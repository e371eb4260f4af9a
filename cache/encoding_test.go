package cache

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/view"
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
	if val[0] != formatV7 {
		t.Fatalf("format %d, want %d", val[0], formatV7)
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
	if _, err := checkGroup(string(gval), ""); err != nil {
		t.Fatal(err)
	}

	plain := testUser(1, 2, "r")
	if b := appendUser(nil, plain); b[0] >= formatV3 {
		t.Fatal("a user without upstream attributes changed format")
	}
	if b := appendGroup(nil, testGroup(3, "y")); b[0] != formatV1 {
		t.Fatal("a group without upstream attributes changed format")
	}
}

// Format 4 writes the upstream attributes' names that attrNames has, as spelled, as
// numbers, and the others (another case, options, names it does not list) as they are;
// each comes back as it went in. Format 3, which wrote every name out, still reads.
func TestUpstreamNamesNumbered(t *testing.T) {
	up := []Attribute{
		{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
		{Name: "objectclass", Values: []string{"x"}},                // another spelling
		{Name: "cn;lang-de", Values: []string{"Alice"}},             // options
		{Name: "x-custom-attribute", Values: []string{"1", "2"}},    // not listed
		{Name: attrNames[len(attrNames)-1], Values: []string{"/h"}}, // the last number
		{Name: "entryUUID", Values: []string{"a85ad1ba-85b8-1041-9179-a7df886d1383"}},
	}
	u := testUser(1, 2, "r")
	u.Upstream = up
	if err := prepareUser(u); err != nil {
		t.Fatal(err)
	}
	defer func(f byte) { upstreamFormat = f }(upstreamFormat)
	upstreamFormat = formatV4
	v4 := string(appendUser(nil, u))
	upstreamFormat = formatV3
	v3 := string(appendUser(nil, u))
	upstreamFormat = formatV4
	if v4[0] != formatV4 || v3[0] != formatV3 {
		t.Fatalf("formats %d and %d", v4[0], v3[0])
	}
	// A listed name costs its number instead of its length and bytes; one not listed,
	// a byte more.
	want := len(v3) + 3
	for _, name := range []string{"objectClass", attrNames[len(attrNames)-1], "entryUUID"} {
		want += len(binary.AppendUvarint(nil, attrNumbers[name])) - len(appendString(nil, name))
	}
	if len(v4) != want {
		t.Fatalf("format 4 takes %d bytes, format 3 %d: want %d", len(v4), len(v3), want)
	}
	for _, val := range []string{v3, v4} {
		got, err := decodeUser("id", val)
		if err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
		if !reflect.DeepEqual(got.Upstream, up) {
			t.Fatalf("format %d: upstream attributes\n got %q\nwant %q", val[0], got.Upstream, up)
		}
		if _, err := checkUser(val); err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
	}
	g := testGroup(3, "y")
	g.Upstream = up
	gval := string(appendGroup(nil, g))
	if gg, err := decodeGroup("id", gval); err != nil || gval[0] != formatV4 || !reflect.DeepEqual(gg.Upstream, up) {
		t.Fatalf("group: format %d, %v, %q", gval[0], err, gg.Upstream)
	}
	// A number past the list (a record of a version with a longer one) is refused.
	bad := []byte(string(appendUser(nil, &User{ID: "x", DN: "uid=a", Upstream: []Attribute{{Name: "uid", Values: []string{"a"}}}})))
	i := len(bad) - len("a") - 3 // count of attributes, the name's number, the count of values, the value
	if bad[i] != byte(attrNumbers["uid"]) {
		t.Fatalf("layout: %x", bad)
	}
	bad[i] = byte(len(attrNames) + 1)
	if _, err := decodeUser("id", string(bad)); err == nil {
		t.Fatal("an unknown attribute number decodes")
	}
	if _, err := checkUser(string(bad)); err == nil {
		t.Fatal("checkUser accepts an unknown attribute number")
	}
}

// Format 5 writes the fields before an object's groups that its upstream attributes
// hold (a user's name from uid, mail, the display name …) as their place among those,
// once instead of twice; they decode the same as from format 4, which still reads. A
// place beyond the value, or before the upstream attributes, is refused.
func TestHeadFieldsInUpstream(t *testing.T) {
	u := &User{ID: "a85ad1ba", DN: "uid=alice,ou=people,dc=example,dc=org", Username: "alice", Name: "Alice Smith",
		Email: "alice@example.org", IsActive: true, PasswordMarker: "20261206101010Z", Groups: []string{"g1"},
		Upstream: []Attribute{
			{Name: "uid", Values: []string{"alice"}},
			{Name: "displayName", Values: []string{"Alice Smith"}},
			{Name: "mail", Values: []string{"alice@example.org"}},
			{Name: "entryUUID", Values: []string{"a85ad1ba"}},
		}}
	defer func(f byte) { upstreamFormat = f }(upstreamFormat)
	upstreamFormat = formatV4
	v4 := string(appendUser(nil, u))
	upstreamFormat = formatV5
	v5 := string(appendUser(nil, u))
	if v5[0] != formatV5 {
		t.Fatalf("format %d", v5[0])
	}
	// Each of the three fields: its bytes and length (1 byte) become two small numbers.
	if want := len(v4) - len("alice") - len("Alice Smith") - len("alice@example.org") + 3; len(v5) != want {
		t.Fatalf("format 5 takes %d bytes, format 4 %d: want %d", len(v5), len(v4), want)
	}
	for _, val := range []string{v4, v5} {
		got, err := decodeUser(u.ID, val)
		if err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("format %d:\n got %+v\nwant %+v", val[0], got, u)
		}
		if h, err := checkUser(val); err != nil || h.username != "alice" || h.email != u.Email || h.dn != u.DN {
			t.Fatalf("format %d: %v %+v", val[0], err, h)
		}
	}
	g := &Group{ID: "g1", DN: "cn=staff,ou=groups,dc=example,dc=org", Name: "staff",
		Upstream: []Attribute{{Name: "cn", Values: []string{"staff"}}}}
	gval := string(appendGroup(nil, g))
	if gg, err := decodeGroup(g.ID, gval); err != nil || gval[0] != upstreamFormat || !reflect.DeepEqual(gg, g) {
		t.Fatalf("group: format %d, %v, %+v", gval[0], err, gg)
	}
	if _, err := checkGroup(gval, ""); err != nil {
		t.Fatal(err)
	}
	// The user name's place: the second field, after the DN written out.
	i := 1 + 1 + len(u.DN)
	if v5[i] != byte(len("alice")<<1|1) {
		t.Fatalf("layout: %q", v5[:i+2])
	}
	if len(v5)-i-2 >= 0x80 {
		t.Fatalf("the test wants a value of fewer than %d bytes", i+2+0x80)
	}
	// Beyond the value; reaching back before the field; shorter than the field; in the
	// bytes after the field that are not the upstream attributes (the next field's).
	for _, back := range []byte{0x7f, byte(len(v5) - i - 2 + 1), 2, byte(len(v5) - i - 2)} {
		bad := []byte(v5)
		bad[i+1] = back
		if _, err := decodeUser(u.ID, string(bad)); err == nil {
			t.Fatalf("a user name placed %d bytes before the end decodes", back)
		}
		if _, err := checkUser(string(bad)); err == nil {
			t.Fatalf("a user name placed %d bytes before the end passes the check", back)
		}
	}
}

// Format 6 writes an upstream value that the upstream attributes before it hold as its
// place there when that is shorter; values decode the same as from format 5, which
// still reads. A place that is not before the value is refused.
func TestSharedUpstreamValues(t *testing.T) {
	admin := "cn=admin,dc=example,dc=org"
	u := &User{ID: "a85ad1ba", DN: "uid=alice,ou=people,dc=example,dc=org", Username: "alice", IsActive: true,
		Upstream: []Attribute{
			{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
			{Name: "cn", Values: []string{"Alice Smith"}},
			{Name: "gecos", Values: []string{"Alice Smith"}},                   // as cn
			{Name: "uid", Values: []string{"alice", "al"}},                     // "al" is in "alice", but 2 bytes: kept
			{Name: "structuralObjectClass", Values: []string{"inetOrgPerson"}}, // as objectClass
			{Name: "creatorsName", Values: []string{admin}},
			{Name: "modifiersName", Values: []string{admin}}, // as creatorsName
		}}
	defer func(f byte) { upstreamFormat = f }(upstreamFormat)
	upstreamFormat = formatV5
	v5 := string(appendUser(nil, u))
	upstreamFormat = formatV6
	v6 := string(appendUser(nil, u))
	if v6[0] != formatV6 {
		t.Fatalf("format %d", v6[0])
	}
	// Three values of 11, 13 and 26 bytes: each 2 numbers of a byte instead of 1 + bytes.
	if want := len(v5) - (11 - 1) - (13 - 1) - (26 - 1); len(v6) != want {
		t.Fatalf("format 6 takes %d bytes, format 5 %d: want %d", len(v6), len(v5), want)
	}
	for _, val := range []string{v5, v6} {
		got, err := decodeUser(u.ID, val)
		if err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
		if !reflect.DeepEqual(got.Upstream, u.Upstream) || got.Username != "alice" {
			t.Fatalf("format %d:\n got %+v\nwant %+v", val[0], got, u)
		}
		if _, err := checkUser(val); err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
	}
	// modifiersName, the last value: a place and length; make it reach past its own start.
	i := len(v6) - 2
	if v6[i] != byte(len(admin)<<1|1) {
		t.Fatalf("layout: %q", v6[i:])
	}
	base := len(v6) - len(appendUpstreamIn(nil, formatV6, u.Upstream))
	limit := i - base // the value's own start in the upstream attributes
	for _, off := range []int{limit - len(admin) + 1, limit, 0x7f} {
		bad := []byte(v6)
		bad[i+1] = byte(off)
		if _, err := decodeUser(u.ID, string(bad)); err == nil {
			t.Fatalf("a value placed at %d decodes", off)
		}
		if _, err := checkUser(string(bad)); err == nil {
			t.Fatalf("a value placed at %d passes the check", off)
		}
	}
}

// Format 6's writer looks for a value in the first shareWindow bytes of the upstream
// attributes only: a value that they hold is written as its place, one that only later
// bytes hold is written out, and both decode. So a group of many members encodes in
// time linear in its size (30,000 members took 14 s when every value was looked for in
// everything written before it).
func TestSharedUpstreamValuesWindow(t *testing.T) {
	admin := "cn=admin,dc=example,dc=org"
	filler := make([]string, 200)
	for i := range filler {
		filler[i] = fmt.Sprintf("a value of its own, number %06d", i)
	}
	u := &User{ID: "a85ad1ba", DN: "uid=alice,ou=people,dc=example,dc=org", Username: "alice", IsActive: true,
		Upstream: []Attribute{
			{Name: "cn", Values: []string{"Alice Smith"}},
			{Name: "description", Values: filler}, // past the window
			{Name: "gecos", Values: []string{"Alice Smith"}},
			{Name: "creatorsName", Values: []string{admin}},
			{Name: "modifiersName", Values: []string{admin}},
		}}
	val := string(appendUser(nil, u))
	if val[0] != formatV7 {
		t.Fatalf("format %d", val[0])
	}
	got, err := decodeUser(u.ID, val)
	if err != nil || !reflect.DeepEqual(got.Upstream, u.Upstream) {
		t.Fatalf("%v: %+v", err, got)
	}
	if _, err := checkUser(val); err != nil {
		t.Fatal(err)
	}
	// gecos is cn's place (near the start); modifiersName is creatorsName written again.
	if n := strings.Count(val, "Alice Smith"); n != 1 {
		t.Fatalf("cn's value written %d times", n)
	}
	if n := strings.Count(val, admin); n != 2 {
		t.Fatalf("creatorsName's value, beyond the window, written %d times", n)
	}

	// A group of n members, with a mapped field of as many values (format 7 looks for
	// them in the upstream attributes too): its encoding takes time linear in n, not
	// quadratic. Ten times the members, at most thirty times the time (a quadratic
	// encoding takes a hundred times), the best of three of each, so that a loaded
	// machine's pauses do not count.
	group := func(n int) *Group {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=org", i)
		}
		return &Group{ID: "g", DN: "cn=all,ou=groups,dc=example,dc=org", Name: "all",
			Attributes: map[string]any{"members": members},
			Upstream:   []Attribute{{Name: "cn", Values: []string{"all"}}, {Name: "member", Values: members}}}
	}
	encode := func(g *Group) (time.Duration, []byte) {
		best, val := time.Duration(1<<62), []byte(nil)
		for range 3 {
			start := time.Now()
			val = appendGroup(val[:0], g)
			best = min(best, time.Since(start))
		}
		return best, val
	}
	small, _ := encode(group(3000))
	g := group(30000)
	large, gval := encode(g)
	if large > 30*small {
		t.Fatalf("a group of 30,000 members took %v to encode, of 3,000 %v: more than linear", large, small)
	}
	if gg, err := decodeGroup(g.ID, string(gval)); err != nil || !reflect.DeepEqual(gg.Upstream, g.Upstream) || !reflect.DeepEqual(gg.Attributes, g.Attributes) {
		t.Fatalf("group: %v", err)
	}
}

// Format 7 writes what is never served shorter: IDs in lists (a user's groups, a group's
// parents) that are UUIDs in lower-case canonical text as their 16 bytes, the mapped
// attributes' names that mappedNames lists as numbers, a mapped string value that the
// upstream attributes hold as its place there, and a single upstream value without its
// count. Everything decodes as from format 6, which still reads; the values stay slices
// of the record; a list's IDs of another form are written out and come back as they
// were; a form or a number the format does not know is refused.
func TestFormat7(t *testing.T) {
	odd := []string{
		"0b7c93d4-0000-4000-9000-000000000001", // a UUID: 16 bytes
		"0B7C93D4-0000-4000-9000-000000000002", // upper case: written out
		"0b7c93d4-0000-4000-9000-00000000000g", // not hex
		"0b7c93d4+0000-4000-9000-000000000004", // not canonical
		"S-1-5-21-1-2-3-1104",                  // a SID
	}
	u := &User{ID: "a85ad1ba", DN: "uid=alice,ou=people,dc=example,dc=org", Username: "alice", Name: "Alice Smith",
		IsActive: true, Groups: sortedSet(append([]string(nil), odd...)),
		Attributes: map[string]any{
			"given_name":  "Alice",                             // listed; in cn
			"surname":     "Smith",                             // listed; in cn
			"upn":         []string{"alice@EXAMPLE.ORG", "al"}, // listed; neither held upstream
			"x_custom":    "Smith",                             // not listed
			"employee_id": int64(7),
		},
		Upstream: []Attribute{
			{Name: "objectClass", Values: []string{"inetOrgPerson", "posixAccount"}},
			{Name: "uid", Values: []string{"alice"}},
			{Name: "cn", Values: []string{"Alice Smith"}},
			{Name: "x-site", Values: []string{"berlin"}},
			{Name: "description", Values: nil},
		}}
	defer func(f byte) { upstreamFormat = f }(upstreamFormat)
	upstreamFormat = formatV6
	v6 := string(appendUser(nil, u))
	upstreamFormat = formatV7
	v7 := string(appendUser(nil, u))
	if v6[0] != formatV6 || v7[0] != formatV7 {
		t.Fatalf("formats %d and %d", v6[0], v7[0])
	}
	// The UUID: 16 bytes and a byte instead of 36 and one. employee_id, given_name,
	// surname, upn: a byte instead of the name and its length; x_custom, a byte more.
	// Alice, Smith (twice): two bytes instead of five and one. Three single upstream
	// values: their counts.
	want := len(v6) - 20 - len("employee_id") - len("given_name") - len("surname") - len("upn") + 1 - 3*(6-2) - 3
	if len(v7) != want {
		t.Fatalf("format 7 takes %d bytes, format 6 %d: want %d", len(v7), len(v6), want)
	}
	if strings.Contains(v7, odd[0]) || !strings.Contains(v7, odd[1]) {
		t.Fatalf("IDs: %q", v7)
	}
	for _, val := range []string{v6, v7} {
		got, err := decodeUser(u.ID, val)
		if err != nil {
			t.Fatalf("format %d: %v", val[0], err)
		}
		if !reflect.DeepEqual(got, u) {
			t.Fatalf("format %d:\n got %+v\nwant %+v", val[0], got, u)
		}
		if h, err := checkUser(val); err != nil || !reflect.DeepEqual(h.upns, u.Attributes["upn"]) {
			t.Fatalf("format %d: %v %+v", val[0], err, h)
		}
		var groups []string
		for g := range userGroups(val) {
			groups = append(groups, g)
		}
		if !reflect.DeepEqual(groups, u.Groups) {
			t.Fatalf("format %d: groups %q, want %q", val[0], groups, u.Groups)
		}
		for name, v := range got.Attributes {
			ss, _ := v.([]string)
			if s, ok := v.(string); ok {
				ss = []string{s}
			}
			for _, s := range ss {
				if _, ok := view.Offset(s, val); !ok {
					t.Fatalf("format %d: %s's value %q is not a slice of the record", val[0], name, s)
				}
			}
		}
	}
	g := &Group{ID: "g1", DN: "cn=staff,ou=groups,dc=example,dc=org", Name: "staff", Parents: u.Groups,
		Attributes: map[string]any{"description": "staff"},
		Upstream:   []Attribute{{Name: "cn", Values: []string{"staff"}}}}
	gval := string(appendGroup(nil, g))
	if gg, err := decodeGroup(g.ID, gval); err != nil || gval[0] != formatV7 || !reflect.DeepEqual(gg, g) {
		t.Fatalf("group: format %d, %v, %+v", gval[0], err, gg)
	}
	var parents []string
	for p := range groupParents(gval) {
		parents = append(parents, p)
	}
	if _, err := checkGroup(gval, ""); err != nil || !reflect.DeepEqual(parents, g.Parents) {
		t.Fatalf("group: %v, parents %q", err, parents)
	}

	// Every prefix, and every byte changed, decodes or is refused, and check agrees.
	for n := range len(v7) {
		if _, err := decodeUser(u.ID, v7[:n]); err == nil {
			t.Fatalf("a value cut to %d of %d bytes decodes", n, len(v7))
		}
	}
	for i := range len(v7) {
		for _, x := range []byte{0, 1, 3, 0x7f, 0x80, 0xff} {
			b := []byte(v7)
			b[i] = x
			_, derr := decodeUser(u.ID, string(b))
			_, cerr := checkUser(string(b))
			if (derr == nil) != (cerr == nil) {
				t.Fatalf("byte %d as %#x: decodeUser %v, checkUser %v", i, x, derr, cerr)
			}
			for range userGroups(string(b)) {
			}
		}
	}
	// An ID's form 3 (odd, not 1), a mapped name's number past the list.
	i := strings.Index(v7, "\x01\x0b\x7c\x93\xd4\x00\x00\x40\x00\x90\x00\x00\x00\x00\x00\x00\x01")
	if i < 0 {
		t.Fatalf("layout: %q", v7)
	}
	bad := []byte(v7)
	bad[i] = 3
	if _, err := decodeUser(u.ID, string(bad)); err == nil {
		t.Fatal("an ID of form 3 decodes")
	}
	if _, err := checkUser(string(bad)); err == nil {
		t.Fatal("an ID of form 3 passes the check")
	}
	one := string(appendUser(nil, &User{ID: "x", DN: "uid=a", Attributes: map[string]any{"upn": "a@b"},
		Upstream: []Attribute{{Name: "uid", Values: []string{"a"}}}}))
	j := strings.Index(one, "\x01\x01\x01\x06a@b") // one attribute, number 1, a string, 3 bytes
	if j < 0 {
		t.Fatalf("layout: %q", one)
	}
	bad = []byte(one)
	bad[j+1] = byte(len(mappedNames) + 1)
	if _, err := decodeUser("x", string(bad)); err == nil {
		t.Fatal("an unknown mapped name number decodes")
	}
	if _, err := checkUser(string(bad)); err == nil {
		t.Fatal("an unknown mapped name number passes the check")
	}
}
