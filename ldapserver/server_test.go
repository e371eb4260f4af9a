package ldapserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Search bases that make protoHandler misbehave in the ways the server must survive.
const (
	dnBlock    = "cn=block"    // waits until its context ends, then tries to answer anyway
	dnPoll     = "cn=poll"     // dnBlock, learning of the end from Err alone, not from Done
	dnWait     = "cn=wait"     // waits until the test closes release, then answers
	dnSlow     = "cn=slow"     // sleeps for slow, then answers
	dnPanic    = "cn=panic"    // panics
	dnNoResult = "cn=noresult" // returns without a result
	dnForever  = "cn=forever"  // streams entries until a write fails
	dnStream   = "cn=stream"   // streams entries for slow, then answers
	dnTLS      = "cn=tls"      // one entry naming the TLS version the session sees
	dnPaged    = "ou=paged"    // pagedTotal entries, paged by the simple paged results control
	dnRelay    = "cn=relay"    // relays responses encoded under other message IDs
)

const (
	searchEntries = 3  // entries of an ordinary search, followed by one reference
	pagedTotal    = 12 // entries under dnPaged
	goodPassword  = "good"
	compareMatch  = "match" // the one value a compare finds
)

// protoHandler is the Handler the protocol tests run against. It answers like a small
// directory and reports what it saw on its channels.
type protoHandler struct {
	started chan string   // the base of each dnBlock or dnWait search once it runs
	ended   chan error    // what the last write of a dnBlock or dnForever search returned
	release chan struct{} // closed by the test to let dnWait searches finish
	slow    time.Duration
	pages   atomic.Int32 // searches of dnPaged seen
}

func newProtoHandler() *protoHandler {
	return &protoHandler{
		started: make(chan string, 64),
		ended:   make(chan error, 64),
		release: make(chan struct{}),
		slow:    800 * time.Millisecond,
	}
}

func (h *protoHandler) serve(w ResponseWriter, r *Request) {
	switch r.Op {
	case OpBind:
		b := r.Bind
		r.Session.SetAnonymous()
		switch {
		case b.Mechanism != "":
			w.WriteResult(&Result{Code: ldap.LDAPResultAuthMethodNotSupported})
		case b.Name == "" && len(b.Password) == 0:
			w.WriteResult(&Result{})
		case string(b.Password) == goodPassword:
			r.Session.SetBound(b.Name)
			w.WriteResult(&Result{})
		default:
			w.WriteResult(&Result{Code: ldap.LDAPResultInvalidCredentials, Diagnostic: "wrong password"})
		}
	case OpSearch:
		h.search(w, r)
	case OpCompare:
		code := uint16(ldap.LDAPResultCompareFalse)
		if string(r.Compare.Value) == compareMatch {
			code = ldap.LDAPResultCompareTrue
		}
		w.WriteResult(&Result{Code: code})
	case OpExtended:
		if r.Extended.Name != OIDWhoAmI {
			w.WriteResult(&Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "unknown extended operation"})
			return
		}
		authz := ""
		if r.Session.Authenticated() {
			authz = "dn:" + r.Session.BoundDN()
		}
		w.WriteResult(&Result{ResponseValue: []byte(authz), HasValue: true})
	default:
		w.WriteResult(&Result{Code: ldap.LDAPResultUnwillingToPerform})
	}
}

func (h *protoHandler) search(w ResponseWriter, r *Request) {
	ctx := r.Context()
	base := r.Search.BaseDN
	switch base {
	case dnBlock:
		h.started <- base
		<-ctx.Done()
		h.ended <- w.WriteResult(&Result{Diagnostic: "too late"})
	case dnPoll:
		// As a search through a large tree does: Err now and then, never Done.
		h.started <- base
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		h.ended <- w.WriteResult(&Result{Diagnostic: "too late"})
	case dnWait:
		h.started <- base
		select {
		case <-h.release:
		case <-ctx.Done():
		}
		w.WriteEntry(&Entry{DN: "cn=waited"})
		w.WriteResult(&Result{Diagnostic: "waited"})
	case dnSlow:
		time.Sleep(h.slow)
		w.WriteResult(&Result{Diagnostic: "slow"})
	case dnPanic:
		panic("handler panic for the test")
	case dnNoResult:
	case dnForever:
		big := &Entry{DN: "cn=forever", Attributes: []Attribute{{Name: "blob", Values: [][]byte{bytes.Repeat([]byte("f"), 4096)}}}}
		for {
			if err := w.WriteEntry(big); err != nil {
				h.ended <- err
				return
			}
		}
	case dnStream:
		e := &Entry{DN: "cn=stream", Attributes: []Attribute{{Name: "blob", Values: [][]byte{bytes.Repeat([]byte("s"), 1024)}}}}
		for end := time.Now().Add(h.slow); time.Now().Before(end); {
			if err := w.WriteEntry(e); err != nil {
				return
			}
		}
		w.WriteResult(&Result{Diagnostic: "streamed"})
	case dnTLS:
		version := "none"
		if st := r.Session.TLS(); st != nil {
			version = tls.VersionName(st.Version)
		}
		w.WriteEntry(&Entry{DN: dnTLS, Attributes: []Attribute{{Name: "tlsVersion", Values: [][]byte{[]byte(version)}}}})
		w.WriteResult(&Result{})
	case dnPaged:
		h.paged(w, r)
	case dnRelay:
		for _, m := range [][]byte{
			appendEntry(nil, 999, &Entry{DN: "cn=relayed"}, false, nil),
			appendReference(nil, 5, []string{"ldap://relayed.example/"}, nil),
			appendResult(nil, 70000, OpSearch, &Result{Diagnostic: "relayed", Controls: []Control{{Type: "1.2.3", Value: []byte("v"), HasValue: true}}}),
		} {
			if err := relay(w, m); err != nil {
				h.ended <- err
				return
			}
		}
		h.ended <- relay(w, appendResult(nil, 1, OpSearch, &Result{Diagnostic: "after the end"}))
	default:
		for i := range searchEntries {
			w.WriteEntry(&Entry{DN: fmt.Sprintf("cn=e%d,%s", i, base), Attributes: []Attribute{
				{Name: "cn", Values: [][]byte{[]byte(fmt.Sprintf("e%d", i))}},
				{Name: "objectClass", Values: [][]byte{[]byte("top"), []byte("person")}},
			}})
		}
		w.WriteReference([]string{"ldap://elsewhere.example/dc=example"})
		var echo []Control
		for _, c := range r.Controls {
			if c.Type == ldap.ControlTypePaging {
				echo = append(echo, c)
			}
		}
		filter, _ := r.Search.FilterString()
		w.WriteResult(&Result{Diagnostic: filter, Controls: echo})
	}
}

// paged serves dnPaged: the cookie is the offset of the next entry.
func (h *protoHandler) paged(w ResponseWriter, r *Request) {
	h.pages.Add(1)
	size, offset := pagedTotal, 0
	paging := false
	for _, c := range r.Controls {
		if c.Type != ldap.ControlTypePaging {
			continue
		}
		p, err := ber.DecodePacketErr(c.Value)
		if err != nil || len(p.Children) != 2 {
			w.WriteResult(&Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "bad paging control"})
			return
		}
		paging = true
		if n, _ := p.Children[0].Value.(int64); n > 0 {
			size = int(n)
		} else {
			size = 0 // the client abandons the paged search
		}
		offset, _ = strconv.Atoi(p.Children[1].Data.String())
	}
	end := min(offset+size, pagedTotal)
	for i := offset; i < end; i++ {
		w.WriteEntry(&Entry{DN: fmt.Sprintf("cn=p%02d,%s", i, dnPaged), Attributes: []Attribute{{Name: "cn", Values: [][]byte{[]byte(fmt.Sprintf("p%02d", i))}}}})
	}
	res := &Result{}
	if paging {
		next := ldap.NewControlPaging(0)
		if end < pagedTotal && size > 0 {
			next.SetCookie([]byte(strconv.Itoa(end)))
		}
		res.Controls = []Control{controlFromLDAP(next)}
	}
	w.WriteResult(res)
}

// --- test plumbing ---

// serve runs srv on a loopback listener until the test ends and returns its address.
func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, srv, ln)
}

func serveOn(t *testing.T, srv *Server, ln net.Listener) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = slog.New(slog.DiscardHandler)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-served:
			if err != ErrServerClosed {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
		waitFor(t, 5*time.Second, "every connection to close", func() bool { return srv.OpenConnections() == 0 })
	})
	return ln.Addr().String()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv returns the next value of ch, failing the test if none comes in time.
func recv[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("gave up after %v waiting for %s", timeout, what)
	}
	var zero T
	return zero
}

func dialLDAP(t *testing.T, addr string) *ldap.Conn {
	t.Helper()
	lc, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	lc.SetTimeout(5 * time.Second)
	t.Cleanup(func() { lc.Close() })
	return lc
}

func newSearch(base string, controls ...ldap.Control) *ldap.SearchRequest {
	return ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, controls)
}

