package upstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestIdleConnectionClosedByTheServer: a session's connection that the server closed
// while it was idle (nobody reads an idle connection) is found closed before the next
// request goes out on it, and replaced, bound again: even an extended operation, which
// is never sent twice, gets its answer.
func TestIdleConnectionClosedByTheServer(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	tf := newTCPFront(t, strings.TrimPrefix(srv.URL, "ldap://"))
	url, cut := tf.url, tf.cut
	p := newTestPool(t, Config{URLs: url})
	c := boundSession(t, p, srv, 1)
	want := "dn:" + srv.UserDN(1)
	if got := whoAmI(t, c); got != want {
		t.Fatalf("WhoAmI: %q, want %q", got, want)
	}
	for range 3 {
		cut()
		time.Sleep(100 * time.Millisecond) // the close reaches the session's socket
		if got := whoAmI(t, c); got != want {
			t.Fatalf("WhoAmI after the server closed the idle connection: %q, want %q", got, want)
		}
		if uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")"); err != nil || len(uids) != 1 {
			t.Fatalf("search after WhoAmI: %v, %v", uids, err)
		}
	}
}

// TestClosedRightAfterAnAnswer: a connection that answered a moment ago is not looked at
// before the next request goes out on it (answeredRecently, made long here); when the
// server closed it in that moment, the request's read finds it closed, and a search or a
// bind is sent again on a fresh connection (bound again, for the search) and answered.
// An extended operation, which is never sent twice, still looks first, and is answered.
func TestClosedRightAfterAnAnswer(t *testing.T) {
	defer func(d time.Duration) { answeredRecently = d }(answeredRecently)
	answeredRecently = time.Hour
	srv := slapdtest.New(t, slapdtest.Options{})
	tf := newTCPFront(t, strings.TrimPrefix(srv.URL, "ldap://"))
	p := newTestPool(t, Config{URLs: tf.url})
	c := boundSession(t, p, srv, 1)
	want := "dn:" + srv.UserDN(1)
	for i := range 3 {
		if got := whoAmI(t, c); got != want {
			t.Fatalf("WhoAmI: %q, want %q", got, want)
		}
		tf.cut()
		time.Sleep(100 * time.Millisecond) // the close reaches the session's socket
		if uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")"); err != nil || len(uids) != 1 {
			t.Fatalf("round %d: search on a connection closed right after its answer: %v, %v", i, uids, err)
		}
		if got := whoAmI(t, c); got != want {
			t.Fatalf("round %d: WhoAmI after the search: %q, want %q (not bound again)", i, got, want)
		}
		tf.cut()
		time.Sleep(100 * time.Millisecond)
		if got := whoAmI(t, c); got != want {
			t.Fatalf("round %d: WhoAmI on a connection closed right after its answer: %q, want %q", i, got, want)
		}
		tf.cut()
		time.Sleep(100 * time.Millisecond)
		if err := c.Bind(t.Context(), srv.UserDN(1), []byte(slapdtest.UserPassword(1))); err != nil {
			t.Fatalf("round %d: bind on a connection closed right after its answer: %v", i, err)
		}
	}
}

// TestOneSessionManyRequests: requests sent concurrently on one session, some abandoned
// as they run (their context ends), each get their own answer: whichever request reads
// the connection hands the others theirs, and hands the reading on when it leaves.
func TestOneSessionManyRequests(t *testing.T) {
	const users = 40
	srv := slapdtest.New(t, slapdtest.Options{Users: users})
	p := newTestPool(t, Config{URLs: srv.URL})
	c := boundSession(t, p, srv, 1)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 40 {
				n := (w*40+i)%users + 1
				ctx, cancel := context.WithCancel(t.Context())
				abandon := i%4 == 3
				if abandon {
					time.AfterFunc(time.Duration(rand.IntN(2000))*time.Microsecond, cancel)
				}
				var uids []string
				req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
					"(uid="+slapdtest.UserName(n)+")", []string{"uid"}, nil)
				err := c.Search(ctx, req, func(r ldap.Response) error {
					if e := r.Entry(); e != nil {
						uids = append(uids, e.GetAttributeValue("uid"))
					}
					return nil
				})
				cancel()
				switch {
				case abandon && errors.Is(err, context.Canceled):
				case err != nil:
					t.Errorf("search %d: %v", n, err)
				case len(uids) != 1 || uids[0] != slapdtest.UserName(n):
					t.Errorf("search %d: got %v", n, uids)
				}
			}
		})
	}
	wg.Wait()
	if got, want := whoAmI(t, c), "dn:"+srv.UserDN(1); got != want {
		t.Errorf("WhoAmI after the searches: %q, want %q", got, want)
	}
}

// TestAbandonedRequestOnAHungServer: a request whose context ends while the server says
// nothing returns at once, early or late in its wait, rather than at the timeout.
func TestAbandonedRequestOnAHungServer(t *testing.T) {
	const timeout = 5 * time.Second
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, Timeout: timeout})
	c := boundSession(t, p, srv, 1)
	pause(t, srv)
	for _, after := range []time.Duration{2 * time.Millisecond, 100 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(t.Context(), after)
		start := time.Now()
		req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
			"(uid="+slapdtest.UserName(2)+")", []string{"uid"}, nil)
		err := c.Search(ctx, req, func(ldap.Response) error { return nil })
		cancel()
		if elapsed := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || elapsed > after+time.Second {
			t.Errorf("search abandoned after %v: %v after %v, want the context's error at once", after, err, elapsed)
		}
	}
}

