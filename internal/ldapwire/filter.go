package ldapwire

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// The filter choices of RFC 4511 §4.5.1, their parts and the elements of an
// extensible match, as go-ldap numbers them.
const (
	filterAnd             = 0
	filterOr              = 1
	filterNot             = 2
	filterEqualityMatch   = 3
	filterSubstrings      = 4
	filterGreaterOrEqual  = 5
	filterLessOrEqual     = 6
	filterPresent         = 7
	filterApproxMatch     = 8
	filterExtensibleMatch = 9

	substringsInitial = 0
	substringsFinal   = 2

	ruleMatchValue   = 3
	ruleDNAttributes = 4
)

// ValidFilter reports whether b, one BER element that passed Scan, is a search filter
// the server accepts, reading its bytes without building anything: every choice is one
// RFC 4511 defines, each has the shape its choice must have, and the nesting of
// and/or/not stays within maxDepth (a leaf at the top is at depth 1). It accepts exactly
// what Decode decodes and the server's check of the decoded filter then accepts, so that
// a filter that was only validated can be decoded later, when something needs it
// (SearchRequest.SetFilterEncoding), and cannot fail then.
func ValidFilter(b []byte, maxDepth int) bool {
	end, ok := validFilter(b, 0, 1, maxDepth)
	return ok && end == len(b)
}

// element reads the identifier and the bounds of the element at b[pos] as Decode does.
func element(b []byte, pos int) (id ber.Identifier, start, end int, ok bool) {
	id, err := identifier(b[pos:])
	if err != nil {
		return id, 0, 0, false
	}
	_, start, end, err = Header(b, pos)
	return id, start, end, err == nil
}

// validFilter checks the filter element at b[pos] at the given depth and returns where
// it ends. The nesting limit b passed (Scan) bounds the recursion.
func validFilter(b []byte, pos, depth, maxDepth int) (int, bool) {
	if depth > maxDepth || pos >= len(b) {
		return 0, false
	}
	id, start, end, ok := element(b, pos)
	if !ok || id.ClassType != ber.ClassContext || id.Tag > filterExtensibleMatch {
		return 0, false
	}
	constructed := id.TagType == ber.TypeConstructed
	switch id.Tag {
	case filterAnd, filterOr, filterNot:
		if !constructed {
			return 0, false
		}
		n := 0
		for p := start; p < end; n++ {
			if p, ok = validFilter(b, p, depth+1, maxDepth); !ok || p > end {
				return 0, false
			}
		}
		if id.Tag == filterNot && n != 1 {
			return 0, false
		}
	case filterEqualityMatch, filterGreaterOrEqual, filterLessOrEqual, filterApproxMatch:
		if !constructed {
			return 0, false
		}
		p, ok := octetString(b, start, end)
		if !ok {
			return 0, false
		}
		if p, ok = octetString(b, p, end); !ok || p != end {
			return 0, false
		}
	case filterSubstrings:
		if !constructed {
			return 0, false
		}
		p, ok := octetString(b, start, end)
		if !ok || p >= end {
			return 0, false
		}
		// The list of parts: any constructed element with at least one part, and
		// nothing after it.
		lid, ls, le, ok := element(b, p)
		if !ok || le != end || lid.TagType != ber.TypeConstructed || ls == le {
			return 0, false
		}
		for q, i := ls, 0; q < le; i++ {
			pid, _, pe, ok := element(b, q)
			if !ok || pe > le || pid.ClassType != ber.ClassContext || pid.TagType != ber.TypePrimitive || pid.Tag > substringsFinal ||
				pid.Tag == substringsInitial && i != 0 || pid.Tag == substringsFinal && pe != le {
				return 0, false
			}
			q = pe
		}
	case filterPresent:
		if constructed {
			return 0, false
		}
	case filterExtensibleMatch:
		if !constructed || start == end {
			return 0, false
		}
		last, hasValue := ber.Tag(0), false
		for p := start; p < end; {
			cid, _, ce, ok := element(b, p)
			if !ok || ce > end || cid.ClassType != ber.ClassContext || cid.TagType != ber.TypePrimitive || cid.Tag <= last || cid.Tag > ruleDNAttributes {
				return 0, false
			}
			last, p = cid.Tag, ce
			hasValue = hasValue || cid.Tag == ruleMatchValue
		}
		if !hasValue {
			return 0, false
		}
	}
	return end, true
}

// octetString reads a primitive universal OCTET STRING at b[pos], within end, and
// returns where it ends.
func octetString(b []byte, pos, end int) (int, bool) {
	if pos >= end {
		return 0, false
	}
	id, _, e, ok := element(b, pos)
	if !ok || e > end || id.ClassType != ber.ClassUniversal || id.Tag != ber.TagOctetString || id.TagType != ber.TypePrimitive {
		return 0, false
	}
	return e, true
}

// SetFilterEncoding gives s its filter as the BER element text, which ValidFilter
// accepted: the packet tree of Filter is built from it when FilterPacket is first asked
// for, and never if nothing asks (a search relayed upstream as the client's bytes).
func (s *SearchRequest) SetFilterEncoding(text string) {
	s.Filter, s.filterText = nil, text
}

// FilterPacket returns the filter as a packet tree: Filter, decoded first from what
// SetFilterEncoding gave, if it was given. Each extensible match's dnAttributes flag has
// the bool Value that go-ldap's DecompileFilter asserts but go-asn1-ber sets only on
// universal elements.
func (s *SearchRequest) FilterPacket() *ber.Packet {
	if s.Filter == nil && s.filterText != "" {
		p, err := DecodeIn([]byte(s.filterText), s.filterText)
		if err != nil { // ValidFilter accepted it: cannot happen
			return nil
		}
		SetDNAttributesValues(p)
		s.Filter, s.filterText = p, ""
	}
	return s.Filter
}

// SetDNAttributesValues gives each extensible match's dnAttributes flag in the decoded
// filter f the bool Value that go-ldap's DecompileFilter asserts.
func SetDNAttributesValues(f *ber.Packet) {
	if f.ClassType != ber.ClassContext {
		return
	}
	switch f.Tag {
	case filterAnd, filterOr, filterNot:
		for _, c := range f.Children {
			SetDNAttributesValues(c)
		}
	case filterExtensibleMatch:
		for _, c := range f.Children {
			if c.ClassType == ber.ClassContext && c.Tag == ruleDNAttributes {
				b := c.Data.Bytes()
				c.Value = len(b) == 1 && b[0] != 0
			}
		}
	}
}
