package ldapserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// --- the PROXY protocol ---

func proxyV2(cmd, fam byte, addrs []byte, tlvs ...byte) []byte {
	b := append([]byte{}, proxyV2Sig...)
	b = append(b, 0x20|cmd, fam<<4|1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}

func v2Addrs(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	b := append(s.AsSlice(), d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func TestReadProxyHeader(t *testing.T) {
	after := []byte("\x30\x05LDAP") // what follows the header must be left unread
	for _, tc := range []struct {
		name, header string
		want         string // the source address; "" for none (the peer's stands)
		bad          bool
	}{
		{"v1 TCP4", "PROXY TCP4 192.0.2.7 198.51.100.1 40000 389\r\n", "192.0.2.7:40000", false},
		{"v1 TCP6", "PROXY TCP6 2001:db8::7 2001:db8::1 40000 636\r\n", "[2001:db8::7]:40000", false},
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", "", false},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", "", false},
		{"v2 IPv4", string(proxyV2(1, 1, v2Addrs("192.0.2.7", "198.51.100.1", 40000, 389))), "192.0.2.7:40000", false},
		{"v2 IPv6 with TLVs", string(proxyV2(1, 2, v2Addrs("2001:db8::7", "2001:db8::1", 40000, 636), 0x04, 0, 1, 0)), "[2001:db8::7]:40000", false},
		{"v2 LOCAL (health check)", string(proxyV2(0, 0, nil)), "", false},
		{"v2 UNSPEC family", string(proxyV2(1, 0, nil)), "", false},
		{"no header", "\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00", "", true},
		{"v1 TCP4 with an IPv6 address", "PROXY TCP4 2001:db8::7 198.51.100.1 40000 389\r\n", "", true},
		{"v1 bad port", "PROXY TCP4 192.0.2.7 198.51.100.1 400000 389\r\n", "", true},
		{"v1 leading zero port", "PROXY TCP4 192.0.2.7 198.51.100.1 0400 389\r\n", "", true},
		{"v1 missing field", "PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n", "", true},
		{"v1 without CRLF, endless", "PROXY TCP4 " + strings.Repeat("1", 200), "", true},
		{"v1 truncated", "PROXY TCP4 192.0", "", true},
		{"v2 wrong version", string(append(append([]byte{}, proxyV2Sig...), 0x11, 0x11, 0, 0)), "", true},
		{"v2 short address block", string(proxyV2(1, 1, []byte{192, 0, 2, 7})), "", true},
		{"v2 unknown command", string(proxyV2(5, 1, v2Addrs("192.0.2.7", "198.51.100.1", 1, 2))), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(append([]byte(tc.header), after...))
			src, err := readProxyHeader(r)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted, source %v", src)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if src != nil {
				got = src.String()
			}
			if got != tc.want {
				t.Fatalf("source %q, want %q", got, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Equal(rest, after) {
				t.Fatalf("the bytes after the header: %q, want %q", rest, after)
			}
		})
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 389\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(1, 2, v2Addrs("2001:db8::7", "2001:db8::1", 40000, 636), 1, 0, 2, 'h', '2'))
	f.Add(proxyV2(0, 0, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		src, err := readProxyHeader(r)
		used := len(in) - r.Len()
		if used > proxyV2MaxLen {
			t.Fatalf("read %d bytes, more than any header", used)
		}
		if err == nil && src != nil && !AddrIP(src).IsValid() {
			t.Fatalf("accepted a header with no usable address: %v", src)
		}
	})
}

// addrHandler answers binds as protoHandler does, and searches with one entry whose
// "remote" attribute is the client address the session holds.
func addrHandler() HandlerFunc {
	h := newProtoHandler()
	return func(w ResponseWriter, r *Request) {
		if r.Op != OpSearch {
			h.serve(w, r)
			return
		}
		w.WriteEntry(&Entry{DN: "cn=me", Attributes: []Attribute{{Name: "remote", Values: [][]byte{[]byte(r.Session.RemoteAddr.String())}}}})
		w.WriteResult(&Result{})
	}
}

// remoteSeen asks the server which client address it sees on c.
func remoteSeen(t *testing.T, c net.Conn) string {
	t.Helper()
	lc := ldap.NewConn(c, false)
	lc.Start()
	lc.SetTimeout(5 * time.Second)
	t.Cleanup(func() { lc.Close() })
	sr, err := lc.Search(newSearch("cn=me"))
	if err != nil || len(sr.Entries) != 1 {
		t.Fatalf("search: %v", err)
	}
	return sr.Entries[0].GetAttributeValue("remote")
}

func dialRaw(t *testing.T, addr string, header []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if header != nil {
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestProxyProtocolNamesTheClient(t *testing.T) {
	srv := &Server{Handler: addrHandler(), ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	addr := serve(t, srv)

	v1 := dialRaw(t, addr, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 389\r\n"))
	if got := remoteSeen(t, v1); got != "192.0.2.7:40000" {
		t.Fatalf("after a v1 header the session's address is %q", got)
	}
	v2 := dialRaw(t, addr, proxyV2(1, 2, v2Addrs("2001:db8::7", "2001:db8::1", 40001, 389)))
	if got := remoteSeen(t, v2); got != "[2001:db8::7]:40001" {
		t.Fatalf("after a v2 header the session's address is %q", got)
	}
	local := dialRaw(t, addr, proxyV2(0, 0, nil)) // the balancer's health check
	if got := remoteSeen(t, local); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("after a LOCAL header the session's address is %q, want the peer's", got)
	}

	// A trusted balancer must send the header: LDAP straight away is refused.
	w := dialWire(t, addr)
	w.send(ldapMessage(1, bindOp("", "")))
	w.expectClosed(5*time.Second, false)
}

func TestProxyProtocolOnlyFromTrustedPeers(t *testing.T) {
	srv := &Server{Handler: addrHandler(), ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	addr := serve(t, srv)
	// From an untrusted peer a header, version 1 or 2, is no LDAP message: it cannot
	// choose its address.
	for _, header := range [][]byte{
		[]byte("PROXY TCP4 10.9.9.9 198.51.100.1 40000 389\r\n"),
		proxyV2(1, 1, v2Addrs("10.9.9.9", "198.51.100.1", 40000, 389)),
	} {
		w := dialWire(t, addr)
		w.send(append(header, ldapMessage(1, searchOp("cn=me", 0, "(objectClass=*)"))...))
		w.expectNotice(ldap.LDAPResultProtocolError)
		w.expectClosed(5*time.Second, false)
	}
	// And plain LDAP from it works, under its own address.
	if got := remoteSeen(t, dialRaw(t, addr, nil)); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("an untrusted peer is seen as %q", got)
	}
}

func TestProxyProtocolBeforeLDAPS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	srv := &Server{Handler: addrHandler(), TLSConfig: serverTLS, Logger: discard(),
		ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln)
	t.Cleanup(func() { srv.Close() })

	raw := dialRaw(t, ln.Addr().String(), []byte("PROXY TCP4 192.0.2.9 198.51.100.1 50000 636\r\n"))
	tc := tls.Client(raw, clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after the PROXY header: %v", err)
	}
	if got := remoteSeen(t, tc); got != "192.0.2.9:50000" {
		t.Fatalf("over LDAPS behind a balancer the session's address is %q", got)
	}
}

// --- per-address connection cap ---

func TestMaxConnectionsPerAddress(t *testing.T) {
	srv := &Server{Handler: addrHandler(), MaxConnectionsPerAddress: 2,
		ProxyProtocolFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	addr := serve(t, srv)
	from := func(ip string) net.Conn {
		return dialRaw(t, addr, []byte("PROXY TCP4 "+ip+" 198.51.100.1 40000 389\r\n"))
	}
	a1, a2 := from("192.0.2.1"), from("192.0.2.1")
	remoteSeen(t, a1)
	remoteSeen(t, a2)
	over := &wireClient{t: t, c: from("192.0.2.1")}
	over.br = bufioReader(over.c)
	over.expectNotice(ldap.LDAPResultUnavailable)
	if got := remoteSeen(t, from("192.0.2.2")); got != "192.0.2.2:40000" {
		t.Fatalf("another address: %q", got)
	}
	// A closed connection frees its place.
	a1.Close()
	waitFor(t, 5*time.Second, "the closed connection to be released", func() bool { return srv.OpenConnections() == 2 })
	remoteSeen(t, from("192.0.2.1"))
}

func TestMaxConnectionsPerAddressSparesExemptNetworks(t *testing.T) {
	srv := &Server{Handler: addrHandler(), MaxConnectionsPerAddress: 2,
		LimitExempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	addr := serve(t, srv)
	for range 6 {
		remoteSeen(t, dialRaw(t, addr, nil))
	}
}

// --- memory before authentication ---

// bigSearch is a search of about size bytes (one long attribute name).
func bigSearch(id int64, size int) []byte {
	return ldapMessage(id, searchOp("dc=example", 2, "(cn=*)", strings.Repeat("a", size)))
}

func TestAnonymousMessageSize(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxMessageSize: 1 << 20, MaxMessageSizeAnonymous: 64 << 10}
	addr := serve(t, srv)

	anon := dialWire(t, addr)
	anon.send(bigSearch(1, 100<<10)[:32<<10])
	anon.expectNotice(ldap.LDAPResultProtocolError)

	bound := dialWire(t, addr)
	bound.send(ldapMessage(1, bindOp("cn=alice", goodPassword)))
	bound.expectResult(1, ldap.ApplicationBindResponse, ldap.LDAPResultSuccess)
	bound.send(bigSearch(2, 100<<10))
	bound.expectSearch(2)
	bound.send(bigSearch(3, 2<<20)[:32<<10]) // refused from its header
	bound.expectNotice(ldap.LDAPResultProtocolError)
}

func TestPartialRequestBudget(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxMessageSizeAnonymous: 256 << 10, MaxPartialBytes: 450 << 10}
	addr := serve(t, srv)
	// Two requests of 200 KiB stop half-way: each holds a 128 KiB buffer.
	msg := bigSearch(1, 200<<10)
	var halves []*wireClient
	for range 2 {
		w := dialWire(t, addr)
		w.send(msg[:100<<10])
		halves = append(halves, w)
	}
	waitFor(t, 5*time.Second, "the budget to be spent", func() bool { return srv.partial.Load() == 256<<10 })
	// A third one would need 200 KiB more once past 128 KiB: over the budget.
	third := dialWire(t, addr)
	third.send(msg[:150<<10])
	third.expectNotice(ldap.LDAPResultBusy)
	// Small requests are not held back by it.
	small := dialWire(t, addr)
	small.send(ldapMessage(1, searchOp("dc=example", 2, "(cn=*)")))
	small.expectSearch(1)
	// The halves complete and are answered; the budget comes back.
	for _, w := range halves {
		w.send(msg[100<<10:])
		w.expectSearch(1)
	}
	waitFor(t, 5*time.Second, "the budget to come back", func() bool { return srv.partial.Load() == 0 })
	late := dialWire(t, addr)
	late.send(msg)
	late.expectSearch(1)
}

// TestSlowLargeRequestsHoldBoundedMemory is the attack of many unauthenticated
// connections each sending most of a large request and stopping: what the server holds
// for them is bounded by MaxPartialBytes, not by their number.
func TestSlowLargeRequestsHoldBoundedMemory(t *testing.T) {
	const conns = 300
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxPartialBytes: 8 << 20}
	var released atomic.Int32
	srv.release.free = func() { released.Add(1) }
	addr := serve(t, srv)
	msg := bigSearch(1, 250<<10)
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var ws []*wireClient
	for range conns {
		w := dialWire(t, addr)
		w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w.c.Write(msg[:240<<10]) // refused connections may reset: errors are fine
		ws = append(ws, w)
	}
	waitFor(t, 10*time.Second, "the server to read what it accepts", func() bool {
		return srv.partial.Load() > 6<<20 || srv.OpenConnections() < conns
	})
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&during)
	grew := int64(during.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d connections sending 240 KiB each: heap +%d KiB, %d connections open, partial %d KiB",
		conns, grew>>10, srv.OpenConnections(), srv.partial.Load()>>10)
	// 300 × 240 KiB would be 70 MiB; the budget is 8 MiB, plus per-connection buffers.
	if grew > 8<<20+conns*64<<10 {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}
	for _, w := range ws {
		w.c.Close()
	}
	waitFor(t, 10*time.Second, "every connection to close", func() bool { return srv.OpenConnections() == 0 })
	if p := srv.partial.Load(); p != 0 {
		t.Fatalf("%d bytes of the budget still held after every connection closed", p)
	}
	// The burst over, its memory goes back to the system, once.
	waitFor(t, 5*time.Second, "the memory to be released", func() bool { return released.Load() == 1 })
	time.Sleep(2 * releaseDelay)
	if n := released.Load(); n != 1 {
		t.Fatalf("memory released %d times after one burst", n)
	}
}

// TestDenseRequestsDecodedOneAtATime is the flood of complete large requests before
// authentication: 24 connections each send all but the last byte of a 64 KiB search
// whose filter is as dense as BER gets (32,000 elements: 6.5 MiB of packets to decode),
// then all send the last byte at once, twice over. Decoded together they took 108 to
// 203 MiB of heap; one at a time, about 20.
func TestDenseRequestsDecodedOneAtATime(t *testing.T) {
	const conns = 24
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.WriteResult(&Result{Code: ldap.LDAPResultInsufficientAccessRights})
	}), Logger: discard()}
	addr := serve(t, srv)
	and := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterAnd, nil, "")
	for range 64 << 10 / 2 {
		and.AppendChild(ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterAnd, nil, ""))
	}
	msg := ldapMessage(1, searchOpWithFilter("dc=example", 2, and))

	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heap := func() int64 { metrics.Read(sample); return int64(sample[0].Value.Uint64()) }
	runtime.GC()
	before := heap()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				if h := heap(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	for range 2 {
		var ws []*wireClient
		for range conns {
			w := dialWire(t, addr)
			w.send(msg[:len(msg)-1])
			ws = append(ws, w)
		}
		waitFor(t, 30*time.Second, "every request to be nearly there", func() bool {
			return srv.partial.Load() >= conns*int64(len(msg)-1)
		})
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Go(func() { w.c.Write(msg[len(msg)-1:]) })
		}
		wg.Wait()
		// A request holds its bytes of the budget until it is decoded. One at a time under
		// -race on a loaded machine, that can take a while.
		waitFor(t, 3*time.Minute, "every request to be decoded", func() bool { return srv.partial.Load() == 0 })
		for _, w := range ws {
			w.expectResult(1, ldap.ApplicationSearchResultDone, ldap.LDAPResultInsufficientAccessRights)
			w.c.Close()
		}
	}
	close(stop)
	<-sampled
	grew := peak.Load() - before
	t.Logf("%d connections completing %d-byte dense requests at once, twice: heap peak +%d MiB", conns, len(msg), grew>>20)
	if grew > 64<<20 {
		t.Fatalf("the heap grew by %d MiB: the requests were decoded together", grew>>20)
	}
}

