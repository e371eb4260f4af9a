package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/rawsock"
)

// maxResponseSize bounds one response message from a server. Entries with photos or
// certificates run to a few hundred kilobytes; anything near this is a broken server.
const maxResponseSize = 64 << 20

// wireConn is an upstream connection spoken to at the message level: a request goes out
// as the bytes the client sent (with the connection's own message ID), and responses come
// back as raw messages that the frontend relays without decoding them. Requests are
// multiplexed by message ID.
//
// go-ldap's Conn would decode every entry into a tree of packets and maps (with
// descriptions), then the frontend would encode it again, with several goroutine
// hand-offs per request; relaying bytes keeps a forwarded search close to the
// upstream's own cost.
//
// Who reads: a request that finds nobody reading reads its own answers (and hands on
// whatever else arrives), so the usual request costs no hand-off between goroutines;
// when it has its answer while other requests still wait for theirs, a reader goroutine
// takes over until none is left. An idle connection has no reader: that the server
// closed it is found as the next request is about to go out (sendAndRead), by looking
// at the socket without waiting, before anything is sent, as a reader would have found
// it between the requests.
type wireConn struct {
	nc  net.Conn
	srv *server
	// sock is the socket under nc (also under TLS), looked at when the connection is
	// idle; nil: none that can be looked at, and a reader goroutine always reads instead.
	sock syscall.RawConn
	// under is the TCP connection under nc (also under TLS) when it bounds each write
	// that waits by itself (rawsock.SetWriteTimeout); nil: writes set a deadline.
	under net.Conn

	wmu sync.Mutex
	bw  *bufio.Writer

	mu       sync.Mutex
	pending  map[int64]*call
	nextID   int64
	err      error     // why the connection broke; set once
	reading  bool      // a request waiting for its answer, or the reader goroutine, reads
	released sync.Cond // on mu: reading ended

	// lastAnswer is when a request on the connection last got its whole answer (as
	// the caller read the clock then; monotonic, see monotonic).
	lastAnswer atomic.Int64

	// spare is a call that ended cleanly, for the next request to use (newCall): most
	// connections have one request at a time, which then costs no call, channel or
	// buffer of its own.
	spare atomic.Pointer[call]

	// Used only by whoever reads:
	br       *bufio.Reader
	large    []byte // a response longer than br's buffer, as far as it arrived
	tx       sendState
	sendStep func(fd uintptr) bool // w.step, made once
}

// call is one request in flight.
type call struct {
	r    responder
	done chan error // receives the outcome once
	out  []byte     // the request as sent, under the connection's message ID; none if secret

	mu        sync.Mutex // held while the responder runs: a cancelled call's is never mid-flight
	cancelled bool
	delivered bool         // the responder has been given at least one message
	last      atomic.Int64 // time of the last response, for a search's progress
}

// responder is where a call's responses go: to, and first, for a session's bind or
// search, the session, which notes what the final response tells it (Conn.final). Held
// by value in the call, it costs a request no allocation.
type responder struct {
	to   Relayer
	sess *Conn // nil: to alone
	kind Kind
	cred *sealedCredential // a bind's credential, kept on success
}

// newCall returns a call for to: the connection's spare one, or a new one.
func (w *wireConn) newCall(to responder) *call {
	c := w.spare.Swap(nil)
	if c == nil {
		c = &call{done: make(chan error, 1)}
	}
	c.r = to
	return c
}

// maxSpareOut bounds the request buffer a spare call keeps.
const maxSpareOut = 4 << 10

// recycle keeps c, which ended cleanly, as the connection's spare call. Only a call
// whose final response finish took from pending and whose outcome has been received:
// nobody else can hold it then (a cancelled call may still be in a reader's hands).
func (w *wireConn) recycle(c *call) {
	c.r = responder{}
	c.cancelled, c.delivered = false, false
	if cap(c.out) > maxSpareOut {
		c.out = nil
	}
	w.spare.Store(c)
}

