package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// scriptedServer answers each request read from c with what answer returns for
// the decoded request, until the connection ends.
func scriptedServer(t *testing.T, answer func(id int64, req *ber.Packet) []byte) string {
	return fakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			msg, err := ldapwire.ReadFrame(br, 1<<20, nil)
			if err != nil {
				return
			}
			p, err := ber.DecodePacketErr(msg)
			if err != nil {
				t.Errorf("server got a malformed request: %v", err)
				return
			}
			id, _ := p.Children[0].Value.(int64)
			out := answer(id, p.Children[1])
			if out == nil {
				return
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
}

// dialWire connects a wire client to url (ldap://host:port).
func dialWire(t *testing.T, url string) *wireClient {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ldap://"))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(clientWire, nc, false).(*wireClient)
	t.Cleanup(c.close)
	return c
}

func mustFilter(t *testing.T, f string) []byte {
	t.Helper()
	b := encodeFilter(f)
	if b == nil {
		t.Fatalf("filter %q does not compile", f)
	}
	return b
}

// TestWireClientSearch checks what the wire client sends (decoded by go-ldap's
// BER reader) and what it makes of the answers: entries counted, the first DN,
// references skipped, the result code as an *ldap.Error.
func TestWireClientSearch(t *testing.T) {
	url := scriptedServer(t, func(id int64, req *ber.Packet) []byte {
		if req.Tag != ldap.ApplicationSearchRequest {
			return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{Code: 2})
		}
		base := req.Children[0].Value.(string)
		filter, err := ldap.DecompileFilter(req.Children[6])
		if err != nil {
			t.Errorf("filter: %v", err)
		}
		var attrs []string
		for _, a := range req.Children[7].Children {
			attrs = append(attrs, a.Value.(string))
		}
		if scope := req.Children[1].Value.(int64); scope != ldap.ScopeWholeSubtree {
			t.Errorf("scope %d", scope)
		}
		switch filter {
		case "(uid=two)":
			if base != "dc=example,dc=org" || strings.Join(attrs, ",") != "cn,mail" {
				t.Errorf("base %q attrs %v", base, attrs)
			}
			b := ldapwire.AppendEntry(nil, id, &ldapwire.Entry{DN: "uid=two,ou=people,dc=example,dc=org",
				Attributes: []ldapwire.Attribute{{Name: "cn", Values: [][]byte{[]byte(strings.Repeat("x", 300))}}}}, false, nil)
			b = ldapwire.AppendReference(b, id, []string{"ldap://elsewhere/"}, nil)
			b = ldapwire.AppendEntry(b, id, &ldapwire.Entry{DN: "uid=two,ou=other,dc=example,dc=org"}, false, nil)
			return ldapwire.AppendResult(b, id, 5, &ldapwire.Result{})
		case "(uid=none)":
			return ldapwire.AppendResult(nil, id, 5, &ldapwire.Result{Code: ldap.LDAPResultNoSuchObject, Diagnostic: "no such base"})
		}
		return ldapwire.AppendResult(nil, id, 5, &ldapwire.Result{})
	})
	c := dialWire(t, url)
	spec := newSearchSpec("dc=example,dc=org", []string{"cn", "mail"})
	n, dn, err := c.search(&spec, "", mustFilter(t, "(uid=two)"), true)
	if err != nil || n != 2 || dn != "uid=two,ou=people,dc=example,dc=org" {
		t.Errorf("search = %d, %q, %v; want 2 entries, the first's DN", n, dn, err)
	}
	if n, dn, err = c.search(&spec, "", mustFilter(t, "(uid=two)"), false); n != 2 || dn != "" || err != nil {
		t.Errorf("search without DN = %d, %q, %v", n, dn, err)
	}
	_, _, err = c.search(&spec, "", mustFilter(t, "(uid=none)"), false)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || !strings.Contains(err.Error(), "no such base") {
		t.Errorf("error result: %v, want noSuchObject with its message", err)
	}
	if c.closing() {
		t.Error("an error result broke the connection")
	}
	if n, _, err := c.search(&spec, "", mustFilter(t, "(uid=empty)"), true); n != 0 || err != nil {
		t.Errorf("empty search = %d, %v", n, err)
	}
	if c.id != 4 {
		t.Errorf("message IDs: last %d, want 4", c.id)
	}
}

