package ldapwire

import (
	"bytes"
	"errors"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Decode builds the go-asn1-ber packet tree of one BER element, as ber.DecodePacketErr
// does, for callers (go-ldap's filter and control helpers) that take packets. It costs a
// handful of allocations per message instead of several per element: ber.DecodePacketErr
// reads byte by byte and re-encodes every child into its parent's buffer, which made it
// most of the cost of reading a request. The packets' Data buffers share msg's memory, so
// msg must not change while they are in use; Data of a constructed packet holds its
// content as received. The string Values of OCTET STRINGs are slices of one copy of the
// whole message: a string kept from them keeps the whole message's text, whatever else
// (a password) it holds; copy what is kept for long.
//
// Only the universal types LDAP uses are decoded here (BOOLEAN, INTEGER, ENUMERATED,
// OCTET STRING, SEQUENCE, SET, NULL); an element of any other universal primitive type is
// decoded by ber.DecodePacketErr itself, so the result is always what it would give.
// Call Scan first: Decode assumes a well-formed message.
func Decode(msg []byte) (*ber.Packet, error) {
	return DecodeIn(msg, "")
}

// DecodeIn is Decode with text, when not empty, as msg's bytes in a string: the OCTET
// STRING values are slices of it, and no copy of msg is made for them. It is for a
// caller that has the message as a string already.
func DecodeIn(msg []byte, text string) (*ber.Packet, error) {
	if text != "" && len(text) != len(msg) {
		return nil, errors.New("decode: text and message differ")
	}
	type elem struct {
		header     int // where the element starts
		start, end int // content
		parent     int32
		children   int32
		id         ber.Identifier
	}
	// Counted first, so that every slice below is made once, at its size.
	count, err := scan(msg, len(msg))
	if err != nil {
		return nil, err
	}
	var small [32]elem // a request's elements, on the stack
	elems := small[:0]
	if count > len(small) {
		elems = make([]elem, 0, count)
	}
	// Preorder walk with an explicit stack of open constructed elements.
	stack := make([]int, 0, 16)
	pos := 0
	for {
		for len(stack) > 0 && pos == elems[stack[len(stack)-1]].end {
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 && len(elems) > 0 {
			break
		}
		id, err := identifier(msg[pos:])
		if err != nil {
			return nil, err
		}
		_, start, end, err := Header(msg, pos)
		if err != nil {
			return nil, err
		}
		parent := int32(-1)
		if len(stack) > 0 {
			if id.ClassType == ber.ClassUniversal && id.TagType == ber.TypePrimitive && id.Tag == ber.TagEOC && start == end {
				return nil, errors.New("end-of-contents inside a definite-length element")
			}
			parent = int32(stack[len(stack)-1])
			elems[parent].children++
			if end > elems[parent].end {
				return nil, ErrBadLength
			}
		}
		elems = append(elems, elem{header: pos, start: start, end: end, parent: parent, id: id})
		if id.TagType == ber.TypeConstructed {
			stack = append(stack, len(elems)-1)
			pos = start
			continue
		}
		pos = end
	}
	if elems[0].end != len(msg) {
		return nil, ErrBadLength
	}

	// A packet and its Data buffer are made together, and every OCTET STRING's Value is
	// a slice of one copy of the message: a few allocations per message, not per element.
	// The packets of a small message (a search filter such as (uid=x) has three, one of
	// two such filters under an AND seven) and their lists of children are one.
	type node struct {
		p ber.Packet
		b bytes.Buffer
	}
	var nodes []node
	var kids []*ber.Packet
	switch n := len(elems); {
	case n <= 3:
		both := new(struct {
			nodes [3]node
			kids  [3]*ber.Packet
		})
		nodes, kids = both.nodes[:n], both.kids[:n]
	case n <= 8:
		both := new(struct {
			nodes [8]node
			kids  [8]*ber.Packet
		})
		nodes, kids = both.nodes[:n], both.kids[:n]
	default:
		nodes, kids = make([]node, n), make([]*ber.Packet, n)
	}
	// text is msg as a string, made at the first OCTET STRING when not given.
	next := 0
	for i := range elems {
		e, n := &elems[i], &nodes[i]
		p := &n.p
		p.Identifier = e.id
		content := msg[e.start:e.end:e.end]
		n.b = *bytes.NewBuffer(content)
		p.Data = &n.b
		if p.TagType == ber.TypeConstructed {
			p.Children = kids[next : next : next+int(e.children)]
			next += int(e.children)
		} else if p.ClassType == ber.ClassUniversal {
			if p.Tag == ber.TagOctetString && text == "" {
				text = string(msg)
			}
			if err := setValue(p, msg, text, e.header, e.start, e.end); err != nil {
				return nil, err
			}
		}
		if e.parent >= 0 {
			pp := &nodes[e.parent].p
			pp.Children = append(pp.Children, p)
		}
	}
	return &nodes[0].p, nil
}

// setValue fills Value and ByteValue of a universal primitive as go-asn1-ber does; text
// is msg as a string (or "" when p is no OCTET STRING).
func setValue(p *ber.Packet, msg []byte, text string, header, start, end int) error {
	content := msg[start:end:end]
	p.ByteValue = content
	switch p.Tag {
	case ber.TagBoolean:
		v, _ := ber.ParseInt64(content)
		p.Value = v != 0
	case ber.TagInteger, ber.TagEnumerated:
		p.Value, _ = ber.ParseInt64(content)
	case ber.TagOctetString:
		p.Value = text[start:end]
	case ber.TagNULL, ber.TagEOC:
	default:
		// A type LDAP does not use: let go-asn1-ber decide, to stay identical to it.
		q, err := ber.DecodePacketErr(msg[header:end])
		if err != nil {
			return err
		}
		p.Value, p.ByteValue = q.Value, q.ByteValue
	}
	return nil
}

// identifier parses a BER identifier, including the high tag number form.
func identifier(b []byte) (ber.Identifier, error) {
	if len(b) == 0 {
		return ber.Identifier{}, ErrTruncated
	}
	id := ber.Identifier{
		ClassType: ber.Class(b[0] & 0xc0),
		TagType:   ber.Type(b[0] & 0x20),
		Tag:       ber.Tag(b[0] & 0x1f),
	}
	if id.Tag != 0x1f {
		return id, nil
	}
	var tag uint64
	for i := 1; i < len(b) && i <= 8; i++ {
		if i == 1 && b[i]&0x7f == 0 {
			return ber.Identifier{}, errors.New("high tag number with a leading zero byte") // X.690 8.1.2.4.2 c
		}
		tag = tag<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			id.Tag = ber.Tag(tag)
			return id, nil
		}
	}
	return ber.Identifier{}, errors.New("malformed high tag number")
}
