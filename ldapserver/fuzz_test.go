package ldapserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// requestSeeds are encodings of real requests of every kind, with and without controls.
func requestSeeds() [][]byte {
	paging := ldap.NewControlPaging(100)
	paging.SetCookie([]byte("cookie"))
	critical := &ldap.ControlString{ControlType: "1.2.840.113556.1.4.805", Criticality: true}
	filters := []string{
		"(objectClass=*)",
		"(cn=Babs Jensen)",
		"(&(objectClass=person)(|(uid=a*b*c)(mail=*@example.com))(!(cn<=m)))",
		"(cn~=bob)",
		"(uidNumber>=1000)",
		"(cn:dn:2.5.13.5:=Fred)",
		"(:1.2.3:=x)",
		"(o=Parens R Us \\28for all your parenthetical needs\\29)",
		"(objectGUID=\\04\\ff\\00\\80)",
		"(|(&)(!(|)))",
	}
	add := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationAddRequest, nil, "")
	add.AppendChild(octets("cn=new,dc=example"))
	add.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
	modDN := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationModifyDNRequest, nil, "")
	modDN.AppendChild(octets("cn=old,dc=example"))
	modDN.AppendChild(octets("cn=new"))
	modDN.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, ""))

	seeds := [][]byte{
		ldapMessage(1, bindOp("cn=alice,dc=example", "secret")),
		ldapMessage(2, bindOp("", "")),
		ldapMessage(3, saslBindOp("", "EXTERNAL", "")),
		ldapMessage(4, bindOp("cn=alice,dc=example", "secret"), critical),
		ldapMessage(10, compareOp("cn=alice,dc=example", "mail", "alice@example.com")),
		ldapMessage(11, extendedOp(OIDWhoAmI, nil)),
		ldapMessage(12, extendedOp(OIDStartTLS, nil)),
		ldapMessage(13, extendedOp(OIDPasswordModify, []byte{0x30, 0x05, 0x81, 0x03, 'o', 'l', 'd'})),
		ldapMessage(14, modifyOp("cn=alice,dc=example", "userPassword", "new")),
		ldapMessage(15, deleteOp("cn=alice,dc=example")),
		ldapMessage(16, add),
		ldapMessage(17, modDN),
		ldapMessage(18, abandonOp(5)),
		ldapMessage(19, unbindOp()),
		searchWithRawFilter(20, nestedNotFilter(50)),
	}
	for i, f := range filters {
		seeds = append(seeds, ldapMessage(int64(100+i), searchOp("dc=example", i%4, f, "cn", "mail")))
	}
	seeds = append(seeds,
		ldapMessage(200, searchOp("dc=example", 2, "(cn=*)"), paging),
		ldapMessage(201, searchOp("", 0, "(objectClass=*)", "+", "*"), paging, critical),
	)
	return seeds
}

// tagOfOp is opByTag reversed.
func tagOfOp() map[Op]ber.Tag {
	m := make(map[Op]ber.Tag, len(opByTag))
	for tag, op := range opByTag {
		m[op] = ber.Tag(tag)
	}
	return m
}