// answeredRecently is how soon after its last answer a connection is trusted to be
// open without looking (wireConn.answeredWithin): servers close connections idle for
// seconds at least (an idle timeout), so only a server stopping in that very moment
// closes one sooner, and then the request's own read finds it, as it finds a server
// that stops while it answers, and the request is sent again on a fresh connection
// (Conn.Forward's retry). Requests that are never sent twice look every time.
// Clients that send requests one after another (an application's login: bind, search,
// bind) send the next within this, and save the look's system call. A variable for the
// tests.
var answeredRecently = 10 * time.Millisecond

// clockBase is the origin of monotonic.
var clockBase = time.Now()

// monotonic is t as nanoseconds on the monotonic clock, for an atomic field.
func monotonic(t time.Time) int64 { return int64(t.Sub(clockBase)) }

// answered records that a request on w got its whole answer by now.
func (w *wireConn) answered(now time.Time) { w.lastAnswer.Store(monotonic(now)) }

// answeredWithin reports whether a request on w got its whole answer within d before
// now.
func (w *wireConn) answeredWithin(now time.Time, d time.Duration) bool {
	last := w.lastAnswer.Load()
	return last != 0 && monotonic(now)-last < int64(d)
}

// netError marks a failure of the connection itself, as opposed to an answer.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// errTimeout is a request that got no answer within the upstream timeout.
var errTimeout = errors.New("no answer within the upstream timeout")

// aLongTimeAgo is a read deadline that interrupts a read at once.
var aLongTimeAgo = time.Unix(1, 0)

func newWireConn(nc net.Conn, srv *server) *wireConn {
	w := &wireConn{
		nc:      nc,
		srv:     srv,
		bw:      bufio.NewWriterSize(nc, 4096),
		br:      bufio.NewReaderSize(nc, 32<<10),
		pending: make(map[int64]*call),
	}
	w.released.L = &w.mu
	w.sock = socketOf(nc)
	w.under = timedConn(nc)
	w.sendStep = w.step
	if w.sock == nil {
		w.reading = true
		go w.reader()
	}
	return w
}

// readFrame reads the next response. A read interrupted by its deadline loses nothing:
// the next call goes on where it stopped. The message is valid until the next call.
func (w *wireConn) readFrame() ([]byte, error) {
	if w.large == nil {
		hlen, total, err := ldapwire.PeekLength(w.br, maxResponseSize)
		if err != nil {
			return nil, err
		}
		if total <= int64(w.br.Size()) {
			msg, err := w.br.Peek(int(total))
			if err != nil {
				return nil, ldapwire.NoEOF(err)
			}
			w.br.Discard(len(msg))
			return msg, nil
		}
		w.large = make([]byte, hlen, total)
		w.br.Read(w.large) // buffered: Peek has just seen it
	}
	for len(w.large) < cap(w.large) {
		n, err := w.br.Read(w.large[len(w.large):cap(w.large)])
		w.large = w.large[:len(w.large)+n]
		if err != nil && len(w.large) < cap(w.large) {
			return nil, ldapwire.NoEOF(err)
		}
	}
	msg := w.large
	w.large = nil
	return msg, nil
}

// buffered reports whether part of a response has been read and not handed on yet.
func (w *wireConn) buffered() bool { return w.br.Buffered() > 0 || w.large != nil }

// dispatch hands one response to the call it answers. An error breaks the connection.
func (w *wireConn) dispatch(msg []byte) error {
	id, err := ldapwire.MessageID(msg)
	if err != nil {
		return &netError{fmt.Errorf("malformed response: %w", err)}
	}
	if id == 0 { // an unsolicited notice: the server is about to close
		return &netError{errors.New("server sent a notice of disconnection")}
	}
	w.mu.Lock()
	c := w.pending[id]
	w.mu.Unlock()
	if c == nil {
		return nil // abandoned, or timed out
	}
	resp, err := ldapwire.ParseResponse(msg)
	if err != nil {
		return &netError{fmt.Errorf("malformed response: %w", err)}
	}
	resp.More = w.buffered()
	if !resp.Final { // after the final one, nothing waits for the next
		c.last.Store(time.Now().UnixNano())
	}
	fnErr := c.deliver(w, resp)
	switch {
	case fnErr != nil:
		w.finish(id, fnErr)
		w.abandon(id)
	case resp.Final:
		w.finish(id, nil)
	}
	return nil
}

