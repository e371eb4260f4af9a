package ldapserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The PROXY protocol (versions 1 and 2, as HAProxy defines them) lets a load balancer
// that forwards TCP connections tell the server whom it forwards for: it sends a header
// before the first byte of the client's own stream (before the TLS handshake on LDAPS).
// The server reads it only from the peers it trusts (Server.ProxyProtocolFrom); the
// address it carries then stands for the client everywhere: throttles, limits and logs.

// proxyV2Sig starts a version 2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	proxyV1MaxLen = 107 // the longest version 1 line, CRLF included
	proxyV1MinLen = 15  // "PROXY UNKNOWN\r\n"
	proxyV2MaxLen = 16 + 4096
)

var errProxyHeader = errors.New("PROXY protocol header")

func proxyErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProxyHeader}, args...)...)
}

// readProxyHeader reads one PROXY protocol header (version 1 or 2) from r, not a byte
// more, so that whatever follows (LDAP, or a TLS handshake) can be read from r next. It
// returns the source address the header carries, or nil for a header that names none
// (version 1 UNKNOWN, version 2 LOCAL or an unspecified family: the load balancer's own
// connection, such as a health check), in which case the peer's address stands.
func readProxyHeader(r io.Reader) (net.Addr, error) {
	// The first byte tells a header from a client that sends none, without waiting
	// for more than it sent.
	var head [proxyV1MinLen]byte
	if _, err := io.ReadFull(r, head[:1]); err != nil {
		return nil, proxyErr("incomplete: %v", err)
	}
	if head[0] != 'P' && head[0] != proxyV2Sig[0] {
		return nil, proxyErr("missing: the connection does not start with one")
	}
	if _, err := io.ReadFull(r, head[1:]); err != nil {
		return nil, proxyErr("incomplete: %v", err)
	}
	switch {
	case bytes.HasPrefix(head[:], proxyV2Sig):
		return readProxyV2(r, head[:])
	case bytes.HasPrefix(head[:], []byte("PROXY ")):
		line := head[:]
		for !bytes.HasSuffix(line, []byte("\r\n")) {
			if len(line) >= proxyV1MaxLen {
				return nil, proxyErr("version 1 line longer than %d bytes", proxyV1MaxLen)
			}
			var b [1]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return nil, proxyErr("incomplete: %v", err)
			}
			line = append(line, b[0])
		}
		return parseProxyV1(string(line[:len(line)-2]))
	default:
		return nil, proxyErr("missing: the connection does not start with one")
	}
}

// parseProxyV1 parses a version 1 line without its CRLF:
// "PROXY TCP4|TCP6 src dst srcport dstport" or "PROXY UNKNOWN ...".
func parseProxyV1(line string) (net.Addr, error) {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, proxyErr("malformed version 1 line %q", line)
	}
	src, err := netip.ParseAddr(f[2])
	if err != nil || src.Zone() != "" || src.Is4() != (f[1] == "TCP4") {
		return nil, proxyErr("bad source address %q", f[2])
	}
	if dst, err := netip.ParseAddr(f[3]); err != nil || dst.Is4() != src.Is4() {
		return nil, proxyErr("bad destination address %q", f[3])
	}
	port, err := parsePort(f[4])
	if err != nil {
		return nil, proxyErr("bad source port %q", f[4])
	}
	if _, err := parsePort(f[5]); err != nil {
		return nil, proxyErr("bad destination port %q", f[5])
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, port)), nil
}

// parsePort parses a decimal port without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 1 && s[0] == '0' || s[0] == '+' || s[0] == '-' {
		return 0, errors.New("bad port")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// readProxyV2 reads the rest of a version 2 header whose first bytes are head.
func readProxyV2(r io.Reader, head []byte) (net.Addr, error) {
	var fixed [16]byte
	copy(fixed[:], head)
	if _, err := io.ReadFull(r, fixed[len(head):]); err != nil {
		return nil, proxyErr("incomplete: %v", err)
	}
	verCmd, famProto := fixed[12], fixed[13]
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if verCmd>>4 != 2 {
		return nil, proxyErr("version %d is not 2", verCmd>>4)
	}
	if 16+n > proxyV2MaxLen {
		return nil, proxyErr("version 2 header of %d bytes is too long", 16+n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, proxyErr("incomplete: %v", err)
	}
	switch verCmd & 0x0f {
	case 0: // LOCAL: the balancer's own connection
		return nil, nil
	case 1: // PROXY
	default:
		return nil, proxyErr("unknown version 2 command %d", verCmd&0x0f)
	}
	var alen int
	switch famProto >> 4 {
	case 1:
		alen = 4
	case 2:
		alen = 16
	default: // AF_UNSPEC, AF_UNIX: no IP address to use
		return nil, nil
	}
	if len(body) < 2*alen+4 {
		return nil, proxyErr("version 2 address block of %d bytes is too short", len(body))
	}
	src, _ := netip.AddrFromSlice(body[:alen])
	port := binary.BigEndian.Uint16(body[2*alen:])
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src.Unmap(), port)), nil
}
