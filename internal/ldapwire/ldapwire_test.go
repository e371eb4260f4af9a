package ldapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// bindResponse builds a BindResponse message with go-asn1-ber, an encoder independent of
// the one under test.
func bindResponse(id int64, code int64, diag string) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 1, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, ""))
	p.AppendChild(op)
	return p.Bytes()
}

func TestWithMessageID(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 300)) // forces a long-form length
	for _, tt := range []struct {
		from, to int64
		diag     string
	}{
		{1, 2, ""}, {1, 127, ""}, {1, 128, ""}, {200, 1, ""}, {5, 1<<31 - 1, long}, {1<<31 - 1, 3, long}, {1, 65536, "d"},
	} {
		in := bindResponse(tt.from, 49, tt.diag)
		out, err := WithMessageID([]byte("prefix"), in, tt.to)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatal("dst was not appended to")
		}
		out = out[len("prefix"):]
		if !bytes.Equal(out, bindResponse(tt.to, 49, tt.diag)) {
			t.Errorf("%d→%d: got % x\nwant % x", tt.from, tt.to, out, bindResponse(tt.to, 49, tt.diag))
		}
		if id, err := MessageID(out); err != nil || id != tt.to {
			t.Errorf("MessageID = %d, %v; want %d", id, err, tt.to)
		}
	}
}

func TestParseResponse(t *testing.T) {
	r, err := ParseResponse(bindResponse(3, 49, "bad"))
	if err != nil || r.Tag != 0x61 || r.Code != 49 || !r.Final {
		t.Fatalf("bind response: %+v err %v", r, err)
	}
	if le, ok := r.Err().(*ldap.Error); !ok || le.ResultCode != 49 || le.Err.Error() != "bad" {
		t.Fatalf("bind response: Err() = %v", r.Err())
	}
	entry := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	entry.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 7, ""))
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn=x", ""))
	e.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
	entry.AppendChild(e)
	r, err = ParseResponse(entry.Bytes())
	if err != nil || r.Tag != TagSearchResultEntry || r.Final {
		t.Fatalf("entry: %+v err %v", r, err)
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x02, 0x01, 0x01}, {0x31, 0x00}, {0x30, 0x05, 0x04, 0x01, 0x01, 0x61, 0x00}} {
		if _, err := ParseResponse(bad); err == nil {
			t.Errorf("Response(% x) accepted malformed input", bad)
		}
	}
}

func TestReadFrame(t *testing.T) {
	msg := bindResponse(1, 0, "")
	tests := []struct {
		name  string
		in    []byte
		limit int64
		want  error
	}{
		{"whole message", msg, 1 << 20, nil},
		{"two messages, first returned", append(append([]byte{}, msg...), msg...), 1 << 20, nil},
		{"not a sequence", []byte{0x04, 0x00}, 1 << 20, ErrNotSequence},
		{"indefinite length", []byte{0x30, 0x80, 0, 0}, 1 << 20, ErrIndefinite},
		{"5-byte length", []byte{0x30, 0x85, 1, 2, 3, 4, 5}, 1 << 20, ErrLengthTooLong},
		{"truncated body", msg[:len(msg)-1], 1 << 20, io.ErrUnexpectedEOF},
		{"2 GiB header", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, 1 << 20, TooLargeError{Size: 6 + 0x7fffffff, Limit: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.limit, nil)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("error %v", err)
			case tt.want == nil && !bytes.Equal(got, msg):
				t.Fatalf("got % x", got)
			case tt.want != nil && !errors.Is(err, tt.want) && err != tt.want:
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestEncoderNesting checks the encoder against go-asn1-ber's at every depth, past the
// levels it keeps without allocating, with contents long enough for every length form.
func TestEncoderNesting(t *testing.T) {
	for _, depth := range []int{1, 7, 8, 9, 20} {
		for _, size := range []int{0, 0x7f, 0x80, 0x100, 0x10000} {
			var e Encoder
			e.Begin(0x30)
			for range depth - 1 {
				e.Str(0x04, "x")
				e.Begin(0x30)
			}
			value := string(bytes.Repeat([]byte{'v'}, size))
			e.Str(0x04, value)
			for range depth {
				e.End()
			}
			// go-asn1-ber encodes a child as it is when appended: built from the inside.
			want := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
			want.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, ""))
			for range depth - 1 {
				outer := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
				outer.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "x", ""))
				outer.AppendChild(want)
				want = outer
			}
			if !bytes.Equal(e.B, want.Bytes()) {
				t.Fatalf("depth %d, %d bytes: encoded %x, want %x", depth, size, e.B, want.Bytes())
			}
		}
	}
}

