package cache

// The value encoding of users and groups.
//
// It is hand-rolled rather than JSON or gob, for three reasons. It must keep
// the Go types of attribute values (JSON turns time.Time into a string, int64
// into float64 and []string into []any); it must be deterministic, because an
// unchanged object is recognised by the hash of its encoding (so attributes are
// written in name order); and it is read for every object at start-up, where a
// decoder that makes one string allocation per object and slices the fields
// out of it is several times faster than encoding/json or per-object gob
// (which repeats its type description in every value).
//
// Layouts (uvarint lengths, strings as length + bytes):
//
//	user:    0x01 DN Username Name Email Path PasswordMarker active(byte) groups attrs
//	user:    0x02 DN Username Name Email Path PasswordMarker active(byte) account groups attrs
//	user:    0x03 DN Username Name Email Path PasswordMarker active(byte) account groups attrs upstream
//	user:    0x04 DN Username Name Email Path PasswordMarker active(byte) account groups attrs upstream4
//	user:    0x05 head×6 active(byte) account groups attrs upstream4   head: see formatV5
//	user:    0x06 head×6 active(byte) account groups attrs upstream6   upstream6: see formatV6
//	user:    0x07 head×6 active(byte) account ids attrs7 upstream7     see formatV7
//	group:   0x01 DN Name parents attrs
//	group:   0x03 DN Name parents attrs upstream
//	group:   0x04 DN Name parents attrs upstream4
//	group:   0x05 head head parents attrs upstream4
//	group:   0x06 head head parents attrs upstream6
//	group:   0x07 head head ids attrs7 upstream7
//	group:   0x08 head head ids attrs7 upstream8    in a checkpoint only, see formatV8
//	list:    count string...
//	attrs:   count (name tag value)...   tags below
//	account: flags(byte) [expires] [password expires]   varint Unix seconds, see appendAccount
//	upstream: count (name list)...      the upstream entry's attributes, in its order
//	upstream4: count (number [name] list)...   number: uvarint, 0 for a name written
//	           out, else the name's number in attrNames (attrnames.go)
//
// A group in format 8 is one whose member values are places in a checkpoint (formatV8):
// never written to Badger, and read only with that checkpoint's bytes.
//
// An object without upstream attributes is written in the format it had before they
// were kept (a user whose Account is the zero one in format 1, as before accounts
// were kept), so an unchanged store reads and compares the same. Objects with them are
// written in format 7 and read in formats 3 to 7: a store of a version that wrote an
// earlier one reads unchanged, and its next sync rewrites each such object once.
//
// The object's ID is the key's, so it is not repeated in the value. An empty
// value is a deletion marker (see the package comment). A new layout gets a
// new leading byte; decode refuses bytes it does not know rather than guess.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// formatV1 is the first byte of every encoded group, and of every user whose Account is
// the zero one: so a store written before accounts were kept reads the same, and an
// upgrade rewrites only the users whose account state refuses something.
const formatV1 = 1

// formatV2 is the first byte of a user with a non-zero Account (see appendAccount).
const formatV2 = 2

// formatV3 is the first byte of a user or group with upstream attributes, their names
// written out, as earlier versions wrote them; a user in it always has its account.
const formatV3 = 3

// formatV4 is formatV3 with the upstream attributes' names written as numbers where
// attrNames has them: the format objects with upstream attributes are written in.
const formatV4 = 4

// formatV5 is formatV4 with the fields before the groups or parents (DN, user name,
// name, mail …) that the object's upstream attributes hold written as where those
// hold them: the upstream attributes come last, and a field is a uvarint x, then
// x/2 bytes when x is even (the field itself), or, when x is odd, a uvarint b: the
// field is the x/2 bytes that begin b bytes before the value's end, within the upstream
// attributes (a place before them is refused). A user's name and mail are mostly its
// uid and mail, kept once instead of twice.
const formatV5 = 5

// formatV6 is formatV5 with an upstream value that the upstream attributes before it
// hold already (a user's modifiersName, often its creatorsName; its gecos or
// displayName, its cn …) written as their place: a value is a uvarint x, then x/2
// bytes when x is even (the value itself), or, when x is odd, a uvarint o: the value
// is the x/2 bytes at o from the start of the upstream attributes, which end before x.
// The writer looks for a value in the first shareWindow bytes of them only.
const formatV6 = 6

// shareWindow is how many bytes of the upstream attributes written before a value
// appendShared looks for the value in: the attributes that other values repeat (cn,
// objectClass, creatorsName …) come early, and a search of everything written before
// each value took time quadratic in an object's size (a group of 10,000 members: 1.9 s
// an encoding, against 6 ms in format 5; of 30,000, 14 s). An object whose upstream
// attributes fit in it encodes as without it; the reader takes a place anywhere before
// the value.
const shareWindow = 4 << 10