// FuzzDecodeRequest feeds the decoder what the read loop would: anything that passes the
// structural scan. The decoder must not panic, must refuse with errMalformed, and what it
// accepts must be usable by a handler: answerable, loggable, and for a search a filter
// that renders without a filter choice RFC 4511 does not define, which go-ldap would show
// as "()". (The rendering is for logs; requests travel upstream as the client's bytes.)
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s)
	}
	tags := tagOfOp()
	f.Fuzz(func(t *testing.T, msg []byte) {
		if err := scanBER(msg, 104); err != nil {
			return
		}
		req, err := decodeRequest(msg, DefaultMaxFilterDepth)
		if d := sameDecoding(msg, req, err); d != "" {
			t.Fatal(d)
		}
		if err != nil {
			var m errMalformed
			if !errors.As(err, &m) {
				t.Fatalf("decode error %v (%T) is not errMalformed", err, err)
			}
			if req != nil && (req.MessageID < 1 || req.MessageID > 1<<31-1 || req.Op == 0) {
				t.Fatalf("refused request carries message ID %d, op %d", req.MessageID, req.Op)
			}
			return
		}
		if req.MessageID < 1 || req.MessageID > 1<<31-1 {
			t.Fatalf("accepted message ID %d", req.MessageID)
		}
		p, err := ber.DecodePacketErr(msg)
		if err != nil {
			t.Fatalf("decodeRequest accepted what go-asn1-ber refuses: %v", err)
		}
		if got := p.Children[1].Tag; got != tags[req.Op] {
			t.Fatalf("protocolOp tag %d decoded as %s", got, req.Op)
		}
		fields := map[Op]bool{OpBind: req.Bind != nil, OpSearch: req.Search != nil, OpCompare: req.Compare != nil,
			OpExtended: req.Extended != nil, OpModify: req.Modify != nil}
		for op, set := range fields {
			if set != (op == req.Op) {
				t.Fatalf("%s request with the %s field set: %v", req.Op, op, set)
			}
		}
		req.LogValue().Resolve()

		res := &Result{Diagnostic: "d", MatchedDN: "m", Controls: req.Controls, ResponseName: "1.2.3", ResponseValue: []byte("v")}
		if _, err := ber.DecodePacketErr(appendResult(nil, req.MessageID, req.Op, res)); err != nil {
			t.Fatalf("result for the request does not decode: %v", err)
		}
		if req.Search == nil {
			return
		}
		filter, err := req.Search.FilterString()
		if err != nil {
			t.Fatalf("accepted search whose filter does not render: %v", err)
		}
		if strings.Contains(filter, "()") {
			t.Fatalf("accepted search with an unknown filter choice: %s", filter)
		}
		ent := &Entry{DN: req.Search.BaseDN}
		for _, a := range req.Search.Attributes {
			ent.Attributes = append(ent.Attributes, Attribute{Name: a, Values: [][]byte{[]byte(a)}})
		}
		if _, err := ber.DecodePacketErr(appendEntry(nil, req.MessageID, ent, req.Search.TypesOnly, req.Controls)); err != nil {
			t.Fatalf("entry for the search does not decode: %v", err)
		}
	})
}

