package ldapserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Request encodings used by the tests of this package. They are built with go-asn1-ber,
// the encoder go-ldap uses, so they look like what a real client sends.

func ldapMessage(id int64, op *ber.Packet, controls ...ldap.Control) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "")
		for _, c := range controls {
			cs.AppendChild(c.Encode())
		}
		p.AppendChild(cs)
	}
	return p.Bytes()
}

func octets(s string) *ber.Packet {
	return ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, s, "")
}

func bindOp(name, password string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, ""))
	op.AppendChild(octets(name))
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, ""))
	return op
}

func saslBindOp(name, mechanism, credentials string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, ""))
	op.AppendChild(octets(name))
	auth := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "")
	auth.AppendChild(octets(mechanism))
	auth.AppendChild(octets(credentials))
	op.AppendChild(auth)
	return op
}

// searchOp builds a search request; it panics on a filter that does not compile, which
// only a broken test can pass.
func searchOp(base string, scope int, filter string, attrs ...string) *ber.Packet {
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		panic(err)
	}
	return searchOpWithFilter(base, scope, f, attrs...)
}

func searchOpWithFilter(base string, scope int, filter *ber.Packet, attrs ...string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	op.AppendChild(octets(base))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, scope, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	op.AppendChild(filter)
	as := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range attrs {
		as.AppendChild(octets(a))
	}
	op.AppendChild(as)
	return op
}

func compareOp(dn, attr, value string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationCompareRequest, nil, "")
	op.AppendChild(octets(dn))
	ava := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	ava.AppendChild(octets(attr))
	ava.AppendChild(octets(value))
	op.AppendChild(ava)
	return op
}

func extendedOp(oid string, value []byte) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oid, ""))
	if value != nil {
		op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, string(value), ""))
	}
	return op
}

func modifyOp(dn, attr string, values ...string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationModifyRequest, nil, "")
	op.AppendChild(octets(dn))
	changes := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	ch := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	ch.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, ""))
	mod := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	mod.AppendChild(octets(attr))
	vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
	for _, v := range values {
		vals.AppendChild(octets(v))
	}
	mod.AppendChild(vals)
	ch.AppendChild(mod)
	changes.AppendChild(ch)
	op.AppendChild(changes)
	return op
}

func abandonOp(id int64) *ber.Packet {
	return ber.NewInteger(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationAbandonRequest, id, "")
}

func unbindOp() *ber.Packet {
	return ber.Encode(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationUnbindRequest, nil, "")
}

func deleteOp(dn string) *ber.Packet {
	return ber.NewString(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationDelRequest, dn, "")
}

// berElement encodes one element by hand, with the minimal length form, for inputs that
// go-asn1-ber refuses to produce.
func berElement(tag byte, content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	return append(append([]byte{tag}, berLength(len(body))...), body...)
}

