package ldapserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Op names an LDAP operation. Its String form is the `op` label of the request metrics.
type Op uint8

// The operations of RFC 4511.
const (
	OpBind Op = iota + 1
	OpUnbind
	OpSearch
	OpModify
	OpAdd
	OpDelete
	OpModifyDN
	OpCompare
	OpAbandon
	OpExtended
)

var opNames = [...]string{
	OpBind: "bind", OpUnbind: "unbind", OpSearch: "search", OpModify: "modify", OpAdd: "add",
	OpDelete: "delete", OpModifyDN: "modifydn", OpCompare: "compare", OpAbandon: "abandon",
	OpExtended: "extended",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "unknown"
}

// opByTag maps a protocolOp's application tag to the operation it requests.
var opByTag = map[byte]Op{
	ldap.ApplicationBindRequest:     OpBind,
	ldap.ApplicationUnbindRequest:   OpUnbind,
	ldap.ApplicationSearchRequest:   OpSearch,
	ldap.ApplicationModifyRequest:   OpModify,
	ldap.ApplicationAddRequest:      OpAdd,
	ldap.ApplicationDelRequest:      OpDelete,
	ldap.ApplicationModifyDNRequest: OpModifyDN,
	ldap.ApplicationCompareRequest:  OpCompare,
	ldap.ApplicationAbandonRequest:  OpAbandon,
	ldap.ApplicationExtendedRequest: OpExtended,
}

// responseTag is the application tag of the response to each operation.
var responseTag = [...]byte{
	OpBind:     ldap.ApplicationBindResponse,
	OpSearch:   ldap.ApplicationSearchResultDone,
	OpModify:   ldap.ApplicationModifyResponse,
	OpAdd:      ldap.ApplicationAddResponse,
	OpDelete:   ldap.ApplicationDelResponse,
	OpModifyDN: ldap.ApplicationModifyDNResponse,
	OpCompare:  ldap.ApplicationCompareResponse,
	OpExtended: ldap.ApplicationExtendedResponse,
}

// Well-known extended operations.
const (
	OIDStartTLS              = ldapwire.OIDStartTLS
	OIDWhoAmI                = ldapwire.OIDWhoAmI
	OIDPasswordModify        = ldapwire.OIDPasswordModify
	OIDNoticeOfDisconnection = ldapwire.OIDNoticeOfDisconnection
)

// The message model is internal/ldapwire's, shared with the upstream side; these names
// let handlers read like net/http's.
type (
	// Control is a request or response control in its wire form.
	Control = ldapwire.Control
	// Result is the final answer to an operation.
	Result = ldapwire.Result
	// Entry is one search result entry.
	Entry = ldapwire.Entry
	// Attribute is one attribute of an entry with its values.
	Attribute = ldapwire.Attribute
	// SearchRequest is a search (RFC 4511 §4.5.1).
	SearchRequest = ldapwire.SearchRequest
	// CompareRequest is a compare (RFC 4511 §4.10).
	CompareRequest = ldapwire.CompareRequest
	// Change is one modification of a modify request.
	Change = ldapwire.Change
)

// Search scopes (RFC 4511 §4.5.1.2).
const (
	ScopeBase     = ldapwire.ScopeBase
	ScopeOne      = ldapwire.ScopeOne
	ScopeSubtree  = ldapwire.ScopeSubtree
	ScopeChildren = ldapwire.ScopeChildren
)

// Request is one decoded LDAP request. Exactly one of the operation fields is set,
// according to Op.
type Request struct {
	MessageID int64
	Op        Op
	Controls  []Control

	Bind     *BindRequest
	Search   *SearchRequest
	Compare  *CompareRequest
	Extended *ExtendedRequest
	Modify   *ModifyRequest
	// DN is the target of an add, delete or modify DN request; the proxy refuses those,
	// but names the target in its log line.
	DN string
	// AbandonID is the message ID an abandon request asks to cancel.
	AbandonID int64

	// Session is the client connection the request arrived on.
	Session *Session

	raw []byte // the message as the client sent it

	ctx context.Context
	// op is the context of a registered operation, ctx then; made with the request
	// where the decoder can, else when it is registered.
	op *opContext
	w  responseWriter // the request's writer, made with it
	// inline is set for a request the read loop answers itself (Server.Inline).
	inline bool
}