func TestWireClientBind(t *testing.T) {
	url := scriptedServer(t, func(id int64, req *ber.Packet) []byte {
		if req.Tag != ldap.ApplicationBindRequest || len(req.Children) != 3 {
			return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{Code: ldap.LDAPResultProtocolError})
		}
		version, _ := req.Children[0].Value.(int64)
		dn, _ := req.Children[1].Value.(string)
		pw := req.Children[2]
		code := uint16(ldap.LDAPResultInvalidCredentials)
		if version == 3 && pw.ClassType == ber.ClassContext && pw.Tag == 0 && pw.Data.String() == "pass-"+dn {
			code = ldap.LDAPResultSuccess
		}
		return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{Code: code})
	})
	c := dialWire(t, url)
	if err := c.bind("alice", "pass-alice"); err != nil {
		t.Errorf("good bind: %v", err)
	}
	if err := c.bind("alice", "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("bad bind: %v, want invalidCredentials", err)
	}
	if err := c.bind("bob", "pass-bob"); err != nil || c.closing() {
		t.Errorf("bind after a failed one: %v (closing %v)", err, c.closing())
	}
}

// TestClientsRefuseAlike checks that the wire client refuses what go-ldap
// refuses before sending anything, so that neither client counts an
// unauthenticated bind (a DN with an empty password) as a login, and that
// both send the anonymous bind of -bind-dn "".
func TestClientsRefuseAlike(t *testing.T) {
	for _, kind := range []string{clientWire, clientGoLDAP} {
		t.Run(kind, func(t *testing.T) {
			var mu sync.Mutex
			var got []string // the DNs of the binds the server was sent
			url := scriptedServer(t, func(id int64, req *ber.Packet) []byte {
				if req.Tag != ldap.ApplicationBindRequest {
					return ldapwire.AppendResult(nil, id, 5, &ldapwire.Result{})
				}
				mu.Lock()
				got = append(got, req.Children[1].Value.(string))
				mu.Unlock()
				return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{})
			})
			nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ldap://"))
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(kind, nc, false)
			defer c.close()
			if err := c.bind("uid=alice,dc=example,dc=org", ""); !ldap.IsErrorWithCode(err, ldap.ErrorEmptyPassword) {
				t.Errorf("bind with a DN and no password: %v, want the client's refusal", err)
			}
			if err := c.bind("", ""); err != nil {
				t.Errorf("anonymous bind: %v", err)
			}
			spec := newSearchSpec("dc=example,dc=org", nil)
			if _, _, err := c.search(&spec, "(uid=x", encodeFilter("(uid=x"), false); err == nil {
				t.Error("a filter that does not compile was searched with")
			}
			if err := c.bind("uid=bob,dc=example,dc=org", "pw"); err != nil || c.closing() {
				t.Errorf("bind after the refusals: %v (closing %v)", err, c.closing())
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []string{"", "uid=bob,dc=example,dc=org"}; !slices.Equal(got, want) {
				t.Errorf("binds sent %q, want %q", got, want)
			}
		})
	}
}

