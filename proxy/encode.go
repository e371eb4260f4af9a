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

func encodeMessage(e *encoder, id int64) {
	e.Begin(tagSequence)
	e.Int(tagInteger, id)
}

func encodeControls(e *encoder, cs []Control) {
	if len(cs) == 0 {
		return
	}
	e.Begin(tagControls)
	for _, c := range cs {
		e.Begin(tagSequence)
		e.Str(tagOctetString, c.Type)
		if c.Critical {
			e.Bytes(tagBoolean, []byte{0xff})
		}
		if c.HasValue || len(c.Value) > 0 {
			e.Bytes(tagOctetString, c.Value)
		}
		e.End()
	}
	e.End()
}

// appendResult encodes a complete LDAPMessage carrying res as the response to op.
func appendResult(b []byte, id int64, op Op, res *Result) []byte {
	e := encoder{B: b}
	encodeMessage(&e, id)
	e.Begin(appConstructed | responseTag[op])
	e.Int(tagEnumerated, int64(res.Code))
	e.Str(tagOctetString, res.MatchedDN)
	e.Str(tagOctetString, res.Diagnostic)
	if len(res.Referral) > 0 {
		e.Begin(tagReferral)
		for _, u := range res.Referral {
			e.Str(tagOctetString, u)
		}
		e.End()
	}
	if op == OpExtended {
		if res.ResponseName != "" {
			e.Str(tagRespName, res.ResponseName)
		}
		if res.HasValue || len(res.ResponseValue) > 0 {
			e.Bytes(tagRespValue, res.ResponseValue)
		}
	}
	e.End()
	encodeControls(&e, res.Controls)
	e.End()
	return e.B
}

// appendEntry encodes a SearchResultEntry message.
func appendEntry(b []byte, id int64, ent *Entry, typesOnly bool, controls []Control) []byte {
	e := encoder{B: b}
	encodeMessage(&e, id)
	e.Begin(appConstructed | ldap.ApplicationSearchResultEntry)
	e.Str(tagOctetString, ent.DN)
	e.Begin(tagSequence)
	for _, a := range ent.Attributes {
		vals := a.Values
		if typesOnly {
			vals = nil
		}
		encodeAttribute(&e, a.Name, vals)
	}
	e.End()
	e.End()
	encodeControls(&e, controls)
	e.End()
	return e.B
}

// encodeAttribute appends a PartialAttribute: the type and the set of its values.
func encodeAttribute(e *encoder, name string, values [][]byte) {
	e.Begin(tagSequence)
	e.Str(tagOctetString, name)
	e.Begin(tagSet)
	for _, v := range values {
		e.Bytes(tagOctetString, v)
	}
	e.End()
	e.End()
}

// appendReference encodes a SearchResultReference message.
func appendReference(b []byte, id int64, urls []string, controls []Control) []byte {
	e := encoder{B: b}
	encodeMessage(&e, id)
	e.Begin(appConstructed | ldap.ApplicationSearchResultReference)
	for _, u := range urls {
		e.Str(tagOctetString, u)
	}
	e.End()
	encodeControls(&e, controls)
	e.End()
	return e.B
}

// appendNotice encodes a Notice of Disconnection (RFC 4511 §4.4.1): message ID 0, an
// extended response naming the notice, and the reason.
func appendNotice(b []byte, code uint16, diagnostic string) []byte {
	return appendResult(b, 0, OpExtended, &Result{Code: code, Diagnostic: diagnostic, ResponseName: OIDNoticeOfDisconnection})
}