// Context returns the request's context: it is cancelled when the client abandons the
// operation or the connection closes.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// Raw returns the request message as the client encoded it, for relaying it upstream.
// It must not be modified.
func (r *Request) Raw() []byte { return r.raw }

// WithContext returns a shallow copy of r with its context replaced.
func (r *Request) WithContext(ctx context.Context) *Request {
	r2 := *r
	r2.ctx = ctx
	return &r2
}

// LogValue keeps log lines useful and free of secrets: it names the operation and its
// target, never a password.
func (r *Request) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int64("msgid", r.MessageID), slog.String("op", r.Op.String())}
	switch {
	case r.Bind != nil:
		attrs = append(attrs, slog.String("name", r.Bind.Name))
		if r.Bind.Mechanism != "" {
			attrs = append(attrs, slog.String("sasl", r.Bind.Mechanism))
		}
	case r.Search != nil:
		attrs = append(attrs, slog.String("base", r.Search.BaseDN), slog.Int("scope", r.Search.Scope))
		if f, err := r.Search.FilterString(); err == nil {
			attrs = append(attrs, slog.String("filter", f))
		}
	case r.Compare != nil:
		attrs = append(attrs, slog.String("dn", r.Compare.DN), slog.String("attr", r.Compare.Attribute))
	case r.Extended != nil:
		attrs = append(attrs, slog.String("oid", r.Extended.Name))
	case r.Modify != nil:
		attrs = append(attrs, slog.String("dn", r.Modify.DN))
	case r.DN != "":
		attrs = append(attrs, slog.String("dn", r.DN))
	}
	return slog.GroupValue(attrs...)
}

// BindRequest is a bind (RFC 4511 §4.2).
type BindRequest struct {
	Version int
	Name    string
	// Password is the simple-bind password. It must never be logged or stored.
	Password []byte
	// Mechanism is the SASL mechanism; empty for a simple bind.
	Mechanism string
}

// LogValue hides the password from any log line that includes the request.
func (b *BindRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", b.Name), slog.Bool("password_set", len(b.Password) > 0))
}

// ExtendedRequest is an extended operation (RFC 4511 §4.12).
type ExtendedRequest struct {
	Name     string
	Value    []byte
	HasValue bool
}

// ModifyRequest is a modify (RFC 4511 §4.6). Only password changes are ever acted on.
type ModifyRequest struct {
	DN      string
	Changes []Change
}

// errMalformed marks a message that is framed correctly but whose operation cannot be
// decoded; it is answered with protocolError under its own message ID.
type errMalformed struct{ msg string }

func (e errMalformed) Error() string { return "malformed request: " + e.msg }

func malformed(format string, args ...any) error {
	return errMalformed{msg: fmt.Sprintf(format, args...)}
}

// ReadRequest decodes one LDAPMessage, whole, as the server does with the messages it
// reads (with the default limits), for programs and tests that handle requests outside
// of a connection, as http.ReadRequest does.
func ReadRequest(msg []byte) (*Request, error) {
	if err := ldapwire.Scan(msg, DefaultMaxFilterDepth+4); err != nil {
		return nil, err
	}
	r, err := decodeRequest(msg, DefaultMaxFilterDepth)
	if err != nil {
		return nil, err
	}
	r.raw = msg
	return r, nil
}

// decodeRequest turns a framed, scanned message into a Request. It never panics on
// hostile input; the caller still recovers, as a second line of defence.
func decodeRequest(msg []byte, maxFilterDepth int) (*Request, error) {
	if r := decodeSimpleBind(msg); r != nil {
		return r, nil
	}
	if r, ok := decodeSearchRequest(msg, maxFilterDepth); ok {
		return r, nil
	}
	return decodeTree(msg, maxFilterDepth)
}

