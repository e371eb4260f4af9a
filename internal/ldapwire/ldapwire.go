// Package ldapwire handles LDAP messages as bytes: splitting a stream into messages,
// walking their BER structure without building it, encoding, and the few header edits a
// proxy makes (replacing a message ID). Both sides of the proxy use it: the frontend reads
// client requests with it, and the upstream connections relay responses with it without
// decoding them.
package ldapwire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Framing errors. Each one ends the connection: once the byte stream cannot be split
// into messages there is no message ID left to answer.
var (
	ErrNotSequence   = errors.New("message does not start with a SEQUENCE")
	ErrIndefinite    = errors.New("indefinite length is not allowed in LDAP")
	ErrLengthTooLong = errors.New("length field longer than 4 bytes")
	ErrBadLength     = errors.New("element length exceeds its container")
	ErrTruncated     = errors.New("truncated element")
	ErrTagTooLong    = errors.New("tag number too long")
)

// TooLargeError reports a message whose declared length is over the server's limit. It is
// detected from the header alone, so the body is never read into memory.
type TooLargeError struct{ Size, Limit int64 }

func (e TooLargeError) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes", e.Size, e.Limit)
}

// TooDeepError reports an element nested deeper than the server's limit.
type TooDeepError struct{ Limit int }

func (e TooDeepError) Error() string {
	return fmt.Sprintf("elements nested deeper than %d levels", e.Limit)
}

// readFrame reads one LDAPMessage (tag, length and body) and returns it whole. The length
// is checked against limit before anything is allocated, so a header announcing 2 GiB
// costs nothing. buf is reused when it is large enough.
func ReadFrame(r *bufio.Reader, limit int64, buf []byte) ([]byte, error) {
	header, hlen, total, err := ReadHeader(r, limit)
	if err != nil {
		return nil, err
	}
	if int64(cap(buf)) < total {
		buf = make([]byte, total)
	}
	buf = buf[:total]
	copy(buf, header[:hlen])
	if _, err := io.ReadFull(r, buf[hlen:]); err != nil {
		return nil, NoEOF(err)
	}
	return buf, nil
}

// ReadHeader reads the tag and length of the next LDAPMessage: header[:hlen] are their
// bytes, and total is the length of the whole message, header included, checked against
// limit. The body is left to read.
func ReadHeader(r *bufio.Reader, limit int64) (header [6]byte, hlen int, total int64, err error) {
	hlen, total, err = PeekLength(r, limit)
	if err != nil {
		return header, 0, 0, err
	}
	b, _ := r.Peek(hlen)
	copy(header[:], b)
	r.Discard(hlen)
	return header, hlen, total, nil
}

// PeekLength reads the tag and length of the next LDAPMessage as ReadHeader does, but
// leaves them in r: nothing is consumed, so a read that fails (a deadline) may be tried
// again without losing the stream's place.
func PeekLength(r *bufio.Reader, limit int64) (hlen int, total int64, err error) {
	b, err := r.Peek(1)
	if err != nil {
		return 0, 0, err
	}
	if b[0] != 0x30 {
		return 0, 0, ErrNotSequence
	}
	if b, err = r.Peek(2); err != nil {
		return 0, 0, NoEOF(err)
	}
	hlen = 2
	var length int64
	switch first := b[1]; {
	case first < 0x80:
		length = int64(first)
	case first == 0x80:
		return 0, 0, ErrIndefinite
	default:
		n := int(first & 0x7f)
		if n > 4 {
			return 0, 0, ErrLengthTooLong
		}
		if b, err = r.Peek(2 + n); err != nil {
			return 0, 0, NoEOF(err)
		}
		for _, c := range b[2:] {
			length = length<<8 | int64(c)
		}
		hlen += n
	}
	total = int64(hlen) + length
	if total > limit {
		return 0, 0, TooLargeError{Size: total, Limit: limit}
	}
	return hlen, total, nil
}

