package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Framing errors. Each one ends the connection: once the byte stream cannot be split
// into messages there is no message ID left to answer.
var (
	errNotSequence   = errors.New("message does not start with a SEQUENCE")
	errIndefinite    = errors.New("indefinite length is not allowed in LDAP")
	errLengthTooLong = errors.New("length field longer than 4 bytes")
	errBadLength     = errors.New("element length exceeds its container")
	errTruncated     = errors.New("truncated element")
	errTagTooLong    = errors.New("tag number too long")
)

// errTooLarge reports a message whose declared length is over the server's limit. It is
// detected from the header alone, so the body is never read into memory.
type errTooLarge struct{ size, limit int64 }

func (e errTooLarge) Error() string {
	return fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes", e.size, e.limit)
}

// errTooDeep reports an element nested deeper than the server's limit.
type errTooDeep struct{ limit int }

func (e errTooDeep) Error() string {
	return fmt.Sprintf("elements nested deeper than %d levels", e.limit)
}

// readFrame reads one LDAPMessage (tag, length and body) and returns it whole. The length
// is checked against limit before anything is allocated, so a header announcing 2 GiB
// costs nothing. buf is reused when it is large enough.
func readFrame(r *bufio.Reader, limit int64, buf []byte) ([]byte, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if tag != 0x30 {
		return nil, errNotSequence
	}
	first, err := r.ReadByte()
	if err != nil {
		return nil, noEOF(err)
	}
	var header [6]byte
	header[0], header[1] = tag, first
	hlen := 2
	var length int64
	switch {
	case first < 0x80:
		length = int64(first)
	case first == 0x80:
		return nil, errIndefinite
	default:
		n := int(first & 0x7f)
		if n > 4 {
			return nil, errLengthTooLong
		}
		for i := 0; i < n; i++ {
			b, err := r.ReadByte()
			if err != nil {
				return nil, noEOF(err)
			}
			header[hlen] = b
			hlen++
			length = length<<8 | int64(b)
		}
	}
	total := int64(hlen) + length
	if total > limit {
		return nil, errTooLarge{size: total, limit: limit}
	}
	if int64(cap(buf)) < total {
		buf = make([]byte, total)
	}
	buf = buf[:total]
	copy(buf, header[:hlen])
	if _, err := io.ReadFull(r, buf[hlen:]); err != nil {
		return nil, noEOF(err)
	}
	return buf, nil
}

// noEOF turns a clean EOF in the middle of a message into io.ErrUnexpectedEOF, so the
// caller can tell a client that hung up between messages from one that cut a message short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// berHeader parses the identifier and length of the element starting at b[pos]. It
// returns the identifier byte, whether the element is constructed, and the bounds of its
// content.
func berHeader(b []byte, pos int) (id byte, start, end int, err error) {
	if pos >= len(b) {
		return 0, 0, 0, errTruncated
	}
	id = b[pos]
	pos++
	if id&0x1f == 0x1f { // high tag number form
		for n := 0; ; n++ {
			if pos >= len(b) {
				return 0, 0, 0, errTruncated
			}
			if n >= 4 {
				return 0, 0, 0, errTagTooLong
			}
			c := b[pos]
			pos++
			if c&0x80 == 0 {
				break
			}
		}
	}
	if pos >= len(b) {
		return 0, 0, 0, errTruncated
	}
	l := int(b[pos])
	pos++
	switch {
	case l == 0x80:
		return 0, 0, 0, errIndefinite
	case l > 0x80:
		n := l & 0x7f
		if n > 4 {
			return 0, 0, 0, errLengthTooLong
		}
		if pos+n > len(b) {
			return 0, 0, 0, errTruncated
		}
		l = 0
		for i := 0; i < n; i++ {
			l = l<<8 | int(b[pos])
			pos++
		}
	}
	if l > len(b)-pos {
		return 0, 0, 0, errBadLength
	}
	return id, pos, pos + l, nil
}

// scanBER checks that msg is one well-formed definite-length BER element whose elements
// nest at most maxDepth deep. It walks the encoding without building anything and without
// recursion, so hostile input (a filter nested a million deep) costs one pass over the bytes
// before the real decoder, which recurses, ever sees it.
func scanBER(msg []byte, maxDepth int) error {
	ends := make([]int, 0, 16)
	pos := 0
	for {
		for len(ends) > 0 && pos == ends[len(ends)-1] {
			ends = ends[:len(ends)-1]
		}
		if len(ends) == 0 && pos > 0 {
			if pos != len(msg) {
				return errBadLength
			}
			return nil
		}
		id, start, end, err := berHeader(msg, pos)
		if err != nil {
			return err
		}
		if len(ends) > 0 && end > ends[len(ends)-1] {
			return errBadLength
		}
		if id&0x20 != 0 { // constructed: descend
			if len(ends) >= maxDepth {
				return errTooDeep{limit: maxDepth}
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
func peekHeader(msg []byte) (id int64, opTag byte, err error) {
	_, start, end, err := berHeader(msg, 0)
	if err != nil {
		return 0, 0, err
	}
	tag, s, e, err := berHeader(msg[:end], start)
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
		return id, 0, errTruncated
	}
	return id, msg[e], nil
}

// encoder appends BER encodings to a byte slice. Constructed elements are opened with a
// placeholder length and closed once their content is known; close writes the minimal
// length form (some clients reject anything else) and shifts the content when needed.
type encoder struct {
	b    []byte
	open []int
}

// begin starts a constructed element with the given identifier byte.
func (e *encoder) begin(tag byte) {
	e.b = append(e.b, tag, 0)
	e.open = append(e.open, len(e.b))
}

// end closes the innermost constructed element.
func (e *encoder) end() {
	start := e.open[len(e.open)-1]
	e.open = e.open[:len(e.open)-1]
	n := len(e.b) - start
	if n < 0x80 {
		e.b[start-1] = byte(n)
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
	e.b = append(e.b, lb[:k]...) // grow by k bytes, then shift the content right
	copy(e.b[start+k:], e.b[start:start+n])
	e.b[start-1] = 0x80 | byte(k)
	copy(e.b[start:], lb[:k])
}

// length appends a definite length.
func (e *encoder) length(n int) {
	switch {
	case n < 0x80:
		e.b = append(e.b, byte(n))
	case n < 0x100:
		e.b = append(e.b, 0x81, byte(n))
	case n < 0x10000:
		e.b = append(e.b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		e.b = append(e.b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		e.b = append(e.b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// bytes appends a primitive element holding v.
func (e *encoder) bytes(tag byte, v []byte) {
	e.b = append(e.b, tag)
	e.length(len(v))
	e.b = append(e.b, v...)
}

// str appends a primitive element holding s.
func (e *encoder) str(tag byte, s string) {
	e.b = append(e.b, tag)
	e.length(len(s))
	e.b = append(e.b, s...)
}

// int appends an INTEGER or ENUMERATED (by tag) in two's complement, minimal form.
func (e *encoder) int(tag byte, v int64) {
	n := 1
	for x := v; x > 127 || x < -128; x >>= 8 {
		n++
	}
	e.b = append(e.b, tag, byte(n))
	for i := n - 1; i >= 0; i-- {
		e.b = append(e.b, byte(v>>(8*i)))
	}
}

// raw appends bytes that are already a complete encoding.
func (e *encoder) raw(b []byte) { e.b = append(e.b, b...) }