// TestWireClientBrokenStreams checks that whatever the server sends that cannot be
// read on ends in an error and a closed connection, not a hang or a panic.
func TestWireClientBrokenStreams(t *testing.T) {
	cases := map[string]func(id int64) []byte{
		"other message ID": func(id int64) []byte { return ldapwire.AppendResult(nil, id+1, 1, &ldapwire.Result{}) },
		"notice of disconnection": func(int64) []byte {
			return ldapwire.AppendNotice(nil, ldap.LDAPResultUnavailable, "shutting down")
		},
		"not a sequence": func(int64) []byte { return []byte{0x04, 0x01, 'x'} },
		"truncated":      func(id int64) []byte { return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{})[:5] },
		"closed":         func(int64) []byte { return nil },
		"closed mid-response": func(id int64) []byte {
			b := ldapwire.AppendEntry(nil, id, &ldapwire.Entry{DN: "uid=x,dc=example,dc=org"}, false, nil)
			return ldapwire.AppendEntry(b, id, &ldapwire.Entry{DN: "uid=y,dc=example,dc=org"}, false, nil)[:len(b)+10]
		},
		"bad result code": func(id int64) []byte { return []byte{0x30, 0x08, 0x02, 0x01, byte(id), 0x61, 0x03, 0x04, 0x01, 'x'} },
		"entry without a DN": func(id int64) []byte {
			return []byte{0x30, 0x07, 0x02, 0x01, byte(id), 0x64, 0x02, 0x30, 0x00}
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			url := fakeServer(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				msg, err := ldapwire.ReadFrame(br, 1<<20, nil)
				if err != nil {
					return
				}
				id, _ := ldapwire.MessageID(msg)
				if out := answer(id); out != nil {
					_, _ = c.Write(out)
				}
				if strings.HasPrefix(name, "closed") {
					c.Close()
					return
				}
				// Keep the connection open (a truncated answer must not hang
				// the client past its deadline) until the client closes it.
				_, _ = io.Copy(io.Discard, c)
			})
			c := dialWire(t, url)
			_ = c.nc.SetDeadline(time.Now().Add(2 * time.Second))
			spec := newSearchSpec("dc=example,dc=org", nil)
			start := time.Now()
			_, _, err := c.search(&spec, "", mustFilter(t, "(uid=x)"), true)
			if strings.HasPrefix(name, "closed") && time.Since(start) > time.Second {
				t.Errorf("a closed connection was noticed only after %v: %v", time.Since(start), err)
			}
			if err == nil || !c.closing() {
				t.Fatalf("err %v, closing %v: want an error and a closed connection", err, c.closing())
			}
			if name == "notice of disconnection" && !strings.Contains(err.Error(), "shutting down") {
				t.Errorf("notice: %v, want the server's message", err)
			}
			if _, _, err := c.search(&spec, "", mustFilter(t, "(uid=x)"), false); !errors.Is(err, errConnBroken) {
				t.Errorf("request on a broken connection: %v", err)
			}
		})
	}
}

// BenchmarkWireClientSearch measures the wire client's own cost per search,
// against a server that answers from memory.
func BenchmarkWireClientSearch(b *testing.B) {
	benchmarkClientSearch(b, clientWire)
}

// BenchmarkGoLDAPClientSearch is the same through go-ldap.
func BenchmarkGoLDAPClientSearch(b *testing.B) {
	benchmarkClientSearch(b, clientGoLDAP)
}

func benchmarkClientSearch(b *testing.B, kind string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		var in, out []byte
		ent := &ldapwire.Entry{DN: "uid=user0001,ou=people,dc=example,dc=org", Attributes: []ldapwire.Attribute{
			{Name: "cn", Values: [][]byte{[]byte("User 1")}}, {Name: "mail", Values: [][]byte{[]byte("user0001@example.org")}}}}
		for {
			msg, err := ldapwire.ReadFrame(br, 1<<20, in)
			if err != nil {
				return
			}
			in = msg[:0]
			id, _ := ldapwire.MessageID(msg)
			out = ldapwire.AppendEntry(out[:0], id, ent, false, nil)
			out = ldapwire.AppendResult(out, id, 5, &ldapwire.Result{})
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := newClient(kind, nc, false)
	defer c.close()
	spec := newSearchSpec("dc=example,dc=org", nil)
	f := "(uid=user0001)"
	fb := encodeFilter(f)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if n, _, err := c.search(&spec, f, fb, false); err != nil || n != 1 {
			b.Fatal(n, err)
		}
	}
}

