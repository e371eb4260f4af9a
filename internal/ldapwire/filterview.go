package ldapwire

import (
	"unsafe"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Filter is one element of a search filter's BER encoding (RFC 4511 §4.5.1), read in
// place: its identifier and its content, slices of the request's one copy of the
// message. Reading a filter this way builds nothing, where a packet tree
// (SearchRequest.FilterPacket) takes a packet and a buffer per element; a cached search
// reads its filter once, to compile it. The zero Filter is no element (Valid is false).
type Filter struct {
	id      ber.Identifier
	content string
	enc     string // the whole element: identifier, length and content
}

// FilterElement returns the request's filter read in place: from the encoding that
// SetFilterEncoding gave when there is one, else from the packet tree's encoding. ok is
// false for a filter that is not one BER element (a packet tree built by hand can be
// anything; an encoding ValidFilter accepted always is).
func (s *SearchRequest) FilterElement() (f Filter, ok bool) {
	text := s.filterText
	if text == "" {
		if s.Filter == nil {
			return Filter{}, false
		}
		text = string(s.Filter.Bytes())
	}
	f, end, ok := readFilter(text, 0)
	return f, ok && end == len(text)
}

// readFilter reads the element at text[pos:] and returns where it ends.
func readFilter(text string, pos int) (Filter, int, bool) {
	b := readOnly(text)
	id, start, end, ok := element(b, pos)
	if !ok {
		return Filter{}, 0, false
	}
	return Filter{id: id, content: text[start:end], enc: text[pos:end]}, end, true
}

// readOnly is text's bytes as a slice, for parsing without a copy. Nothing may write to
// it.
func readOnly(text string) []byte {
	return unsafe.Slice(unsafe.StringData(text), len(text))
}

// Valid reports whether f is an element (not the zero Filter).
func (f Filter) Valid() bool { return f.enc != "" }

// Class is f's class: context-specific for every filter choice.
func (f Filter) Class() ber.Class { return f.id.ClassType }

// Tag is f's tag: the filter choice (ldap.FilterAnd, ...), or a part's.
func (f Filter) Tag() ber.Tag { return f.id.Tag }

// Primitive reports whether f's content is a value, not elements.
func (f Filter) Primitive() bool { return f.id.TagType == ber.TypePrimitive }

// Text is f's content as a string: the value of a primitive element.
func (f Filter) Text() string { return f.content }

// Bytes is f's content as bytes, which nothing may write to: the value of a primitive
// element.
func (f Filter) Bytes() []byte { return readOnly(f.content) }

// Encoding is f's whole element as it was encoded.
func (f Filter) Encoding() string { return f.enc }

// Children appends the elements of a constructed f's content to buf and returns it; ok
// is false when the content is not a sequence of whole elements (or f is primitive).
// With buf on the caller's stack, reading the children allocates nothing.
func (f Filter) Children(buf []Filter) (_ []Filter, ok bool) {
	if f.Primitive() {
		return buf, false
	}
	for pos := 0; pos < len(f.content); {
		c, end, ok := readFilter(f.content, pos)
		if !ok {
			return buf, false
		}
		buf, pos = append(buf, c), end
	}
	return buf, true
}

// NumChildren is the number of elements in a constructed f's content, -1 when it is not
// a sequence of whole elements.
func (f Filter) NumChildren() int {
	if f.Primitive() {
		return -1
	}
	n := 0
	for pos := 0; pos < len(f.content); n++ {
		_, end, ok := readFilter(f.content, pos)
		if !ok {
			return -1
		}
		pos = end
	}
	return n
}

// Child is the i-th element of a constructed f's content; ok is false when there is
// none.
func (f Filter) Child(i int) (Filter, bool) {
	if f.Primitive() {
		return Filter{}, false
	}
	for pos, n := 0, 0; pos < len(f.content); n++ {
		c, end, ok := readFilter(f.content, pos)
		if !ok {
			return Filter{}, false
		}
		if n == i {
			return c, true
		}
		pos = end
	}
	return Filter{}, false
}