// decodeSimpleBind decodes the most common request, a simple bind without controls,
// straight from its bytes, without the packet tree decodeTree makes; nil: msg is not
// one in the usual encoding (decodeTree decides what it is). What it returns is what
// decodeTree returns for msg. msg has passed scanBER.
func decodeSimpleBind(msg []byte) *Request {
	// element reads the element of tag id at pos, primitive or constructed as id says.
	element := func(pos int, id byte) (start, end int, ok bool) {
		if pos >= len(msg) || msg[pos] != id {
			return 0, 0, false
		}
		_, start, end, err := ldapwire.Header(msg, pos)
		return start, end, err == nil
	}
	const (
		sequence    = 0x30 // universal, constructed
		integer     = 0x02
		octetString = 0x04
		bindRequest = 0x60 // [APPLICATION 0], constructed
		simple      = 0x80 // [0], primitive
	)
	start, end, ok := element(0, sequence)
	if !ok || end != len(msg) {
		return nil
	}
	is, ie, ok := element(start, integer)
	if !ok {
		return nil
	}
	id, err := parseInt(msg[is:ie])
	if err != nil || id < 1 || id > 1<<31-1 {
		return nil
	}
	bs, be, ok := element(ie, bindRequest)
	if !ok || be != end { // controls follow, or something else does
		return nil
	}
	vs, ve, ok := element(bs, integer)
	if !ok {
		return nil
	}
	version, err := parseInt(msg[vs:ve])
	if err != nil {
		return nil
	}
	ns, ne, ok := element(ve, octetString)
	if !ok {
		return nil
	}
	ps, pe, ok := element(ne, simple)
	if !ok || pe != be {
		return nil
	}
	// The request and its bind are one allocation: they live as long as each other.
	both := &struct {
		r Request
		q BindRequest
	}{r: Request{MessageID: id, Op: OpBind},
		q: BindRequest{Version: int(version), Name: string(msg[ns:ne]), Password: msg[ps:pe:pe]}}
	both.r.Bind = &both.q
	return &both.r
}

// decodeTree decodes any request, through its packet tree.
func decodeTree(msg []byte, maxFilterDepth int) (*Request, error) {
	p, err := ldapwire.Decode(msg)
	if err != nil {
		return nil, malformed("%v", err)
	}
	if len(p.Children) < 2 || len(p.Children) > 3 {
		return nil, malformed("LDAPMessage has %d elements", len(p.Children))
	}
	id, err := intOf(p.Children[0], ber.ClassUniversal, ber.TagInteger)
	if err != nil {
		return nil, malformed("message ID: %v", err)
	}
	if id < 1 || id > 1<<31-1 {
		return nil, malformed("message ID %d out of range", id)
	}
	op := p.Children[1]
	if op.ClassType != ber.ClassApplication {
		return nil, malformed("protocolOp is not an application element")
	}
	kind, ok := opByTag[byte(op.Tag)]
	if !ok || op.Tag > 0xff { // a high tag number must not pass for an operation by its low byte
		return nil, malformed("unknown protocolOp tag %d", op.Tag)
	}
	r := &Request{MessageID: id, Op: kind}
	if len(p.Children) == 3 {
		if r.Controls, err = decodeControls(p.Children[2]); err != nil {
			return r, err
		}
	}
	switch kind {
	case OpBind:
		r.Bind, err = decodeBind(op)
	case OpUnbind:
	case OpSearch:
		r.Search, err = decodeSearch(op, maxFilterDepth)
	case OpCompare:
		r.Compare, err = decodeCompare(op)
	case OpAbandon:
		if op.TagType != ber.TypePrimitive {
			return r, malformed("abandon request is not an INTEGER")
		}
		r.AbandonID, err = parseInt(op.Data.Bytes())
	case OpExtended:
		r.Extended, err = decodeExtended(op)
	case OpModify:
		r.Modify, err = decodeModify(op)
	case OpDelete:
		r.DN = op.Data.String()
	case OpAdd, OpModifyDN:
		if len(op.Children) > 0 {
			r.DN = op.Children[0].Data.String()
		}
	}
	if err != nil {
		var m errMalformed
		var deep ldapwire.TooDeepError
		if !errors.As(err, &m) && !errors.As(err, &deep) {
			err = malformed("%v", err)
		}
		return r, err
	}
	return r, nil
}