// TestAppendEntryAllocates checks that encoding a search result entry into a buffer
// large enough allocates nothing: the encoder keeps a message's open elements itself.
func TestAppendEntryAllocates(t *testing.T) {
	ent := &Entry{DN: "uid=someone,ou=people,dc=example,dc=com"}
	for _, name := range []string{"objectClass", "uid", "cn", "mail", "memberOf"} {
		ent.Attributes = append(ent.Attributes, Attribute{Name: name, Values: [][]byte{[]byte("value of " + name), []byte("second")}})
	}
	buf := make([]byte, 0, 4096)
	ctl := []Control{{Type: "1.2.3", Critical: true, Value: []byte("v"), HasValue: true}}
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendEntry(buf[:0], 12345, ent, false, ctl)
		buf = AppendResult(buf, 12345, ldap.ApplicationSearchResultDone, &Result{Controls: ctl})
	}); n != 0 {
		t.Fatalf("%v allocations per entry and result", n)
	}
}

func TestScanDepth(t *testing.T) {
	// nest wraps an empty OCTET STRING in depth SEQUENCEs, each with a 4-byte length.
	nest := func(depth int) []byte {
		b := make([]byte, 0, 6*depth+2)
		for i := 0; i < depth; i++ {
			n := 2 + 6*(depth-1-i)
			b = append(b, 0x30, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		return append(b, 0x04, 0x00)
	}
	if err := Scan(nest(10), 10); err != nil {
		t.Fatalf("depth 10 at limit 10: %v", err)
	}
	var deep TooDeepError
	if err := Scan(nest(11), 10); !errors.As(err, &deep) || deep.Limit != 10 {
		t.Fatalf("depth 11 at limit 10: %v", err)
	}
	if err := Scan(nest(100000), 50); !errors.As(err, &deep) {
		t.Fatalf("depth 100000: %v", err)
	}
	// Two-byte elements, as dense as BER gets: the size alone limits their number.
	wide := Encoder{}
	wide.Begin(0x30)
	for range 100000 {
		wide.Bytes(0x04, nil)
	}
	wide.End()
	if n, err := scan(wide.B, 10); err != nil || n != 100001 {
		t.Fatalf("100,000 empty strings: %d elements, %v", n, err)
	}
	for _, size := range []int{256 << 10, 1 << 20} {
		if err := Scan(denseSearch(size), 10); err != nil {
			t.Fatalf("a %d KiB OR of empty ANDs: %v", size>>10, err)
		}
	}
	if err := Scan([]byte{0x30, 0x03, 0x04, 0x05, 0x00}, 10); !errors.Is(err, ErrBadLength) {
		t.Fatalf("child longer than parent: %v", err)
	}
}

// samePacket reports where two go-asn1-ber trees differ, or "".
func samePacket(a, b *ber.Packet, path string) string {
	switch {
	case a.Identifier != b.Identifier:
		return path + ": identifier"
	case !reflect.DeepEqual(a.Value, b.Value) && !bothNaN(a.Value, b.Value):
		return fmt.Sprintf("%s: value %#v vs %#v", path, a.Value, b.Value)
	case a.TagType == ber.TypePrimitive && !bytes.Equal(a.Data.Bytes(), b.Data.Bytes()):
		return path + ": data"
	case !bytes.Equal(a.ByteValue, b.ByteValue):
		return path + ": byte value"
	case len(a.Children) != len(b.Children):
		return fmt.Sprintf("%s: %d vs %d children", path, len(a.Children), len(b.Children))
	}
	for i := range a.Children {
		if d := samePacket(a.Children[i], b.Children[i], fmt.Sprintf("%s/%d", path, i)); d != "" {
			return d
		}
	}
	return ""
}

func bothNaN(a, b any) bool {
	x, ok1 := a.(float64)
	y, ok2 := b.(float64)
	return ok1 && ok2 && math.IsNaN(x) && math.IsNaN(y)
}

func FuzzDecodeMatchesGoASN1BER(f *testing.F) {
	f.Add(bindResponse(3, 49, "bad"))
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0xff})
	f.Add([]byte{0x30, 0x07, 0x1f, 0x81, 0x00, 0x02, 0x01, 0x05, 0x00})
	f.Add([]byte{0x30, 0x05, 0x0c, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if Scan(msg, 64) != nil {
			return
		}
		want, werr := ber.DecodePacketErr(msg)
		got, gerr := Decode(msg)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("go-asn1-ber: %v, Decode: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if d := samePacket(got, want, ""); d != "" {
			t.Fatalf("% x: %s", msg, d)
		}
		// Given the message as a string, the same packets.
		in, err := DecodeIn(msg, string(msg))
		if err != nil {
			t.Fatalf("DecodeIn: %v", err)
		}
		if d := samePacket(in, want, ""); d != "" {
			t.Fatalf("DecodeIn % x: %s", msg, d)
		}
	})
}