// deliver gives resp, which arrived on w, to c's responder, unless c was cancelled. A
// panic in the responder is recovered here and ends c with a panicError: it may run on
// another request's goroutine (whichever reads the connection), which must go on, and c
// must not be left locked.
func (c *call) deliver(w *wireConn, resp ldapwire.Response) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		return nil
	}
	c.delivered = true
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	if c.r.sess != nil && resp.Final {
		// Before to relays the answer: the client's next request must find the
		// session as this answer left it.
		c.r.sess.final(w, c.r.kind, c.r.cred, resp)
	}
	return c.r.to.Relay(resp)
}

// panicError is a panic of a request's response handler.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic relaying a response: %v", e.value) }

// LogValue puts the panic's stack in the log; the error's text, which a client may be
// shown, leaves it out.
func (e *panicError) LogValue() slog.Value {
	return slog.GroupValue(slog.String("panic", e.Error()), slog.String("stack", string(e.stack)))
}

// reader reads for the requests in flight until none is left and nothing is half read
// (or, on a connection whose socket cannot be looked at, until it breaks).
func (w *wireConn) reader() {
	w.nc.SetReadDeadline(time.Time{})
	for {
		msg, err := w.readFrame()
		if err != nil && deadlineHit(err) {
			// A deadline a request that read before set to interrupt itself.
			w.nc.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			err = &netError{fmt.Errorf("read response: %w", err)}
		} else {
			err = w.dispatch(msg)
		}
		if err != nil {
			w.fail(err)
			w.stopReading()
			return
		}
		w.mu.Lock()
		if w.sock != nil && len(w.pending) == 0 && !w.buffered() {
			w.reading = false
			w.released.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// stopReading gives the read side up: to a reader goroutine when requests still wait for
// answers, else to nobody.
func (w *wireConn) stopReading() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && len(w.pending) > 0 {
		go w.reader()
		return
	}
	w.reading = false
	w.released.Broadcast()
}

// finish ends call id with err.
func (w *wireConn) finish(id int64, err error) {
	w.mu.Lock()
	c := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if c != nil {
		c.done <- err
	}
}

// fail breaks the connection: every call in flight and every later one gets err.
func (w *wireConn) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	calls := w.pending
	w.pending = map[int64]*call{}
	w.mu.Unlock()
	w.nc.Close()
	for _, c := range calls {
		c.done <- err
	}
}

// broken reports whether the connection can no longer be used.
func (w *wireConn) broken() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// roundTrip sends msg under a fresh message ID and waits for its final response, giving
// each response to the responder to; start is the time of the call, as the caller read
// it. A search (progressive) times out only when no response has come for timeout;
// other requests when the final answer takes longer than timeout.
// delivered reports whether to saw anything. A secret request (a bind, a password
// change: KindBind, KindExtended) bypasses the write buffer, which would keep a copy,
// and its copy under the connection's message ID is cleared once sent. check says to
// look at an idle connection before the request goes out on it: one that the server
// closed while it was idle then fails with errClosedIdle, the request unsent
// (unchecked, the request goes out, and its read finds the connection closed). d, when
// not nil, is detached when the wait turns out long (Conn.ForwardTo).
func (w *wireConn) roundTrip(ctx context.Context, msg []byte, to responder, start time.Time, timeout time.Duration, progressive, secret, check bool, d Detacher) (delivered bool, err error) {
	c := w.newCall(to)
	c.last.Store(start.UnixNano())
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	w.nextID = w.nextID%(1<<31-1) + 1
	id := w.nextID
	w.pending[id] = c
	lead := !w.reading && w.sock != nil
	w.reading = w.reading || lead
	w.mu.Unlock()

	// A secret request's copy is its own, cleared once sent: a spare call's buffer may be
	// another request's by then.
	buf := c.out[:0]
	if secret {
		buf = make([]byte, 0, len(msg)+8)
	}
	out, err := ldapwire.WithMessageID(buf, msg, id)
	if !secret {
		c.out = out
	}
	if err != nil {
		w.finish(id, nil)
		<-c.done
		if lead {
			w.stopReading()
		}
		return false, fmt.Errorf("request: %w", err)
	}
	if secret {
		defer clear(out)
	}
	if lead {
		if delivered, err, ok := w.sendAndRead(ctx, id, c, out, secret, check, start.Add(timeout), timeout, progressive, d); ok {
			if err == nil {
				w.recycle(c)
			}
			return delivered, err
		}
		// Something arrived while the connection was idle: a reader goroutine has it,
		// and the request goes as any other.
	}
	if d != nil {
		// Another goroutine reads the answers: this one only waits.
		d.Detach()
	}
	if err := w.send(out, timeout, secret); err != nil {
		w.fail(&netError{fmt.Errorf("send request: %w", err)})
		return false, <-c.done
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case err := <-c.done:
			delivered := c.wasDelivered()
			if err == nil {
				w.recycle(c)
			}
			return delivered, err
		case <-ctx.Done():
			w.cancel(id, c)
			return c.wasDelivered(), ctx.Err()
		case <-timer.C:
			if progressive {
				if idle := time.Since(time.Unix(0, c.last.Load())); idle < timeout {
					timer.Reset(timeout - idle)
					continue
				}
			}
			w.cancel(id, c)
			return c.wasDelivered(), &netError{errTimeout}
		}
	}
}