// decodeSearchRequest decodes a well-formed search request, the commonest request, as
// decodeTree does, but for a packet tree of its filter and controls only: the
// request's other elements are read in place, so that decoding it costs a few small
// allocations instead of a packet (and a buffer) per element. It gives up (false) on
// anything but a search whose elements all have the tags, forms and values the
// protocol gives them, and leaves that, errors included, to decodeTree.
func decodeSearchRequest(msg []byte, maxFilterDepth int) (*Request, bool) {
	id, start, end, err := ldapwire.Header(msg, 0)
	if err != nil || id != 0x30 || end != len(msg) {
		return nil, false
	}
	// The message ID, then the search request.
	id, s, e, err := ldapwire.Header(msg, start)
	if err != nil || id != byte(ber.TagInteger) {
		return nil, false
	}
	mid, err := parseInt(msg[s:e])
	if err != nil || mid < 1 || mid > 1<<31-1 {
		return nil, false
	}
	id, opStart, opEnd, err := ldapwire.Header(msg, e)
	if err != nil || id != byte(ber.ClassApplication)|byte(ber.TypeConstructed)|ldap.ApplicationSearchRequest {
		return nil, false
	}
	// The request, its search and its context are one allocation: they live as long as
	// each other.
	both := &struct {
		r  Request
		q  SearchRequest
		op opContext
	}{r: Request{MessageID: mid, Op: OpSearch}}
	r := &both.r
	r.op = &both.op
	if opEnd < end {
		id, _, cEnd, err := ldapwire.Header(msg, opEnd)
		if err != nil || id != byte(ber.ClassContext)|byte(ber.TypeConstructed) || cEnd != end {
			return nil, false
		}
		p, err := ldapwire.Decode(msg[opEnd:end])
		if err != nil {
			return nil, false
		}
		if r.Controls, err = decodeControls(p); err != nil {
			return nil, false
		}
	}
	if !decodeSearchFields(&both.q, msg[:opEnd], opStart, maxFilterDepth) {
		return nil, false
	}
	r.Search = &both.q
	return r, true
}

// decodeSearchFields reads into q the eight elements of a search request whose content
// starts at pos and ends with msg, as decodeSearch does; false for anything decodeSearch
// would refuse or read otherwise.
func decodeSearchFields(q *SearchRequest, msg []byte, pos, maxFilterDepth int) bool {
	// The strings, the filter's too, share one copy of the request, as those of a packet
	// tree share one of the message.
	text, origin := string(msg[pos:]), pos
	str := func(s, e int) string { return text[s-origin : e-origin] }
	next := func(want byte) (s, e int, ok bool) {
		id, s, e, err := ldapwire.Header(msg, pos)
		if err != nil || id != want {
			return 0, 0, false
		}
		pos = e
		return s, e, true
	}
	number := func(tag byte, max int64) (int, bool) {
		s, e, ok := next(tag)
		if !ok {
			return 0, false
		}
		v, err := parseInt(msg[s:e])
		return int(v), err == nil && v >= 0 && v <= max
	}
	s, e, ok := next(byte(ber.TagOctetString))
	if !ok {
		return false
	}
	if e > s {
		q.BaseDN = str(s, e)
	}
	if q.Scope, ok = number(byte(ber.TagEnumerated), ScopeChildren); !ok {
		return false
	}
	if q.DerefAliases, ok = number(byte(ber.TagEnumerated), 3); !ok {
		return false
	}
	if q.SizeLimit, ok = number(byte(ber.TagInteger), 1<<31-1); !ok {
		return false
	}
	if q.TimeLimit, ok = number(byte(ber.TagInteger), 1<<31-1); !ok {
		return false
	}
	if s, e, ok = next(byte(ber.TagBoolean)); !ok || e-s != 1 {
		return false
	}
	q.TypesOnly = msg[s] != 0
	// The filter: any context-class element that decodes and passes checkFilter, as
	// decodeSearch asks, checked on its bytes (ldapwire.ValidFilter accepts exactly
	// that). Its packet tree is built only when something reads it (a search answered
	// from the served tree does, one relayed upstream as the client's bytes does not).
	fStart := pos
	id, _, fEnd, err := ldapwire.Header(msg, pos)
	if err != nil || ber.Class(id&0xc0) != ber.ClassContext || id&0x1f == 0x1f {
		return false
	}
	if !ldapwire.ValidFilter(msg[fStart:fEnd], maxFilterDepth) {
		return false
	}
	q.SetFilterEncoding(text[fStart-origin : fEnd-origin])
	pos = fEnd
	if _, _, ok = next(0x30); !ok || pos != len(msg) {
		return false
	}
	// The attribute list: OCTET STRINGs from just inside the SEQUENCE to its end.
	_, pos, _, _ = ldapwire.Header(msg, fEnd)
	n := 0
	for p := pos; p < len(msg); n++ {
		id, _, e, err := ldapwire.Header(msg, p)
		if err != nil || id != byte(ber.TagOctetString) {
			return false
		}
		p = e
	}
	q.Attributes = make([]string, 0, n)
	for pos < len(msg) {
		s, e, _ := next(byte(ber.TagOctetString))
		a := ""
		if e > s {
			a = str(s, e)
		}
		q.Attributes = append(q.Attributes, a)
	}
	return true
}