// checkOrdinarySearch runs a search the default way and checks the full answer.
func checkOrdinarySearch(t *testing.T, lc *ldap.Conn) {
	t.Helper()
	sr, err := lc.Search(newSearch("dc=example"))
	if err != nil {
		t.Fatalf("ordinary search: %v", err)
	}
	if len(sr.Entries) != searchEntries || len(sr.Referrals) != 1 {
		t.Fatalf("ordinary search: %d entries and %d referrals, want %d and 1", len(sr.Entries), len(sr.Referrals), searchEntries)
	}
}

// wireClient speaks LDAP byte by byte, for what no well-behaved client would send.
type wireClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialWire(t *testing.T, addr string) *wireClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wireClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (w *wireClient) send(msgs ...[]byte) {
	w.t.Helper()
	w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.c.Write(bytes.Join(msgs, nil)); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// next reads one response message.
func (w *wireClient) next() *ber.Packet {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := ber.ReadPacket(w.br)
	if err != nil {
		w.t.Fatalf("reading a response: %v", err)
	}
	if len(p.Children) < 2 {
		w.t.Fatalf("response with %d elements", len(p.Children))
	}
	return p
}

// result reads one response message, which must be an LDAPResult.
func (w *wireClient) result() resultFields {
	w.t.Helper()
	p := w.next()
	return decodeResult(w.t, p.Bytes())
}

// expectResult reads one response and checks its message ID, kind and result code.
func (w *wireClient) expectResult(id int64, tag ber.Tag, code uint16) resultFields {
	w.t.Helper()
	f := w.result()
	if f.id != id || f.appTag != tag || f.code != int64(code) {
		w.t.Fatalf("got result id=%d tag=%d code=%d (%q), want id=%d tag=%d code=%d", f.id, f.appTag, f.code, f.diag, id, tag, code)
	}
	return f
}

// trySend is send, returning the error instead of failing the test.
func (w *wireClient) trySend(msgs ...[]byte) error {
	w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := w.c.Write(bytes.Join(msgs, nil))
	return err
}

// tryExpectResult is expectResult, returning an error instead of failing the test when
// the connection ends or the result is not the one expected.
func (w *wireClient) tryExpectResult(id int64, tag ber.Tag, code uint16) error {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := ber.ReadPacket(w.br)
	if err != nil {
		return fmt.Errorf("reading a response: %w", err)
	}
	f := decodeResult(w.t, p.Bytes())
	if f.id != id || f.appTag != tag || f.code != int64(code) {
		return fmt.Errorf("got result id=%d tag=%d code=%d (%q), want id=%d tag=%d code=%d", f.id, f.appTag, f.code, f.diag, id, tag, code)
	}
	return nil
}

// expectSearch reads the answer to an ordinary search with the given message ID.
func (w *wireClient) expectSearch(id int64) {
	w.t.Helper()
	for i := 0; i < searchEntries+1; i++ {
		p := w.next()
		if got := p.Children[0].Value.(int64); got != id {
			w.t.Fatalf("response %d carries message ID %d, want %d", i, got, id)
		}
	}
	w.expectResult(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess)
}

// expectNotice reads a notice of disconnection with the given code, then the close.
func (w *wireClient) expectNotice(code uint16) {
	w.t.Helper()
	f := w.result()
	if f.id != 0 || f.appTag != ldap.ApplicationExtendedResponse || f.respName != OIDNoticeOfDisconnection || f.code != int64(code) {
		w.t.Fatalf("got id=%d tag=%d name=%q code=%d (%q), want a notice of disconnection with code %d",
			f.id, f.appTag, f.respName, f.code, f.diag, code)
	}
	w.expectClosed(2*time.Second, false)
}

// expectClosed waits for the server to close the connection and returns how long that
// took. Data received meanwhile fails the test unless allowData.
func (w *wireClient) expectClosed(within time.Duration, allowData bool) time.Duration {
	w.t.Helper()
	start := time.Now()
	w.c.SetReadDeadline(start.Add(within))
	buf := make([]byte, 4096)
	for {
		n, err := w.br.Read(buf)
		if n > 0 && !allowData {
			w.t.Fatalf("unexpected data before the close: % x", buf[:min(n, 32)])
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return time.Since(start)
		case isTimeout(err):
			w.t.Fatalf("connection still open after %v", within)
		default:
			w.t.Fatalf("read: %v", err)
		}
	}
}

// expectSilence checks that nothing arrives for a while.
func (w *wireClient) expectSilence(d time.Duration) {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(d))
	if _, err := w.br.Peek(1); !isTimeout(err) {
		w.t.Fatalf("expected no response, got %v", err)
	}
}

// testTLS returns a server configuration with a fresh self-signed certificate for
// 127.0.0.1 and a client configuration that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ldapproxy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

func tlsVersionSeen(t *testing.T, lc *ldap.Conn) string {
	t.Helper()
	sr, err := lc.Search(newSearch(dnTLS))
	if err != nil || len(sr.Entries) != 1 {
		t.Fatalf("TLS probe search: %v", err)
	}
	return sr.Entries[0].GetAttributeValue("tlsVersion")
}

// --- operations through go-ldap ---

func TestBindSearchCompareWithGoLDAP(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	lc := dialLDAP(t, addr)

	if err := lc.Bind("cn=alice,dc=example", goodPassword); err != nil {
		t.Fatalf("bind with the right password: %v", err)
	}
	if who, err := lc.WhoAmI(nil); err != nil || who.AuthzID != "dn:cn=alice,dc=example" {
		t.Fatalf("whoami after bind = %+v, %v", who, err)
	}
	if err := lc.Bind("cn=alice,dc=example", "bad"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with a wrong password: %v, want invalidCredentials", err)
	}
	if who, err := lc.WhoAmI(nil); err != nil || who.AuthzID != "" {
		t.Fatalf("whoami after a failed bind = %+v, %v; want anonymous", who, err)
	}

	sr, err := lc.Search(newSearch("ou=people,dc=example"))
	if err != nil {
		t.Fatalf("search: %v", err)
	}
	if len(sr.Entries) != searchEntries {
		t.Fatalf("search returned %d entries, want %d", len(sr.Entries), searchEntries)
	}
	for i, e := range sr.Entries {
		if e.DN != fmt.Sprintf("cn=e%d,ou=people,dc=example", i) || e.GetAttributeValue("cn") != fmt.Sprintf("e%d", i) ||
			len(e.GetAttributeValues("objectClass")) != 2 {
			t.Errorf("entry %d = %s %v", i, e.DN, e.Attributes)
		}
	}
	if len(sr.Referrals) != 1 || sr.Referrals[0] != "ldap://elsewhere.example/dc=example" {
		t.Errorf("referrals = %q", sr.Referrals)
	}

	if ok, err := lc.Compare("cn=x,dc=example", "cn", compareMatch); err != nil || !ok {
		t.Errorf("compare that matches = %v, %v", ok, err)
	}
	if ok, err := lc.Compare("cn=x,dc=example", "cn", "other"); err != nil || ok {
		t.Errorf("compare that does not match = %v, %v", ok, err)
	}
	err = lc.Modify(ldap.NewModifyRequest("cn=x,dc=example", nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Errorf("modify: %v, want the handler's unwillingToPerform", err)
	}
}

// TestFiltersReachHandler sends RFC 4515 filters of every kind through go-ldap and checks
// that the handler reads back the same filter.
func TestFiltersReachHandler(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	lc := dialLDAP(t, addr)
	for _, f := range []string{
		"(cn=Babs Jensen)",
		"(!(cn=Tim Howes))",
		"(&(objectClass=Person)(|(sn=Jensen)(cn=Babs J*)))",
		"(o=univ*of*mich*)",
		"(seeAlso=)",
		"(uidNumber>=1000)",
		"(uidNumber<=1000)",
		"(cn~=bob)",
		"(cn:caseExactMatch:=Fred Flintstone)",
		"(cn:=Betty Rubble)",
		"(sn:dn:2.4.6.8.10:=Barney Rubble)",
		"(o:dn:=Ace Industry)",
		"(:1.2.3:=Wilma Flintstone)",
		"(:DN:2.4.6.8.10:=Dino)",
		"(o=Parens R Us \\28for all your parenthetical needs\\29)",
		"(bin=\\04\\02\\48\\00)",
		"(|(&)(!(|)))",
	} {
		req := newSearch("dc=example")
		req.Filter = f
		sr, err := lc.Search(req)
		if err != nil {
			t.Errorf("search %s: %v", f, err)
			continue
		}
		want, _ := ldap.CompileFilter(f)
		wantString, _ := ldap.DecompileFilter(want)
		if sr.DiagnosticMessage != wantString {
			t.Errorf("search %s reached the handler as %s", f, sr.DiagnosticMessage)
		}
	}
}

func TestResponseControlsReachClient(t *testing.T) {
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve)})
	lc := dialLDAP(t, addr)

	sr, err := lc.Search(newSearch("dc=example", ldap.NewControlPaging(5)))
	if err != nil {
		t.Fatal(err)
	}
	pc, ok := ldap.FindControl(sr.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if !ok || pc.PagingSize != 5 {
		t.Fatalf("response controls = %v, want the echoed paging control of size 5", sr.Controls)
	}

	sr, err = lc.SearchWithPaging(newSearch(dnPaged), 5)
	if err != nil {
		t.Fatalf("paged search: %v", err)
	}
	if len(sr.Entries) != pagedTotal {
		t.Fatalf("paged search returned %d entries, want %d", len(sr.Entries), pagedTotal)
	}
	for i, e := range sr.Entries {
		if want := fmt.Sprintf("cn=p%02d,%s", i, dnPaged); e.DN != want {
			t.Fatalf("entry %d is %s, want %s", i, e.DN, want)
		}
	}
	if n := h.pages.Load(); n != 3 {
		t.Errorf("the handler served %d pages, want 3", n)
	}
}