// sameDecoding reports how req and err, what decodeRequest made of msg, differ from
// what decodeTree makes of it (the packet tree of the whole message), or "".
func sameDecoding(msg []byte, req *Request, err error) string {
	want, wantErr := decodeTree(msg, DefaultMaxFilterDepth)
	if req != nil && req.op != nil {
		// The context made along with a search is no part of what was decoded.
		r := *req
		r.op = nil
		req = &r
	}
	if req != nil && req.Search != nil {
		// A search decoded in place has its filter's packet tree built when asked.
		q := *req.Search
		if q.FilterPacket() == nil {
			return "the filter of a search decoded in place does not decode"
		}
		r := *req
		r.Search = &q
		req = &r
	}
	switch {
	case (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error():
		return fmt.Sprintf("decoded with error %v, from the packet tree %v", err, wantErr)
	case !reflect.DeepEqual(req, want):
		return fmt.Sprintf("decoded %#v, from the packet tree %#v", req, want)
	}
	return ""
}

// TestDecodeSearchInPlace checks that searches are decoded without the packet tree of the
// whole message (nor of their filter, until it is asked for), into what that tree gives: with and without controls and attributes,
// every scope and filter choice, a base, attribute or filter value of every length
// form; and that anything else (other operations, tags, forms or values than a search
// has, which decodeTree answers) is left to decodeTree.
func TestDecodeSearchInPlace(t *testing.T) {
	long := strings.Repeat("x", 300)
	var searches [][]byte
	for _, s := range requestSeeds() {
		if req, err := decodeTree(s, DefaultMaxFilterDepth); err == nil && req.Op == OpSearch {
			searches = append(searches, s)
		}
	}
	searches = append(searches,
		ldapMessage(1<<31-1, searchOp("", 0, "(objectClass=*)")),
		ldapMessage(300, searchOp("cn="+long+",dc=example", 3, "(cn="+long+")", long, "", "*")),
		ldapMessage(301, searchOp("dc=example", 1, "(cn:dn:="+long+")", "1.1")),
	)
	if len(searches) < 15 {
		t.Fatalf("%d searches", len(searches))
	}
	for _, msg := range searches {
		req, ok := decodeSearchRequest(msg, DefaultMaxFilterDepth)
		if !ok {
			t.Fatalf("search % x not decoded in place", msg)
		}
		if req.Search.Filter != nil {
			t.Fatalf("search % x: its filter's packet tree was built before anything asked for it", msg)
		}
		if d := sameDecoding(msg, req, nil); d != "" {
			t.Fatalf("% x: %s", msg, d)
		}
	}

	// Changed one byte at a time: every variant is decoded as the packet tree decodes it,
	// or refused as it refuses it (decodeRequest, as the read loop calls it).
	decoded := 0
	for _, msg := range searches[len(searches)-6:] {
		for i := range msg {
			for _, b := range []byte{0x00, 0x01, 0x02, 0x04, 0x0a, 0x1f, 0x30, 0x43, 0x63, 0x7f, 0x80, 0x81, 0xa0, 0xa3, 0xff, msg[i] + 1} {
				v := bytes.Clone(msg)
				v[i] = b
				if scanBER(v, DefaultMaxFilterDepth+4) != nil {
					continue
				}
				if _, ok := decodeSearchRequest(v, DefaultMaxFilterDepth); ok {
					decoded++
				}
				req, err := decodeRequest(v, DefaultMaxFilterDepth)
				if d := sameDecoding(v, req, err); d != "" {
					t.Fatalf("% x: %s", v, d)
				}
			}
		}
	}
	if decoded == 0 {
		t.Fatal("no variant decoded in place")
	}

	for _, msg := range requestSeeds() {
		if req, err := decodeTree(msg, DefaultMaxFilterDepth); err == nil && req.Op != OpSearch {
			if _, ok := decodeSearchRequest(msg, DefaultMaxFilterDepth); ok {
				t.Fatalf("%s request decoded as a search", req.Op)
			}
		}
	}
}

// FuzzDecodeSimpleBind: whatever decodeSimpleBind decodes, decodeTree decodes the same.
func FuzzDecodeSimpleBind(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s)
	}
	f.Add(ldapMessage(1<<31-1, bindOp("uid=u,dc=x", "pw")))
	f.Add(ldapMessage(5, bindOp("", "pw")))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if err := scanBER(msg, 104); err != nil {
			return
		}
		fast := decodeSimpleBind(msg)
		if fast == nil {
			return
		}
		tree, err := decodeTree(msg, DefaultMaxFilterDepth)
		if err != nil {
			t.Fatalf("decodeSimpleBind took what decodeTree refuses: %v", err)
		}
		if !reflect.DeepEqual(fast, tree) {
			t.Fatalf("decodeSimpleBind gave %+v (bind %+v), decodeTree %+v (bind %+v)", fast, fast.Bind, tree, tree.Bind)
		}
	})
}

// TestDecodeSimpleBindTaken: the usual simple binds take the direct way, and what is
// not one does not.
func TestDecodeSimpleBindTaken(t *testing.T) {
	critical := &ldap.ControlString{ControlType: "1.2.840.113556.1.4.805", Criticality: true}
	for _, tc := range []struct {
		name string
		msg  []byte
		fast bool
	}{
		{"simple bind", ldapMessage(7, bindOp("uid=alice,ou=people,dc=example,dc=org", "secret")), true},
		{"anonymous", ldapMessage(8, bindOp("", "")), true},
		{"with a control", ldapMessage(9, bindOp("cn=a", "b"), critical), false},
		{"SASL", ldapMessage(10, saslBindOp("", "EXTERNAL", "")), false},
		{"search", ldapMessage(11, extendedOp(OIDWhoAmI, nil)), false},
	} {
		got := decodeSimpleBind(tc.msg)
		if (got != nil) != tc.fast {
			t.Errorf("%s: decoded directly %v, want %v", tc.name, got != nil, tc.fast)
			continue
		}
		if got == nil {
			continue
		}
		want, err := decodeTree(tc.msg, DefaultMaxFilterDepth)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, decodeTree %+v, %v", tc.name, got, want, err)
		}
	}
	// The name is the request's own: nothing it keeps holds the message, password
	// included.
	msg := ldapMessage(7, bindOp("cn=alice", "secret"))
	r := decodeSimpleBind(msg)
	copy(msg, bytes.Repeat([]byte{'x'}, len(msg)))
	if r.Bind.Name != "cn=alice" {
		t.Errorf("the bind name shares the message's bytes: %q", r.Bind.Name)
	}
}