func decodeControls(p *ber.Packet) ([]Control, error) {
	if p.ClassType != ber.ClassContext || p.Tag != 0 || p.TagType != ber.TypeConstructed {
		return nil, malformed("controls element has the wrong tag")
	}
	out := make([]Control, 0, len(p.Children))
	for _, c := range p.Children {
		if c.Tag != ber.TagSequence || len(c.Children) < 1 || len(c.Children) > 3 {
			return nil, malformed("control is not a SEQUENCE of 1 to 3 elements")
		}
		oid, err := stringOf(c.Children[0])
		if err != nil {
			return nil, malformed("control type: %v", err)
		}
		ctl := Control{Type: oid}
		for _, f := range c.Children[1:] {
			switch {
			case f.ClassType == ber.ClassUniversal && f.Tag == ber.TagBoolean && f.TagType == ber.TypePrimitive && !ctl.HasValue:
				ctl.Critical = len(f.Data.Bytes()) == 1 && f.Data.Bytes()[0] != 0
			case f.ClassType == ber.ClassUniversal && f.Tag == ber.TagOctetString && f.TagType == ber.TypePrimitive && !ctl.HasValue:
				ctl.Value, ctl.HasValue = f.Data.Bytes(), true
			default:
				return nil, malformed("control %s has an unexpected element", oid)
			}
		}
		out = append(out, ctl)
	}
	return out, nil
}

func decodeBind(op *ber.Packet) (*BindRequest, error) {
	if len(op.Children) != 3 {
		return nil, malformed("bind request has %d elements", len(op.Children))
	}
	v, err := intOf(op.Children[0], ber.ClassUniversal, ber.TagInteger)
	if err != nil {
		return nil, malformed("bind version: %v", err)
	}
	name, err := ownStringOf(op.Children[1])
	if err != nil {
		return nil, malformed("bind name: %v", err)
	}
	b := &BindRequest{Version: int(v), Name: name}
	auth := op.Children[2]
	if auth.ClassType != ber.ClassContext {
		return nil, malformed("bind authentication choice has the wrong class")
	}
	switch auth.Tag {
	case 0: // simple
		if auth.TagType != ber.TypePrimitive {
			return nil, malformed("simple bind password is constructed")
		}
		b.Password = auth.Data.Bytes()
	case 3: // sasl
		if len(auth.Children) < 1 {
			return nil, malformed("SASL credentials without a mechanism")
		}
		if b.Mechanism, err = ownStringOf(auth.Children[0]); err != nil {
			return nil, malformed("SASL mechanism: %v", err)
		}
	default:
		return nil, malformed("unknown bind authentication choice %d", auth.Tag)
	}
	return b, nil
}

func decodeSearch(op *ber.Packet, maxFilterDepth int) (*SearchRequest, error) {
	c := op.Children
	if len(c) != 8 {
		return nil, malformed("search request has %d elements", len(c))
	}
	s := &SearchRequest{Filter: c[6]}
	var err error
	if s.BaseDN, err = stringOf(c[0]); err != nil {
		return nil, malformed("base: %v", err)
	}
	var v int64
	if v, err = intOf(c[1], ber.ClassUniversal, ber.TagEnumerated); err != nil || v < 0 || v > ScopeChildren {
		return nil, malformed("scope")
	}
	s.Scope = int(v)
	if v, err = intOf(c[2], ber.ClassUniversal, ber.TagEnumerated); err != nil || v < 0 || v > 3 {
		return nil, malformed("derefAliases")
	}
	s.DerefAliases = int(v)
	if v, err = intOf(c[3], ber.ClassUniversal, ber.TagInteger); err != nil || v < 0 || v > 1<<31-1 {
		return nil, malformed("sizeLimit")
	}
	s.SizeLimit = int(v)
	if v, err = intOf(c[4], ber.ClassUniversal, ber.TagInteger); err != nil || v < 0 || v > 1<<31-1 {
		return nil, malformed("timeLimit")
	}
	s.TimeLimit = int(v)
	if c[5].ClassType != ber.ClassUniversal || c[5].Tag != ber.TagBoolean || c[5].TagType != ber.TypePrimitive || len(c[5].Data.Bytes()) != 1 {
		return nil, malformed("typesOnly")
	}
	s.TypesOnly = c[5].Data.Bytes()[0] != 0
	if c[6].ClassType != ber.ClassContext {
		return nil, malformed("filter has the wrong class")
	}
	if c[7].Tag != ber.TagSequence || c[7].TagType != ber.TypeConstructed {
		return nil, malformed("attribute list is not a SEQUENCE")
	}
	s.Attributes = make([]string, 0, len(c[7].Children))
	for _, a := range c[7].Children {
		name, err := stringOf(a)
		if err != nil {
			return nil, malformed("attribute selector: %v", err)
		}
		s.Attributes = append(s.Attributes, name)
	}
	if err := checkFilter(s.Filter, 1, maxFilterDepth); err != nil {
		var deep ldapwire.TooDeepError
		if errors.As(err, &deep) {
			return s, err
		}
		return nil, malformed("filter: %v", err)
	}
	ldapwire.SetDNAttributesValues(s.Filter)
	return s, nil
}