func TestHandlerPanicAnswersOther(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	lc := dialLDAP(t, addr)

	_, err := lc.Search(newSearch(dnPanic))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultOther) {
		t.Fatalf("search that panics: %v, want resultCode other (80)", err)
	}
	checkOrdinarySearch(t, lc)
	checkOrdinarySearch(t, dialLDAP(t, addr))
}

func TestHandlerWithoutResultAnswersOther(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	lc := dialLDAP(t, addr)

	_, err := lc.Search(newSearch(dnNoResult))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultOther) {
		t.Fatalf("search without a result: %v, want resultCode other (80)", err)
	}
	checkOrdinarySearch(t, lc)
}

// --- the protocol on the wire ---

// TestEntriesOfEverySize: entries from a few bytes to larger than the connection's
// write buffer, from searches running at once on one connection, each reach the client
// whole and in its search's order, with its result after them.
func TestEntriesOfEverySize(t *testing.T) {
	sizes := []int{0, 1, 100, minRoom - 50, minRoom, 1000, 4000, writeBufferSize / 2, writeBufferSize - 100,
		writeBufferSize, writeBufferSize + 1, 3 * writeBufferSize, 300, 7, writeBufferSize - 60, 2 * writeBufferSize, 10}
	value := func(id int64, i int) []byte {
		return bytes.Repeat([]byte{byte('a' + (int(id)+i)%26)}, sizes[i])
	}
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		for i := range sizes {
			e := &Entry{DN: fmt.Sprintf("cn=%d,cn=%d", i, r.MessageID), Attributes: []Attribute{{Name: "v", Values: [][]byte{value(r.MessageID, i)}}}}
			if err := w.WriteEntry(e); err != nil {
				return
			}
		}
		w.WriteResult(&Result{Diagnostic: "all sizes"})
	})}
	addr := serve(t, srv)
	w := dialWire(t, addr)
	const searches = 8
	var reqs [][]byte
	for id := int64(1); id <= searches; id++ {
		reqs = append(reqs, ldapMessage(id, searchOp("dc=example", 2, "(cn=*)")))
	}
	w.send(reqs...)
	next := make(map[int64]int)
	for done := 0; done < searches; {
		p := w.next()
		id := p.Children[0].Value.(int64)
		switch op := p.Children[1]; op.Tag {
		case ldap.ApplicationSearchResultEntry:
			i := next[id]
			if i >= len(sizes) {
				t.Fatalf("search %d: more entries than sent", id)
			}
			if dn, want := op.Children[0].Data.String(), fmt.Sprintf("cn=%d,cn=%d", i, id); dn != want {
				t.Fatalf("search %d: entry %s, want %s", id, dn, want)
			}
			got := op.Children[1].Children[0].Children[1].Children[0].Data.Bytes()
			if !bytes.Equal(got, value(id, i)) {
				t.Fatalf("search %d: entry %d carries %d bytes, not the %d sent", id, i, len(got), sizes[i])
			}
			next[id]++
		case ldap.ApplicationSearchResultDone:
			if next[id] != len(sizes) {
				t.Fatalf("search %d: result after %d of %d entries", id, next[id], len(sizes))
			}
			done++
		default:
			t.Fatalf("unexpected response tag %d", op.Tag)
		}
	}
}

func TestPipelinedRequests(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxOpsPerConn: 10000})
	w := dialWire(t, addr)

	const n = 600
	wantTag := make(map[int64]ber.Tag, n)
	var reqs [][]byte
	for id := int64(1); id <= n; id++ {
		switch id % 3 {
		case 0:
			reqs = append(reqs, ldapMessage(id, searchOp(fmt.Sprintf("ou=%d,dc=example", id), ldap.ScopeWholeSubtree, "(cn=*)")))
			wantTag[id] = ldap.ApplicationSearchResultDone
		case 1:
			reqs = append(reqs, ldapMessage(id, compareOp("cn=x", "cn", compareMatch)))
			wantTag[id] = ldap.ApplicationCompareResponse
		case 2:
			reqs = append(reqs, ldapMessage(id, extendedOp(OIDWhoAmI, nil)))
			wantTag[id] = ldap.ApplicationExtendedResponse
		}
	}
	sent := make(chan error, 1)
	go func() {
		_, err := w.c.Write(bytes.Join(reqs, nil))
		sent <- err
	}()

	entries := make(map[int64]int)
	for len(wantTag) > 0 {
		p := w.next()
		id := p.Children[0].Value.(int64)
		tag := p.Children[1].Tag
		switch tag {
		case ldap.ApplicationSearchResultEntry:
			if want := fmt.Sprintf("ou=%d,dc=example", id); !strings.HasSuffix(p.Children[1].Children[0].Data.String(), want) {
				t.Fatalf("entry for message %d is %s", id, p.Children[1].Children[0].Data.String())
			}
			entries[id]++
			continue
		case ldap.ApplicationSearchResultReference:
			continue
		}
		want, ok := wantTag[id]
		if !ok {
			t.Fatalf("unexpected or second final response for message %d", id)
		}
		if tag != want {
			t.Fatalf("message %d answered with tag %d, want %d", id, tag, want)
		}
		if code := p.Children[1].Children[0].Value.(int64); code != ldap.LDAPResultSuccess && code != ldap.LDAPResultCompareTrue {
			t.Fatalf("message %d answered with code %d", id, code)
		}
		if tag == ldap.ApplicationSearchResultDone && entries[id] != searchEntries {
			t.Fatalf("search %d got %d entries before its result, want %d", id, entries[id], searchEntries)
		}
		delete(wantTag, id)
	}
	if err := recv(t, sent, 5*time.Second, "the requests to be written"); err != nil {
		t.Fatal(err)
	}
}

func TestRelayRewritesMessageID(t *testing.T) {
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve)})
	w := dialWire(t, addr)

	w.send(ldapMessage(42, searchOp(dnRelay, 0, "(objectClass=*)")))
	for _, tag := range []ber.Tag{ldap.ApplicationSearchResultEntry, ldap.ApplicationSearchResultReference} {
		p := w.next()
		if id := p.Children[0].Value.(int64); id != 42 || p.Children[1].Tag != tag {
			t.Fatalf("relayed response %d under message ID %d, want %d under 42", p.Children[1].Tag, id, tag)
		}
	}
	f := w.expectResult(42, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess)
	if f.diag != "relayed" || len(f.controls) != 1 || f.controls[0].Type != "1.2.3" || string(f.controls[0].Value) != "v" {
		t.Fatalf("relayed result lost its content: %+v", f)
	}
	if err := recv(t, h.ended, 5*time.Second, "the relay after the final response"); err == nil {
		t.Fatal("Relay accepted a message after the final response")
	}
	w.expectSilence(200 * time.Millisecond)
}

// blockingBases are the searches that wait for their context to end: one learns of it
// from Done, the other from Err alone.
var blockingBases = []string{dnBlock, dnPoll}

func TestAbandonCancelsTheOperation(t *testing.T) {
	for _, base := range blockingBases {
		t.Run(base, func(t *testing.T) {
			h := newProtoHandler()
			addr := serve(t, &Server{Handler: HandlerFunc(h.serve)})
			w := dialWire(t, addr)

			w.send(ldapMessage(1, searchOp(base, 0, "(objectClass=*)")))
			recv(t, h.started, 5*time.Second, "the blocking search to start")
			w.send(ldapMessage(2, abandonOp(1)))
			if err := recv(t, h.ended, 5*time.Second, "the abandoned handler to see its context end"); err == nil {
				t.Fatal("the abandoned handler could still write its result")
			}
			// Abandoning an unknown operation is ignored, as RFC 4511 §4.11 asks.
			w.send(ldapMessage(3, abandonOp(99)), ldapMessage(4, searchOp("dc=example", 2, "(cn=*)")))
			w.expectSearch(4)
			w.expectSilence(200 * time.Millisecond)
		})
	}
}

// TestClientGoneCancelsOperations: a client that closes its connection ends the
// contexts of its operations in flight, and the connection is released.
func TestClientGoneCancelsOperations(t *testing.T) {
	for _, base := range blockingBases {
		t.Run(base, func(t *testing.T) {
			h := newProtoHandler()
			srv := &Server{Handler: HandlerFunc(h.serve)}
			addr := serve(t, srv)
			w := dialWire(t, addr)

			w.send(ldapMessage(1, searchOp(base, 0, "(objectClass=*)")))
			recv(t, h.started, 5*time.Second, "the blocking search to start")
			w.c.Close()
			if err := recv(t, h.ended, 5*time.Second, "the handler to see its context end"); err == nil {
				t.Fatal("the handler could still write its result to a client that left")
			}
			waitFor(t, 5*time.Second, "the connection to be released", func() bool { return srv.OpenConnections() == 0 })
		})
	}
}

