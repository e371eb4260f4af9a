package ldapwire

import (
	"bytes"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

func TestSimpleBind(t *testing.T) {
	name, password, ok := SimpleBind(BindRequest("uid=a,dc=x", []byte("pw")))
	if !ok || name != "uid=a,dc=x" || string(password) != "pw" {
		t.Errorf("SimpleBind = %q, %q, %v", name, password, ok)
	}
	sasl := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "")
	sasl.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, ""))
	sasl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	mech := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "")
	mech.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "EXTERNAL", ""))
	sasl.AppendChild(mech)
	for name, msg := range map[string][]byte{
		"sasl":      envelope(sasl, nil),
		"unbind":    UnbindRequest(2),
		"truncated": BindRequest("uid=a", []byte("pw"))[:8],
	} {
		if _, _, ok := SimpleBind(msg); ok {
			t.Errorf("%s: read as a simple bind", name)
		}
	}
}

func TestCompareAttribute(t *testing.T) {
	compare := func(attr string) []byte {
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationCompareRequest, nil, "")
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "uid=a,dc=x", ""))
		ava := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, attr, ""))
		ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "value", ""))
		op.AppendChild(ava)
		return envelope(op, nil)
	}
	if attr, ok := CompareAttribute(compare("userPassword;binary")); !ok || string(attr) != "userPassword;binary" {
		t.Errorf("CompareAttribute = %q, %v", attr, ok)
	}
	for name, msg := range map[string][]byte{
		"bind":      BindRequest("uid=a", []byte("pw")),
		"truncated": compare("userPassword")[:20],
	} {
		if attr, ok := CompareAttribute(msg); ok {
			t.Errorf("%s: read as a compare of %q", name, attr)
		}
	}
}

func TestPagedCookie(t *testing.T) {
	done := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultDone, nil, "")
	done.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, ""))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	withPaging := func(cookie []byte, others ...ldap.Control) []byte {
		p := ldap.NewControlPaging(0)
		p.SetCookie(cookie)
		return envelope(done, append(others, p))
	}
	other := ldap.NewControlManageDsaIT(true)
	for _, tt := range []struct {
		name   string
		msg    []byte
		cookie []byte
		paged  bool
	}{
		{"no controls", envelope(done, nil), nil, false},
		{"another control", envelope(done, []ldap.Control{other}), nil, false},
		{"cookie", withPaging([]byte("c00kie")), []byte("c00kie"), true},
		{"cookie after another control", withPaging([]byte("k"), other), []byte("k"), true},
		{"last page", withPaging(nil), nil, true},
	} {
		cookie, paged := PagedCookie(tt.msg)
		if paged != tt.paged || !bytes.Equal(cookie, tt.cookie) {
			t.Errorf("%s: PagedCookie = %q, %v; want %q, %v", tt.name, cookie, paged, tt.cookie, tt.paged)
		}
	}
}

// envelope wraps op in an LDAPMessage with message ID 1 and the controls.
func envelope(op *ber.Packet, controls []ldap.Control) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 1, ""))
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