// TestDecodeInSharesText checks that DecodeIn makes the OCTET STRING values slices of
// the text it is given, not a copy, and refuses a text that is not the message's size.
func TestDecodeInSharesText(t *testing.T) {
	msg := bindResponse(3, 49, "bad credentials")
	text := string(msg)
	copied := testing.AllocsPerRun(10, func() { Decode(msg) })
	if n := testing.AllocsPerRun(10, func() { DecodeIn(msg, text) }); n != copied-1 {
		t.Errorf("%v allocations, want %v: one fewer than Decode", n, copied-1)
	}
	if _, err := DecodeIn(msg, text[1:]); err == nil {
		t.Error("a text shorter than the message was taken")
	}
}

func BenchmarkDecode(b *testing.B) {
	msg := bindResponse(7, 0, "some diagnostic text")
	for _, impl := range []struct {
		name string
		fn   func([]byte) (*ber.Packet, error)
	}{{"ldapwire", Decode}, {"go-asn1-ber", ber.DecodePacketErr}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := impl.fn(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// denseSearch is a search request of about size bytes whose filter is an OR of empty
// ANDs (absolute true, RFC 4526), two bytes each: the most elements a message of that
// size holds.
func denseSearch(size int) []byte {
	var items []byte
	for len(items) < size-64 {
		items = append(items, 0xa0, 0x00)
	}
	or := appendTLV(nil, 0xa1, items)
	var op []byte
	op = appendTLV(op, 0x04, []byte("dc=example"))
	op = appendTLV(op, 0x0a, []byte{2})
	op = appendTLV(op, 0x0a, []byte{0})
	op = appendTLV(op, 0x02, []byte{0})
	op = appendTLV(op, 0x02, []byte{0})
	op = appendTLV(op, 0x01, []byte{0})
	op = append(op, or...)
	op = appendTLV(op, 0x30, nil)
	var msg []byte
	msg = appendTLV(msg, 0x02, []byte{1})
	msg = appendTLV(msg, 0x63, op)
	return appendTLV(nil, 0x30, msg)
}

func appendTLV(b []byte, tag byte, content []byte) []byte {
	b = append(b, tag)
	switch n := len(content); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, content...)
}

// BenchmarkDecodeDense decodes the densest request max_message_size admits: its cost per
// element bounds what decoding a request costs (see Scan).
func BenchmarkDecodeDense(b *testing.B) {
	for _, size := range []int{256 << 10, 1 << 20} {
		msg := denseSearch(size)
		elements := (size - 64) / 2
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(elements), "ns/element")
		})
	}
}