// TestOperationContext: an operation's context carries the connection's values, and
// what is derived from it (a child context, AfterFunc) ends with it when the client
// abandons the operation, with context.Canceled as its cause; when the handler returns,
// it ends too.
func TestOperationContext(t *testing.T) {
	type key struct{}
	type seen struct {
		value      any
		child, fn  bool
		err, cause error
	}
	results := make(chan seen, 1)
	started := make(chan struct{}, 1)
	var last context.Context
	var mu sync.Mutex
	srv := &Server{
		ConnContext: func(ctx context.Context, s *Session) context.Context {
			return context.WithValue(ctx, key{}, "conn value")
		},
		Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			ctx := r.Context()
			mu.Lock()
			last = ctx
			mu.Unlock()
			if r.Op != OpSearch || r.Search.BaseDN != dnBlock {
				w.WriteResult(&Result{})
				return
			}
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			fn := make(chan struct{})
			context.AfterFunc(ctx, func() { close(fn) })
			started <- struct{}{}
			var s seen
			s.value = ctx.Value(key{})
			select {
			case <-child.Done():
				s.child = true
			case <-time.After(5 * time.Second):
			}
			select {
			case <-fn:
				s.fn = true
			case <-time.After(5 * time.Second):
			}
			s.err, s.cause = ctx.Err(), context.Cause(ctx)
			results <- s
		}),
	}
	addr := serve(t, srv)
	w := dialWire(t, addr)
	w.send(ldapMessage(1, searchOp(dnBlock, 0, "(objectClass=*)")))
	recv(t, started, 5*time.Second, "the search to start")
	w.send(ldapMessage(2, abandonOp(1)))
	s := recv(t, results, 10*time.Second, "the handler's findings")
	if s.value != "conn value" {
		t.Errorf("the connection's value in the operation's context: %v", s.value)
	}
	if !s.child || !s.fn {
		t.Errorf("after an abandon: child context ended %v, AfterFunc ran %v; want both", s.child, s.fn)
	}
	if !errors.Is(s.err, context.Canceled) || !errors.Is(s.cause, context.Canceled) {
		t.Errorf("after an abandon: Err %v, Cause %v; want context.Canceled", s.err, s.cause)
	}

	w.send(ldapMessage(3, searchOp("dc=example", 2, "(cn=*)")))
	w.expectResult(3, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess)
	waitFor(t, 5*time.Second, "the finished operation's context to end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return last.Err() != nil
	})
	mu.Lock()
	done := last.Done()
	mu.Unlock()
	select {
	case <-done:
	default:
		t.Error("the finished operation's context has Err but its Done is not closed")
	}
}

// TestInlineRequests checks Server.Inline: a request it picks is answered by the read
// loop before the next request is read (the next waits for it), every other request as
// without it; and a handler that detaches lets the connection read on, an Abandon of
// its request included, and finishes on its own.
func TestInlineRequests(t *testing.T) {
	h := newProtoHandler()
	inline := func(r *Request) bool { return r.Op == OpSearch }
	detaching := HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Op == OpSearch && r.Search.FilterPacket().Tag == ldap.FilterPresent {
			Detach(w) // a long search: (cn=*) stands for one here
		}
		h.serve(w, r)
	})
	srv := &Server{Handler: detaching, Inline: inline}
	addr := serve(t, srv)

	t.Run("answered before the next request is read", func(t *testing.T) {
		w := dialWire(t, addr)
		w.send(ldapMessage(1, searchOp(dnWait, 0, "(objectClass=person)")), ldapMessage(2, extendedOp(OIDWhoAmI, nil)))
		recv(t, h.started, 5*time.Second, "the waiting search to start")
		w.expectSilence(300 * time.Millisecond) // the WhoAmI is not read yet
		h.release <- struct{}{}
		if p := w.next(); p.Children[1].Tag != ldap.ApplicationSearchResultEntry {
			t.Fatalf("got response tag %d, want the search's entry", p.Children[1].Tag)
		}
		if res := w.result(); res.id != 1 || res.diag != "waited" {
			t.Fatalf("got %+v, want the search's result", res)
		}
		w.expectResult(2, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	})

	t.Run("detached", func(t *testing.T) {
		w := dialWire(t, addr)
		w.send(ldapMessage(1, searchOp(dnBlock, 0, "(cn=*)")))
		recv(t, h.started, 5*time.Second, "the blocking search to start")
		w.send(ldapMessage(2, extendedOp(OIDWhoAmI, nil)))
		w.expectResult(2, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
		w.send(ldapMessage(3, abandonOp(1)))
		if err := recv(t, h.ended, 5*time.Second, "the abandoned handler to see its context end"); err == nil {
			t.Fatal("the abandoned handler could still write its result")
		}
		// The read loop the detached search started goes on, inline requests too.
		w.send(ldapMessage(4, searchOp("dc=example", 2, "(objectClass=person)")))
		w.expectSearch(4)
		w.send(ldapMessage(5, unbindOp()))
		w.expectClosed(2*time.Second, false)
	})
	waitFor(t, 5*time.Second, "the connections to close", func() bool { return srv.OpenConnections() == 0 })
}

func TestUnbindClosesAndCancels(t *testing.T) {
	for _, base := range blockingBases {
		t.Run(base, func(t *testing.T) {
			h := newProtoHandler()
			srv := &Server{Handler: HandlerFunc(h.serve)}
			addr := serve(t, srv)
			w := dialWire(t, addr)

			w.send(ldapMessage(1, bindOp("cn=alice", goodPassword)))
			w.expectResult(1, ldap.ApplicationBindResponse, ldap.LDAPResultSuccess)
			w.send(ldapMessage(2, searchOp(base, 0, "(objectClass=*)")))
			recv(t, h.started, 5*time.Second, "the blocking search to start")
			w.send(ldapMessage(3, unbindOp()))
			if err := recv(t, h.ended, 5*time.Second, "the in-flight search to be cancelled"); err == nil {
				t.Fatal("the search cancelled by unbind could still write its result")
			}
			w.expectClosed(2*time.Second, false)
			waitFor(t, 2*time.Second, "the connection to be released", func() bool { return srv.OpenConnections() == 0 })
		})
	}
}

func TestMaxOpsPerConnAnswersBusy(t *testing.T) {
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve), MaxOpsPerConn: 2})
	w := dialWire(t, addr)

	w.send(ldapMessage(1, searchOp(dnWait, 0, "(objectClass=*)")), ldapMessage(2, searchOp(dnWait, 0, "(objectClass=*)")))
	recv(t, h.started, 5*time.Second, "the first search to start")
	recv(t, h.started, 5*time.Second, "the second search to start")
	w.send(ldapMessage(3, searchOp("dc=example", 2, "(cn=*)")))
	w.expectResult(3, ldap.ApplicationSearchResultDone, ldap.LDAPResultBusy)

	close(h.release)
	done := map[int64]bool{}
	for len(done) < 2 {
		p := w.next()
		if p.Children[1].Tag == ldap.ApplicationSearchResultDone {
			done[p.Children[0].Value.(int64)] = true
		}
	}
	if !done[1] || !done[2] {
		t.Fatalf("results for %v, want 1 and 2", done)
	}
	w.send(ldapMessage(4, searchOp("dc=example", 2, "(cn=*)")))
	w.expectSearch(4)
}

func TestMaxConnectionsSendsNotice(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxConnections: 1}
	addr := serve(t, srv)
	first := dialWire(t, addr)
	first.send(ldapMessage(1, bindOp("", "")))
	first.expectResult(1, ldap.ApplicationBindResponse, ldap.LDAPResultSuccess)

	second := dialWire(t, addr)
	second.expectNotice(ldap.LDAPResultUnavailable)

	first.send(ldapMessage(2, searchOp("dc=example", 2, "(cn=*)")))
	first.expectSearch(2)

	first.c.Close()
	waitFor(t, 2*time.Second, "the first connection to be released", func() bool { return srv.OpenConnections() == 0 })
	third := dialWire(t, addr)
	third.send(ldapMessage(1, bindOp("cn=alice", goodPassword)))
	third.expectResult(1, ldap.ApplicationBindResponse, ldap.LDAPResultSuccess)
}