// errClosedIdle is a connection found closed by the server as a request was about to be
// sent on it: it was idle, nothing was sent.
var errClosedIdle = errors.New("closed by the server while idle")

// sendAndRead sends out for call c (id) on the idle connection, which nobody reads, and
// reads the connection itself until c has its final answer, handing whatever answers
// other calls to them, with roundTrip's timeouts; the end of ctx interrupts the wait. It
// gives the read side up when it returns. ok false: a response that had begun to arrive
// while the connection was idle was still arriving, which a reader goroutine now reads;
// out was not sent.
//
// The socket is looked at (without waiting) before out is written and waited on after,
// in one step of the network poller: a server that closed the connection while it was
// idle is found before anything is sent, as a reader goroutine would have found it, and
// the wait for the answer costs no read that finds nothing. Whatever arrived while the
// connection was idle (the rest of an abandoned search; over TLS, the close_notify of a
// server that closed it; a notice of disconnection) is read first (readIdle). d, when not
// nil, is detached once the wait has lasted watchAfter. Without check, the socket is
// not looked at before out is written (roundTrip).
func (w *wireConn) sendAndRead(ctx context.Context, id int64, c *call, out []byte, secret, check bool, deadline time.Time, timeout time.Duration, progressive bool, d Detacher) (delivered bool, err error, ok bool) {
	// The end of ctx interrupts the wait once it has lasted watchAfter: most answers
	// come sooner, and watching a context costs several allocations. Until then, the
	// wait ends at watchAfter to look.
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	now := deadline.Add(-timeout) // the request's start, read just before
	for {
		w.nc.SetReadDeadline(earliest(deadline, now.Add(watchAfter)))
		w.tx = sendState{out: out, secret: secret, check: check, timeout: timeout}
		err = w.sock.Read(w.sendStep)
		tx := w.tx
		w.tx = sendState{}
		if tx.waiting {
			var more bool
			if more, tx.idleErr = w.readIdle(earliest(deadline, time.Now().Add(idleReadWait))); more {
				go w.reader()
				return false, nil, false
			}
		}
		switch {
		case tx.idleErr != nil:
			w.fail(&netError{fmt.Errorf("%w: %w", errClosedIdle, tx.idleErr)})
			w.stopReading()
			return false, <-c.done, true
		case tx.writeErr != nil:
			w.fail(&netError{fmt.Errorf("send request: %w", tx.writeErr)})
			w.stopReading()
			return false, <-c.done, true
		case !tx.sent && (err == nil || deadlineHit(err)):
			// What had arrived is read, or an interruption meant for an earlier call
			// (its context's AfterFunc, still running as that call returned) came
			// before the socket was looked at: look again.
			if now = time.Now(); !now.Before(deadline) {
				w.finish(id, &netError{errTimeout})
				w.stopReading()
				return false, <-c.done, true
			}
			continue
		case err != nil && !deadlineHit(err):
			w.fail(&netError{fmt.Errorf("read response: %w", err)})
		}
		break
	}
	defer w.stopReading()
	for {
		select {
		case err := <-c.done:
			return c.wasDelivered(), err, true
		default:
		}
		msg, err := w.readFrame()
		switch {
		case err == nil:
			if err := w.dispatch(msg); err != nil {
				w.fail(err)
			}
			continue
		case !deadlineHit(err):
			w.fail(&netError{fmt.Errorf("read response: %w", err)})
			continue
		case ctx.Err() != nil:
			w.cancel(id, c)
			return c.wasDelivered(), ctx.Err(), true
		case stop == nil:
			stop = context.AfterFunc(ctx, w.interrupt)
			if d != nil {
				d.Detach()
			}
		}
		if progressive {
			deadline = time.Unix(0, c.last.Load()).Add(timeout)
		}
		if !time.Now().Before(deadline) {
			w.cancel(id, c)
			return c.wasDelivered(), &netError{errTimeout}, true
		}
		w.nc.SetReadDeadline(deadline) // a search still answering, or an interruption meant for an earlier call
	}
}