// checkFilter validates a filter in one walk, before anything else reads it: every
// choice is one RFC 4511 defines, each has the shape its choice must have, and the
// nesting of and/or/not stays within maxDepth (a leaf at the top is at depth 1).
// ldapwire.ValidFilter is this check on a filter's bytes, for the searches decoded in
// place; it must accept exactly what this accepts (FuzzValidFilter). The nesting limit
// the whole message passed before decoding bounds the recursion.
func checkFilter(f *ber.Packet, depth, maxDepth int) error {
	if depth > maxDepth {
		return ldapwire.TooDeepError{Limit: maxDepth}
	}
	if f.ClassType != ber.ClassContext || f.Tag > ldap.FilterExtensibleMatch {
		return fmt.Errorf("unknown filter choice %d", f.Tag)
	}
	constructed := f.TagType == ber.TypeConstructed
	switch f.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		if !constructed || f.Tag == ldap.FilterNot && len(f.Children) != 1 {
			return fmt.Errorf("filter choice %d has the wrong shape", f.Tag)
		}
		for _, c := range f.Children {
			if err := checkFilter(c, depth+1, maxDepth); err != nil {
				return err
			}
		}
	case ldap.FilterEqualityMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual, ldap.FilterApproxMatch:
		if !constructed || len(f.Children) != 2 || !isOctetString(f.Children[0]) || !isOctetString(f.Children[1]) {
			return errors.New("attribute value assertion has the wrong shape")
		}
	case ldap.FilterSubstrings:
		if !constructed || len(f.Children) != 2 || !isOctetString(f.Children[0]) || len(f.Children[1].Children) == 0 {
			return errors.New("substrings filter has the wrong shape")
		}
		parts := f.Children[1].Children
		for i, p := range parts {
			bad := p.ClassType != ber.ClassContext || p.TagType != ber.TypePrimitive || p.Tag > ldap.FilterSubstringsFinal ||
				p.Tag == ldap.FilterSubstringsInitial && i != 0 || p.Tag == ldap.FilterSubstringsFinal && i != len(parts)-1
			if bad {
				return errors.New("substrings filter has a misplaced or unknown part")
			}
		}
	case ldap.FilterPresent:
		if constructed {
			return errors.New("presence filter is constructed")
		}
	case ldap.FilterExtensibleMatch:
		if !constructed || len(f.Children) == 0 {
			return errors.New("extensible match has the wrong shape")
		}
		last, hasValue := ber.Tag(0), false
		for _, c := range f.Children {
			if c.ClassType != ber.ClassContext || c.TagType != ber.TypePrimitive || c.Tag <= last || c.Tag > ldap.MatchingRuleAssertionDNAttributes {
				return errors.New("extensible match has a misplaced or unknown element")
			}
			last = c.Tag
			hasValue = hasValue || c.Tag == ldap.MatchingRuleAssertionMatchValue
		}
		if !hasValue {
			return errors.New("extensible match without a match value")
		}
	}
	return nil
}

func isOctetString(p *ber.Packet) bool {
	return p.ClassType == ber.ClassUniversal && p.Tag == ber.TagOctetString && p.TagType == ber.TypePrimitive
}