func TestMalformedRequests(t *testing.T) {
	searchBody := searchOp("dc=example", 2, "(cn=*)")
	// A search whose protocolOp carries a tag number of 259 in the high-tag form: the low
	// byte is 3, a search's tag, but 259 is no LDAP operation.
	highTagOp := append([]byte{0x7f, 0x82, 0x03}, searchBody.Bytes()[1:]...)
	badControls := berElement(0x30, []byte{0x02, 0x01, 0x05}, searchBody.Bytes(), []byte{0x30, 0x00}) // controls tagged SEQUENCE, not [0]

	// Answered under the message's own ID; the connection goes on.
	answered := []struct {
		name string
		msg  []byte
		id   int64
		tag  ber.Tag
	}{
		{"bind with two elements", berElement(0x30, []byte{0x02, 0x01, 0x07}, berElement(0x60, []byte{0x02, 0x01, 0x03, 0x04, 0x00})), 7, ldap.ApplicationBindResponse},
		{"bind with an unknown authentication choice", berElement(0x30, []byte{0x02, 0x01, 0x07}, berElement(0x60, []byte{0x02, 0x01, 0x03, 0x04, 0x00, 0x85, 0x00})), 7, ldap.ApplicationBindResponse},
		{"search with scope 9", ldapMessage(8, searchOp("dc=example", 9, "(cn=*)")), 8, ldap.ApplicationSearchResultDone},
		{"search with an unknown filter choice", berElement(0x30, []byte{0x02, 0x01, 0x08}, berElement(0x63,
			[]byte{0x04, 0x00, 0x0a, 0x01, 0x00, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00, 0xaa, 0x00, 0x30, 0x00})), 8, ldap.ApplicationSearchResultDone},
		{"search whose base runs past the request", berElement(0x30, []byte{0x02, 0x01, 0x09}, []byte{0x63, 0x02, 0x04, 0x05}, []byte{0, 0, 0}), 9, ldap.ApplicationSearchResultDone},
		{"compare without an assertion", berElement(0x30, []byte{0x02, 0x01, 0x0a}, berElement(0x6e, []byte{0x04, 0x00})), 10, ldap.ApplicationCompareResponse},
		{"extended request named by an OCTET STRING", berElement(0x30, []byte{0x02, 0x01, 0x0b}, berElement(0x77, []byte{0x04, 0x01, 'x'})), 11, ldap.ApplicationExtendedResponse},
		{"modify with operation 7", berElement(0x30, []byte{0x02, 0x01, 0x0c}, berElement(0x66, []byte{0x04, 0x00},
			berElement(0x30, berElement(0x30, []byte{0x0a, 0x01, 0x07}, berElement(0x30, []byte{0x04, 0x01, 'a', 0x31, 0x00}))))), 12, ldap.ApplicationModifyResponse},
		{"controls with the wrong tag", badControls, 5, ldap.ApplicationSearchResultDone},
	}
	for _, tt := range answered {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
			w := dialWire(t, addr)
			w.send(tt.msg)
			w.expectResult(tt.id, tt.tag, ldap.LDAPResultProtocolError)
			w.send(ldapMessage(100, searchOp("dc=example", 2, "(cn=*)")))
			w.expectSearch(100)
		})
	}

	// No message ID or no operation to answer under: notice of disconnection and close.
	fatal := []struct {
		name string
		msg  []byte
	}{
		{"message ID 0", ldapMessage(0, bindOp("", ""))},
		{"negative message ID", ldapMessage(-5, bindOp("", ""))},
		{"message ID beyond 2^31-1", ldapMessage(1<<31, bindOp("", ""))},
		{"unknown application tag", ldapMessage(3, ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultDone, nil, ""))},
		{"unknown application tag in the high-tag form", berElement(0x30, []byte{0x02, 0x01, 0x03}, highTagOp)},
		{"context-class operation", berElement(0x30, []byte{0x02, 0x01, 0x03}, []byte{0x80, 0x00})},
		{"message without an operation", []byte{0x30, 0x03, 0x02, 0x01, 0x05}},
		{"abandon that is not an INTEGER", berElement(0x30, []byte{0x02, 0x01, 0x03}, []byte{0x70, 0x00})},
		{"not a SEQUENCE", []byte{0x31, 0x03, 0x02, 0x01, 0x01}},
		{"indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00}},
		{"length of 5 bytes", []byte{0x30, 0x85, 0, 0, 0, 0, 3, 0x02, 0x01, 0x01}},
	}
	for _, tt := range fatal {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
			w := dialWire(t, addr)
			w.send(tt.msg)
			w.expectNotice(ldap.LDAPResultProtocolError)
		})
	}
}

func TestRandomBytesCloseTheConnection(t *testing.T) {
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve), IdleTimeout: 300 * time.Millisecond}
	addr := serve(t, srv)

	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 25 {
		junk := make([]byte, 1+rng.IntN(4096))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		if i%5 == 0 {
			junk[0] = 0x30 // get past the first byte now and then
		}
		w := dialWire(t, addr)
		w.c.SetWriteDeadline(time.Now().Add(time.Second))
		w.c.Write(junk) // the server may close before it has read everything
		w.expectClosed(3*time.Second, true)
		w.c.Close()
	}
	waitFor(t, 2*time.Second, "the junk connections to be released", func() bool { return srv.OpenConnections() == 0 })
	checkOrdinarySearch(t, dialLDAP(t, addr))
}

func TestHugeLengthHeader(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	w := dialWire(t, addr)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	w.send([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	w.expectNotice(ldap.LDAPResultProtocolError)
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a 2 GiB header took %v", d)
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 100<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 100<<20 {
		t.Errorf("%d MiB allocated while refusing the header", allocated>>20)
	}
}

func TestDeepFilters(t *testing.T) {
	tests := []struct {
		name           string
		maxFilterDepth int
		nots           int
		code           uint16
	}{
		{"at the limit", 10, 9, ldap.LDAPResultSuccess},
		{"one over the limit", 10, 10, ldap.LDAPResultAdminLimitExceeded},
		{"over the limit, below the scan's margin", 10, 12, ldap.LDAPResultAdminLimitExceeded},
		{"over the scan's margin", 10, 13, ldap.LDAPResultAdminLimitExceeded},
		{"10,000 deep, default limit", 0, 10000, ldap.LDAPResultAdminLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxFilterDepth: tt.maxFilterDepth, MaxMessageSize: 1 << 20})
			w := dialWire(t, addr)
			w.send(searchWithRawFilter(7, nestedNotFilter(tt.nots)))
			if tt.code == ldap.LDAPResultSuccess {
				w.expectSearch(7)
			} else {
				w.expectResult(7, ldap.ApplicationSearchResultDone, tt.code)
			}
			w.send(ldapMessage(8, searchOp("dc=example", 2, "(cn=*)")))
			w.expectSearch(8)
		})
	}
}

// --- timeouts ---

func TestIdleTimeout(t *testing.T) {
	// The lower bounds are exact: the server starts counting only after the client's
	// dial or request, so the close comes at least the timeout after it whatever the
	// load. The subtests that need the client to keep pace, or that bound how late the
	// close comes, use a longer timeout, so that a loaded machine that runs the client
	// late does not decide them.
	const idle = 300 * time.Millisecond
	const paced = time.Second
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve), IdleTimeout: idle})
	pacedAddr := serve(t, &Server{Handler: HandlerFunc(h.serve), IdleTimeout: paced})

	t.Run("silent client", func(t *testing.T) {
		start := time.Now()
		w := dialWire(t, addr)
		w.expectClosed(10*time.Second, false)
		if d := time.Since(start); d < idle {
			t.Errorf("closed %v after the dial, before the idle timeout (%v)", d, idle)
		}
	})
	t.Run("truncated message then silence", func(t *testing.T) {
		w := dialWire(t, addr)
		sent := time.Now()
		w.send([]byte{0x30, 0x10, 0x02, 0x01, 0x01})
		w.expectClosed(10*time.Second, false)
		if d := time.Since(sent); d < idle {
			t.Errorf("closed %v after the start of the message, before the idle timeout (%v)", d, idle)
		}
	})
	t.Run("slow operation in flight", func(t *testing.T) {
		lc := dialLDAP(t, addr)
		start := time.Now()
		sr, err := lc.Search(newSearch(dnSlow))
		if err != nil {
			t.Fatalf("slow search on a connection with an idle timeout: %v", err)
		}
		if d := time.Since(start); d < h.slow || sr.DiagnosticMessage != "slow" {
			t.Fatalf("slow search answered after %v with %q", d, sr.DiagnosticMessage)
		}
	})
	t.Run("activity resets the timer", func(t *testing.T) {
		// Four requests half the timeout apart keep the connection open for twice the
		// timeout. A client that a loaded machine runs late (a gap of the whole timeout
		// between an answer and its next request) cannot tell: that try is made again,
		// up to three times.
		for try := 1; ; try++ {
			late, err := keepAlive(t, pacedAddr, paced)
			if err != nil {
				t.Fatal(err)
			}
			if !late {
				return
			}
			if try == 3 {
				t.Skipf("the client kept to its pace in none of %d tries: the machine is too loaded to tell", try)
			}
			t.Logf("try %d: the client sent a request a whole timeout after the answer before; trying again", try)
		}
	})
	t.Run("idle counted from the last request, not from when the timer was set", func(t *testing.T) {
		// Requests closer together than an eighth of the timeout leave the deadline set
		// for an earlier one: the connection must still get the whole timeout after the
		// last, and not much more. A wait that starts over when the first deadline
		// passes closes about twice the timeout after the last answer, every time; a
		// loaded machine runs the server's timer late now and then (seen: 2.7 s), so a
		// late close is measured again, and fails when it comes late three times.
		for try := 1; ; try++ {
			sent, answered, closed := idleAfterBurst(t, pacedAddr, paced)
			if d := closed.Sub(sent); d < paced {
				t.Fatalf("closed %v after the last request, before the idle timeout (%v)", d, paced)
			}
			d := closed.Sub(answered)
			if d <= paced+paced/2 {
				return
			}
			if try == 3 {
				t.Fatalf("closed %v after the last answer, well after the idle timeout (%v), in %d tries", d, paced, try)
			}
			t.Logf("closed %v after the last answer; measuring again", d)
		}
	})
}

