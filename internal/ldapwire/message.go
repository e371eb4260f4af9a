package ldapwire

import (
	"errors"
	"fmt"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// The LDAP message model both sides of the proxy share: what a server answers with
// (Result, Entry, Attribute, Control), what a search or compare asks (SearchRequest,
// CompareRequest), and the encoders of the requests the proxy sends upstream itself
// (bind, abandon, unbind, StartTLS, modify, Password Modify).

// BER identifier bytes.
const (
	TagSequence    = 0x30
	TagSet         = 0x31
	TagBoolean     = 0x01
	TagInteger     = 0x02
	TagOctetString = 0x04
	TagEnumerated  = 0x0a
	TagControls    = 0xa0 // [0] constructed
	tagReferral    = 0xa3 // [3] constructed
	TagRespName    = 0x8a // [10] primitive
	TagRespValue   = 0x8b // [11] primitive
	// AppConstructed is the application class with the constructed bit: the first byte
	// of every protocolOp but unbind, delete and abandon.
	AppConstructed = 0x60
)

// Well-known extended operations.
const (
	OIDStartTLS       = "1.3.6.1.4.1.1466.20037"
	OIDWhoAmI         = "1.3.6.1.4.1.4203.1.11.3"
	OIDPasswordModify = "1.3.6.1.4.1.4203.1.11.1"
	// OIDNoticeOfDisconnection names the unsolicited notification sent before a server
	// closes a connection it can no longer serve (RFC 4511 §4.4.1).
	OIDNoticeOfDisconnection = "1.3.6.1.4.1.1466.20036"
)

// Control is a request or response control as it travels on the wire. Controls the
// proxy does not know pass through unchanged, so they are kept in this raw form.
type Control struct {
	Type     string
	Critical bool
	Value    []byte
	HasValue bool
}

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
	// Source, when not empty, is a string that some of the values (and the DN) are
	// slices of, such as the stored record the entry was decoded from: whoever keeps
	// the entry may keep those as offsets into it. It is not part of the message.
	Source string
}

// Attribute is one attribute of an entry with its values.
type Attribute struct {
	Name   string
	Values [][]byte
}

// Search scopes (RFC 4511 §4.5.1.2).
const (
	ScopeBase    = 0
	ScopeOne     = 1
	ScopeSubtree = 2
	// ScopeChildren is the "subordinate" scope of an RFC draft: accepted and passed on.
	ScopeChildren = 3
)

// SearchRequest is a search (RFC 4511 §4.5.1).
type SearchRequest struct {
	BaseDN       string
	Scope        int
	DerefAliases int
	SizeLimit    int
	TimeLimit    int
	TypesOnly    bool
	// Filter is the filter as decoded from the wire, or nil while only its encoding is
	// known (SetFilterEncoding): read it with FilterPacket. FilterString renders it.
	Filter     *ber.Packet
	Attributes []string

	// filterText is the filter's encoding until FilterPacket decodes it.
	filterText string
	// rendered is what FilterString answered, once asked: only log lines ask, so the
	// request does not carry room for it.
	rendered *renderedFilter
}

type renderedFilter struct {
	s   string
	err error
}

// FilterString renders the filter in RFC 4515 string form, once.
func (s *SearchRequest) FilterString() (string, error) {
	if s.rendered == nil {
		f, err := ldap.DecompileFilter(s.FilterPacket())
		s.rendered = &renderedFilter{f, err}
	}
	return s.rendered.s, s.rendered.err
}

// CompareRequest is a compare (RFC 4511 §4.10).
type CompareRequest struct {
	DN        string
	Attribute string
	Value     []byte
}

// Modify operations (RFC 4511 §4.6).
const (
	ModAdd     = 0
	ModDelete  = 1
	ModReplace = 2
)

// Change is one modification of a modify request.
type Change struct {
	Operation int // ModAdd, ModDelete, ModReplace, or 3 for increment
	Type      string
	Values    [][]byte
}

// Response is one response message with what a proxy acts on, read once where the
// message arrives and handed along with it.
type Response struct {
	// Msg is the whole LDAPMessage; it is only valid while the callback that got it runs.
	Msg []byte
	// Tag is the protocolOp's identifier byte (TagSearchResultEntry, 0x61 for a bind
	// response, ...).
	Tag byte
	// Code is the result code of a response that carries an LDAPResult.
	Code uint16
	// Final reports whether the message ends its operation: everything but search
	// entries, references and intermediate responses.
	Final bool
	// More reports that the connection had already received more than this message:
	// another response follows at once, so a relay may wait for it before flushing.
	More bool
}