// sessionConn returns the connection the session c uses now.
func sessionConn(c *Conn) *wireConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wc
}

// TestIdleCloseOverTLS: as TestIdleConnectionClosedByTheServer, with slapd itself closing
// the session's idle connection (its idletimeout), over ldap://, ldaps:// and StartTLS.
// Over TLS, slapd sends a close_notify before it closes, so the socket holds data rather
// than the end of the stream: the close must still be found before the request goes
// out, and an extended operation (never sent twice) gets its answer.
func TestIdleCloseOverTLS(t *testing.T) {
	for _, mode := range []string{"ldap", "ldaps", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			srv := slapdtest.New(t, slapdtest.Options{TLS: true, IdleTimeout: time.Second})
			url := srv.URL
			if mode == "ldaps" {
				url = srv.LDAPSURL
			}
			p := newTestPool(t, Config{URLs: url, CAFile: srv.PKI.CAFile, StartTLS: mode == "starttls"})
			c := boundSession(t, p, srv, 1)
			want := "dn:" + srv.UserDN(1)
			for i := range 2 {
				closed := sessionConn(c)
				time.Sleep(2500 * time.Millisecond) // slapd closes the connection after 1 to 1.5 s
				if got := whoAmI(t, c); got != want {
					t.Fatalf("WhoAmI %d after slapd closed the idle connection: %q, want %q", i, got, want)
				}
				if sessionConn(c) == closed {
					t.Fatalf("WhoAmI %d went out on the connection slapd closed", i)
				}
			}
		})
	}
}

// TestLateInterruptDoesNotStopTheNextRequest: the interruption of a request whose context
// ended (context.AfterFunc's) may run late, as the session's next request goes out. It
// must not keep that request from being sent: the request would wait out the timeout,
// and a healthy server be marked down. Here one interruption comes with each request, at
// a random moment around the time it goes out. The timeout is long so that a request
// that waits it out stands apart from one a loaded machine (or a loaded slapd) is slow to
// answer: each is to take less than half of it.
func TestLateInterruptDoesNotStopTheNextRequest(t *testing.T) {
	const timeout = 10 * time.Second
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL, Timeout: timeout})
	c := boundSession(t, p, srv, 1)
	wc := sessionConn(c)
	start := time.Now()
	for i := 0; i < 5000 && time.Since(start) < 5*time.Second; i++ {
		delay := time.Duration(rand.IntN(40)) * time.Microsecond
		fired := make(chan struct{})
		go func() {
			defer close(fired)
			for start := time.Now(); time.Since(start) < delay; {
			}
			wc.interrupt()
		}()
		sent := time.Now()
		uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
		if elapsed := time.Since(sent); err != nil || len(uids) != 1 || elapsed > timeout/2 {
			t.Fatalf("request %d (interrupted after %v) took %v: %v, %v", i, delay, elapsed, uids, err)
		}
		<-fired
	}
	if sessionConn(c) != wc {
		t.Error("the session changed connections")
	}
}

// TestPanicInOneHandlerDoesNotHangAnother: a request's response handler may run on
// another request's goroutine (whichever reads the connection). When it panics there,
// the reading request goes on and gets all its answers, the panicking one ends at once
// with the panic as its error, and the session goes on. The timeout is long: the
// panicking search's answer may come after many of the other's entries, which a loaded
// machine reads slowly, and a hung search shows as its timeout's error all the same.
func TestPanicInOneHandlerDoesNotHangAnother(t *testing.T) {
	const users = 3000
	const timeout = 10 * time.Second
	srv := slapdtest.New(t, slapdtest.Options{Users: users})
	p := newTestPool(t, Config{URLs: srv.URL, Timeout: timeout})
	c := boundSession(t, p, srv, 1)
	for try := range 10 {
		type result struct {
			uids []string
			err  error
		}
		all := make(chan result, 1)
		go func() {
			uids, err := searchUIDs(t, c, "(uid=*)")
			all <- result{uids, err}
		}()
		time.Sleep(2 * time.Millisecond) // the first search is reading its entries
		panicked := make(chan error, 1)
		go func() {
			req := ldap.NewSearchRequest(testBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
				"(uid="+slapdtest.UserName(2)+")", []string{"uid"}, nil)
			panicked <- c.Search(t.Context(), req, func(ldap.Response) error { panic("relay bug") })
		}()
		select {
		case err := <-panicked:
			var pe *panicError
			if !errors.As(err, &pe) || pe.value != "relay bug" {
				t.Fatalf("try %d: the panicking search returned %v, want its panic", try, err)
			}
			var log bytes.Buffer
			slog.New(slog.NewTextHandler(&log, nil)).Warn("request failed", "err", err)
			if !strings.Contains(log.String(), t.Name()) {
				t.Fatalf("try %d: the error's log holds no stack of the panic: %s", try, &log)
			}
		case <-time.After(2 * timeout):
			t.Fatalf("try %d: the panicking search did not return", try)
		}
		select {
		case r := <-all:
			if r.err != nil || len(r.uids) != users {
				t.Fatalf("try %d: the other search: %d entries, %v; want %d", try, len(r.uids), r.err, users)
			}
		case <-time.After(2 * timeout):
			t.Fatalf("try %d: the other search did not return", try)
		}
	}
	if got, want := whoAmI(t, c), "dn:"+srv.UserDN(1); got != want {
		t.Errorf("WhoAmI after the searches: %q, want %q", got, want)
	}
}