// NoEOF turns a clean EOF in the middle of a message into io.ErrUnexpectedEOF, so the
// caller can tell a client that hung up between messages from one that cut a message short.
func NoEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// berHeader parses the identifier and length of the element starting at b[pos]. It
// returns the identifier byte, whether the element is constructed, and the bounds of its
// content.
func Header(b []byte, pos int) (id byte, start, end int, err error) {
	if pos >= len(b) {
		return 0, 0, 0, ErrTruncated
	}
	id = b[pos]
	pos++
	if id&0x1f == 0x1f { // high tag number form
		for n := 0; ; n++ {
			if pos >= len(b) {
				return 0, 0, 0, ErrTruncated
			}
			if n >= 4 {
				return 0, 0, 0, ErrTagTooLong
			}
			c := b[pos]
			pos++
			if c&0x80 == 0 {
				break
			}
		}
	}
	if pos >= len(b) {
		return 0, 0, 0, ErrTruncated
	}
	l := int(b[pos])
	pos++
	switch {
	case l == 0x80:
		return 0, 0, 0, ErrIndefinite
	case l > 0x80:
		n := l & 0x7f
		if n > 4 {
			return 0, 0, 0, ErrLengthTooLong
		}
		if pos+n > len(b) {
			return 0, 0, 0, ErrTruncated
		}
		l = 0
		for i := 0; i < n; i++ {
			l = l<<8 | int(b[pos])
			pos++
		}
	}
	if l > len(b)-pos {
		return 0, 0, 0, ErrBadLength
	}
	return id, pos, pos + l, nil
}

// Scan checks that msg is one well-formed definite-length BER element whose elements
// nest at most maxDepth deep. It walks the encoding without building anything and
// without recursion, so hostile input (a filter nested a million deep) costs one pass
// over the bytes before the real decoder, which allocates per element, ever sees it.
//
// The number of elements is not limited beyond what the message's size allows (two
// bytes each at least), as slapd limits only the size: every filter a directory answers
// within the size limit is decoded, whatever its items. Decode costs about 200 bytes per
// element while it runs, so decoding a request takes at most some 100 times its size:
// 25 MiB for 256 KiB, the default limit before bind.
func Scan(msg []byte, maxDepth int) error {
	_, err := scan(msg, maxDepth)
	return err
}

// scan is Scan, returning the number of elements.
func scan(msg []byte, maxDepth int) (int, error) {
	ends := make([]int, 0, 16)
	pos := 0
	for n := 0; ; n++ {
		for len(ends) > 0 && pos == ends[len(ends)-1] {
			ends = ends[:len(ends)-1]
		}
		if len(ends) == 0 && pos > 0 {
			if pos != len(msg) {
				return 0, ErrBadLength
			}
			return n, nil
		}
		id, start, end, err := Header(msg, pos)
		if err != nil {
			return 0, err
		}
		if len(ends) > 0 && end > ends[len(ends)-1] {
			return 0, ErrBadLength
		}
		if id&0x20 != 0 { // constructed: descend
			if len(ends) >= maxDepth {
				return 0, TooDeepError{Limit: maxDepth}
			}
			ends = append(ends, end)
			pos = start
			if start == end {
				pos = end
			}
			continue
		}
		pos = end
	}
}

// peekHeader reads the message ID and the protocol operation's tag of an LDAPMessage
// without decoding the rest, so that a message the full decoder refuses can still be
// answered under its own ID.
func PeekHeader(msg []byte) (id int64, opTag byte, err error) {
	_, start, end, err := Header(msg, 0)
	if err != nil {
		return 0, 0, err
	}
	tag, s, e, err := Header(msg[:end], start)
	if err != nil {
		return 0, 0, err
	}
	if tag != 0x02 || e-s < 1 || e-s > 4 {
		return 0, 0, errors.New("message ID is not a small INTEGER")
	}
	for _, c := range msg[s:e] {
		id = id<<8 | int64(c)
	}
	if msg[s]&0x80 != 0 {
		return 0, 0, errors.New("negative message ID")
	}
	if e >= end {
		return id, 0, ErrTruncated
	}
	return id, msg[e], nil
}

// encoder appends BER encodings to a byte slice. Constructed elements are opened with a
// placeholder length and closed once their content is known; close writes the minimal
// length form (some clients reject anything else) and shifts the content when needed.
type Encoder struct {
	// B holds the encoding so far; set it to a buffer to append to.
	B []byte
	// Where the open elements' contents start: the first len(near) in near, the
	// deeper ones in deep. An LDAP message nests less than len(near) deep, so that
	// encoding one allocates nothing but B.
	near  [8]int
	deep  []int
	depth int
}

// begin starts a constructed element with the given identifier byte.
func (e *Encoder) Begin(tag byte) {
	e.B = append(e.B, tag, 0)
	if e.depth < len(e.near) {
		e.near[e.depth] = len(e.B)
	} else {
		e.deep = append(e.deep, len(e.B))
	}
	e.depth++
}