// formatV7 is formatV6 with what is never served written shorter:
//
//   - ids (a user's groups, a group's parents): count, then per ID a uvarint x: x even,
//     the x/2 bytes of the ID; x = 1, 16 bytes: an ID that is a UUID in lower-case
//     canonical text (8-4-4-4-12 hex digits, what entryUUID and objectGUID become), as
//     its 16 bytes (37 bytes a membership → 17).
//   - attrs7: count, then per attribute its name, a uvarint n: n > 0 the name's number
//     in mappedNames (attrnames.go), 0 the name written out (string); the value tag;
//     and the value as in attrs, except that each string (of tagString and tagStrings)
//     is written as a head field is (see formatV5), as its place in the upstream
//     attributes when they hold it and that is shorter.
//   - upstream7: as upstream6, except that an attribute's name number n (0: the name
//     written out follows) is written as the uvarint n<<1 | single: single set, the
//     attribute has one value and no count of values follows.
const formatV7 = 7

// formatV8 is formatV7 for a group whose upstream values (upstream8) may be bytes of a
// checkpoint, the DN of a user there (a member value): a group's record in a checkpoint,
// referring to the bytes before it, or one that a commit made while the snapshot's
// records are in a checkpoint's pages, referring to that checkpoint. A value is a
// uvarint x, then by x&3 (refLiteral, refPlaced, refInFile) its x>>2 bytes; or, as in
// format 6, a uvarint o, the value being the x>>2 bytes at o from the start of the
// upstream attributes; or 4 bytes, a little-endian offset in the checkpoint, the value
// being the x>>2 bytes there. The bytes referred to are byte for byte the value (the
// writer refers only to those), and a checkpoint never changes: a rename or deletion
// of the user after it was written does not change the group's value. The offset is
// 4 bytes whatever its value, and no value is placed in or after it, so that a group's
// record has the same length and its other bytes at the same places in every checkpoint
// of the same state (the served tree's image refers to those places; see
// Snapshot.SourcesSum).
const formatV8 = 8

// The forms of a value of upstream8, in its uvarint's low bits.
const (
	refLiteral = 0
	refPlaced  = 1
	refInFile  = 3
)

// refOffsetLen is the length of a refInFile value's offset.
const refOffsetLen = 4

// minRef is the least length of a value that a group's record in a checkpoint refers to
// rather than holds: shorter, the reference saves next to nothing.
const minRef = 8

// upstreamFormat is the format objects with upstream attributes are written in: formatV7
// (a variable so that the tests can write a store as the versions before did).
var upstreamFormat byte = formatV7

// Attribute value tags.
const (
	tagString  = 1
	tagStrings = 2
	tagFalse   = 3
	tagTrue    = 4
	tagInt     = 5
	tagFloat   = 6
	tagTime    = 7
)

var errTruncated = errors.New("truncated value")

// normalizeAttributes converts attribute values to the types the store keeps,
// in place: integers of any width become int64, float32 becomes float64, a
// []any of strings becomes []string, and nil (a mapping that found nothing)
// removes the attribute. Any other type is an error naming the attribute.
func normalizeAttributes(attrs map[string]any) error {
	for name, v := range attrs {
		switch x := v.(type) {
		case string, []string, bool, int64, float64, time.Time:
		case nil:
			delete(attrs, name)
		case int:
			attrs[name] = int64(x)
		case int8:
			attrs[name] = int64(x)
		case int16:
			attrs[name] = int64(x)
		case int32:
			attrs[name] = int64(x)
		case uint8:
			attrs[name] = int64(x)
		case uint16:
			attrs[name] = int64(x)
		case uint32:
			attrs[name] = int64(x)
		case uint:
			if uint64(x) > math.MaxInt64 {
				return fmt.Errorf("attribute %q: %d overflows int64", name, x)
			}
			attrs[name] = int64(x)
		case uint64:
			if x > math.MaxInt64 {
				return fmt.Errorf("attribute %q: %d overflows int64", name, x)
			}
			attrs[name] = int64(x)
		case float32:
			attrs[name] = float64(x)
		case []any:
			ss := make([]string, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("attribute %q: list element of type %T (only strings)", name, e)
				}
				ss[i] = s
			}
			attrs[name] = ss
		default:
			return fmt.Errorf("attribute %q: unsupported type %T", name, v)
		}
	}
	return nil
}

// sortedSet sorts ids and removes duplicates and empty strings, in place.
func sortedSet(ids []string) []string {
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > 0 && ids[0] == "" {
		ids = ids[1:]
	}
	return ids
}