// filterSeeds are the encodings of the seeds' search filters, and a few more.
func filterSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, msg := range requestSeeds() {
		if req, err := decodeTree(msg, DefaultMaxFilterDepth); err == nil && req.Op == OpSearch {
			out = append(out, req.Search.Filter.Bytes())
		}
	}
	for _, f := range []string{"(cn=*a*)", "(cn=a*)", "(cn=*a)", "(cn=a*b*c)", "(:dn:2.5.13.5:=x)", "(!(!(!(cn=x))))"} {
		p, err := ldap.CompileFilter(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, p.Bytes())
	}
	return append(out, nestedNotFilter(6))
}

// FuzzValidFilter: ldapwire.ValidFilter, the check of a filter on its bytes that the
// searches decoded in place go through, accepts exactly the filters that decode and then
// pass checkFilter, what decodeTree asks of them; at a small nesting limit too. What it
// accepts, FilterPacket decodes into what decodeTree makes of it.
func FuzzValidFilter(f *testing.F) {
	for _, s := range filterSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if scanBER(b, 104) != nil {
			return
		}
		for _, depth := range []int{DefaultMaxFilterDepth, 3} {
			p, err := ldapwire.Decode(b)
			want := err == nil && checkFilter(p, 1, depth) == nil
			if got := ldapwire.ValidFilter(b, depth); got != want {
				t.Fatalf("depth %d: ValidFilter says %v, the packet tree %v (decode error %v)", depth, got, want, err)
			}
			if !want {
				continue
			}
			ldapwire.SetDNAttributesValues(p)
			var q SearchRequest
			q.SetFilterEncoding(string(b))
			var r SearchRequest
			r.SetFilterEncoding(string(b))
			fe, ok := r.FilterElement()
			if !ok || fe.Encoding() != string(b) {
				t.Fatalf("depth %d: FilterElement gives %q, %v", depth, fe.Encoding(), ok)
			}
			if err := sameFilter(fe, p); err != nil {
				t.Fatalf("depth %d: the filter read in place and the packet tree differ: %v", depth, err)
			}
			if got := q.FilterPacket(); !reflect.DeepEqual(got, p) {
				t.Fatalf("depth %d: FilterPacket gives %#v, the packet tree %#v", depth, got, p)
			}
		}
	})
}

// sameFilter compares a filter read in place with its packet tree, element by element.
func sameFilter(f ldapwire.Filter, p *ber.Packet) error {
	if f.Class() != p.ClassType || f.Tag() != p.Tag || f.Primitive() != (p.TagType == ber.TypePrimitive) {
		return fmt.Errorf("element %q: class %d tag %d primitive %v; the packet's %d %d %v",
			f.Encoding(), f.Class(), f.Tag(), f.Primitive(), p.ClassType, p.Tag, p.TagType == ber.TypePrimitive)
	}
	if f.Primitive() {
		if !bytes.Equal(f.Bytes(), p.Data.Bytes()) || f.Text() != p.Data.String() {
			return fmt.Errorf("element %q: content %q, the packet's %q", f.Encoding(), f.Text(), p.Data.Bytes())
		}
		return nil
	}
	kids, ok := f.Children(nil)
	if !ok || len(kids) != len(p.Children) || f.NumChildren() != len(kids) {
		return fmt.Errorf("element %q: %d children (%v, %d counted), the packet's %d", f.Encoding(), len(kids), ok, f.NumChildren(), len(p.Children))
	}
	for i, k := range kids {
		if c, ok := f.Child(i); !ok || c != k {
			return fmt.Errorf("element %q: child %d is %q, %v; want %q", f.Encoding(), i, c.Encoding(), ok, k.Encoding())
		}
		if err := sameFilter(k, p.Children[i]); err != nil {
			return err
		}
	}
	if _, ok := f.Child(len(kids)); ok {
		return fmt.Errorf("element %q: a child after the last", f.Encoding())
	}
	return nil
}