func berLength(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n < 0x100:
		return []byte{0x81, byte(n)}
	case n < 0x10000:
		return []byte{0x82, byte(n >> 8), byte(n)}
	case n < 0x1000000:
		return []byte{0x83, byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// nestedNotFilter encodes (!(!(...(a=b)...))) with depth NOT operators, without recursion
// and in linear time, so that a 10,000-deep filter costs nothing to build.
func nestedNotFilter(depth int) []byte {
	inner := berElement(0xa3, berElement(0x04, []byte("a")), berElement(0x04, []byte("b")))
	headers := make([][]byte, depth)
	n := len(inner)
	for i := depth - 1; i >= 0; i-- {
		headers[i] = append([]byte{0xa2}, berLength(n)...)
		n += len(headers[i])
	}
	out := make([]byte, 0, n)
	for _, h := range headers {
		out = append(out, h...)
	}
	return append(out, inner...)
}

// searchWithRawFilter encodes a complete search request message around filter bytes.
func searchWithRawFilter(id byte, filter []byte) []byte {
	op := berElement(0x63,
		berElement(0x04, []byte("dc=example")),
		[]byte{0x0a, 0x01, 0x02, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00},
		filter,
		[]byte{0x30, 0x00})
	return berElement(0x30, []byte{0x02, 0x01, id}, op)
}

// --- encoding ---

// octetStringOfSize returns an OCTET STRING whose whole encoding is exactly n bytes, and
// the length of its value.
func octetStringOfSize(t testing.TB, n int) ([]byte, int) {
	for hdr := 2; hdr <= 6; hdr++ {
		v := n - hdr
		if v >= 0 && 1+len(berLength(v)) == hdr {
			return berElement(0x04, bytes.Repeat([]byte{'v'}, v)), v
		}
	}
	t.Fatalf("no OCTET STRING encodes to exactly %d bytes", n)
	return nil, 0
}

func TestEncoderLengthForms(t *testing.T) {
	tests := []struct {
		n      int
		header []byte // identifier and length octets
	}{
		{0, []byte{0x04, 0x00}},
		{1, []byte{0x04, 0x01}},
		{127, []byte{0x04, 0x7f}},
		{128, []byte{0x04, 0x81, 0x80}},
		{255, []byte{0x04, 0x81, 0xff}},
		{256, []byte{0x04, 0x82, 0x01, 0x00}},
		{65535, []byte{0x04, 0x82, 0xff, 0xff}},
		{65536, []byte{0x04, 0x83, 0x01, 0x00, 0x00}},
		{1<<24 - 1, []byte{0x04, 0x83, 0xff, 0xff, 0xff}},
		{1 << 24, []byte{0x04, 0x84, 0x01, 0x00, 0x00, 0x00}},
	}
	for _, tt := range tests {
		value := strings.Repeat("x", tt.n)

		// Primitive elements get their length up front.
		var e encoder
		e.Str(0x04, value)
		if !bytes.Equal(e.B[:len(tt.header)], tt.header) || len(e.B) != len(tt.header)+tt.n {
			t.Errorf("str(%d bytes): header % x, total %d; want header % x, total %d",
				tt.n, e.B[:min(len(e.B), 6)], len(e.B), tt.header, len(tt.header)+tt.n)
		}
		p, err := ber.DecodePacketErr(e.B)
		if err != nil || p.Data.Len() != tt.n {
			t.Errorf("str(%d bytes) does not decode back: %v", tt.n, err)
		}

		// Constructed elements are closed afterwards: end must write the same minimal
		// form and shift the content without damaging it.
		if tt.n == 1 {
			continue // no element encodes to one byte
		}
		var content []byte
		valueLen := 0
		if tt.n > 0 {
			content, valueLen = octetStringOfSize(t, tt.n)
		}
		e = encoder{B: []byte{0xee}} // a byte before the element must survive the shift
		e.Begin(0x30)
		e.Raw(content)
		e.End()
		wantHeader := append([]byte{0x30}, tt.header[1:]...)
		if e.B[0] != 0xee || !bytes.Equal(e.B[1:1+len(wantHeader)], wantHeader) {
			t.Errorf("end(%d bytes): header % x, want % x", tt.n, e.B[1:min(len(e.B), 7)], wantHeader)
			continue
		}
		if !bytes.Equal(e.B[1+len(wantHeader):], content) {
			t.Errorf("end(%d bytes): content damaged by the shift", tt.n)
		}
		p, err = ber.DecodePacketErr(e.B[1:])
		if err != nil {
			t.Errorf("end(%d bytes) does not decode: %v", tt.n, err)
		} else if tt.n > 0 && (len(p.Children) != 1 || p.Children[0].Data.Len() != valueLen) {
			t.Errorf("end(%d bytes) decodes to the wrong child", tt.n)
		}
	}
}

func TestEncoderInt(t *testing.T) {
	tests := []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{-1, []byte{0xff}},
		{127, []byte{0x7f}},
		{128, []byte{0x00, 0x80}},
		{-128, []byte{0x80}},
		{-129, []byte{0xff, 0x7f}},
		{255, []byte{0x00, 0xff}},
		{256, []byte{0x01, 0x00}},
		{32767, []byte{0x7f, 0xff}},
		{32768, []byte{0x00, 0x80, 0x00}},
		{-32768, []byte{0x80, 0x00}},
		{-32769, []byte{0xff, 0x7f, 0xff}},
		{math.MaxInt32, []byte{0x7f, 0xff, 0xff, 0xff}},
		{math.MinInt32, []byte{0x80, 0x00, 0x00, 0x00}},
		{math.MaxInt64, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{math.MinInt64, []byte{0x80, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		var e encoder
		e.Int(tagInteger, tt.v)
		want := append([]byte{tagInteger, byte(len(tt.want))}, tt.want...)
		if !bytes.Equal(e.B, want) {
			t.Errorf("int(%d) = % x, want % x", tt.v, e.B, want)
		}
		if got, err := parseInt(e.B[2:]); err != nil || got != tt.v {
			t.Errorf("parseInt(int(%d)) = %d, %v", tt.v, got, err)
		}
		if got, err := ber.ParseInt64(e.B[2:]); err != nil || got != tt.v {
			t.Errorf("go-asn1-ber reads int(%d) as %d, %v", tt.v, got, err)
		}
	}
}

func TestParseIntRejectsBadLengths(t *testing.T) {
	for _, b := range [][]byte{nil, {}, make([]byte, 9)} {
		if _, err := parseInt(b); err == nil {
			t.Errorf("parseInt(% x) accepted an integer of %d bytes", b, len(b))
		}
	}
}

// resultFields is what a client reads back from an LDAPResult.
type resultFields struct {
	id                 int64
	appTag             ber.Tag
	code               int64
	matched, diag      string
	referral           []string
	respName, respVal  string
	hasRespVal         bool
	controls           []Control
	controlsAsGoLDAP   []ldap.Control
	goLDAPResultCode   uint16
	goLDAPErrorPresent bool
}

func decodeResult(t *testing.T, b []byte) resultFields {
	t.Helper()
	p, err := ber.DecodePacketErr(b)
	if err != nil {
		t.Fatalf("response does not decode: %v", err)
	}
	if len(p.Children) < 2 {
		t.Fatalf("response has %d elements", len(p.Children))
	}
	var f resultFields
	f.id = p.Children[0].Value.(int64)
	op := p.Children[1]
	if op.ClassType != ber.ClassApplication || op.TagType != ber.TypeConstructed || len(op.Children) < 3 {
		t.Fatalf("protocolOp is not an LDAPResult: %s", ber.DescribePacket(op))
	}
	f.appTag = op.Tag
	f.code = op.Children[0].Value.(int64)
	f.matched = op.Children[1].Data.String()
	f.diag = op.Children[2].Data.String()
	for _, c := range op.Children[3:] {
		switch {
		case c.ClassType == ber.ClassContext && c.Tag == 3:
			for _, u := range c.Children {
				f.referral = append(f.referral, u.Data.String())
			}
		case c.ClassType == ber.ClassContext && c.Tag == 10:
			f.respName = c.Data.String()
		case c.ClassType == ber.ClassContext && c.Tag == 11:
			f.respVal, f.hasRespVal = c.Data.String(), true
		default:
			t.Fatalf("unexpected element in the result: %s", ber.DescribePacket(c))
		}
	}
	if len(p.Children) == 3 {
		for _, c := range p.Children[2].Children {
			ctl := Control{Type: c.Children[0].Data.String()}
			for _, x := range c.Children[1:] {
				switch x.Tag {
				case ber.TagBoolean:
					ctl.Critical = x.Value.(bool)
				case ber.TagOctetString:
					ctl.Value, ctl.HasValue = x.Data.Bytes(), true
				}
			}
			f.controls = append(f.controls, ctl)
			gc, err := ldap.DecodeControl(c)
			if err != nil {
				t.Fatalf("go-ldap cannot decode the response control %s: %v", ctl.Type, err)
			}
			f.controlsAsGoLDAP = append(f.controlsAsGoLDAP, gc)
		}
	}
	if err := ldap.GetLDAPError(p); err != nil {
		var le *ldap.Error
		if !errors.As(err, &le) {
			t.Fatalf("go-ldap reads the result as %v", err)
		}
		f.goLDAPErrorPresent, f.goLDAPResultCode = true, le.ResultCode
	}
	return f
}

func TestAppendResultRoundTrip(t *testing.T) {
	paging := ldap.NewControlPaging(5)
	paging.SetCookie([]byte("next"))
	pagingWire := controlFromLDAP(paging)
	long := strings.Repeat("d", 300)
	tests := []struct {
		name    string
		id      int64
		op      Op
		res     Result
		wantTag ber.Tag
	}{
		{"bind success", 1, OpBind, Result{}, ldap.ApplicationBindResponse},
		{"bind invalid credentials", 2, OpBind, Result{Code: 49, Diagnostic: "bad password"}, ldap.ApplicationBindResponse},
		{"search done with paging control", 127, OpSearch, Result{Controls: []Control{pagingWire}}, ldap.ApplicationSearchResultDone},
		{"search done, message ID 128", 128, OpSearch, Result{Code: 32, MatchedDN: "dc=example"}, ldap.ApplicationSearchResultDone},
		{"compare true, long diagnostic", 1<<31 - 1, OpCompare, Result{Code: 6, Diagnostic: long}, ldap.ApplicationCompareResponse},
		{"modify referral", 3, OpModify, Result{Code: 10, Referral: []string{"ldap://a/dc=x", "ldap://b/dc=x"}}, ldap.ApplicationModifyResponse},
		{"add", 4, OpAdd, Result{Code: 53}, ldap.ApplicationAddResponse},
		{"delete", 5, OpDelete, Result{Code: 53}, ldap.ApplicationDelResponse},
		{"modify DN", 6, OpModifyDN, Result{Code: 53}, ldap.ApplicationModifyDNResponse},
		{"extended with name and value", 7, OpExtended, Result{ResponseName: OIDWhoAmI, ResponseValue: []byte("dn:cn=a"), HasValue: true}, ldap.ApplicationExtendedResponse},
		{"extended with an empty value", 8, OpExtended, Result{HasValue: true}, ldap.ApplicationExtendedResponse},
		{"critical control without value", 9, OpSearch, Result{Controls: []Control{{Type: "1.2.3", Critical: true}}}, ldap.ApplicationSearchResultDone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := decodeResult(t, appendResult(nil, tt.id, tt.op, &tt.res))
			if f.id != tt.id || f.appTag != tt.wantTag || f.code != int64(tt.res.Code) ||
				f.matched != tt.res.MatchedDN || f.diag != tt.res.Diagnostic {
				t.Errorf("decoded id=%d tag=%d code=%d matched=%q diag=%q; want %d %d %d %q %q",
					f.id, f.appTag, f.code, f.matched, f.diag, tt.id, tt.wantTag, tt.res.Code, tt.res.MatchedDN, tt.res.Diagnostic)
			}
			if strings.Join(f.referral, " ") != strings.Join(tt.res.Referral, " ") {
				t.Errorf("referral %q, want %q", f.referral, tt.res.Referral)
			}
			if f.respName != tt.res.ResponseName || f.respVal != string(tt.res.ResponseValue) || f.hasRespVal != tt.res.HasValue {
				t.Errorf("extended response %q/%q/%v, want %q/%q/%v", f.respName, f.respVal, f.hasRespVal,
					tt.res.ResponseName, tt.res.ResponseValue, tt.res.HasValue)
			}
			if len(f.controls) != len(tt.res.Controls) {
				t.Fatalf("%d controls, want %d", len(f.controls), len(tt.res.Controls))
			}
			for i, c := range tt.res.Controls {
				g := f.controls[i]
				if g.Type != c.Type || g.Critical != c.Critical || !bytes.Equal(g.Value, c.Value) || g.HasValue != (c.HasValue || len(c.Value) > 0) {
					t.Errorf("control %d = %+v, want %+v", i, g, c)
				}
			}
			if f.goLDAPErrorPresent != (tt.res.Code != 0) || (tt.res.Code != 0 && f.goLDAPResultCode != tt.res.Code) {
				t.Errorf("go-ldap reads result code %d (error %v), want %d", f.goLDAPResultCode, f.goLDAPErrorPresent, tt.res.Code)
			}
			if tt.name == "search done with paging control" {
				pc, ok := f.controlsAsGoLDAP[0].(*ldap.ControlPaging)
				if !ok || pc.PagingSize != 5 || string(pc.Cookie) != "next" {
					t.Errorf("go-ldap reads the paging control as %v", f.controlsAsGoLDAP[0])
				}
			}
		})
	}
}

func TestAppendNotice(t *testing.T) {
	f := decodeResult(t, appendNotice(nil, ldap.LDAPResultUnavailable, "too many connections"))
	if f.id != 0 || f.appTag != ldap.ApplicationExtendedResponse || f.code != ldap.LDAPResultUnavailable ||
		f.respName != OIDNoticeOfDisconnection || f.diag != "too many connections" || f.hasRespVal {
		t.Errorf("notice decodes as %+v", f)
	}
}

func TestAppendEntryAndReference(t *testing.T) {
	sizes := []int{0, 1, 127, 128, 255, 256, 65535, 65536}
	ent := &Entry{DN: "cn=boundaries,dc=example"}
	for _, n := range sizes {
		ent.Attributes = append(ent.Attributes, Attribute{Name: "v" + strings.Repeat("x", n%7), Values: [][]byte{bytes.Repeat([]byte{byte(n)}, n)}})
	}
	ent.Attributes = append(ent.Attributes, Attribute{Name: "multi", Values: [][]byte{[]byte("a"), []byte("b"), []byte("c")}}, Attribute{Name: "empty"})
	ctl := Control{Type: "1.2.3.4", Value: []byte("x"), HasValue: true}

	for _, typesOnly := range []bool{false, true} {
		b := appendEntry(nil, 42, ent, typesOnly, []Control{ctl})
		p, err := ber.DecodePacketErr(b)
		if err != nil {
			t.Fatalf("entry does not decode: %v", err)
		}
		op := p.Children[1]
		if p.Children[0].Value.(int64) != 42 || op.ClassType != ber.ClassApplication || op.Tag != ldap.ApplicationSearchResultEntry {
			t.Fatalf("entry header decodes as %s", ber.DescribePacket(op))
		}
		if op.Children[0].Data.String() != ent.DN || len(op.Children[1].Children) != len(ent.Attributes) {
			t.Fatalf("entry decodes with DN %q and %d attributes", op.Children[0].Data.String(), len(op.Children[1].Children))
		}
		for i, a := range op.Children[1].Children {
			want := ent.Attributes[i]
			if a.Children[0].Data.String() != want.Name {
				t.Errorf("attribute %d named %q, want %q", i, a.Children[0].Data.String(), want.Name)
			}
			vals := a.Children[1].Children
			if typesOnly {
				if len(vals) != 0 {
					t.Errorf("typesOnly entry carries %d values for %s", len(vals), want.Name)
				}
				continue
			}
			if len(vals) != len(want.Values) {
				t.Fatalf("attribute %s has %d values, want %d", want.Name, len(vals), len(want.Values))
			}
			for j, v := range vals {
				if !bytes.Equal(v.Data.Bytes(), want.Values[j]) {
					t.Errorf("attribute %s value %d differs (%d bytes, want %d)", want.Name, j, v.Data.Len(), len(want.Values[j]))
				}
			}
		}
		if len(p.Children) != 3 || p.Children[2].Children[0].Children[0].Data.String() != ctl.Type {
			t.Errorf("entry control lost")
		}
	}

	b := appendReference(nil, 7, []string{"ldap://a/dc=x", strings.Repeat("u", 200)}, nil)
	p, err := ber.DecodePacketErr(b)
	if err != nil {
		t.Fatalf("reference does not decode: %v", err)
	}
	op := p.Children[1]
	if op.Tag != ldap.ApplicationSearchResultReference || len(op.Children) != 2 || op.Children[1].Data.Len() != 200 || len(p.Children) != 2 {
		t.Errorf("reference decodes as %s with %d children", ber.DescribePacket(op), len(op.Children))
	}
}

// TestResponsesDecodeWithGoLDAP feeds the encoder's output to a go-ldap client over a
// pipe, so the check is a real client's decoder rather than this package's idea of BER.
func TestResponsesDecodeWithGoLDAP(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	lc := ldap.NewConn(cli, false)
	lc.Start()
	defer lc.Close()
	lc.SetTimeout(5 * time.Second)

	big := bytes.Repeat([]byte("z"), 70000)
	entries := []*Entry{
		{DN: "cn=a,dc=example", Attributes: []Attribute{{Name: "cn", Values: [][]byte{[]byte("a")}}, {Name: "blob", Values: [][]byte{big}}}},
		{DN: strings.Repeat("d", 130), Attributes: []Attribute{{Name: "v", Values: [][]byte{bytes.Repeat([]byte("y"), 255), bytes.Repeat([]byte("y"), 256)}}}},
	}
	paging := ldap.NewControlPaging(0)
	paging.SetCookie([]byte("cookie"))

	served := make(chan error, 1)
	go func() {
		served <- func() error {
			r := bufio.NewReader(srv)
			for {
				req, err := ber.ReadPacket(r)
				if err != nil {
					return nil
				}
				id := req.Children[0].Value.(int64)
				var out []byte
				switch req.Children[1].Tag {
				case ldap.ApplicationSearchRequest:
					for _, e := range entries {
						out = appendEntry(out, id, e, false, nil)
					}
					out = appendReference(out, id, []string{"ldap://other/dc=example"}, nil)
					out = appendResult(out, id, OpSearch, &Result{Controls: []Control{controlFromLDAP(paging)}})
				case ldap.ApplicationCompareRequest:
					out = appendResult(out, id, OpCompare, &Result{Code: ldap.LDAPResultCompareTrue})
				case ldap.ApplicationExtendedRequest:
					out = appendResult(out, id, OpExtended, &Result{ResponseValue: []byte("dn:cn=a"), HasValue: true})
				case ldap.ApplicationBindRequest:
					out = appendResult(out, id, OpBind, &Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "no"})
				default:
					return nil
				}
				if _, err := srv.Write(out); err != nil {
					return err
				}
			}
		}()
	}()

	sr, err := lc.Search(ldap.NewSearchRequest("dc=example", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(cn=*)", nil, nil))
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	if len(sr.Entries) != 2 || sr.Entries[0].DN != entries[0].DN || !bytes.Equal(sr.Entries[0].GetRawAttributeValue("blob"), big) ||
		sr.Entries[1].DN != entries[1].DN || len(sr.Entries[1].GetRawAttributeValues("v")[1]) != 256 {
		t.Errorf("go-ldap decoded the entries wrongly: %d entries", len(sr.Entries))
	}
	if len(sr.Referrals) != 1 || sr.Referrals[0] != "ldap://other/dc=example" {
		t.Errorf("referrals = %q", sr.Referrals)
	}
	if pc, ok := ldap.FindControl(sr.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging); !ok || string(pc.Cookie) != "cookie" {
		t.Errorf("paging control not decoded: %v", sr.Controls)
	}
	if ok, err := lc.Compare("cn=a", "cn", "a"); err != nil || !ok {
		t.Errorf("compare = %v, %v; want true", ok, err)
	}
	if who, err := lc.WhoAmI(nil); err != nil || who.AuthzID != "dn:cn=a" {
		t.Errorf("whoami = %+v, %v", who, err)
	}
	if err := lc.Bind("cn=a", "x"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("bind error = %v, want invalidCredentials", err)
	}
	lc.Close()
	if err := <-served; err != nil {
		t.Errorf("fake server: %v", err)
	}
}

// --- framing and scanning ---

func TestReadFrame(t *testing.T) {
	body127 := append([]byte{0x30, 0x7f}, make([]byte, 127)...)
	body128 := append([]byte{0x30, 0x81, 0x80}, make([]byte, 128)...)
	tests := []struct {
		name    string
		in      []byte
		limit   int64
		want    []byte // the frame, when no error
		wantErr error
	}{
		{"short form", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, 100, []byte{0x30, 0x03, 0x02, 0x01, 0x01}, nil},
		{"empty sequence", []byte{0x30, 0x00}, 100, []byte{0x30, 0x00}, nil},
		{"127 bytes, short form", body127, 200, body127, nil},
		{"128 bytes, long form", body128, 200, body128, nil},
		{"non-minimal 4-byte length", []byte{0x30, 0x84, 0, 0, 0, 1, 0xaa}, 100, []byte{0x30, 0x84, 0, 0, 0, 1, 0xaa}, nil},
		{"trailing bytes left for the next frame", []byte{0x30, 0x01, 0xaa, 0x30}, 100, []byte{0x30, 0x01, 0xaa}, nil},
		{"exactly at the limit", []byte{0x30, 0x03, 1, 2, 3}, 5, []byte{0x30, 0x03, 1, 2, 3}, nil},
		{"one byte over the limit", []byte{0x30, 0x03, 1, 2, 3}, 4, nil, errTooLarge{Size: 5, Limit: 4}},
		{"2 GiB header", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, 1 << 20, nil, errTooLarge{Size: 0x7fffffff + 6, Limit: 1 << 20}},
		{"4 GiB header", []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}, 1 << 20, nil, errTooLarge{Size: 0xffffffff + 6, Limit: 1 << 20}},
		{"nothing at all", nil, 100, nil, io.EOF},
		{"not a sequence", []byte{0x31, 0x00}, 100, nil, errNotSequence},
		{"indefinite length", []byte{0x30, 0x80, 0, 0}, 100, nil, errIndefinite},
		{"5-byte length", []byte{0x30, 0x85, 0, 0, 0, 0, 1, 0}, 100, nil, errLengthTooLong},
		{"truncated after the tag", []byte{0x30}, 100, nil, io.ErrUnexpectedEOF},
		{"truncated length", []byte{0x30, 0x82, 0x01}, 1000, nil, io.ErrUnexpectedEOF},
		{"truncated body", []byte{0x30, 0x05, 0x02, 0x01}, 100, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readFrame(bufio.NewReader(bytes.NewReader(tt.in)), tt.limit, nil)
			if tt.wantErr != nil {
				if err != tt.wantErr {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("readFrame = % x, %v; want % x", got, err, tt.want)
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	in := bytes.Repeat([]byte{0x30, 0x02, 0x05, 0x00}, 3)
	r := bufio.NewReader(bytes.NewReader(in))
	buf := make([]byte, 0, 64)
	for i := 0; i < 3; i++ {
		got, err := readFrame(r, 100, buf)
		if err != nil || !bytes.Equal(got, in[:4]) {
			t.Fatalf("frame %d = % x, %v", i, got, err)
		}
		if &got[0] != &buf[:1][0] {
			t.Fatalf("frame %d was not read into the buffer passed in", i)
		}
	}
	if _, err := readFrame(r, 100, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// nested returns depth constructed SEQUENCEs around an empty OCTET STRING.
func nested(depth int) []byte {
	b := []byte{0x04, 0x00}
	for i := 0; i < depth; i++ {
		b = berElement(0x30, b)
	}
	return b
}

func TestScanBER(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		maxDepth int
		wantErr  error
	}{
		{"primitive", []byte{0x04, 0x01, 'a'}, 4, nil},
		{"empty primitive", []byte{0x04, 0x00}, 4, nil},
		{"empty sequence", []byte{0x30, 0x00}, 4, nil},
		{"sequence of three", []byte{0x30, 0x08, 0x02, 0x01, 0x01, 0x30, 0x00, 0x04, 0x01, 'x'}, 4, nil},
		{"empty sequence before a sibling", []byte{0x30, 0x05, 0x30, 0x00, 0x04, 0x01, 'x'}, 4, nil},
		{"long-form length", berElement(0x30, berElement(0x04, make([]byte, 300))), 4, nil},
		{"real bind request", ldapMessage(1, bindOp("cn=a", "b")), 4, nil},
		{"depth exactly at the limit", nested(10), 10, nil},
		{"depth one over the limit", nested(11), 10, errTooDeep{Limit: 10}},
		{"high tag number", []byte{0x1f, 0x81, 0x01, 0x00}, 4, nil},
		{"high tag number, constructed", []byte{0x7f, 0x82, 0x03, 0x02, 0x04, 0x00}, 4, nil},
		{"high tag number of 4 bytes", []byte{0x1f, 0x81, 0x81, 0x81, 0x01, 0x00}, 4, nil},
		{"high tag number of 5 bytes", []byte{0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, 4, ldapwire.ErrTagTooLong},
		{"truncated high tag number", []byte{0x1f, 0x81}, 4, ldapwire.ErrTruncated},
		{"empty", nil, 4, ldapwire.ErrTruncated},
		{"tag only", []byte{0x30}, 4, ldapwire.ErrTruncated},
		{"truncated long-form length", []byte{0x30, 0x82, 0x01}, 4, ldapwire.ErrTruncated},
		{"content shorter than its length", []byte{0x04, 0x05, 'a'}, 4, ldapwire.ErrBadLength},
		{"child longer than its container", []byte{0x30, 0x03, 0x04, 0x03, 'a', 'b', 'c'}, 4, ldapwire.ErrBadLength},
		{"child header beyond its container", []byte{0x30, 0x01, 0x04, 0x00}, 4, ldapwire.ErrBadLength},
		{"trailing bytes", []byte{0x04, 0x00, 0x00}, 4, ldapwire.ErrBadLength},
		{"indefinite length inside", []byte{0x30, 0x04, 0x30, 0x80, 0x00, 0x00}, 4, errIndefinite},
		{"5-byte length inside", []byte{0x30, 0x07, 0x04, 0x85, 0, 0, 0, 0, 0}, 4, errLengthTooLong},
		{"4 GiB length inside", []byte{0x30, 0x06, 0x04, 0x84, 0xff, 0xff, 0xff, 0xff}, 4, ldapwire.ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := scanBER(tt.in, tt.maxDepth); err != tt.wantErr {
				t.Fatalf("scanBER(% x) = %v, want %v", tt.in[:min(len(tt.in), 16)], err, tt.wantErr)
			}
		})
	}
}

func TestScanBERDeepFilterIsLinear(t *testing.T) {
	msg := searchWithRawFilter(1, nestedNotFilter(200000))
	start := time.Now()
	if err := scanBER(msg, 104); err != (errTooDeep{Limit: 104}) {
		t.Fatalf("scanBER = %v, want errTooDeep", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("scanning a 200,000-deep filter took %v", d)
	}
}

func TestPeekHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantID  int64
		wantTag byte
		wantErr bool
	}{
		{"bind", ldapMessage(5, bindOp("", "")), 5, 0x60, false},
		{"unbind", ldapMessage(300, unbindOp()), 300, 0x42, false},
		{"largest message ID", ldapMessage(1<<31-1, deleteOp("cn=x")), 1<<31 - 1, 0x4a, false},
		{"message ID 0", []byte{0x30, 0x05, 0x02, 0x01, 0x00, 0x42, 0x00}, 0, 0x42, false},
		{"high tag number operation", []byte{0x30, 0x06, 0x02, 0x01, 0x07, 0x7f, 0x82, 0x03}, 7, 0x7f, false},
		{"negative message ID", []byte{0x30, 0x05, 0x02, 0x01, 0xff, 0x42, 0x00}, 0, 0, true},
		{"5-byte message ID", []byte{0x30, 0x09, 0x02, 0x05, 0, 0, 0, 0, 1, 0x42, 0x00}, 0, 0, true},
		{"empty message ID", []byte{0x30, 0x04, 0x02, 0x00, 0x42, 0x00}, 0, 0, true},
		{"message ID not an INTEGER", []byte{0x30, 0x05, 0x04, 0x01, 0x05, 0x42, 0x00}, 0, 0, true},
		{"no operation", []byte{0x30, 0x03, 0x02, 0x01, 0x05}, 5, 0, true},
		{"message ID beyond the message", []byte{0x30, 0x03, 0x02, 0x03, 0x05, 0x42, 0x00}, 0, 0, true},
		{"empty", nil, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, tag, err := peekHeader(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("peekHeader err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (id != tt.wantID || tag != tt.wantTag) {
				t.Fatalf("peekHeader = %d, %#x; want %d, %#x", id, tag, tt.wantID, tt.wantTag)
			}
		})
	}
}

// --- benchmarks ---

func BenchmarkDecodeBind(b *testing.B) {
	msg := ldapMessage(1, bindOp("uid=someone,ou=people,dc=example,dc=com", "secret"))
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := scanBER(msg, 104); err != nil {
			b.Fatal(err)
		}
		if _, err := decodeRequest(msg, DefaultMaxFilterDepth); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEntry(b *testing.B) {
	ent := &Entry{DN: "uid=someone,ou=people,dc=example,dc=com"}
	for _, name := range []string{"objectClass", "uid", "cn", "sn", "givenName", "mail", "uidNumber", "gidNumber", "homeDirectory", "memberOf"} {
		ent.Attributes = append(ent.Attributes, Attribute{Name: name, Values: [][]byte{[]byte("value-of-" + name), []byte("second")}})
	}
	buf := appendEntry(nil, 1, ent, false, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = appendEntry(buf[:0], 12345, ent, false, nil)
	}
}

func BenchmarkDecodeSearch(b *testing.B) {
	msg := ldapMessage(1, searchOp("dc=example,dc=com", 2, "(&(objectClass=inetOrgPerson)(uid=user1234))"))
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := scanBER(msg, 104); err != nil {
			b.Fatal(err)
		}
		if _, err := decodeRequest(msg, DefaultMaxFilterDepth); err != nil {
			b.Fatal(err)
		}
	}
}