// keepAlive sends four requests on a new connection to addr, each timeout/2 after the
// answer to the one before, and reports whether the client itself was late: a request
// sent a whole timeout or more after the answer before it, which the server may rightly
// have closed the connection for. A connection closed otherwise is an error.
func keepAlive(t *testing.T, addr string, timeout time.Duration) (late bool, err error) {
	t.Helper()
	w := dialWire(t, addr)
	answered := time.Now()
	for id := int64(1); id <= 4; id++ {
		time.Sleep(timeout / 2)
		sent := time.Now()
		if sent.Sub(answered) >= timeout {
			return true, nil
		}
		if err := w.trySend(ldapMessage(id, extendedOp(OIDWhoAmI, nil))); err != nil {
			return false, fmt.Errorf("request %d, %v after the answer before: %w", id, sent.Sub(answered), err)
		}
		if err := w.tryExpectResult(id, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess); err != nil {
			if time.Since(answered) >= timeout+timeout/2 {
				return true, nil // the answer read late: the close may be the server's right
			}
			return false, fmt.Errorf("request %d, sent %v after the answer before: %w", id, sent.Sub(answered), err)
		}
		answered = time.Now()
	}
	return false, nil
}

// idleAfterBurst sends eight requests timeout/100 apart on a new connection to addr and
// waits for the server to close it; it returns when the last request was sent, when its
// answer came and when the connection closed.
func idleAfterBurst(t *testing.T, addr string, timeout time.Duration) (sent, answered, closed time.Time) {
	t.Helper()
	w := dialWire(t, addr)
	for id := int64(1); id <= 8; id++ {
		time.Sleep(timeout / 100)
		sent = time.Now()
		w.send(ldapMessage(id, extendedOp(OIDWhoAmI, nil)))
		w.expectResult(id, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	}
	answered = time.Now()
	w.expectClosed(10*time.Second, false)
	return sent, answered, time.Now()
}

func TestWriteTimeoutDropsClientThatDoesNotRead(t *testing.T) {
	h := newProtoHandler()
	srv := &Server{Handler: HandlerFunc(h.serve), WriteTimeout: 500 * time.Millisecond}
	addr := serve(t, srv)
	baseline := runtime.NumGoroutine()

	w := dialWire(t, addr)
	w.send(ldapMessage(1, searchOp(dnForever, 0, "(objectClass=*)")))
	start := time.Now()
	if err := recv(t, h.ended, 10*time.Second, "the streaming handler's writes to fail"); err == nil {
		t.Fatal("streaming handler ended without an error")
	}
	t.Logf("the handler's writes failed after %v", time.Since(start))
	waitFor(t, 5*time.Second, "the server to drop the connection", func() bool { return srv.OpenConnections() == 0 })
	waitFor(t, 5*time.Second, fmt.Sprintf("goroutines to return to %d", baseline), func() bool { return runtime.NumGoroutine() <= baseline })
}

// smallBuffers keeps the kernel's send buffer of accepted connections small, so that a
// slow reader makes room for the next write often and a blocked write says something
// about the client rather than about how much the kernel buffers.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// slowReader reads at most 4 KiB every 5 ms: a client on a slow link, reading steadily.
// It records the longest time it went without reading, which a loaded machine may make
// much longer than 5 ms.
type slowReader struct {
	r       io.Reader
	last    time.Time
	longest time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	if now := time.Now(); !s.last.IsZero() {
		s.longest = max(s.longest, now.Sub(s.last))
	}
	n, err := s.r.Read(p[:min(len(p), 4<<10)])
	s.last = time.Now()
	return n, err
}

// TestWriteTimeoutSparesSteadyReader streams to a client that reads steadily, but slower
// than the handler produces, for longer than the write timeout: the timeout is about a
// client that stops reading, not about how long a whole response takes.
//
// A loaded machine may not run the reader for a while, and a client that does not read
// for a good part of the timeout may rightly be cut: the server needs several of its
// reads to write a buffer out. A try cut after the reader was held up for a quarter of
// the timeout says nothing, and the stream is tried again; a cut of a reader that kept
// its pace fails at once.
func TestWriteTimeoutSparesSteadyReader(t *testing.T) {
	const timeout = time.Second
	h := newProtoHandler()
	h.slow = 3 * timeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, &Server{Handler: HandlerFunc(h.serve), WriteTimeout: timeout}, smallBuffers{ln})
	for try := 1; ; try++ {
		entries, elapsed, held, err := streamSlowly(t, addr)
		switch {
		case err == nil:
			t.Logf("%d entries in %v, the reader held up for %v at most", entries, elapsed, held)
			return
		case held < timeout/4:
			t.Fatalf("cut after %d entries and %v, the reader held up for %v at most: %v", entries, elapsed, held, err)
		case try == 5:
			t.Fatalf("the machine held the reader up in every try; the last was cut after %d entries and %v, the reader held up for %v: %v",
				entries, elapsed, held, err)
		}
		t.Logf("try %d cut after %d entries and %v, the reader held up for %v: trying again", try, entries, elapsed, held)
	}
}

// streamSlowly reads a dnStream search from the server at addr through a slowReader, and
// returns the entries read, how long it took, the reader's longest time without reading,
// and the error that cut the stream, if one did.
func streamSlowly(t *testing.T, addr string) (entries int, elapsed, held time.Duration, err error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(32 << 10)
	if _, err := c.Write(ldapMessage(1, searchOp(dnStream, 0, "(objectClass=*)"))); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	sr := &slowReader{r: c}
	r := bufio.NewReader(sr)
	start := time.Now()
	for {
		p, err := ber.ReadPacket(r)
		if err != nil {
			return entries, time.Since(start), sr.longest, err
		}
		if p.Children[1].Tag == ldap.ApplicationSearchResultEntry {
			entries++
			continue
		}
		f := decodeResult(t, p.Bytes())
		if f.code != ldap.LDAPResultSuccess || f.diag != "streamed" {
			t.Fatalf("stream ended with code %d %q", f.code, f.diag)
		}
		return entries, time.Since(start), sr.longest, nil
	}
}

// --- TLS ---

func TestStartTLS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve), TLSConfig: serverTLS})
	lc := dialLDAP(t, addr)

	if v := tlsVersionSeen(t, lc); v != "none" {
		t.Fatalf("before StartTLS the handler sees TLS %s", v)
	}
	if err := lc.StartTLS(clientTLS); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if _, ok := lc.TLSConnectionState(); !ok {
		t.Fatal("client reports no TLS after StartTLS")
	}
	if v := tlsVersionSeen(t, lc); !strings.HasPrefix(v, "TLS 1.") {
		t.Fatalf("after StartTLS the handler sees TLS %q", v)
	}
	if err := lc.Bind("cn=alice,dc=example", goodPassword); err != nil {
		t.Fatalf("bind over TLS: %v", err)
	}
	checkOrdinarySearch(t, lc)

	_, err := lc.Extended(ldap.NewExtendedRequest(OIDStartTLS, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultOperationsError) {
		t.Fatalf("second StartTLS: %v, want operationsError", err)
	}
	checkOrdinarySearch(t, lc)
}

func TestStartTLSWithOperationInFlight(t *testing.T) {
	serverTLS, _ := testTLS(t)
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve), TLSConfig: serverTLS})
	w := dialWire(t, addr)

	w.send(ldapMessage(1, searchOp(dnWait, 0, "(objectClass=*)")))
	recv(t, h.started, 5*time.Second, "the search to start")
	w.send(ldapMessage(2, extendedOp(OIDStartTLS, nil)))
	w.expectResult(2, ldap.ApplicationExtendedResponse, ldap.LDAPResultOperationsError)
	close(h.release)
	w.next() // the entry
	w.expectResult(1, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess)
}

// TestStartTLSAfterTheAnswer: an operation whose result the client has received is over
// for the client, though its handler has not returned yet: StartTLS goes ahead.
func TestStartTLSAfterTheAnswer(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	returned := make(chan struct{})
	defer close(returned)
	h := HandlerFunc(func(w ResponseWriter, r *Request) {
		w.WriteResult(&Result{Code: ldap.LDAPResultCompareTrue})
		<-returned
	})
	addr := serve(t, &Server{Handler: h, TLSConfig: serverTLS})
	lc := dialLDAP(t, addr)
	if _, err := lc.Compare("cn=x,dc=example", "cn", "x"); err != nil {
		t.Fatalf("compare: %v", err)
	}
	if err := lc.StartTLS(clientTLS); err != nil {
		t.Fatalf("StartTLS once the compare was answered: %v", err)
	}
}

func TestStartTLSWithoutConfig(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)})
	lc := dialLDAP(t, addr)

	// go-ldap's StartTLS stops reading after a refusal, so ask through Extended to see
	// that the connection really stays usable.
	_, err := lc.Extended(ldap.NewExtendedRequest(OIDStartTLS, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultProtocolError) {
		t.Fatalf("StartTLS without a TLS configuration: %v, want protocolError", err)
	}
	if err := lc.Bind("cn=alice,dc=example", goodPassword); err != nil {
		t.Fatalf("bind after the refused StartTLS: %v", err)
	}
	checkOrdinarySearch(t, lc)
}