// TestValidFilterRefuses: a few filters ValidFilter must refuse, as checkFilter does.
func TestValidFilterRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"unknown choice":         {0xaa, 0x00},
		"universal":              {0x30, 0x00},
		"present constructed":    {0xa7, 0x00},
		"not of two":             {0xa2, 0x04, 0x87, 0x00, 0x87, 0x00},
		"not of none":            {0xa2, 0x00},
		"equality of one":        {0xa3, 0x02, 0x04, 0x00},
		"equality of three":      {0xa3, 0x06, 0x04, 0x00, 0x04, 0x00, 0x04, 0x00},
		"equality value tagged":  {0xa3, 0x04, 0x04, 0x00, 0x80, 0x00},
		"substrings no parts":    {0xa4, 0x04, 0x04, 0x00, 0x30, 0x00},
		"substrings late start":  {0xa4, 0x08, 0x04, 0x00, 0x30, 0x04, 0x81, 0x00, 0x80, 0x00},
		"substrings early final": {0xa4, 0x08, 0x04, 0x00, 0x30, 0x04, 0x82, 0x00, 0x81, 0x00},
		"extensible no value":    {0xa9, 0x02, 0x81, 0x00},
		"extensible out of turn": {0xa9, 0x04, 0x83, 0x00, 0x82, 0x00},
		"too deep":               nestedNotFilter(DefaultMaxFilterDepth),
	} {
		if scanBER(b, 104) != nil {
			t.Fatalf("%s: % x does not scan", name, b)
		}
		if ldapwire.ValidFilter(b, DefaultMaxFilterDepth) {
			t.Errorf("%s: ValidFilter accepts % x", name, b)
		}
		p, err := ldapwire.Decode(b)
		if err == nil && checkFilter(p, 1, DefaultMaxFilterDepth) == nil {
			t.Errorf("%s: checkFilter accepts % x", name, b)
		}
	}
	for _, b := range filterSeeds(t) {
		if !ldapwire.ValidFilter(b, DefaultMaxFilterDepth) {
			t.Errorf("ValidFilter refuses % x", b)
		}
	}
}

// FuzzReadFrame splits arbitrary bytes into frames with a small size limit: every frame
// must be a prefix of what is left, within the limit, and exactly one BER element long;
// every error must be one the read loop knows how to answer.
func FuzzReadFrame(f *testing.F) {
	const limit = 64
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Add([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x81, 0x05, 1, 2, 3, 4, 5, 0x30, 0x00})
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add(ldapMessage(1, bindOp("cn=a", "b")))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		rest := data
		var buf []byte
		for {
			frame, err := readFrame(r, limit, buf)
			var tooLarge errTooLarge
			switch {
			case err == nil:
			case err == io.EOF:
				if len(rest) != 0 {
					t.Fatalf("clean EOF with %d bytes left", len(rest))
				}
				return
			case errors.As(err, &tooLarge):
				if tooLarge.Size <= limit || tooLarge.Limit != limit {
					t.Fatalf("%v for a limit of %d", err, limit)
				}
				return
			case err == io.ErrUnexpectedEOF, err == errNotSequence, err == errIndefinite, err == errLengthTooLong:
				return
			default:
				t.Fatalf("unexpected error %v", err)
			}
			if len(frame) > limit || !bytes.HasPrefix(rest, frame) {
				t.Fatalf("frame % x is not within the limit at the start of % x", frame, rest)
			}
			if _, _, end, err := ldapwire.Header(frame, 0); err != nil || end != len(frame) {
				t.Fatalf("frame % x is not one element: end %d, %v", frame, end, err)
			}
			rest = rest[len(frame):]
			buf = frame[:0]
		}
	})
}
