package sync

import (
	"bytes"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// decodeEntry reads what a server sends, binary values byte for byte, and refuses
// (never panics on) every cut and every damaged byte of it.
func TestDecodeEntry(t *testing.T) {
	guid := []byte{0, 0xff, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	in := &ldapwire.Entry{DN: "uid=alice,ou=people,dc=example,dc=org", Attributes: []ldapwire.Attribute{
		{Name: "objectClass", Values: [][]byte{[]byte("inetOrgPerson"), []byte("posixAccount")}},
		{Name: "objectGUID", Values: [][]byte{guid}},
		{Name: "description", Values: [][]byte{bytes.Repeat([]byte("x"), 300)}},
		{Name: "member;range=0-1499", Values: [][]byte{[]byte("cn=a"), {}}},
	}}
	msg := ldapwire.AppendEntry(nil, 7, in, false, nil)
	e, err := decodeEntry(msg)
	if err != nil {
		t.Fatal(err)
	}
	if e.DN != in.DN || len(e.Attributes) != len(in.Attributes) {
		t.Fatalf("decoded %+v", e)
	}
	for i, a := range e.Attributes {
		if a.Name != in.Attributes[i].Name || len(a.ByteValues) != len(in.Attributes[i].Values) {
			t.Fatalf("attribute %d: %q %d values", i, a.Name, len(a.ByteValues))
		}
		for j, v := range a.ByteValues {
			if !bytes.Equal(v, in.Attributes[i].Values[j]) || a.Values[j] != string(v) {
				t.Errorf("%s value %d: %x", a.Name, j, v)
			}
		}
	}
	msg[len(msg)-1] ^= 0xff // the entry is a copy: the message may be reused
	if !bytes.Equal(e.Attributes[3].ByteValues[0], []byte("cn=a")) {
		t.Error("the entry shares the message's memory")
	}
	msg[len(msg)-1] ^= 0xff

	for n := range len(msg) {
		if _, err := decodeEntry(msg[:n]); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decodes", n, len(msg))
		}
	}
	for i := range msg {
		for _, c := range []byte{0, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(msg)
			b[i] = c
			decodeEntry(b) // must not panic
		}
	}
}

// searchRequest encodes what go-ldap would: a search with the paged results
// control, which go-ldap's own decoder reads back.
func TestSearchRequestEncoding(t *testing.T) {
	f, err := ldap.CompileFilter("(&(objectClass=user)(!(uid=x*)))")
	if err != nil {
		t.Fatal(err)
	}
	msg := searchRequest("dc=example,dc=org", ldap.ScopeSingleLevel, f.Bytes(), []string{"*", "+", "entryUUID"}, 500, []byte("cookie\x00"))
	p, err := ber.DecodePacketErr(msg)
	if err != nil {
		t.Fatal(err)
	}
	op := p.Children[1]
	if op.Tag != ldap.ApplicationSearchRequest || op.Children[0].Value != "dc=example,dc=org" || op.Children[1].Value != int64(ldap.ScopeSingleLevel) {
		t.Fatalf("operation %v", op.Tag)
	}
	filter, err := ldap.DecompileFilter(op.Children[6])
	if err != nil || filter != "(&(objectClass=user)(!(uid=x*)))" {
		t.Errorf("filter %q, %v", filter, err)
	}
	if n := len(op.Children[7].Children); n != 3 {
		t.Errorf("%d attributes", n)
	}
	cookie, paged := ldapwire.PagedCookie(msg)
	if !paged || string(cookie) != "cookie\x00" {
		t.Errorf("paged %v cookie %q", paged, cookie)
	}
}