// end closes the innermost constructed element.
func (e *Encoder) End() {
	e.depth--
	var start int
	if e.depth < len(e.near) {
		start = e.near[e.depth]
	} else {
		start = e.deep[len(e.deep)-1]
		e.deep = e.deep[:len(e.deep)-1]
	}
	n := len(e.B) - start
	if n < 0x80 {
		e.B[start-1] = byte(n)
		return
	}
	var lb [4]byte
	k := 0
	for v := n; v > 0; v >>= 8 {
		k++
	}
	for i := 0; i < k; i++ {
		lb[k-1-i] = byte(n >> (8 * i))
	}
	e.B = append(e.B, lb[:k]...) // grow by k bytes, then shift the content right
	copy(e.B[start+k:], e.B[start:start+n])
	e.B[start-1] = 0x80 | byte(k)
	copy(e.B[start:], lb[:k])
}

// length appends a definite length.
func (e *Encoder) Length(n int) {
	switch {
	case n < 0x80:
		e.B = append(e.B, byte(n))
	case n < 0x100:
		e.B = append(e.B, 0x81, byte(n))
	case n < 0x10000:
		e.B = append(e.B, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		e.B = append(e.B, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		e.B = append(e.B, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// bytes appends a primitive element holding v.
func (e *Encoder) Bytes(tag byte, v []byte) {
	e.B = append(e.B, tag)
	e.Length(len(v))
	e.B = append(e.B, v...)
}

// str appends a primitive element holding s.
func (e *Encoder) Str(tag byte, s string) {
	e.B = append(e.B, tag)
	e.Length(len(s))
	e.B = append(e.B, s...)
}

// int appends an INTEGER or ENUMERATED (by tag) in two's complement, minimal form.
func (e *Encoder) Int(tag byte, v int64) {
	n := intLen(v)
	e.B = append(e.B, tag, byte(n))
	for i := n - 1; i >= 0; i-- {
		e.B = append(e.B, byte(v>>(8*i)))
	}
}

// raw appends bytes that are already a complete encoding.
func (e *Encoder) Raw(b []byte) { e.B = append(e.B, b...) }

// Response message tags (application class, constructed) that carry an LDAPResult.
var resultTags = map[byte]bool{0x61: true, 0x65: true, 0x67: true, 0x69: true, 0x6b: true, 0x6d: true, 0x6f: true, 0x78: true}

// Response tags that do not end an operation.
const (
	TagSearchResultEntry     = 0x64
	TagSearchResultReference = 0x73
	TagIntermediateResponse  = 0x79
)

// messageParts locates the message ID and the protocolOp of an LDAPMessage.
func messageParts(msg []byte) (idStart, idEnd, opStart, end int, err error) {
	tag, start, end, err := Header(msg, 0)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if tag != 0x30 || end != len(msg) {
		return 0, 0, 0, 0, ErrNotSequence
	}
	tag, idStart, idEnd, err = Header(msg[:end], start)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if tag != 0x02 || idEnd-idStart < 1 || idEnd-idStart > 4 {
		return 0, 0, 0, 0, errors.New("message ID is not a small INTEGER")
	}
	if idEnd >= end {
		return 0, 0, 0, 0, ErrTruncated
	}
	return idStart, idEnd, idEnd, end, nil
}

// WithMessageID appends to dst a copy of the LDAPMessage msg carrying message ID id
// instead of its own; the operation and controls are copied unchanged. A proxy relays
// requests and responses this way without decoding them.
func WithMessageID(dst, msg []byte, id int64) ([]byte, error) {
	_, _, opStart, end, err := messageParts(msg)
	if err != nil {
		return dst, err
	}
	rest := msg[opStart:end]
	e := Encoder{B: dst}
	e.B = append(e.B, 0x30)
	e.Length(2 + intLen(id) + len(rest))
	e.Int(0x02, id)
	e.Raw(rest)
	return e.B, nil
}

// MessageID returns the message ID of an LDAPMessage.
func MessageID(msg []byte) (int64, error) {
	s, e, _, _, err := messageParts(msg)
	if err != nil {
		return 0, err
	}
	var id int64
	for _, c := range msg[s:e] {
		id = id<<8 | int64(c)
	}
	if msg[s]&0x80 != 0 {
		return 0, errors.New("negative message ID")
	}
	return id, nil
}

// intLen is the number of content bytes of v as a minimal two's complement INTEGER.
func intLen(v int64) int {
	n := 1
	for x := v; x > 127 || x < -128; x >>= 8 {
		n++
	}
	return n
}
