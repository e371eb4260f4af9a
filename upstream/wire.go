package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// maxResponseSize bounds one response message from a server. Entries with photos or
// certificates run to a few hundred kilobytes; anything near this is a broken server.
const maxResponseSize = 64 << 20

// wireConn is an upstream connection spoken to at the message level: a request goes out
// as the bytes the client sent (with the connection's own message ID), and responses come
// back as raw messages that the frontend relays without decoding them. Requests are
// multiplexed by message ID; one goroutine reads and dispatches the responses.
//
// go-ldap's Conn would decode every entry into a tree of packets and maps (with
// descriptions), then the frontend would encode it again, with several goroutine
// hand-offs per request; relaying bytes keeps a forwarded search close to the
// upstream's own cost.
type wireConn struct {
	nc  net.Conn
	srv *server

	wmu sync.Mutex
	bw  *bufio.Writer

	mu      sync.Mutex
	pending map[int64]*call
	nextID  int64
	err     error // why the connection broke; set once

	done chan struct{} // closed when the reader exits
}

// call is one request in flight.
type call struct {
	fn   func(ldapwire.Response) error
	done chan error // receives the outcome once

	mu        sync.Mutex // held while fn runs, so a cancelled call's fn is never mid-flight
	cancelled bool
	delivered bool         // fn has been given at least one message
	last      atomic.Int64 // time of the last response, for a search's progress
}

// netError marks a failure of the connection itself, as opposed to an answer.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// errTimeout is a request that got no answer within the upstream timeout.
var errTimeout = errors.New("no answer within the upstream timeout")

func newWireConn(nc net.Conn, srv *server) *wireConn {
	w := &wireConn{
		nc:      nc,
		srv:     srv,
		bw:      bufio.NewWriterSize(nc, 4096),
		pending: make(map[int64]*call),
		done:    make(chan struct{}),
	}
	go w.reader()
	return w
}

// reader dispatches responses to their calls until the connection breaks.
func (w *wireConn) reader() {
	defer close(w.done)
	br := bufio.NewReaderSize(w.nc, 32<<10)
	var buf []byte
	for {
		msg, err := ldapwire.ReadFrame(br, maxResponseSize, buf)
		if err != nil {
			w.fail(&netError{fmt.Errorf("read response: %w", err)})
			return
		}
		buf = msg[:0]
		id, err := ldapwire.MessageID(msg)
		if err != nil {
			w.fail(&netError{fmt.Errorf("malformed response: %w", err)})
			return
		}
		if id == 0 { // an unsolicited notice: the server is about to close
			w.fail(&netError{errors.New("server sent a notice of disconnection")})
			return
		}
		w.mu.Lock()
		c := w.pending[id]
		w.mu.Unlock()
		if c == nil {
			continue // abandoned, or timed out
		}
		resp, err := ldapwire.ParseResponse(msg)
		if err != nil {
			w.fail(&netError{fmt.Errorf("malformed response: %w", err)})
			return
		}
		resp.More = br.Buffered() > 0
		c.last.Store(time.Now().UnixNano())
		c.mu.Lock()
		var fnErr error
		if !c.cancelled {
			fnErr = c.fn(resp)
			c.delivered = true
		}
		c.mu.Unlock()
		switch {
		case fnErr != nil:
			w.finish(id, fnErr)
			w.abandon(id)
		case resp.Final:
			w.finish(id, nil)
		}
	}
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
// each response to fn on the reader goroutine. A search (progressive) times out only
// when no response has come for timeout; other requests when the final answer takes
// longer than timeout. delivered reports whether fn saw anything. A secret request (a
// bind, with its password) bypasses the write buffer, which would keep a copy, and its
// copy under the connection's message ID is cleared once sent.
func (w *wireConn) roundTrip(ctx context.Context, msg []byte, fn func(ldapwire.Response) error, timeout time.Duration, progressive, secret bool) (delivered bool, err error) {
	c := &call{fn: fn, done: make(chan error, 1)}
	c.last.Store(time.Now().UnixNano())
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	w.nextID = w.nextID%(1<<31-1) + 1
	id := w.nextID
	w.pending[id] = c
	w.mu.Unlock()

	out, err := ldapwire.WithMessageID(make([]byte, 0, len(msg)+8), msg, id)
	if err != nil {
		w.finish(id, nil)
		<-c.done
		return false, fmt.Errorf("request: %w", err)
	}
	write := w.write
	if secret {
		write = w.writeDirect
	}
	err = write(out, timeout)
	if secret {
		clear(out)
	}
	if err != nil {
		w.fail(&netError{fmt.Errorf("send request: %w", err)})
		return false, <-c.done
	}

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case err := <-c.done:
			return c.wasDelivered(), err
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

func (c *call) wasDelivered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered
}

// cancel stops a call the caller no longer waits for: later responses are dropped (and
// fn is never running once cancel returns), and the server is asked to abandon it.
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

func (w *wireConn) write(b []byte, timeout time.Duration) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := w.bw.Write(b); err != nil {
		return err
	}
	return w.bw.Flush()
}

// writeDirect writes b to the connection itself, after whatever is buffered.
func (w *wireConn) writeDirect(b []byte, timeout time.Duration) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.nc.SetWriteDeadline(time.Now().Add(timeout))
	if err := w.bw.Flush(); err != nil {
		return err
	}
	_, err := w.nc.Write(b)
	return err
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
	<-w.done
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