// A large request or two, far from the budget, is no burst: nothing is released.
func TestNoReleaseWithoutPressure(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxPartialBytes: 8 << 20}
	var released atomic.Int32
	srv.release.free = func() { released.Add(1) }
	addr := serve(t, srv)
	w := dialWire(t, addr)
	w.send(bigSearch(1, 250<<10))
	w.expectSearch(1)
	w.c.Close()
	waitFor(t, 5*time.Second, "the connection to close", func() bool { return srv.OpenConnections() == 0 })
	time.Sleep(2 * releaseDelay)
	if n := released.Load(); n != 0 {
		t.Fatalf("memory released %d times without a burst", n)
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestLargeBindGivesBackItsBytesOnceDecoded: a large request's bytes count against
// max_partial_request_bytes until it is decoded, not while its operation runs: a bind
// waits for the operations before it and for the upstream, and connections holding
// such binds must not starve everyone else's large requests.
func TestLargeBindGivesBackItsBytesOnceDecoded(t *testing.T) {
	inBind := make(chan struct{})
	release := make(chan struct{})
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Op == OpBind {
			close(inBind)
			<-release
		}
		w.WriteResult(&Result{})
	})}
	addr := serve(t, srv)
	w := dialWire(t, addr)
	w.send(ldapMessage(1, bindOp("cn="+strings.Repeat("x", 40<<10), "pw")))
	<-inBind
	held := srv.partial.Load()
	close(release)
	w.result()
	if held != 0 {
		t.Fatalf("a decoded bind holds %d bytes of max_partial_request_bytes while it runs", held)
	}
}
