package ldapserver

import (
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// appendResult encodes a complete LDAPMessage carrying res as the response to op.
func appendResult(b []byte, id int64, op Op, res *Result) []byte {
	return ldapwire.AppendResult(b, id, responseTag[op], res)
}

// appendNotice encodes a Notice of Disconnection (RFC 4511 §4.4.1).
func appendNotice(b []byte, code uint16, diagnostic string) []byte {
	return ldapwire.AppendNotice(b, code, diagnostic)
}
