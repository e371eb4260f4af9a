package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func whoAmI(t *testing.T, c *Conn) string {
	t.Helper()
	resp, err := c.Extended(t.Context(), ldap.NewExtendedRequest(ldap.ControlTypeWhoAmI, nil))
	if err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	if resp.Value == nil {
		return ""
	}
	return resp.Value.Data.String()
}

// searchUIDs returns the uid values of the entries a subtree search for
// filter finds under the base DN.
func searchUIDs(t *testing.T, c *Conn, filter string) ([]string, error) {
	req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, []string{"uid"}, nil)
	var uids []string
	err := c.Search(t.Context(), req, func(r ldap.Response) error {
		if e := r.Entry(); e != nil {
			uids = append(uids, e.GetAttributeValue("uid"))
		}
		return nil
	})
	return uids, err
}

func TestBindAndSearch(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}
	if got := whoAmI(t, c); got != "dn:"+srv.UserDN(1) {
		t.Errorf("WhoAmI after Bind = %q", got)
	}
	uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(1)+")")
	if err != nil || len(uids) != 1 || uids[0] != slapdtest.UserName(1) {
		t.Errorf("search = %v, %v; want [%s]", uids, err, slapdtest.UserName(1))
	}

	errStop := errors.New("stop")
	calls := 0
	req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", nil, nil)
	err = c.Search(t.Context(), req, func(ldap.Response) error { calls++; return errStop })
	if !errors.Is(err, errStop) || calls != 1 {
		t.Errorf("Search with a failing fn = %v after %d calls, want fn's error after 1", err, calls)
	}
	err = c.Search(t.Context(), ldap.NewSearchRequest("ou=nope,"+testBaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", nil, nil), func(ldap.Response) error { return nil })
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) || IsUnavailable(err) {
		t.Errorf("search of a missing base = %v, want noSuchObject", err)
	}

	ok, err := c.Compare(t.Context(), srv.UserDN(1), "mail", slapdtest.UserName(1)+"@example.org")
	if err != nil || !ok {
		t.Errorf("Compare(right mail) = %v, %v", ok, err)
	}
	ok, err = c.Compare(t.Context(), srv.UserDN(1), "mail", slapdtest.UserName(2)+"@example.org")
	if err != nil || ok {
		t.Errorf("Compare(wrong mail) = %v, %v", ok, err)
	}
}

func TestWrongPasswordIsAnsweredNotRetried(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	err = c.Bind(t.Context(), srv.UserDN(1), []byte("wrong"))
	le, ok := err.(*ldap.Error)
	if !ok || le.ResultCode != ldap.LDAPResultInvalidCredentials {
		t.Fatalf("Bind(wrong password) = %#v, want *ldap.Error with code 49", err)
	}
	if IsUnavailable(err) {
		t.Error("invalid credentials count as unavailable: an offline login would be allowed")
	}
	if got := p.requests(t, srv.URL, "bind"); got != 1 {
		t.Errorf("bind requests = %d, want 1 (no retry)", got)
	}
	if got := whoAmI(t, c); got != "" {
		t.Errorf("WhoAmI after a failed bind = %q, want anonymous", got)
	}

	err = c.Bind(t.Context(), srv.UserDN(1), nil)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Errorf("Bind(empty password) = %v, want unwillingToPerform", err)
	}
	if got := p.requests(t, srv.URL, "bind"); got != 1 {
		t.Errorf("an empty password was sent upstream")
	}
}

func TestUnbindForgetsTheIdentity(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}
	c.Unbind()
	if got := whoAmI(t, c); got != "" {
		t.Errorf("WhoAmI after Unbind = %q, want anonymous", got)
	}
	if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatalf("Bind after Unbind: %v", err)
	}
	if got := whoAmI(t, c); got != "dn:"+srv.UserDN(1) {
		t.Errorf("WhoAmI after a new Bind = %q", got)
	}
}

func TestBindFailsOverWhenServerDies(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Server() != a.URL {
		t.Fatalf("Dial went to %q, want the first server", c.Server())
	}
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatalf("Bind with the first server dead = %v, want success on the second", err)
	}
	if c.Server() != b.URL {
		t.Errorf("Server() = %q, want %q", c.Server(), b.URL)
	}
	if got := whoAmI(t, c); got != "dn:"+b.UserDN(1) {
		t.Errorf("WhoAmI on the second server = %q", got)
	}
}

func TestBindRetriesWhenServerHangs(t *testing.T) {
	const timeout = 500 * time.Millisecond
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: timeout})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	pause(t, a)
	start := time.Now()
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatalf("Bind with the first server hung = %v, want success on the second", err)
	}
	if elapsed := time.Since(start); elapsed > 2*timeout {
		t.Errorf("Bind took %v, want one timeout (%v) and a quick retry", elapsed, timeout)
	}
	if c.Server() != b.URL {
		t.Errorf("Server() = %q, want %q", c.Server(), b.URL)
	}
	if got := p.requests(t, a.URL, "bind") + p.requests(t, b.URL, "bind"); got != 2 {
		t.Errorf("bind requests = %d, want 2 (one retry)", got)
	}
	if got := p.up(t, a.URL); got != 0 {
		t.Errorf("hung server up = %v, want 0", got)
	}
}

