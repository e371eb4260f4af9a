package ldapwire

import (
	"errors"

	"github.com/go-ldap/ldap/v3"
)

// What a relay needs to know of a session without decoding every message: who a
// simple bind names, and whether a paged search left a cookie.

// SimpleBind returns the name and password of a simple bind request (RFC 4511 §4.2).
// ok is false for anything else, a SASL bind included. password shares msg's memory.
func SimpleBind(msg []byte) (name string, password []byte, ok bool) {
	n, password, ok := SimpleBindBytes(msg)
	return string(n), password, ok
}

// SimpleBindBytes is SimpleBind with the name as bytes, sharing msg's memory too.
func SimpleBindBytes(msg []byte) (name, password []byte, ok bool) {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return nil, nil, false
	}
	tag, start, opEnd, err := Header(msg[:end], opStart)
	if err != nil || tag != AppConstructed|ldap.ApplicationBindRequest {
		return nil, nil, false
	}
	tag, _, pos, err := Header(msg[:opEnd], start) // version
	if err != nil || tag != TagInteger {
		return nil, nil, false
	}
	tag, nStart, nEnd, err := Header(msg[:opEnd], pos)
	if err != nil || tag != TagOctetString {
		return nil, nil, false
	}
	tag, pStart, pEnd, err := Header(msg[:opEnd], nEnd)
	if err != nil || tag != 0x80 { // [0] simple
		return nil, nil, false
	}
	return msg[nStart:nEnd:nEnd], msg[pStart:pEnd:pEnd], true
}

// CompareAttribute returns the attribute description a compare request asserts a
// value of (RFC 4511 §4.10), options included ("userPassword;binary"); ok is false for
// anything else. attr shares msg's memory.
func CompareAttribute(msg []byte) (attr []byte, ok bool) {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return nil, false
	}
	tag, start, opEnd, err := Header(msg[:end], opStart)
	if err != nil || tag != AppConstructed|ldap.ApplicationCompareRequest {
		return nil, false
	}
	tag, _, pos, err := Header(msg[:opEnd], start) // entry
	if err != nil || tag != TagOctetString {
		return nil, false
	}
	tag, start, avaEnd, err := Header(msg[:opEnd], pos)
	if err != nil || tag != TagSequence {
		return nil, false
	}
	tag, start, aEnd, err := Header(msg[:avaEnd], start)
	if err != nil || tag != TagOctetString {
		return nil, false
	}
	return msg[start:aEnd:aEnd], true
}

// PagedCookie reads the paged results control (RFC 2696) of a message: a search request
// or a search result done. paged is false when the message has none; cookie is empty on
// the last page. cookie shares msg's memory.
func PagedCookie(msg []byte) (cookie []byte, paged bool) {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return nil, false
	}
	_, _, pos, err := Header(msg[:end], opStart)
	if err != nil || pos >= end {
		return nil, false
	}
	tag, pos, cEnd, err := Header(msg[:end], pos)
	if err != nil || tag != TagControls {
		return nil, false
	}
	for pos < cEnd {
		tag, start, next, err := Header(msg[:cEnd], pos)
		if err != nil || tag != TagSequence {
			return nil, false
		}
		pos = next
		oid, value, err := controlParts(msg[:next], start)
		if err != nil || oid != ldap.ControlTypePaging {
			continue
		}
		cookie, err := pagingCookie(value)
		return cookie, err == nil
	}
	return nil, false
}

// controlParts returns a Control's type and value (nil when absent).
func controlParts(b []byte, pos int) (oid string, value []byte, err error) {
	tag, start, pos, err := Header(b, pos)
	if err != nil || tag != TagOctetString {
		return "", nil, errors.New("bad control")
	}
	oid = string(b[start:pos])
	for pos < len(b) {
		tag, start, end, err := Header(b, pos)
		if err != nil {
			return "", nil, err
		}
		if tag == TagOctetString {
			return oid, b[start:end], nil
		}
		pos = end // criticality
	}
	return oid, nil, nil
}

// pagingCookie reads realSearchControlValue ::= SEQUENCE { size INTEGER, cookie OCTET STRING }.
func pagingCookie(v []byte) ([]byte, error) {
	tag, start, end, err := Header(v, 0)
	if err != nil || tag != TagSequence {
		return nil, errors.New("bad paged results value")
	}
	tag, _, pos, err := Header(v[:end], start)
	if err != nil || tag != TagInteger {
		return nil, errors.New("bad paged results size")
	}
	tag, start, end, err = Header(v[:end], pos)
	if err != nil || tag != TagOctetString {
		return nil, errors.New("bad paged results cookie")
	}
	return v[start:end], nil
}