// appendUser appends the encoding of u to b. u's attributes must have been
// normalised.
func appendUser(b []byte, u *User) []byte {
	format := byte(formatV1)
	switch {
	case len(u.Upstream) > 0:
		format = upstreamFormat
	case u.Account != (Account{}):
		format = formatV2
	}
	b = append(b, format)
	var up []byte
	if format >= formatV5 {
		up = appendUpstreamIn(nil, format, u.Upstream)
	}
	b = appendHead(b, format, up, len(up), u.DN)
	b = appendHead(b, format, up, len(up), u.Username)
	b = appendHead(b, format, up, len(up), u.Name)
	b = appendHead(b, format, up, len(up), u.Email)
	b = appendHead(b, format, up, len(up), u.Path)
	b = appendHead(b, format, up, len(up), u.PasswordMarker)
	if u.IsActive {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	if format >= formatV2 {
		b = appendAccount(b, u.Account)
	}
	b = appendIDs(b, format, u.Groups)
	b = appendAttributesIn(b, format, up, len(up), u.Attributes)
	if format >= formatV5 {
		return append(b, up...)
	}
	return appendObjectUpstream(b, format, u.Upstream)
}

// appendPlaced appends s as appendHead does in format 5 and later, as its place in up
// only when that is shorter than s written out. It looks in the first shareWindow bytes
// of up only, and of those in the first plain (appendHead): a mapped list of many values
// (a group's member IDs) would otherwise take time quadratic in the object's size.
func appendPlaced(b []byte, up []byte, plain int, s string) []byte {
	lit := uvarintLen(uint64(len(s))<<1) + len(s)
	if len(s) > 2 {
		if i := bytes.Index(up[:min(plain, shareWindow)], []byte(s)); i >= 0 && uvarintLen(uint64(len(s))<<1|1)+uvarintLen(uint64(len(up)-i)) < lit {
			b = binary.AppendUvarint(b, uint64(len(s))<<1|1)
			return binary.AppendUvarint(b, uint64(len(up)-i))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

// appendHead appends a field before an object's groups or parents; in formatV5, as its
// place in up, the encoding of the object's upstream attributes that ends the value,
// when its first plain bytes hold it (a format 8 record's up, to its first reference
// to the checkpoint: the bytes of the references' offsets differ between checkpoints).
func appendHead(b []byte, format byte, up []byte, plain int, s string) []byte {
	if format < formatV5 {
		return appendString(b, s)
	}
	if i := bytes.Index(up[:plain], []byte(s)); i >= 0 && s != "" {
		b = binary.AppendUvarint(b, uint64(len(s))<<1|1)
		return binary.AppendUvarint(b, uint64(len(up)-i))
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

// appendGroup appends the encoding of g to b.
func appendGroup(b []byte, g *Group) []byte {
	format := byte(formatV1)
	if len(g.Upstream) > 0 {
		format = upstreamFormat
	}
	return appendGroupIn(b, format, g, nil)
}

// appendGroupRefs appends the encoding of g as a checkpoint holds it: in format 8 with
// each upstream value that ref finds (its offset in the checkpoint) written as that
// place, when ref finds one; else as appendGroup. ref is given values of at least minRef
// bytes.
func appendGroupRefs(b []byte, g *Group, ref func(v string) (uint32, bool)) []byte {
	if len(g.Upstream) > 0 && upstreamFormat == formatV7 {
		for _, a := range g.Upstream {
			for _, v := range a.Values {
				if len(v) >= minRef {
					if _, ok := ref(v); ok {
						return appendGroupIn(b, formatV8, g, ref)
					}
				}
			}
		}
	}
	return appendGroup(b, g)
}

// appendGroupIn appends the encoding of g in format; ref is format 8's (appendGroupRefs).
func appendGroupIn(b []byte, format byte, g *Group, ref func(string) (uint32, bool)) []byte {
	b = append(b, format)
	var up []byte
	plain := 0
	if format >= formatV5 {
		up, plain = appendUpstreamRefs(nil, format, g.Upstream, ref)
	}
	b = appendHead(b, format, up, plain, g.DN)
	b = appendHead(b, format, up, plain, g.Name)
	b = appendIDs(b, format, g.Parents)
	b = appendAttributesIn(b, format, up, plain, g.Attributes)
	if format >= formatV5 {
		return append(b, up...)
	}
	return appendObjectUpstream(b, format, g.Upstream)
}

// appendUpstream appends an object's upstream attributes, in their order (the
// upstream's: an entry read twice unchanged encodes the same).
func appendUpstream(b []byte, attrs []Attribute) []byte {
	b = binary.AppendUvarint(b, uint64(len(attrs)))
	for _, a := range attrs {
		b = appendString(b, a.Name)
		b = appendStrings(b, a.Values)
	}
	return b
}

// appendObjectUpstream appends an object's upstream attributes as its format has them.
func appendObjectUpstream(b []byte, format byte, attrs []Attribute) []byte {
	switch format {
	case formatV3:
		return appendUpstream(b, attrs)
	case formatV4, formatV5, formatV6, formatV7:
		b, _ = appendUpstreamRefs(b, format, attrs, nil)
	}
	return b
}

// appendUpstreamNumbered is appendUpstream with each name written as its number in
// attrNames, or as 0 and the name when the list does not have it as spelled.
func appendUpstreamNumbered(b []byte, attrs []Attribute) []byte {
	b, _ = appendUpstreamRefs(b, formatV4, attrs, nil)
	return b
}

// appendUpstreamIn appends upstream attributes as format writes them: with their names
// numbered (formats 4 and later), in format 6 and later each value the bytes before it
// hold written as their place there when that takes fewer bytes, in format 7 a single
// value without its count.
func appendUpstreamIn(b []byte, format byte, attrs []Attribute) []byte {
	b, _ = appendUpstreamRefs(b, format, attrs, nil)
	return b
}

// appendUpstreamRefs is appendUpstreamIn, in format 8 with the values ref finds written
// as their place in the checkpoint. plain is the length of what it appended up to the
// first such value: what a value may be placed in (the offsets after it differ from one
// checkpoint to the next, the rest of the record does not).
func appendUpstreamRefs(b []byte, format byte, attrs []Attribute, ref func(string) (uint32, bool)) (out []byte, plain int) {
	base := len(b)
	plain = -1
	b = binary.AppendUvarint(b, uint64(len(attrs)))
	for _, a := range attrs {
		n := attrNumbers[a.Name] // 0: not listed
		if format >= formatV7 {
			single := uint64(0)
			if len(a.Values) == 1 {
				single = 1
			}
			b = binary.AppendUvarint(b, n<<1|single)
		} else {
			b = binary.AppendUvarint(b, n)
		}
		if n == 0 {
			b = appendString(b, a.Name)
		}
		if format < formatV6 {
			b = appendStrings(b, a.Values)
			continue
		}
		if format < formatV7 || len(a.Values) != 1 {
			b = binary.AppendUvarint(b, uint64(len(a.Values)))
		}
		for _, v := range a.Values {
			if format < formatV8 {
				b = appendShared(b, base, v)
				continue
			}
			at, within := len(b), plain
			if within < 0 {
				within = at - base
			}
			var referred bool
			b, referred = appendSharedRef(b, base, within, v, ref)
			if referred && plain < 0 {
				plain = at - base
			}
		}
	}
	if plain < 0 {
		plain = len(b) - base
	}
	return b, plain
}

// appendSharedRef appends the value v of format 8's upstream attributes, which begin at
// base in b: as its place in the checkpoint when ref finds it (and reports it), else as
// appendShared would, with format 8's forms, looking in the first plain bytes only.
func appendSharedRef(b []byte, base, plain int, v string, ref func(string) (uint32, bool)) ([]byte, bool) {
	if len(v) >= minRef {
		if off, ok := ref(v); ok {
			b = binary.AppendUvarint(b, uint64(len(v))<<2|refInFile)
			return binary.LittleEndian.AppendUint32(b, off), true
		}
	}
	lit := uvarintLen(uint64(len(v))<<2) + len(v)
	if len(v) > 2 {
		written := unsafe.String(unsafe.SliceData(b[base:]), min(plain, shareWindow))
		if i := strings.Index(written, v); i >= 0 {
			if uvarintLen(uint64(len(v))<<2|refPlaced)+uvarintLen(uint64(i)) < lit {
				b = binary.AppendUvarint(b, uint64(len(v))<<2|refPlaced)
				return binary.AppendUvarint(b, uint64(i)), false
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(v))<<2|refLiteral)
	return append(b, v...), false
}

// appendShared appends the value v of format 6's upstream attributes, which begin at
// base in b.
func appendShared(b []byte, base int, v string) []byte {
	lit := uvarintLen(uint64(len(v))<<1) + len(v)
	if len(v) > 2 {
		written := unsafe.String(unsafe.SliceData(b[base:]), min(len(b)-base, shareWindow))
		if i := strings.Index(written, v); i >= 0 {
			if uvarintLen(uint64(len(v))<<1|1)+uvarintLen(uint64(i)) < lit {
				b = binary.AppendUvarint(b, uint64(len(v))<<1|1)
				return binary.AppendUvarint(b, uint64(i))
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(v))<<1)
	return append(b, v...)
}

// uvarintLen is the length of x as a uvarint.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendIDs appends a list of object IDs (a user's groups, a group's parents) as format
// writes it.
func appendIDs(b []byte, format byte, ids []string) []byte {
	if format < formatV7 {
		return appendStrings(b, ids)
	}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		if u, ok := uuidBytes(id); ok {
			b = append(append(b, 1), u[:]...)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(id))<<1)
		b = append(b, id...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// uuidBytes returns the 16 bytes of s when s is a UUID in lower-case canonical text
// (8-4-4-4-12 hex digits), which uuidText turns back into s.
func uuidBytes(s string) (u [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		hi, lo := hexValue(s[i]), hexValue(s[i+1])
		if hi > 15 || lo > 15 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, true
}

// hexValue is the value of a lower-case hex digit, 16 or more for any other byte.
func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 16
}

// uuidText is the lower-case canonical text of the UUID of 16 bytes u.
func uuidText(u string) string {
	var out [36]byte
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[u[i]>>4], hexDigits[u[i]&0xf]
		j += 2
	}
	return string(out[:])
}

func appendAttributes(b []byte, attrs map[string]any) []byte {
	return appendAttributesIn(b, formatV1, nil, 0, attrs)
}

// appendAttributesIn appends the mapped attributes as format writes them; up is the
// encoding of the object's upstream attributes in format 7, where a string value may be
// placed in the first plain bytes (appendHead).
func appendAttributesIn(b []byte, format byte, up []byte, plain int, attrs map[string]any) []byte {
	b = binary.AppendUvarint(b, uint64(len(attrs)))
	if len(attrs) == 0 {
		return b
	}
	var small [16]string
	names := small[:0]
	for name := range attrs {
		names = append(names, name)
	}
	slices.Sort(names)
	str := appendString
	if format >= formatV7 {
		str = func(b []byte, s string) []byte { return appendPlaced(b, up, plain, s) }
	}
	for _, name := range names {
		switch n := mappedNumbers[name]; {
		case format < formatV7:
			b = appendString(b, name)
		case n > 0:
			b = binary.AppendUvarint(b, n)
		default:
			b = appendString(append(b, 0), name)
		}
		switch v := attrs[name].(type) {
		case string:
			b = append(b, tagString)
			b = str(b, v)
		case []string:
			b = append(b, tagStrings)
			b = binary.AppendUvarint(b, uint64(len(v)))
			for _, s := range v {
				b = str(b, s)
			}
		case bool:
			if v {
				b = append(b, tagTrue)
			} else {
				b = append(b, tagFalse)
			}
		case int64:
			b = append(b, tagInt)
			b = binary.AppendVarint(b, v)
		case float64:
			b = append(b, tagFloat)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
		case time.Time:
			b = append(b, tagTime)
			// MarshalBinary keeps the instant and the zone offset. It
			// fails only for offsets that are not whole minutes (local
			// mean times before 1900); those are kept in UTC.
			tb, err := v.MarshalBinary()
			if err != nil {
				tb, _ = v.Truncate(0).In(time.UTC).MarshalBinary()
			}
			b = appendString(b, string(tb))
		}
	}
	return b
}

// decoder reads an encoded object. Every string it returns is a slice of s, so
// that decoding an object costs one copy of its bytes.
type decoder struct {
	s   string
	i   int
	err error
	// pick names an attribute whose string values attributes keeps in picked even when
	// it keeps nothing else: checkUser's way to the user's UPN for the index.
	pick   string
	picked []string
	// headAt is where the lowest field placed by head begins, 0 when none is: in the
	// upstream attributes, which end the value, or the value is refused (upstreamAfter).
	headAt int
	// file is what a format 8 value's offsets are in: the bytes of the checkpoint it
	// refers to (groupRec.in). A record read from Badger has none, and a reference in it
	// is refused.
	file string
	// refs, when set, is given each format 8 reference's value and where its offset is
	// in s.
	refs func(at int, v string)
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := uvarintString(d.s[d.i:])
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.i += n
	return v
}

// uvarintString is binary.Uvarint for a string, which avoids converting the
// whole remaining value to a byte slice.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// uint64 reads 8 big-endian bytes.
func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.s)-d.i < 8 {
		d.err = errTruncated
		return 0
	}
	var v uint64
	for k := range 8 {
		v = v<<8 | uint64(d.s[d.i+k])
	}
	d.i += 8
	return v
}

func (d *decoder) readByte() byte {
	if d.err != nil {
		return 0
	}
	if d.i >= len(d.s) {
		d.err = errTruncated
		return 0
	}
	c := d.s[d.i]
	d.i++
	return c
}

func (d *decoder) str() string { return d.take(d.uvarint()) }

// take reads the next n bytes.
func (d *decoder) take(n uint64) string {
	if d.err == nil && n > uint64(len(d.s)-d.i) {
		d.err = errTruncated
	}
	if d.err != nil {
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// head reads a field before an object's groups or parents in format.
func (d *decoder) head(format byte) string {
	if format < formatV5 {
		return d.str()
	}
	x := d.uvarint()
	n := x >> 1
	if x&1 == 0 {
		return d.take(n)
	}
	back := d.uvarint()
	switch {
	case d.err != nil:
		return ""
	case back > uint64(len(d.s)-d.i) || n > back:
		d.err = errTruncated
		return ""
	}
	at := len(d.s) - int(back)
	if d.headAt == 0 || at < d.headAt {
		d.headAt = at
	}
	return d.s[at : at+int(n)]
}

// upstreamAfter checks, where an object's upstream attributes begin, that the fields
// head placed lie in them, where appendHead places them.
func (d *decoder) upstreamAfter() {
	if d.err == nil && d.headAt != 0 && d.headAt < d.i {
		d.err = errors.New("a field placed before the upstream attributes")
	}
}

func (d *decoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

// ids reads a list of object IDs as format writes it (appendIDs).
func (d *decoder) ids(format byte) []string {
	if format < formatV7 {
		return d.strs()
	}
	n := d.count()
	if n == 0 {
		return nil
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = d.id()
	}
	return ids
}

// id reads an ID of format 7's lists; one written as a UUID's bytes is made text again.
func (d *decoder) id() string {
	x := d.uvarint()
	switch {
	case d.err != nil:
		return ""
	case x == 1:
		if u := d.take(16); d.err == nil {
			return uuidText(u)
		}
		return ""
	case x&1 != 0:
		d.err = fmt.Errorf("unknown ID form %d", x)
		return ""
	}
	return d.take(x >> 1)
}

// skipIDs checks a list of IDs without keeping it.
func (d *decoder) skipIDs(format byte) {
	if format < formatV7 {
		d.skipStrs()
		return
	}
	for range d.count() {
		x := d.uvarint()
		switch {
		case d.err != nil:
		case x == 1:
			d.take(16)
		case x&1 != 0:
			d.err = fmt.Errorf("unknown ID form %d", x)
		default:
			d.take(x >> 1)
		}
	}
}

// shared reads a value of format 6's upstream attributes, which begin at base.
func (d *decoder) shared(base int) string {
	start := d.i
	x := d.uvarint()
	n := x >> 1
	if x&1 == 0 {
		return d.take(n)
	}
	return d.placed(base, start, n)
}

// sharedRef reads a value of format 8's upstream attributes, which begin at base.
func (d *decoder) sharedRef(base int) string {
	start := d.i
	x := d.uvarint()
	n := x >> 2
	switch x & 3 {
	case refLiteral:
		return d.take(n)
	case refPlaced:
		return d.placed(base, start, n)
	case refInFile:
		at := d.i
		o := d.take(refOffsetLen)
		if d.err != nil {
			return ""
		}
		off := uint64(o[0]) | uint64(o[1])<<8 | uint64(o[2])<<16 | uint64(o[3])<<24
		if n < minRef || off > uint64(len(d.file)) || n > uint64(len(d.file))-off {
			d.err = errors.New("a value placed outside the checkpoint's bytes before the record")
			return ""
		}
		v := d.file[off : off+n]
		if d.refs != nil {
			d.refs(at, v)
		}
		return v
	}
	if d.err == nil {
		d.err = fmt.Errorf("unknown value form %d", x&3)
	}
	return ""
}

// placed reads the rest of a value at start placed at an offset from base, n bytes long.
func (d *decoder) placed(base, start int, n uint64) string {
	off := d.uvarint()
	switch {
	case d.err != nil:
		return ""
	case off > uint64(start-base) || n > uint64(start-base)-off:
		d.err = errors.New("a value placed beyond the bytes before it")
		return ""
	}
	return d.s[base+int(off) : base+int(off+n)]
}

// skipStrs checks a list without keeping it.
func (d *decoder) skipStrs() {
	for range d.count() {
		d.str()
	}
}

// count reads the length of a list. Each element takes a byte at least, so a
// length the rest of the value cannot hold is refused before anything is
// allocated for it.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.s)-d.i) {
		d.err = errTruncated
	}
	if d.err != nil {
		return 0
	}
	return n
}

// attributes reads the attributes as format writes them, or only checks them when keep
// is false.
func (d *decoder) attributes(keep bool, format byte) map[string]any {
	n := d.count()
	var m map[string]any
	if keep && n > 0 {
		m = make(map[string]any, n)
	}
	str := d.str
	if format >= formatV7 {
		str = func() string { return d.head(formatV7) }
	}
	for range n {
		var name string
		if format >= formatV7 {
			name = d.mappedName()
		} else {
			name = d.str()
		}
		picking := d.pick != "" && strings.EqualFold(name, d.pick)
		var v any
		switch tag := d.readByte(); tag {
		case tagString:
			v = str()
		case tagStrings:
			c := d.count()
			var ss []string
			if keep || picking {
				ss = make([]string, c)
			}
			for i := range c {
				s := str()
				if ss != nil {
					ss[i] = s
				}
			}
			if ss != nil {
				v = ss
			}
		case tagFalse:
			v = false
		case tagTrue:
			v = true
		case tagInt:
			x := d.uvarint()
			v = int64(x>>1) ^ -int64(x&1) // zigzag, as binary.AppendVarint
		case tagFloat:
			v = math.Float64frombits(d.uint64())
		case tagTime:
			tb := d.str()
			var t time.Time
			if err := t.UnmarshalBinary([]byte(tb)); err != nil && d.err == nil {
				d.err = fmt.Errorf("attribute %q: %w", name, err)
			}
			v = t
		default:
			if d.err == nil {
				d.err = fmt.Errorf("attribute %q: unknown value tag %d", name, tag)
			}
		}
		if d.err != nil {
			return nil
		}
		if m != nil {
			m[name] = v
		}
		if picking {
			switch x := v.(type) {
			case string:
				d.picked = []string{x}
			case []string:
				d.picked = x
			}
		}
	}
	return m
}

// upstream reads an object's upstream attributes as format writes them (formats 3 and
// later), or only checks them when keep is false.
func (d *decoder) upstream(keep bool, format byte) []Attribute {
	base := d.i
	n := d.count()
	var out []Attribute
	if keep && n > 0 {
		out = make([]Attribute, 0, n)
	}
	shared := format >= formatV6
	value := d.shared
	if format >= formatV8 {
		value = d.sharedRef
	}
	for range n {
		var name string
		single := false
		switch {
		case format >= formatV7:
			x := d.uvarint()
			single = x&1 == 1
			name = d.attrNumbered(x >> 1)
		case format >= formatV4:
			name = d.attrName()
		default:
			name = d.str()
		}
		switch {
		case shared:
			vals := uint64(1)
			if !single {
				vals = d.count()
			}
			var l []string
			if keep && vals > 0 {
				l = make([]string, vals)
			}
			for i := range vals {
				v := value(base)
				if l != nil {
					l[i] = v
				}
			}
			if keep {
				out = append(out, Attribute{Name: name, Values: l})
			}
		case !keep:
			d.skipStrs()
		default:
			out = append(out, Attribute{Name: name, Values: d.strs()})
		}
	}
	if d.err != nil {
		return nil
	}
	return out
}

// attrName reads an upstream attribute's name in format 4: its number in attrNames, or
// 0 and the name.
func (d *decoder) attrName() string {
	return d.attrNumbered(d.uvarint())
}

// attrNumbered is the upstream attribute's name numbered n in attrNames; for 0, the name
// written out, read next.
func (d *decoder) attrNumbered(n uint64) string {
	return d.numbered(n, attrNames[:], "attribute name")
}

// mappedName reads a mapped attribute's name in format 7: its number in mappedNames, or
// 0 and the name.
func (d *decoder) mappedName() string {
	return d.numbered(d.uvarint(), mappedNames[:], "mapped attribute name")
}

// numbered is the name numbered n in names (what they are), or for 0 the name written
// out, read next.
func (d *decoder) numbered(n uint64, names []string, what string) string {
	switch {
	case d.err != nil:
		return ""
	case n == 0:
		return d.str()
	case n > uint64(len(names)):
		d.err = fmt.Errorf("unknown %s number %d", what, n)
		return ""
	}
	return names[n-1]
}

// finish reports the first error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && d.i != len(d.s) {
		d.err = fmt.Errorf("%d trailing bytes", len(d.s)-d.i)
	}
	return d.err
}

// version reads the format byte; formats above max are refused.
func (d *decoder) version(max byte) byte {
	v := d.readByte()
	if d.err == nil && (v < formatV1 || v > max) {
		d.err = fmt.Errorf("unknown format %d", v)
	}
	return v
}

// objectHeader holds the fields the indexes are built from.
type objectHeader struct {
	dn, username, path string
	email              string
	upns               []string // the UPNAttribute's values
}

// userHead reads a user's fields up to its groups and returns its format.
func (d *decoder) userHead(u *User) byte {
	format := d.version(formatV7)
	u.DN = d.head(format)
	u.Username = d.head(format)
	u.Name = d.head(format)
	u.Email = d.head(format)
	u.Path = d.head(format)
	u.PasswordMarker = d.head(format)
	u.IsActive = d.readByte() == 1
	if format >= formatV2 {
		u.Account = d.account()
	}
	return format
}

// decodeUser decodes a value written by appendUser for the user id. The
// strings of the result are slices of val.
func decodeUser(id, val string) (*User, error) {
	return decodeUserAs(id, val, true)
}

// decodeUserAs is decodeUser, leaving User.Attributes and User.Upstream out unless
// whole is set: then it stops reading after the groups, so val must be a value
// checkUser accepted.
func decodeUserAs(id, val string, whole bool) (*User, error) {
	d := decoder{s: val}
	u := &User{ID: id}
	format := d.userHead(u)
	u.Groups = d.ids(format)
	if !whole {
		return u, d.err
	}
	u.Attributes = d.attributes(true, format)
	d.upstreamAfter()
	if format >= formatV3 {
		u.Upstream = d.upstream(true, format)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return u, nil
}

// checkUser checks the whole encoding of a user, as decodeUser would,
// without building it, and returns the fields the indexes need.
func checkUser(val string) (objectHeader, error) {
	d := decoder{s: val, pick: UPNAttribute}
	var u User
	format := d.userHead(&u)
	d.skipIDs(format)
	d.attributes(false, format)
	d.upstreamAfter()
	if format >= formatV3 {
		d.upstream(false, format)
	}
	return objectHeader{dn: u.DN, username: u.Username, path: u.Path, email: u.Email, upns: d.picked}, d.finish()
}

// userGroups yields the group IDs of an encoded user.
func userGroups(val string) iter.Seq[string] {
	return func(yield func(string) bool) {
		d := decoder{s: val}
		var u User
		format := d.userHead(&u)
		yieldIDs(&d, format, yield)
	}
}

// groupHead reads a group's fields up to its parents and returns its format.
func (d *decoder) groupHead(g *Group) byte {
	format := d.version(formatV8)
	if d.err == nil && format == formatV2 {
		d.err = fmt.Errorf("unknown group format %d", format)
	}
	g.DN = d.head(format)
	g.Name = d.head(format)
	return format
}

// decodeGroup decodes a value written by appendGroup for the group id.
func decodeGroup(id, val string) (*Group, error) {
	return decodeGroupIn(id, val, "")
}

// decodeGroupIn is decodeGroup for a record that a checkpoint holds after the bytes
// file, which its format 8 values may be slices of.
func decodeGroupIn(id, val, file string) (*Group, error) {
	return decodeGroupRefs(id, val, file, nil)
}

// decodeGroupRefs is decodeGroupIn, telling refs of each value that val refers to
// (decoder.refs).
func decodeGroupRefs(id, val, file string, refs func(at int, v string)) (*Group, error) {
	d := decoder{s: val, file: file, refs: refs}
	g := &Group{ID: id}
	format := d.groupHead(g)
	g.Parents = d.ids(format)
	g.Attributes = d.attributes(true, format)
	d.upstreamAfter()
	if format >= formatV3 {
		g.Upstream = d.upstream(true, format)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return g, nil
}

// checkGroup is checkUser for a group, one that a checkpoint holds after the bytes file
// (else "").
func checkGroup(val, file string) (objectHeader, error) {
	d := decoder{s: val, file: file}
	var g Group
	format := d.groupHead(&g)
	d.skipIDs(format)
	d.attributes(false, format)
	d.upstreamAfter()
	if format >= formatV3 {
		d.upstream(false, format)
	}
	return objectHeader{dn: g.DN}, d.finish()
}

// groupParents yields the parent IDs of an encoded group.
func groupParents(val string) iter.Seq[string] {
	return func(yield func(string) bool) {
		d := decoder{s: val}
		var g Group
		format := d.groupHead(&g)
		yieldIDs(&d, format, yield)
	}
}

// yieldIDs yields the IDs of the list d is at, in format, until yield returns false.
func yieldIDs(d *decoder, format byte, yield func(string) bool) {
	for range d.count() {
		var id string
		if format >= formatV7 {
			id = d.id()
		} else {
			id = d.str()
		}
		if d.err != nil || !yield(id) {
			return
		}
	}
}