// ParseResponse reads a response message's protocolOp tag and, when that operation
// carries an LDAPResult, its result code.
func ParseResponse(msg []byte) (Response, error) {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return Response{}, err
	}
	opTag, cStart, cEnd, err := Header(msg[:end], opStart)
	if err != nil {
		return Response{}, err
	}
	r := Response{Msg: msg, Tag: opTag}
	r.Final = opTag != TagSearchResultEntry && opTag != TagSearchResultReference && opTag != TagIntermediateResponse
	if !resultTags[opTag] {
		return r, nil
	}
	tag, s, e, err := Header(msg[:cEnd], cStart)
	if err != nil {
		return r, err
	}
	if tag != TagEnumerated || e-s < 1 || e-s > 2 {
		return r, errors.New("result code is not a small ENUMERATED")
	}
	for _, c := range msg[s:e] {
		r.Code = r.Code<<8 | uint16(c)
	}
	return r, nil
}

// Err decodes the response's LDAPResult: nil for success, otherwise an *ldap.Error with
// the code, matched DN and diagnostic message.
func (r Response) Err() error {
	if r.Final && r.Code == ldap.LDAPResultSuccess && resultTags[r.Tag] {
		return nil
	}
	p, err := ber.DecodePacketErr(r.Msg)
	if err != nil {
		return ldap.NewError(ldap.ErrorUnexpectedResponse, fmt.Errorf("malformed response: %w", err))
	}
	return ldap.GetLDAPError(p)
}

func beginMessage(e *Encoder, id int64) {
	e.Begin(TagSequence)
	e.Int(TagInteger, id)
}

// AppendControls appends a message's controls element; nothing when there are none.
func AppendControls(e *Encoder, cs []Control) {
	if len(cs) == 0 {
		return
	}
	e.Begin(TagControls)
	for _, c := range cs {
		e.Begin(TagSequence)
		e.Str(TagOctetString, c.Type)
		if c.Critical {
			e.Bytes(TagBoolean, []byte{0xff})
		}
		if c.HasValue || len(c.Value) > 0 {
			e.Bytes(TagOctetString, c.Value)
		}
		e.End()
	}
	e.End()
}

// AppendResult appends a complete LDAPMessage carrying res as a response whose
// protocolOp has the application number app (ldap.ApplicationBindResponse, ...).
func AppendResult(b []byte, id int64, app uint8, res *Result) []byte {
	e := Encoder{B: b}
	beginMessage(&e, id)
	e.Begin(AppConstructed | app)
	e.Int(TagEnumerated, int64(res.Code))
	e.Str(TagOctetString, res.MatchedDN)
	e.Str(TagOctetString, res.Diagnostic)
	if len(res.Referral) > 0 {
		e.Begin(tagReferral)
		for _, u := range res.Referral {
			e.Str(TagOctetString, u)
		}
		e.End()
	}
	if app == ldap.ApplicationExtendedResponse {
		if res.ResponseName != "" {
			e.Str(TagRespName, res.ResponseName)
		}
		if res.HasValue || len(res.ResponseValue) > 0 {
			e.Bytes(TagRespValue, res.ResponseValue)
		}
	}
	e.End()
	AppendControls(&e, res.Controls)
	e.End()
	return e.B
}

// AppendEntry appends a SearchResultEntry message; typesOnly leaves the values out.
func AppendEntry(b []byte, id int64, ent *Entry, typesOnly bool, controls []Control) []byte {
	e := Encoder{B: b}
	beginMessage(&e, id)
	e.Begin(AppConstructed | ldap.ApplicationSearchResultEntry)
	e.Str(TagOctetString, ent.DN)
	e.Begin(TagSequence)
	for _, a := range ent.Attributes {
		vals := a.Values
		if typesOnly {
			vals = nil
		}
		appendAttribute(&e, a.Name, vals)
	}
	e.End()
	e.End()
	AppendControls(&e, controls)
	e.End()
	return e.B
}

// appendAttribute appends a PartialAttribute: the type and the set of its values.
func appendAttribute(e *Encoder, name string, values [][]byte) {
	e.Begin(TagSequence)
	e.Str(TagOctetString, name)
	e.Begin(TagSet)
	for _, v := range values {
		e.Bytes(TagOctetString, v)
	}
	e.End()
	e.End()
}

// AppendReference appends a SearchResultReference message.
func AppendReference(b []byte, id int64, urls []string, controls []Control) []byte {
	e := Encoder{B: b}
	beginMessage(&e, id)
	e.Begin(AppConstructed | ldap.ApplicationSearchResultReference)
	for _, u := range urls {
		e.Str(TagOctetString, u)
	}
	e.End()
	AppendControls(&e, controls)
	e.End()
	return e.B
}