func TestAnonymousSearchRetriesOnAnotherServer(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: 500 * time.Millisecond})

	t.Run("hung", func(t *testing.T) {
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Server() != a.URL {
			t.Fatalf("Dial went to %q, want the first server", c.Server())
		}
		pause(t, a)
		uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
		if err != nil || len(uids) != 1 {
			t.Fatalf("search with the first server hung = %v, %v; want %s from the second", uids, err, slapdtest.UserName(2))
		}
		if c.Server() != b.URL {
			t.Errorf("Server() = %q, want %q", c.Server(), b.URL)
		}
	})
}

// rebindOff is RebindOnFailover: false, the behaviour before sessions kept their
// credential.
func rebindOff() *bool {
	off := false
	return &off
}

func TestUserBoundSearchIsNotMovedWithoutRebind(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: 500 * time.Millisecond, RebindOnFailover: rebindOff()})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err = searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
	if !errors.Is(err, ErrConnectionLost) || !IsUnavailable(err) {
		t.Fatalf("search on a lost user-bound connection = %v, want ErrConnectionLost", err)
	}
	if got := p.requests(t, b.URL, "search"); got != 0 {
		t.Errorf("the search was sent to the second server anonymously (%d requests)", got)
	}
	// Still lost, not silently anonymous, until the client binds again.
	if _, err := c.Compare(t.Context(), a.UserDN(1), "uid", slapdtest.UserName(1)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("compare after the loss = %v, want ErrConnectionLost", err)
	}
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}
	if uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")"); err != nil || len(uids) != 1 {
		t.Errorf("search after binding again = %v, %v", uids, err)
	}
	if c.Server() != b.URL {
		t.Errorf("Server() = %q, want %q", c.Server(), b.URL)
	}
}

func TestUserBoundSearchOnHungServerIsLostWithoutRebind(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: 500 * time.Millisecond, RebindOnFailover: rebindOff()})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(t.Context(), a.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
		t.Fatal(err)
	}
	pause(t, a)
	start := time.Now()
	_, err = searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("search on a hung user-bound connection = %v, want ErrConnectionLost", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("search took %v with a 500ms timeout", elapsed)
	}
}

// droppingServer answers every search with one entry and then drops the
// connection; it counts the searches below the test base DN.
func droppingServer(t *testing.T) (addr string, searches *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	searches = &atomic.Int32{}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := ber.ReadPacket(c)
				if err != nil || len(req.Children) < 2 || req.Children[1].Tag != ldap.ApplicationSearchRequest {
					return
				}
				base := req.Children[1].Children[0].Data.String()
				if strings.HasSuffix(base, testBaseDN) {
					searches.Add(1)
				}
				resp := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
				resp.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, req.Children[0].Value, ""))
				entry := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "")
				entry.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, fakeUserDN, ""))
				entry.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
				resp.AppendChild(entry)
				_, _ = c.Write(resp.Bytes())
			}()
		}
	}()
	return l.Addr().String(), searches
}

func TestSearchBrokenAfterResultsIsNotRepeated(t *testing.T) {
	addr, searches := droppingServer(t)
	p := newTestPool(t, Config{URLs: "ldap://" + addr})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	entries := 0
	req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", nil, nil)
	err = c.Search(t.Context(), req, func(r ldap.Response) error {
		if r.Entry() != nil {
			entries++
		}
		return nil
	})
	if !IsUnavailable(err) || errors.Is(err, ErrConnectionLost) {
		t.Errorf("Search = %v, want a broken-connection error", err)
	}
	if entries != 1 || searches.Load() != 1 {
		t.Errorf("got %d entries from %d searches, want 1 from 1: a search that delivered must not be repeated", entries, searches.Load())
	}
}

// closingServer accepts connections, reads whatever comes, and closes the connection
// without answering, like a server refusing a request over its size limit.
func closingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64)
				c.Read(buf)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return "ldap://" + l.Addr().String()
}

// TestServerThatClosesIsNotUnavailable guards the offline-login rule: only a failure to
// reach any server (connect failure or timeout) wraps ErrUnavailable. A server that
// takes the request and closes the connection is there, and refusing.
func TestServerThatClosesIsNotUnavailable(t *testing.T) {
	p := newTestPool(t, Config{URLs: closingServer(t), Timeout: 2 * time.Second})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Bind(t.Context(), fakeUserDN, []byte("secret"))
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("bind on a server that closes: %v; must not wrap ErrUnavailable", err)
	}
	if !IsUnavailable(err) {
		t.Fatalf("bind on a server that closes: %v; the client should still get unavailable", err)
	}
	// A server that is not there at all still is unavailable.
	p2 := newTestPool(t, Config{URLs: closedURL(t), Timeout: 2 * time.Second})
	if _, err := p2.Dial(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dead server: %v, want ErrUnavailable", err)
	}
}