func decodeCompare(op *ber.Packet) (*CompareRequest, error) {
	if len(op.Children) != 2 || len(op.Children[1].Children) != 2 {
		return nil, malformed("compare request shape")
	}
	dn, err := ownStringOf(op.Children[0])
	if err != nil {
		return nil, malformed("compare entry: %v", err)
	}
	attr, err := ownStringOf(op.Children[1].Children[0])
	if err != nil {
		return nil, malformed("compare attribute: %v", err)
	}
	val := op.Children[1].Children[1]
	if val.TagType != ber.TypePrimitive {
		return nil, malformed("compare value is constructed")
	}
	return &CompareRequest{DN: dn, Attribute: attr, Value: val.Data.Bytes()}, nil
}

func decodeExtended(op *ber.Packet) (*ExtendedRequest, error) {
	if len(op.Children) < 1 || len(op.Children) > 2 {
		return nil, malformed("extended request shape")
	}
	n := op.Children[0]
	if n.ClassType != ber.ClassContext || n.Tag != 0 || n.TagType != ber.TypePrimitive {
		return nil, malformed("extended request name has the wrong tag")
	}
	e := &ExtendedRequest{Name: n.Data.String()}
	if len(op.Children) == 2 {
		v := op.Children[1]
		if v.ClassType != ber.ClassContext || v.Tag != 1 || v.TagType != ber.TypePrimitive {
			return nil, malformed("extended request value has the wrong tag")
		}
		e.Value, e.HasValue = v.Data.Bytes(), true
	}
	return e, nil
}

func decodeModify(op *ber.Packet) (*ModifyRequest, error) {
	if len(op.Children) != 2 {
		return nil, malformed("modify request shape")
	}
	dn, err := ownStringOf(op.Children[0])
	if err != nil {
		return nil, malformed("modify object: %v", err)
	}
	m := &ModifyRequest{DN: dn}
	for _, ch := range op.Children[1].Children {
		if len(ch.Children) != 2 || len(ch.Children[1].Children) != 2 {
			return nil, malformed("modify change shape")
		}
		kind, err := intOf(ch.Children[0], ber.ClassUniversal, ber.TagEnumerated)
		if err != nil || kind < 0 || kind > 3 {
			return nil, malformed("modify operation")
		}
		typ, err := ownStringOf(ch.Children[1].Children[0])
		if err != nil {
			return nil, malformed("modify attribute type: %v", err)
		}
		c := Change{Operation: int(kind), Type: typ}
		for _, v := range ch.Children[1].Children[1].Children {
			c.Values = append(c.Values, v.Data.Bytes())
		}
		m.Changes = append(m.Changes, c)
	}
	return m, nil
}

// ownStringOf is stringOf, copied: a string that does not keep the rest of the message
// alive. Binds, compares and modifies carry passwords (a bind's, a userPassword
// assertion, a new password), and what is kept of them (the bound DN, a DN the password
// caches remember) must not hold the message's text, password included.
func ownStringOf(p *ber.Packet) (string, error) {
	s, err := stringOf(p)
	return strings.Clone(s), err
}

// stringOf returns the content of a primitive OCTET STRING. It shares the text of the
// whole message (ldapwire.Decode): keeping it keeps all of the message.
func stringOf(p *ber.Packet) (string, error) {
	if p.ClassType != ber.ClassUniversal || p.Tag != ber.TagOctetString || p.TagType != ber.TypePrimitive {
		return "", errors.New("not an OCTET STRING")
	}
	if s, ok := p.Value.(string); ok { // what ldapwire.Decode gives, without a copy
		return s, nil
	}
	return p.Data.String(), nil
}

// intOf returns the value of a primitive INTEGER or ENUMERATED of the given class and tag.
func intOf(p *ber.Packet, class ber.Class, tag ber.Tag) (int64, error) {
	if p.ClassType != class || p.Tag != tag || p.TagType != ber.TypePrimitive {
		return 0, errors.New("wrong element type")
	}
	return parseInt(p.Data.Bytes())
}

// parseInt decodes a two's complement integer of at most 8 bytes.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 8 {
		return 0, errors.New("integer of bad length")
	}
	v := int64(int8(b[0]))
	for _, c := range b[1:] {
		v = v<<8 | int64(c)
	}
	return v, nil
}