// AppendNotice appends a Notice of Disconnection (RFC 4511 §4.4.1): message ID 0, an
// extended response naming the notice, and the reason.
func AppendNotice(b []byte, code uint16, diagnostic string) []byte {
	return AppendResult(b, 0, ldap.ApplicationExtendedResponse,
		&Result{Code: code, Diagnostic: diagnostic, ResponseName: OIDNoticeOfDisconnection})
}

// The requests below carry message ID 1: a connection that sends them replaces it with
// its own (WithMessageID), as it does for the requests it relays.

// BindRequest encodes a simple bind request (LDAP version 3).
func BindRequest(dn string, password []byte) []byte {
	e := Encoder{}
	beginMessage(&e, 1)
	e.Begin(AppConstructed | ldap.ApplicationBindRequest)
	e.Int(TagInteger, 3)
	e.Str(TagOctetString, dn)
	e.Bytes(0x80, password) // [0] simple
	e.End()
	e.End()
	return e.B
}

// AbandonRequest encodes an abandon of the operation with message ID target, itself
// under message ID id.
func AbandonRequest(id, target int64) []byte {
	e := Encoder{}
	beginMessage(&e, id)
	e.Int(0x40|ldap.ApplicationAbandonRequest, target) // primitive
	e.End()
	return e.B
}

// UnbindRequest encodes an unbind request under message ID id.
func UnbindRequest(id int64) []byte {
	e := Encoder{}
	beginMessage(&e, id)
	e.B = append(e.B, 0x40|ldap.ApplicationUnbindRequest, 0x00) // NULL
	e.End()
	return e.B
}

// StartTLSRequest encodes the StartTLS extended request (RFC 4511 §4.14).
func StartTLSRequest() []byte {
	e := Encoder{}
	beginMessage(&e, 1)
	e.Begin(AppConstructed | ldap.ApplicationExtendedRequest)
	e.Str(0x80, OIDStartTLS)
	e.End()
	e.End()
	return e.B
}

// ModifyRequest encodes a modify request.
func ModifyRequest(dn string, changes []Change, controls []Control) []byte {
	e := Encoder{}
	beginMessage(&e, 1)
	e.Begin(AppConstructed | ldap.ApplicationModifyRequest)
	e.Str(TagOctetString, dn)
	e.Begin(TagSequence)
	for _, c := range changes {
		e.Begin(TagSequence)
		e.Int(TagEnumerated, int64(c.Operation))
		appendAttribute(&e, c.Type, c.Values)
		e.End()
	}
	e.End()
	e.End()
	AppendControls(&e, controls)
	e.End()
	return e.B
}

// PasswordModifyRequest encodes a Password Modify extended request (RFC 3062) for user;
// a nil old or new password is left out.
func PasswordModifyRequest(user string, oldPassword, newPassword []byte, controls []Control) []byte {
	v := Encoder{}
	v.Begin(TagSequence)
	v.Str(0x80, user)
	if oldPassword != nil {
		v.Bytes(0x81, oldPassword)
	}
	if newPassword != nil {
		v.Bytes(0x82, newPassword)
	}
	v.End()
	e := Encoder{}
	beginMessage(&e, 1)
	e.Begin(AppConstructed | ldap.ApplicationExtendedRequest)
	e.Str(0x80, OIDPasswordModify)
	e.Bytes(0x81, v.B)
	e.End()
	AppendControls(&e, controls)
	e.End()
	return e.B
}

// PasswordModifyResponseValue encodes a PasswdModifyResponseValue carrying a generated
// password.
func PasswordModifyResponseValue(generated []byte) []byte {
	e := Encoder{}
	e.Begin(TagSequence)
	e.Bytes(0x80, generated)
	e.End()
	return e.B
}

// GeneratedPassword reads genPasswd from a Password Modify response message; nil when
// there is none.
func GeneratedPassword(msg []byte) []byte {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return nil
	}
	tag, s, e, err := Header(msg[:end], opStart)
	if err != nil || tag != AppConstructed|ldap.ApplicationExtendedResponse {
		return nil
	}
	for pos := s; pos < e; {
		tag, vs, ve, err := Header(msg[:e], pos)
		if err != nil {
			return nil
		}
		pos = ve
		if tag != TagRespValue {
			continue
		}
		value := msg[vs:ve]
		tag, s, e, err := Header(value, 0)
		if err != nil || tag != TagSequence {
			return nil
		}
		tag, gs, ge, err := Header(value[:e], s)
		if err != nil || tag != 0x80 {
			return nil
		}
		return append([]byte{}, value[gs:ge]...)
	}
	return nil
}

// EntryFromLDAP converts an entry go-ldap decoded.
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

// ControlFromLDAP converts a control go-ldap built or decoded to its wire form.
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