func TestLDAPS(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, &Server{Handler: HandlerFunc(newProtoHandler().serve)}, tls.NewListener(ln, serverTLS))

	lc, err := ldap.DialURL("ldaps://"+addr, ldap.DialWithTLSConfig(clientTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	lc.SetTimeout(5 * time.Second)
	if v := tlsVersionSeen(t, lc); !strings.HasPrefix(v, "TLS 1.") {
		t.Fatalf("over LDAPS the handler sees TLS %q", v)
	}
	if err := lc.Bind("cn=alice,dc=example", goodPassword); err != nil {
		t.Fatalf("bind over LDAPS: %v", err)
	}
	if who, err := lc.WhoAmI(nil); err != nil || who.AuthzID != "dn:cn=alice,dc=example" {
		t.Fatalf("whoami over LDAPS = %+v, %v", who, err)
	}
}

// --- shutdown ---

func TestShutdownLetsOperationsFinish(t *testing.T) {
	h := newProtoHandler()
	srv := &Server{Handler: HandlerFunc(h.serve)}
	addr := serve(t, srv)
	lc := dialLDAP(t, addr)
	idle := dialWire(t, addr)

	type answer struct {
		sr  *ldap.SearchResult
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		sr, err := lc.Search(newSearch(dnWait))
		answered <- answer{sr, err}
	}()
	recv(t, h.started, 5*time.Second, "the search to start")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	waitFor(t, 5*time.Second, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	idle.expectClosed(2*time.Second, false)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with an operation in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(h.release)
	a := recv(t, answered, 5*time.Second, "the in-flight search to be answered")
	if a.err != nil || a.sr.DiagnosticMessage != "waited" || len(a.sr.Entries) != 1 {
		t.Fatalf("in-flight search during shutdown: %+v, %v", a.sr, a.err)
	}
	if err := recv(t, shut, 5*time.Second, "Shutdown to return"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if srv.OpenConnections() != 0 {
		t.Fatalf("%d connections open after Shutdown", srv.OpenConnections())
	}
}

func TestShutdownDeadlineCutsOperations(t *testing.T) {
	for _, base := range blockingBases {
		t.Run(base, func(t *testing.T) {
			h := newProtoHandler()
			srv := &Server{Handler: HandlerFunc(h.serve)}
			addr := serve(t, srv)
			w := dialWire(t, addr)

			w.send(ldapMessage(1, searchOp(base, 0, "(objectClass=*)")))
			recv(t, h.started, 5*time.Second, "the search to start")

			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown = %v, want the context's error", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Shutdown took %v past its deadline", d)
			}
			if err := recv(t, h.ended, 2*time.Second, "the cut operation's context to end"); err == nil {
				t.Fatal("the cut operation could still write its result")
			}
			w.expectClosed(2*time.Second, false)
		})
	}
}

// lateListener hands out a connection only once it has been closed, as when a client
// is accepted just before Shutdown closes the listener and reaches the server just after.
type lateListener struct {
	net.Listener
	accepted  chan struct{} // a connection is waiting for the close
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *lateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted <- struct{}{}
	<-l.closed
	return c, nil
}

func (l *lateListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func TestShutdownRacingAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Handler: HandlerFunc(newProtoHandler().serve)}
	late := &lateListener{Listener: ln, accepted: make(chan struct{}, 1), closed: make(chan struct{})}
	addr := serveOn(t, srv, late)
	w := dialWire(t, addr)
	recv(t, late.accepted, 5*time.Second, "the connection to be accepted")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a connection accepted during it: %v", err)
	}
	w.expectClosed(2*time.Second, false)
}

// --- the OpenLDAP command line tools ---

func runTool(t *testing.T, name string, args ...string) (stdout string, code int) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1") // ignore ldap.conf and .ldaprc
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish: %s", name, stderr.String())
	}
	t.Logf("%s %s: exit %d, stderr %q", name, strings.Join(args, " "), code, stderr.String())
	return out.String(), code
}

func TestOpenLDAPTools(t *testing.T) {
	h := newProtoHandler()
	uri := "ldap://" + serve(t, &Server{Handler: HandlerFunc(h.serve)})

	t.Run("ldapsearch paged", func(t *testing.T) {
		out, code := runTool(t, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", uri, "-b", dnPaged, "-E", "pr=5/noprompt", "(objectClass=*)", "cn")
		if code != 0 {
			t.Fatalf("ldapsearch exit code %d", code)
		}
		if n := strings.Count("\n"+out, "\ndn: "); n != pagedTotal {
			t.Fatalf("ldapsearch printed %d entries, want %d:\n%s", n, pagedTotal, out)
		}
		if !strings.Contains(out, "dn: cn=p11,"+dnPaged) {
			t.Fatalf("last page missing:\n%s", out)
		}
		if n := h.pages.Load(); n < 3 {
			t.Fatalf("ldapsearch asked for %d pages, want at least 3", n)
		}
	})
	t.Run("ldapwhoami", func(t *testing.T) {
		out, code := runTool(t, "ldapwhoami", "-x", "-H", uri, "-D", "cn=alice,dc=example", "-w", goodPassword)
		if code != 0 || strings.TrimSpace(out) != "dn:cn=alice,dc=example" {
			t.Fatalf("ldapwhoami = %q, exit %d", out, code)
		}
		out, code = runTool(t, "ldapwhoami", "-x", "-H", uri)
		if code != 0 || strings.TrimSpace(out) != "anonymous" {
			t.Fatalf("anonymous ldapwhoami = %q, exit %d", out, code)
		}
		if _, code = runTool(t, "ldapwhoami", "-x", "-H", uri, "-D", "cn=alice,dc=example", "-w", "bad"); code != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("ldapwhoami with a wrong password: exit %d, want %d", code, ldap.LDAPResultInvalidCredentials)
		}
	})
	t.Run("ldapcompare", func(t *testing.T) {
		out, code := runTool(t, "ldapcompare", "-x", "-H", uri, "cn=x,dc=example", "cn:"+compareMatch)
		if code != ldap.LDAPResultCompareTrue || strings.TrimSpace(out) != "TRUE" {
			t.Fatalf("ldapcompare = %q, exit %d", out, code)
		}
		out, code = runTool(t, "ldapcompare", "-x", "-H", uri, "cn=x,dc=example", "cn:other")
		if code != ldap.LDAPResultCompareFalse || strings.TrimSpace(out) != "FALSE" {
			t.Fatalf("ldapcompare = %q, exit %d", out, code)
		}
	})
}

// TestDenseFiltersAreAnswered: the number of elements in a request is limited by its
// size only, as slapd limits it: filters as dense as BER allows are decoded and answered,
// and the connection goes on.
func TestDenseFiltersAreAnswered(t *testing.T) {
	addr := serve(t, &Server{Handler: HandlerFunc(newProtoHandler().serve), MaxMessageSize: 4 << 20, MaxMessageSizeAnonymous: 4 << 20})
	w := dialWire(t, addr)
	// An AND of 20,000 empty ANDs: two bytes per element.
	and := ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterAnd, nil, "")
	for range 20000 {
		and.AppendChild(ber.Encode(ber.ClassContext, ber.TypeConstructed, ldap.FilterAnd, nil, ""))
	}
	w.send(ldapMessage(5, searchOpWithFilter("dc=example", 2, and)))
	w.expectSearch(5)
	// ORs of 10,000 substrings, equality items and negations on a one-letter attribute.
	for i, item := range []string{"(c=*%c*)", "(c=%c)", "(!(%c=*))"} {
		var b strings.Builder
		b.WriteString("(|")
		for j := range 10000 {
			fmt.Fprintf(&b, item, 'a'+j%26)
		}
		b.WriteString(")")
		w.send(ldapMessage(int64(6+i), searchOp("dc=example", 2, b.String())))
		w.expectSearch(int64(6 + i))
	}
}

func TestReusedMessageIDClosesTheConnection(t *testing.T) {
	h := newProtoHandler()
	addr := serve(t, &Server{Handler: HandlerFunc(h.serve)})
	w := dialWire(t, addr)
	w.send(ldapMessage(1, searchOp(dnBlock, 0, "(objectClass=*)")))
	recv(t, h.started, 5*time.Second, "the blocking search to start")
	w.send(ldapMessage(1, searchOp("dc=example", 2, "(cn=*)")))
	w.expectNotice(ldap.LDAPResultProtocolError)
	w.expectClosed(5*time.Second, false)
}

