package ldapserver

import (
	"bufio"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// The frontend's framing and encoding live in internal/ldapwire, shared with the upstream
// connections that relay responses; these names keep the frontend's code short.
var (
	errNotSequence   = ldapwire.ErrNotSequence
	errIndefinite    = ldapwire.ErrIndefinite
	errLengthTooLong = ldapwire.ErrLengthTooLong
)

type (
	errTooLarge = ldapwire.TooLargeError
	errTooDeep  = ldapwire.TooDeepError
	encoder     = ldapwire.Encoder
)

func readFrame(r *bufio.Reader, limit int64, buf []byte) ([]byte, error) {
	return ldapwire.ReadFrame(r, limit, buf)
}

func scanBER(msg []byte, maxDepth int) error { return ldapwire.Scan(msg, maxDepth) }

func peekHeader(msg []byte) (int64, byte, error) { return ldapwire.PeekHeader(msg) }
