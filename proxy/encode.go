package proxy

import (
	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// BER identifier bytes used in responses.
const (
	tagSequence    = 0x30
	tagSet         = 0x31
	tagInteger     = 0x02
	tagEnumerated  = 0x0a
	tagOctetString = 0x04
	tagBoolean     = 0x01
	tagControls    = 0xa0 // [0] constructed
	tagReferral    = 0xa3 // [3] constructed
	tagSASLCreds   = 0x87 // [7] primitive
	tagRespName    = 0x8a // [10] primitive
	tagRespValue   = 0x8b // [11] primitive
	appConstructed = 0x60 // application class, constructed
)

// Result is the final answer to an operation.
type Result struct {
	Code       uint16
	MatchedDN  string
	Diagnostic string
	// Referral lists LDAP URLs when Code is referral (10).
	Referral []string
	Controls []Control
	// ResponseName and ResponseValue are the extended response fields.
	ResponseName  string
	ResponseValue []byte
	HasValue      bool
}

// Entry is one search result entry.
type Entry struct {
	DN         string
	Attributes []Attribute
}

// Attribute is one attribute of an entry with its values.
type Attribute struct {
	Name   string
	Values [][]byte
}

// EntryFromLDAP converts a go-ldap entry, as returned by an upstream search.
func EntryFromLDAP(e *ldap.Entry) *Entry {
	out := &Entry{DN: e.DN, Attributes: make([]Attribute, len(e.Attributes))}
	for i, a := range e.Attributes {
		vals := a.ByteValues
		if len(vals) != len(a.Values) {
			vals = make([][]byte, len(a.Values))
			for j, v := range a.Values {
				vals[j] = []byte(v)
			}
		}
		out.Attributes[i] = Attribute{Name: a.Name, Values: vals}
	}
	return out
}

// ControlFromLDAP converts a control decoded by go-ldap (an upstream's response control)
// back to its wire form so that it reaches the client unchanged.
func ControlFromLDAP(c ldap.Control) Control {
	p := c.Encode()
	out := Control{Type: c.GetControlType()}
	for _, f := range p.Children[1:] {
		switch f.Tag {
		case ber.TagBoolean:
			out.Critical, _ = f.Value.(bool)
		case ber.TagOctetString:
			out.Value, out.HasValue = f.Data.Bytes(), true
		}
	}
	return out
}

// ToLDAP converts a request control so that it can be forwarded with go-ldap.
func (c Control) ToLDAP() ldap.Control {
	return &ldap.ControlString{ControlType: c.Type, Criticality: c.Critical, ControlValue: string(c.Value)}
}

func (e *encoder) message(id int64) {
	e.begin(tagSequence)
	e.int(tagInteger, id)
}

func (e *encoder) controls(cs []Control) {
	if len(cs) == 0 {
		return
	}
	e.begin(tagControls)
	for _, c := range cs {
		e.begin(tagSequence)
		e.str(tagOctetString, c.Type)
		if c.Critical {
			e.bytes(tagBoolean, []byte{0xff})
		}
		if c.HasValue || len(c.Value) > 0 {
			e.bytes(tagOctetString, c.Value)
		}
		e.end()
	}
	e.end()
}

// appendResult encodes a complete LDAPMessage carrying res as the response to op.
func appendResult(b []byte, id int64, op Op, res *Result) []byte {
	e := encoder{b: b}
	e.message(id)
	e.begin(appConstructed | responseTag[op])
	e.int(tagEnumerated, int64(res.Code))
	e.str(tagOctetString, res.MatchedDN)
	e.str(tagOctetString, res.Diagnostic)
	if len(res.Referral) > 0 {
		e.begin(tagReferral)
		for _, u := range res.Referral {
			e.str(tagOctetString, u)
		}
		e.end()
	}
	if op == OpExtended {
		if res.ResponseName != "" {
			e.str(tagRespName, res.ResponseName)
		}
		if res.HasValue || len(res.ResponseValue) > 0 {
			e.bytes(tagRespValue, res.ResponseValue)
		}
	}
	e.end()
	e.controls(res.Controls)
	e.end()
	return e.b
}

// appendEntry encodes a SearchResultEntry message.
func appendEntry(b []byte, id int64, ent *Entry, typesOnly bool, controls []Control) []byte {
	e := encoder{b: b}
	e.message(id)
	e.begin(appConstructed | ldap.ApplicationSearchResultEntry)
	e.str(tagOctetString, ent.DN)
	e.begin(tagSequence)
	for _, a := range ent.Attributes {
		e.begin(tagSequence)
		e.str(tagOctetString, a.Name)
		e.begin(tagSet)
		if !typesOnly {
			for _, v := range a.Values {
				e.bytes(tagOctetString, v)
			}
		}
		e.end()
		e.end()
	}
	e.end()
	e.end()
	e.controls(controls)
	e.end()
	return e.b
}

// appendReference encodes a SearchResultReference message.
func appendReference(b []byte, id int64, urls []string, controls []Control) []byte {
	e := encoder{b: b}
	e.message(id)
	e.begin(appConstructed | ldap.ApplicationSearchResultReference)
	for _, u := range urls {
		e.str(tagOctetString, u)
	}
	e.end()
	e.controls(controls)
	e.end()
	return e.b
}

// appendNotice encodes a Notice of Disconnection (RFC 4511 §4.4.1): message ID 0, an
// extended response naming the notice, and the reason.
func appendNotice(b []byte, code uint16, diagnostic string) []byte {
	return appendResult(b, 0, OpExtended, &Result{Code: code, Diagnostic: diagnostic, ResponseName: OIDNoticeOfDisconnection})
}