// Goroutines kept for a connection's next operation run operations concurrently as new
// ones would, and end with the connection.
func TestSpareGoroutines(t *testing.T) {
	h := newProtoHandler()
	srv := &Server{Handler: HandlerFunc(h.serve)}
	addr := serve(t, srv)
	baseline := runtime.NumGoroutine()

	w := dialWire(t, addr)
	for id := int64(1); id <= 5; id++ { // one at a time: each finds the last one's goroutine
		w.send(ldapMessage(id, extendedOp(OIDWhoAmI, nil)))
		w.expectResult(id, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	}
	// More at once than wait as spares: all run together.
	for id := int64(6); id <= 9; id++ {
		w.send(ldapMessage(id, searchOp(dnWait, 0, "(objectClass=*)")))
	}
	for range 4 {
		recv(t, h.started, 5*time.Second, "every waiting search to start")
	}
	close(h.release)
	tags := map[ber.Tag]int{}
	for range 8 {
		tags[w.next().Children[1].Tag]++
	}
	if tags[ldap.ApplicationSearchResultEntry] != 4 || tags[ldap.ApplicationSearchResultDone] != 4 {
		t.Fatalf("responses by tag %v, want 4 entries and 4 results", tags)
	}
	for id := int64(10); id <= 12; id++ {
		w.send(ldapMessage(id, extendedOp(OIDWhoAmI, nil)))
		w.expectResult(id, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	}
	w.c.Close()
	waitFor(t, 5*time.Second, "the server to drop the connection", func() bool { return srv.OpenConnections() == 0 })
	waitFor(t, 5*time.Second, fmt.Sprintf("goroutines to return to %d", baseline), func() bool { return runtime.NumGoroutine() <= baseline })
}

// countingListener counts the Reads made on the connections it accepts.
type countingListener struct {
	net.Listener
	reads atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, reads: &l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// TestIdleDeadlineKeptNoSpin: a connection whose idle deadline was kept from an earlier
// request (the next came within an eighth of the timeout) waits out the rest of its
// timeout once that deadline passes; it does not read again and again at a deadline
// already past until the timeout ends.
func TestIdleDeadlineKeptNoSpin(t *testing.T) {
	const idle = 800 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	addr := serveOn(t, &Server{Handler: HandlerFunc(newProtoHandler().serve), IdleTimeout: idle}, cl)
	w := dialWire(t, addr)
	w.send(ldapMessage(1, extendedOp(OIDWhoAmI, nil)))
	w.expectResult(1, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	time.Sleep(idle / 10) // within an eighth: the deadline of the first request stays
	w.send(ldapMessage(2, extendedOp(OIDWhoAmI, nil)))
	w.expectResult(2, ldap.ApplicationExtendedResponse, ldap.LDAPResultSuccess)
	before := cl.reads.Load()
	w.expectClosed(3*time.Second, false)
	if n := cl.reads.Load() - before; n > 20 {
		t.Fatalf("%d reads while the connection was idle, want a few", n)
	}
}

// TestBindContextEndsWithTheConnection: a bind, which runs on the connection's read
// loop with the connection's context, sees that context end when the server closes
// the connection under it.
func TestBindContextEndsWithTheConnection(t *testing.T) {
	started, ended := make(chan struct{}), make(chan error, 1)
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		if r.Op != OpBind {
			w.WriteResult(&Result{})
			return
		}
		close(started)
		<-r.Context().Done()
		ended <- w.WriteResult(&Result{})
	})}
	addr := serve(t, srv)
	w := dialWire(t, addr)
	w.send(ldapMessage(1, bindOp("cn=a", "b")))
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the bind did not reach the handler")
	}
	srv.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, ErrAbandoned) {
			t.Errorf("WriteResult after the connection closed: %v, want ErrAbandoned", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the bind's context did not end when the server closed the connection")
	}
}

// BenchmarkBindRoundTrip is a client's simple bind through the server to a handler
// that accepts it, and its response back, on one loopback connection: the server's
// own allocations per bind (the client's are a few fixed ones).
func BenchmarkBindRoundTrip(b *testing.B) {
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		w.WriteResult(&Result{})
	}), Logger: slog.New(slog.DiscardHandler)}
	benchRoundTrip(b, srv, ldapMessage(1, bindOp("uid=user01234,ou=people,dc=example,dc=org", "secret")), 1)
}

// benchRoundTrip serves srv on loopback and times msg sent over one connection and
// the frames answers read back.
func benchRoundTrip(b *testing.B, srv *Server, msg []byte, answers int) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nc.Write(msg); err != nil {
			b.Fatal(err)
		}
		for range answers {
			if buf, err = readFrame(br, 1<<10, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSearchRoundTrip is a search answered on the read loop (Server.Inline) with
// one entry, as the proxy answers one from memory, on one loopback connection: the
// server's own cost per search around its handler. The handler asks its context for
// Err and a value, as a search through the tree does.
func BenchmarkSearchRoundTrip(b *testing.B) {
	type key struct{}
	entry := &Entry{DN: "uid=user01234,ou=people,dc=example,dc=org", Attributes: []Attribute{
		{Name: "uid", Values: [][]byte{[]byte("user01234")}},
		{Name: "mail", Values: [][]byte{[]byte("user01234@example.org")}},
	}}
	srv := &Server{
		ConnContext: func(ctx context.Context, s *Session) context.Context { return context.WithValue(ctx, key{}, s) },
		Inline:      func(r *Request) bool { return r.Op == OpSearch },
		Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
			ctx := r.Context()
			if ctx.Value(key{}) == nil || ctx.Err() != nil {
				w.WriteResult(&Result{Code: ldap.LDAPResultOther})
				return
			}
			w.WriteEntry(entry)
			w.WriteResult(&Result{})
		}),
		Logger: slog.New(slog.DiscardHandler),
	}
	benchRoundTrip(b, srv, ldapMessage(1, searchOp("dc=example,dc=org", 2, "(uid=user01234)", "uid", "mail")), 2) // the entry and the result
}

// TestOutcome checks what the server's writer tells of a request (OutcomeReporter):
// entries written and relayed counted, references not, the final result's code.
func TestOutcome(t *testing.T) {
	outcomes := make(chan Outcome, 2)
	addr := serve(t, &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		rep := w.(OutcomeReporter)
		if out := rep.Outcome(); out != (Outcome{}) {
			t.Errorf("outcome before anything was written: %+v", out)
		}
		w.WriteEntry(&Entry{DN: "cn=a"})
		w.WriteReference([]string{"ldap://elsewhere.example/"})
		if err := relay(w, appendEntry(nil, 1, &Entry{DN: "cn=b"}, false, nil)); err != nil {
			t.Error(err)
		}
		if r.Search.BaseDN == "cn=relay" {
			relay(w, appendResult(nil, 1, OpSearch, &Result{Code: ldap.LDAPResultSizeLimitExceeded}))
		} else {
			w.WriteResult(&Result{Code: ldap.LDAPResultNoSuchObject})
		}
		outcomes <- rep.Outcome()
	})})
	c := dialWire(t, addr)
	c.send(ldapMessage(1, searchOp("cn=write", 2, "(objectClass=*)")))
	if out := <-outcomes; out != (Outcome{Answered: true, Code: ldap.LDAPResultNoSuchObject, Entries: 2}) {
		t.Errorf("written: %+v", out)
	}
	for range 3 { // two entries and the reference
		c.next()
	}
	c.expectResult(1, ldap.ApplicationSearchResultDone, ldap.LDAPResultNoSuchObject)
	c.send(ldapMessage(2, searchOp("cn=relay", 2, "(objectClass=*)")))
	if out := <-outcomes; out != (Outcome{Answered: true, Code: ldap.LDAPResultSizeLimitExceeded, Entries: 2}) {
		t.Errorf("relayed: %+v", out)
	}
}

// TestBindPasswordWiped checks that once a simple bind has been handled, its password
// is in neither the message it was decoded from nor the connection's read buffer: a
// bind alone, and a bind sent with the search after it in one write (the search's
// bytes, still to be read when the bind is done, must come through whole). The
// search is answered on the read loop (Server.Inline), which owns the buffer, and
// looks at it there.
func TestBindPasswordWiped(t *testing.T) {
	const password = "wipe-me-0123456789"
	var (
		mu    sync.Mutex
		kept  []byte   // the bind's password where the message held it
		found []string // where a search found it
	)
	srv := &Server{Handler: HandlerFunc(func(w ResponseWriter, r *Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Op {
		case OpBind:
			kept = r.Bind.Password
		case OpSearch:
			if bytes.Contains(w.(*responseWriter).c.src.buf, []byte(password)) {
				found = append(found, "the read buffer")
			}
			if !bytes.Equal(kept, make([]byte, len(password))) {
				found = append(found, "the message")
			}
			if r.Search.BaseDN != "dc=example,dc=org" {
				found = append(found, "a search other than sent: "+r.Search.BaseDN)
			}
		}
		w.WriteResult(&Result{})
	}), Inline: func(r *Request) bool { return r.Op == OpSearch }}
	addr := serve(t, srv)
	bind := ldapMessage(1, bindOp("uid=alice,ou=people,dc=example,dc=org", password))
	search := ldapMessage(2, searchOp("dc=example,dc=org", 0, "(objectClass=*)"))
	for _, c := range []struct {
		name    string
		writes  [][]byte
		results []int // what each write is answered with before the next
	}{
		{"a bind, then a search", [][]byte{bind, search}, []int{1, 1}},
		{"a bind and a search in one write", [][]byte{append(append([]byte(nil), bind...), search...)}, []int{2}},
	} {
		nc := dialRaw(t, addr, nil)
		br := bufio.NewReader(nc)
		for i, w := range c.writes {
			if _, err := nc.Write(w); err != nil {
				t.Fatal(err)
			}
			for range c.results[i] {
				if _, err := readFrame(br, 1<<10, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		nc.Close()
		mu.Lock()
		for _, where := range found {
			t.Errorf("%s: the password is in %s", c.name, where)
		}
		found, kept = nil, nil
		mu.Unlock()
	}
}