// TestWireClientProtocol checks the parts of the protocol a directory may use
// that the other tests do not: message IDs wrapping at 2^31-1, controls on
// entries and results, intermediate responses, entries longer than 64 KiB
// (three length bytes) and DNs with escapes and non-ASCII letters, which the
// login mode binds with as returned.
func TestWireClientProtocol(t *testing.T) {
	dn := `uid=J\C3\BCrgen\2C Jr.,ou=people,dc=example,dc=org` // as a server may escape it
	big := strings.Repeat("v", 100<<10)
	ctl := []ldapwire.Control{{Type: "1.2.840.113556.1.4.319", Value: []byte{0x30, 0x05, 0x02, 0x01, 0x00, 0x04, 0x00}, HasValue: true}}
	var mu sync.Mutex // the IDs the server got, read by the test
	var ids []int64
	url := scriptedServer(t, func(id int64, req *ber.Packet) []byte {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		if req.Tag == ldap.ApplicationBindRequest {
			return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{Controls: ctl})
		}
		e := ldapwire.Encoder{}
		e.Begin(0x30)
		e.Int(0x02, id)
		e.Begin(0x79) // IntermediateResponse with a name only
		e.Str(0x80, "1.3.6.1.4.1.4203.1.9.1.4")
		e.End()
		e.End()
		b := ldapwire.AppendEntry(e.B, id, &ldapwire.Entry{DN: dn, Attributes: []ldapwire.Attribute{
			{Name: "description", Values: [][]byte{[]byte(big)}}}}, false, ctl)
		b = ldapwire.AppendEntry(b, id, &ldapwire.Entry{DN: "uid=other,dc=example,dc=org"}, false, nil)
		return ldapwire.AppendResult(b, id, 5, &ldapwire.Result{Controls: ctl})
	})
	c := dialWire(t, url)
	c.id = 1<<31 - 3
	if err := c.bind("cn=svc", "secret"); err != nil {
		t.Fatalf("bind answered with controls: %v", err)
	}
	spec := newSearchSpec("dc=example,dc=org", nil)
	for range 2 {
		n, got, err := c.search(&spec, "", mustFilter(t, "(uid=x)"), true)
		if err != nil || n != 2 || got != dn {
			t.Fatalf("search = %d, %q, %v; want 2 entries, the first %q", n, got, err, dn)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int64{1<<31 - 2, 1<<31 - 1, 1}; !slices.Equal(ids, want) {
		t.Errorf("message IDs sent %v, want %v", ids, want)
	}
	if c.closing() {
		t.Error("connection broken")
	}
}

// TestClientsSendTheSame checks that the two clients send the servers the
// same bytes for the same binds and searches, message IDs included: what
// differs between them is only what it costs ldapbench.
func TestClientsSendTheSame(t *testing.T) {
	var mu sync.Mutex // guards sent, written by the servers
	sent := map[string][][]byte{}
	for _, kind := range []string{clientWire, clientGoLDAP} {
		url := fakeServer(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			for {
				msg, err := ldapwire.ReadFrame(br, 1<<20, nil)
				if err != nil {
					return
				}
				mu.Lock()
				sent[kind] = append(sent[kind], msg)
				mu.Unlock()
				id, _ := ldapwire.MessageID(msg)
				app := uint8(1)
				if _, tag, _ := ldapwire.PeekHeader(msg); tag == 0x63 {
					app = 5
				}
				if _, err := c.Write(ldapwire.AppendResult(nil, id, app, &ldapwire.Result{})); err != nil {
					return
				}
			}
		})
		nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ldap://"))
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(kind, nc, false)
		users := newSearchSpec("ou=people,dc=example,dc=org", []string{"cn", "memberOf"})
		groups := newSearchSpec("dc=example,dc=org", []string{"cn"})
		all := newSearchSpec("dc=example,dc=org", nil)
		for _, step := range []func() error{
			func() error { return c.bind("cn=svc,dc=example,dc=org", "secret") },
			func() error {
				_, _, err := c.search(&users, "(uid=user0001)", encodeFilter("(uid=user0001)"), true)
				return err
			},
			func() error { return c.bind("uid=J\u00fcrgen,ou=people,dc=example,dc=org", "pass") },
			func() error { return c.bind("", "") },
			func() error {
				f := "(&(objectClass=groupOfNames)(member=uid=user0001,ou=people,dc=example,dc=org))"
				_, _, err := c.search(&groups, f, encodeFilter(f), false)
				return err
			},
			func() error {
				_, _, err := c.search(&all, "(uid=a*b)", encodeFilter("(uid=a*b)"), false)
				return err
			},
		} {
			if err := step(); err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
		}
		c.close()
	}
	mu.Lock()
	defer mu.Unlock()
	wire, goldap := sent[clientWire], sent[clientGoLDAP]
	if len(wire) != 6 || len(goldap) != 6 {
		t.Fatalf("requests: %d from wire, %d from go-ldap; want 6 each", len(wire), len(goldap))
	}
	for i := range wire {
		if !bytes.Equal(wire[i], goldap[i]) {
			t.Errorf("request %d:\nwire    %x\ngo-ldap %x", i+1, wire[i], goldap[i])
		}
	}
}