// tcpFront forwards TCP connections to target. cut closes the ones open, as a server's
// idle timeout would, and new ones are forwarded as before; die cuts them too and, like
// a server killed with kill -9 whose port still accepts for a moment, has new ones
// accepted, read from and closed unanswered.
type tcpFront struct {
	url  string
	mu   sync.Mutex
	open []net.Conn
	dead bool
}

func newTCPFront(t *testing.T, target string) *tcpFront {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpFront{url: "ldap://" + l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.dead {
				f.mu.Unlock()
				go func() {
					c.Read(make([]byte, 64))
					c.Close()
				}()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				f.mu.Unlock()
				c.Close()
				continue
			}
			f.open = append(f.open, c, u)
			f.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		f.cut()
	})
	return f
}

// cut closes the connections open.
func (f *tcpFront) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.open {
		c.Close()
	}
	f.open = nil
}

// die cuts the connections open and answers no new one.
func (f *tcpFront) die() {
	f.mu.Lock()
	f.dead = true
	f.mu.Unlock()
	f.cut()
}

// TestRetryGoesToTheNextServer: a server killed while its port still accepts (and before
// a health probe notices) closes the connections under the requests sent to it; the
// retry of each must go to the next server, where every bind succeeds, and not back to
// the dying one.
func TestRetryGoesToTheNextServer(t *testing.T) {
	a := slapdtest.New(t, slapdtest.Options{})
	b := slapdtest.New(t, slapdtest.Options{})
	tf := newTCPFront(t, strings.TrimPrefix(a.URL, "ldap://"))
	front, die := tf.url, tf.die
	p := newTestPool(t, Config{URLs: front + "," + b.URL, Timeout: 2 * time.Second, HealthInterval: time.Hour,
		BindDN: a.ServiceDN, BindPassword: a.ServicePassword})
	waitFor(t, "the first server to be up", func() bool { return p.up(t, front) == 1 })
	err := p.WithService(t.Context(), "search", func(lc *ldap.Conn) error {
		_, err := lc.WhoAmI(nil)
		return err
	})
	if err != nil {
		t.Fatalf("service request before the kill: %v", err)
	}
	die()
	for i := range 15 {
		c, err := p.Dial(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(t.Context(), b.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
			t.Fatalf("bind %d: %v, want success on the second server", i+1, err)
		}
		if c.Server() != b.URL {
			t.Fatalf("bind %d answered by %q, want %q", i+1, c.Server(), b.URL)
		}
		c.Close()
	}
	// The service connections: the idle one was cut by the kill.
	err = p.WithService(t.Context(), "search", func(lc *ldap.Conn) error {
		_, err := lc.WhoAmI(nil)
		return err
	})
	if err != nil {
		t.Fatalf("service request after the kill: %v", err)
	}
}

// TestForwardReusesItsCall: a request that ended cleanly leaves its call (channel and
// buffer) to the connection's next request; one abandoned on the way does not, since a
// reader may still hold it.
func TestForwardReusesItsCall(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	filter := "(uid=" + slapdtest.UserName(1) + ")"
	spare := func() *call {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.wc.spare.Load()
	}
	if _, err := searchUIDs(t, c, filter); err != nil {
		t.Fatal(err)
	}
	first := spare()
	if first == nil {
		t.Fatal("a search that ended cleanly left no spare call")
	}
	if _, err := searchUIDs(t, c, filter); err != nil {
		t.Fatal(err)
	}
	if spare() != first {
		t.Error("the next search did not use the spare call, or did not give it back")
	}

	pause(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		filter, []string{"uid"}, nil)
	if err := c.Search(ctx, req, func(ldap.Response) error { return nil }); err == nil {
		t.Fatal("a search of a paused server succeeded")
	}
	if s := spare(); s != nil {
		t.Error("the call of a search abandoned on the way became the spare")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkForward relays a search and a bind as the proxy does (the request's bytes
// in, each response's bytes to fn), against slapd: allocations per request are the
// upstream side's own (go test -bench Forward -benchmem ./upstream/).
func BenchmarkForward(b *testing.B) {
	srv := slapdtest.New(b, slapdtest.Options{})
	cfg := Config{URLs: srv.URL, BaseDN: testBaseDN, Timeout: 5 * time.Second, RetryInterval: 50 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	p, err := New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	c, err := p.Dial(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	filter, err := ldap.CompileFilter("(uid=" + slapdtest.UserName(1) + ")")
	if err != nil {
		b.Fatal(err)
	}
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, testBaseDN, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(ldap.ScopeWholeSubtree), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(ldap.NeverDerefAliases), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	op.AppendChild(filter)
	op.AppendChild(ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, ""))
	search := message(op)
	bind := ldapwire.BindRequest(srv.UserDN(1), []byte(slapdtest.UserPassword(1)))
	for _, tc := range []struct {
		name string
		kind Kind
		msg  []byte
	}{{"search", KindSearch, search}, {"bind", KindBind, bind}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var code uint16
			relay := func(r ldapwire.Response) error {
				code = r.Code
				return nil
			}
			for b.Loop() {
				if err := c.Forward(b.Context(), tc.kind, tc.msg, relay); err != nil || code != 0 {
					b.Fatalf("forward: %v, result %d", err, code)
				}
			}
		})
	}
}