// watchAfter is how long sendAndRead waits before it watches its context.
const watchAfter = 20 * time.Millisecond

// idleReadWait bounds sendAndRead's read of what arrived while the connection was idle.
// What it reads has arrived already, unless it is only TLS's own (a session ticket).
const idleReadWait = 2 * time.Millisecond

// readIdle reads what arrived while the connection was idle, before a request goes out
// on it, handing on the responses (the rest of an abandoned search), until nothing is
// left half read or until: then more says whether a response is still arriving. An
// error is a connection the server closed (over TLS, close_notify comes before the
// end of the stream; a notice of disconnection) or broke.
func (w *wireConn) readIdle(until time.Time) (more bool, err error) {
	w.nc.SetReadDeadline(until)
	for {
		msg, err := w.readFrame()
		switch {
		case deadlineHit(err):
			return w.buffered(), nil
		case err != nil:
			return false, err
		}
		if err := w.dispatch(msg); err != nil {
			return false, err
		}
		if !w.buffered() {
			return false, nil
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// sendState is what sendStep works on, set by sendAndRead.
type sendState struct {
	out      []byte
	secret   bool
	check    bool // look at the socket before writing
	timeout  time.Duration
	sent     bool
	waiting  bool  // something arrived while the connection was idle
	idleErr  error // the server closed the connection while it was idle
	writeErr error
}

// sendStep is the network poller's step of sendAndRead: called first, it looks at the
// socket fd (unless told not to check) and, finding it empty and open, writes the
// request and asks to wait until the socket can be read; called again, the answer is
// there.
func (w *wireConn) step(fd uintptr) bool {
	tx := &w.tx
	if tx.sent {
		return true
	}
	if tx.check {
		waiting, err := peekSocket(fd)
		switch {
		case err != nil:
			tx.idleErr = err
			return true
		case waiting:
			tx.waiting = true
			return true
		}
	}
	tx.sent = true
	tx.writeErr = w.send(tx.out, tx.timeout, tx.secret)
	return tx.writeErr != nil
}

// interrupt makes the read under way return.
func (w *wireConn) interrupt() { w.nc.SetReadDeadline(aLongTimeAgo) }

// deadlineHit reports whether a read ended at its deadline.
func deadlineHit(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func (c *call) wasDelivered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered
}

// cancel stops a call the caller no longer waits for: later responses are dropped (and
// the responder is never running once cancel returns), and the server is asked to
// abandon it.
func (w *wireConn) cancel(id int64, c *call) {
	c.mu.Lock()
	c.cancelled = true
	c.mu.Unlock()
	w.mu.Lock()
	_, inFlight := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if inFlight {
		w.abandon(id)
	}
}

// abandon asks the server to stop working on request id (RFC 4511 §4.11). It is best
// effort: no response comes for it.
func (w *wireConn) abandon(id int64) {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return
	}
	w.nextID = w.nextID%(1<<31-1) + 1
	own := w.nextID
	w.mu.Unlock()
	if err := w.write(ldapwire.AbandonRequest(own, id), time.Second); err != nil {
		w.fail(&netError{fmt.Errorf("send abandon: %w", err)})
	}
}

// send writes a request: a secret one past the write buffer (writeDirect).
func (w *wireConn) send(b []byte, timeout time.Duration, secret bool) error {
	if secret {
		return w.writeDirect(b, timeout)
	}
	return w.write(b, timeout)
}

func (w *wireConn) write(b []byte, timeout time.Duration) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.writeTimeout(timeout)
	if _, err := w.bw.Write(b); err != nil {
		return err
	}
	return w.bw.Flush()
}

// writeDirect writes b to the connection itself, after whatever is buffered.
func (w *wireConn) writeDirect(b []byte, timeout time.Duration) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.writeTimeout(timeout)
	if err := w.bw.Flush(); err != nil {
		return err
	}
	_, err := w.nc.Write(b)
	return err
}

// writeTimeout bounds the writes that follow, until the next call, by timeout: each
// write that waits, where the socket does that itself (under), else all of them from
// now; wmu is held.
func (w *wireConn) writeTimeout(timeout time.Duration) {
	if w.under != nil {
		rawsock.SetWriteTimeout(w.under, timeout)
		return
	}
	w.nc.SetWriteDeadline(time.Now().Add(timeout))
}

// timedConn returns the connection under nc (also under TLS) if it bounds each write
// that waits by itself (rawsock.SetWriteTimeout), else nil.
func timedConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if !rawsock.SetWriteTimeout(nc, 0) {
		return nil
	}
	return nc
}

// close ends the connection politely (unbind, RFC 4511 §4.3), without waiting.
func (w *wireConn) close() {
	w.mu.Lock()
	healthy := w.err == nil
	w.nextID = w.nextID%(1<<31-1) + 1
	id := w.nextID
	w.mu.Unlock()
	if healthy {
		w.write(ldapwire.UnbindRequest(id), time.Second)
	}
	w.fail(&netError{net.ErrClosed})
	w.mu.Lock()
	for w.reading {
		w.released.Wait()
	}
	w.mu.Unlock()
}

// startTLS performs the StartTLS extended operation on a fresh connection and returns
// the TLS connection on top of it.
func startTLS(ctx context.Context, nc net.Conn, conf *tls.Config) (net.Conn, error) {
	if _, err := nc.Write(ldapwire.StartTLSRequest()); err != nil {
		return nil, err
	}
	// The server says nothing more until the client's TLS hello, so a small reader
	// cannot swallow the start of the handshake.
	br := bufio.NewReaderSize(nc, 16)
	msg, err := ldapwire.ReadFrame(br, 1<<16, nil)
	if err != nil {
		return nil, fmt.Errorf("read StartTLS response: %w", err)
	}
	if br.Buffered() > 0 {
		return nil, errors.New("server sent data after the StartTLS response")
	}
	if resp, err := ldapwire.ParseResponse(msg); err != nil || resp.Code != 0 {
		if err == nil {
			err = fmt.Errorf("server refused StartTLS with result code %d", resp.Code)
		}
		return nil, err
	}
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}
