package ldapserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/rawsock"
)

// tlsHandshakeTimeout bounds a TLS handshake (LDAPS or StartTLS) so that a client that
// opens a connection and says nothing cannot hold it.
const tlsHandshakeTimeout = 10 * time.Second

// ErrAbandoned is returned by ResponseWriter methods once the client abandoned the
// operation or the connection went away: the handler should stop.
var ErrAbandoned = errors.New("ldap: operation abandoned or connection closed")

// errIdle ends a connection that stayed silent past the idle timeout.
var errIdle = errors.New("idle timeout")

// conn is one client connection. The read loop (serve) decodes requests and starts one
// goroutine per operation. Whoever has a response writes it, under the write lock, into
// the connection's buffer, and flushes it only when no other response is waiting for the
// lock (and none is known to follow at once): a busy connection costs few syscalls, and a
// response costs no hand-off to another goroutine.
type conn struct {
	srv         *Server
	raw         net.Conn // the accepted connection; deadlines and Close go here, also under TLS
	sock        net.Conn // raw's reads and writes (rawsock.Wrap), under TLS too
	rd          *bufio.Reader
	src         readSource // what rd reads from: sock, or the TLS connection over it
	sess        *Session
	log         *slog.Logger
	implicitTLS bool       // LDAPS: a TLS handshake starts the connection
	counted     netip.Addr // the address counted against the per-address cap; under srv.mu
	// rdl is the read deadline the read loop last set on raw (zero: none). Only the read
	// loop uses it; Shutdown's own deadline is known by stopped.
	rdl time.Time
	// timedWrites says that sock bounds each write that waits by the write timeout
	// itself (rawsock.SetWriteTimeout), so a response sets no write deadline.
	timedWrites bool

	ctx    context.Context // cancelled when the connection is torn down
	cancel context.CancelFunc

	closeOnce sync.Once
	stopped   atomic.Bool // Shutdown asked the read loop to stop

	wmu     sync.Mutex
	bw      *bufio.Writer // the responses not yet flushed, made at the first; under wmu
	wdst    io.Writer     // where bw writes: raw, or the TLS connection over it; under wmu
	wdead   bool          // writing failed: the connection is being torn down; under wmu
	wlast   int           // the size of the last message sent; under wmu
	waiting atomic.Int32  // senders waiting for wmu

	mu    sync.Mutex
	ops   map[int64]*opContext
	opsWG sync.WaitGroup
	// answered counts the operations in ops whose final response has been written: for
	// the client they are over, though their handlers may not have returned yet.
	answered atomic.Int32

	// spare hands an operation to a goroutine that finished the connection's previous
	// one and waits for the next (work): most clients have one operation in flight at a
	// time, and a goroutine that has run one has the stack the next needs, where a new
	// one would grow its stack again by copying. spares counts the waiting goroutines.
	spare  chan *Request
	spares atomic.Int32
}

// maxSpares is how many goroutines, at most, wait for a connection's next operation.
const maxSpares = 2

func newConn(s *Server, rw net.Conn, implicitTLS bool) *conn {
	id := s.nextID.Add(1)
	sess := &Session{ID: id, RemoteAddr: rw.RemoteAddr()}
	ctx, cancel := context.WithCancel(context.Background())
	sock := rawsock.Wrap(rw)
	c := &conn{
		srv:         s,
		raw:         rw,
		sock:        sock,
		sess:        sess,
		log:         s.logger().With("conn", id, "remote", rw.RemoteAddr().String()),
		implicitTLS: implicitTLS,
		ctx:         ctx,
		cancel:      cancel,
		wdst:        sock,
		ops:         make(map[int64]*opContext),
		spare:       make(chan *Request),
		timedWrites: rawsock.SetWriteTimeout(sock, s.writeTimeout()),
	}
	c.src.r = sock
	c.rd = bufio.NewReaderSize(&c.src, readBufferSize)
	return c
}

// readBufferSize is the size of a connection's read buffer.
const readBufferSize = 4096

// readSource is what a connection's bufio.Reader reads from (the socket, or the TLS
// connection over it). It notes the reader's buffer, which the reader's reads from it
// fill (the first from the buffer's start: the connection's first Peek), and where the
// last of them ended there, so that wipe can clear the bytes the reader has handed on:
// those of a simple bind, password included, do not stay in the buffer until the next
// requests overwrite them.
type readSource struct {
	r   io.Reader
	buf []byte // the reader's buffer, once known
	end int    // where in buf the last read into it ended
}

func (s *readSource) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	full := p[:cap(p)]
	switch {
	case s.buf == nil && len(full) == readBufferSize:
		s.buf, s.end = full, n
	case s.buf != nil && len(full) > 0 && len(full) <= len(s.buf) && &full[len(full)-1] == &s.buf[len(s.buf)-1]:
		s.end = len(s.buf) - len(full) + n // a read into the buffer after its first bytes
	}
	return n, err
}

// wipe clears the reader's buffer but for the last buffered bytes, which the reader has
// not handed on yet (a request sent after the bind).
func (s *readSource) wipe(buffered int) {
	if r := s.end - buffered; s.buf != nil && r >= 0 && s.end <= len(s.buf) {
		clear(s.buf[:r])
		clear(s.buf[s.end:])
	}
}

// serve runs the read loop until the client leaves, misbehaves or the server shuts down.
func (c *conn) serve() {
	if !c.start() {
		c.finish()
		return
	}
	c.log.Debug("connection opened")
	c.readLoop()
}

// readLoop reads and dispatches requests until the connection ends, and then finishes
// it; or until the handler of a request answered inline detaches it
// (responseWriter.Detach), which starts another readLoop to read on.
func (c *conn) readLoop() {
	for {
		// Each message gets its own buffer: a forwarded request is relayed from it
		// while the next one is read.
		msg, held, err := c.readMessage()
		if err != nil {
			c.readFailed(err)
			c.finish()
			return
		}
		var detached bool
		if !c.dispatch(msg, held, &detached) {
			c.finish()
			return
		}
		if detached {
			// Another goroutine reads now; this one has answered its request.
			return
		}
	}
}

// start does what comes before the first request: the PROXY protocol header from a
// trusted balancer, the per-address cap, the handler's per-connection context and, on
// LDAPS, the TLS handshake. It reports whether the connection goes on.
func (c *conn) start() bool {
	peer := c.raw.RemoteAddr()
	if len(c.srv.ProxyProtocolFrom) > 0 && inPrefixes(AddrIP(peer), c.srv.ProxyProtocolFrom) {
		c.raw.SetReadDeadline(time.Now().Add(tlsHandshakeTimeout))
		src, err := readProxyHeader(c.raw) // exactly the header: TLS or LDAP follows
		if err != nil {
			c.log.Warn("connection closed: bad PROXY protocol header from a trusted balancer", "err", err)
			return false
		}
		c.raw.SetReadDeadline(time.Time{})
		if src != nil {
			c.sess.RemoteAddr, c.sess.ProxyAddr = src, peer
			c.log = c.srv.logger().With(c.sess.LogArgs()...)
		}
	}
	if !c.srv.admitAddr(c, AddrIP(c.sess.RemoteAddr)) {
		c.log.Warn("connection refused: too many connections from this address", "max", c.srv.MaxConnectionsPerAddress)
		if !c.implicitTLS {
			c.notice(ldap.LDAPResultUnavailable, "too many connections from your address")
		}
		return false
	}
	if c.srv.ConnContext != nil {
		// Derived from the connection's own context, so that tearing it down cancels it.
		c.ctx = c.srv.ConnContext(c.ctx, c.sess)
	}

	tc, ok := c.raw.(*tls.Conn) // a listener that does TLS itself
	if c.implicitTLS {
		tc, ok = tls.Server(c.sock, c.srv.TLSConfig), true
	}
	if ok {
		c.raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.HandshakeContext(c.ctx); err != nil {
			c.log.Info("TLS handshake failed", "err", err)
			return false
		}
		c.raw.SetDeadline(time.Time{})
		c.sess.setTLS(tc.ConnectionState())
		c.src.r = tc
		c.rd.Reset(&c.src)
		c.wmu.Lock()
		c.wdst = tc
		c.wmu.Unlock()
	}
	return true
}

// readMessage waits for the next message. Waiting is bounded by the idle timeout, which
// only ends the connection when nothing is in flight: a client reading a long search
// result is not idle.
//
// The idle deadline is moved only once an eighth of the timeout has passed since it was
// set, not for every message (setting one reads the clock twice and moves a runtime
// timer): a deadline that comes before the connection has been idle for the whole
// timeout finds it not idle yet, and is moved to the moment it will be.
func (c *conn) readMessage() (msg []byte, held int64, err error) {
	idle := c.srv.IdleTimeout
	var waitFrom time.Time
	if idle > 0 {
		waitFrom = time.Now()
	}
	for {
		if c.stopped.Load() {
			return nil, 0, ErrServerClosed
		}
		switch until := waitFrom.Add(idle); {
		case idle <= 0 && !c.rdl.IsZero():
			c.setReadDeadline(time.Time{})
		case idle > 0 && (c.rdl.After(until) || c.rdl.Before(until.Add(-idle/8))):
			c.setReadDeadline(until)
		}
		if c.stopped.Load() { // Shutdown may have set its deadline just before ours
			return nil, 0, ErrServerClosed
		}
		_, err := c.rd.Peek(1)
		if err == nil {
			break
		}
		switch {
		case c.stopped.Load():
			return nil, 0, ErrServerClosed
		case !isTimeout(err):
			return nil, 0, err
		case c.inFlight() > 0:
			waitFrom = time.Now()
			continue
		case time.Since(waitFrom) < idle: // set before this wait began
			// The deadline kept has passed: the rest of the timeout is waited out, not
			// read again and again at a deadline already past.
			c.setReadDeadline(waitFrom.Add(idle))
			continue
		default:
			return nil, 0, errIdle
		}
	}
	if c.buffered() {
		// All of the message is here: reading it waits for nothing.
		return c.readFrame()
	}
	// A message has started: all of it must arrive within the idle timeout (or the write
	// timeout when there is none), so a client trickling bytes cannot hold a connection.
	limit := idle
	if limit <= 0 {
		limit = c.srv.writeTimeout()
	}
	c.setReadDeadline(time.Now().Add(limit))
	return c.readFrame()
}

// setReadDeadline sets raw's read deadline from the read loop.
func (c *conn) setReadDeadline(t time.Time) {
	c.raw.SetReadDeadline(t)
	c.rdl = t
}

// buffered reports whether the whole of the next message has been read into c.rd.
func (c *conn) buffered() bool {
	b, _ := c.rd.Peek(c.rd.Buffered())
	_, _, end, err := ldapwire.Header(b, 0)
	return err == nil && end <= len(b)
}

// smallFrame is the size up to which a request's buffer is made at once, from its
// declared length, and not counted against Server.MaxPartialBytes.
const smallFrame = 16 << 10

// errBusy ends a connection whose large request finds the partial-request budget spent.
var errBusy = errors.New("too many large requests arriving at once")

// readFrame reads one request. The limit on its size is the server's before the client
// has bound, a smaller one; a large request's buffer grows with the data received, not
// with the length it declares, and counts against the server's partial-request budget
// until it is complete and decoded: held is what it holds there, for the caller to give
// back once the request is decoded.
func (c *conn) readFrame() (msg []byte, held int64, err error) {
	limit := c.srv.maxMessageSize()
	if !c.sess.Authenticated() {
		limit = c.srv.maxMessageSizeAnonymous()
	}
	header, hlen, total, err := ldapwire.ReadHeader(c.rd, limit)
	if err != nil {
		return nil, 0, err
	}
	if total <= smallFrame {
		buf := make([]byte, total)
		copy(buf, header[:hlen])
		if _, err := io.ReadFull(c.rd, buf[hlen:]); err != nil {
			return nil, 0, ldapwire.NoEOF(err)
		}
		return buf, 0, nil
	}
	defer func() {
		if err != nil {
			c.srv.partialDone(held)
			held = 0
		}
	}()
	buf := header[:hlen:hlen]
	for int64(len(buf)) < total {
		if len(buf) == cap(buf) {
			size := min(total, max(2*int64(cap(buf)), smallFrame))
			if !c.srv.takePartial(size - held) {
				return nil, held, errBusy
			}
			held = size
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		n, err := c.rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && int64(len(buf)) < total {
			return nil, held, ldapwire.NoEOF(err)
		}
	}
	return buf, held, nil
}

// readFailed logs why the read loop ends and, when the client is owed an explanation,
// sends a notice of disconnection.
func (c *conn) readFailed(err error) {
	var tooLarge errTooLarge
	switch {
	case errors.Is(err, ErrServerClosed):
		c.log.Debug("connection closing for shutdown")
	case errors.Is(err, errIdle):
		c.log.Info("connection closed: idle timeout", "idle_timeout", c.srv.IdleTimeout)
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		c.log.Debug("connection closed by client")
	case errors.As(err, &tooLarge):
		c.log.Warn("connection closed: message too large", "size", tooLarge.Size, "limit", tooLarge.Limit, "bound", c.sess.Authenticated())
		c.notice(ldap.LDAPResultProtocolError, err.Error())
	case errors.Is(err, errBusy):
		c.log.Warn("connection closed: the server holds too many large requests arriving at once", "max_partial_bytes", c.srv.maxPartialBytes())
		c.notice(ldap.LDAPResultBusy, "server busy: too many large requests arriving at once; try again")
	case isTimeout(err):
		c.log.Info("connection closed: message not completed in time")
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.log.Info("connection closed: truncated message")
	case errors.Is(err, errNotSequence), errors.Is(err, errIndefinite), errors.Is(err, errLengthTooLong):
		c.log.Warn("connection closed: malformed message", "err", err)
		c.notice(ldap.LDAPResultProtocolError, "malformed message: "+err.Error())
	default:
		c.log.Info("connection closed: read error", "err", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dispatch decodes one message and starts its operation. It reports whether the read
// loop should go on, and sets detached when it goes on in another goroutine
// (responseWriter.Detach).
func (c *conn) dispatch(msg []byte, held int64, detached *bool) bool {
	req, err := c.decode(msg)
	// Decoded: the packets, not the bytes, are what it holds now, also while a bind
	// waits for the operations before it and for the upstream.
	c.srv.partialDone(held)
	if errors.Is(err, ErrServerClosed) { // torn down while waiting to decode
		return false
	}
	if err != nil {
		return c.rejectMessage(msg, req, err)
	}
	req.Session = c.sess
	req.raw = msg

	switch req.Op {
	case OpUnbind:
		c.log.Debug("unbind")
		c.abortOps()
		return false
	case OpAbandon:
		c.mu.Lock()
		op := c.ops[req.AbandonID]
		c.mu.Unlock()
		if op != nil {
			op.abandon()
			c.log.Debug("operation abandoned", "msgid", req.AbandonID)
		}
		return true
	case OpBind:
		// RFC 4511 §4.2.1: uncompleted operations must complete before a bind is processed,
		// and the bind runs alone, so it is handled here rather than on its own goroutine.
		// Nothing is read while it runs, so no abandon (which may not name a bind anyway)
		// and no reused message ID can meet it, and none of the connection's bookkeeping
		// looks at it: it is not registered, and its context is the connection's, which
		// the connection's end cancels.
		c.opsWG.Wait()
		c.run(req.withCtx(c.ctx), false)
		// Handled: the bind's bytes, its password among them, are cleared where the
		// connection read them, in the message and in the reader's buffer, rather than
		// left in memory until overwritten.
		clear(req.Bind.Password)
		clear(msg)
		c.src.wipe(c.rd.Buffered())
		return true
	case OpExtended:
		if req.Extended.Name == OIDStartTLS {
			return c.startTLS(req)
		}
	}
	switch c.register(req) {
	case registerBusy:
		c.log.Warn("request refused: too many operations in flight", "max", c.srv.maxOps())
		c.sendResult(req.MessageID, req.Op, &Result{Code: ldap.LDAPResultBusy,
			Diagnostic: fmt.Sprintf("too many operations in flight on this connection (limit %d)", c.srv.maxOps())})
		return true
	case registerReused:
		return false
	}
	if c.srv.Inline != nil && c.srv.Inline(req) {
		req.inline = true
		c.run(req, true)
		// Detached, the read loop goes on in the goroutine Detach started.
		*detached = req.w.detached
		return true
	}
	select {
	case c.spare <- req:
	default:
		go c.work(req)
	}
	return true
}

// work runs req, then the connection's next operations handed to it while it waits
// (spare), until the connection closes or enough others wait already.
func (c *conn) work(req *Request) {
	done := c.ctx.Done()
	for {
		c.run(req, true)
		if c.spares.Add(1) > maxSpares {
			c.spares.Add(-1)
			return
		}
		select {
		case req = <-c.spare:
			c.spares.Add(-1)
		case <-done:
			c.spares.Add(-1)
			return
		}
	}
}

// decode checks the structure and nesting of msg, then decodes it. A panic in a decoder
// is turned into an error: hostile bytes must never take the process down.
func (c *conn) decode(msg []byte) (req *Request, err error) {
	if err := scanBER(msg, c.srv.maxFilterDepth()+4); err != nil {
		return nil, err
	}
	if len(msg) > smallFrame {
		if !c.srv.acquireDecode(c.ctx) {
			return nil, ErrServerClosed
		}
		defer c.srv.releaseDecode()
	}
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("panic while decoding a request", "panic", p, "stack", string(debug.Stack()))
			req, err = nil, malformed("undecodable message")
		}
	}()
	return decodeRequest(msg, c.srv.maxFilterDepth())
}

// rejectMessage answers a message that could not be decoded. When its message ID and
// operation can still be read, the client gets a result under that ID and the connection
// goes on; otherwise it gets a notice of disconnection and the connection closes.
func (c *conn) rejectMessage(msg []byte, req *Request, err error) bool {
	id, op := int64(0), Op(0)
	if req != nil {
		id, op = req.MessageID, req.Op
	} else if pid, tag, perr := peekHeader(msg); perr == nil {
		id, op = pid, opByTag[tag&0x1f]
		if tag&0xc0 != 0x40 { // not an application-class element
			op = 0
		}
	}
	var deep errTooDeep
	code, diag := uint16(ldap.LDAPResultProtocolError), err.Error()
	switch {
	case errors.As(err, &deep):
		code = ldap.LDAPResultAdminLimitExceeded
		diag = fmt.Sprintf("filter nested deeper than %d levels (listen.max_filter_depth)", c.srv.maxFilterDepth())
	}
	if id <= 0 || op == 0 || op == OpUnbind || op == OpAbandon {
		c.log.Warn("connection closed: malformed message", "err", err)
		c.notice(ldap.LDAPResultProtocolError, diag)
		return false
	}
	c.log.Warn("request rejected", "msgid", id, "op", op.String(), "code", code, "err", err)
	c.sendResult(id, op, &Result{Code: code, Diagnostic: diag})
	return true
}

// What register did with an operation.
const (
	registered     = iota
	registerBusy   // too many in flight: the caller answers busy
	registerReused // its message ID is in flight: the connection closes
)

// register records an operation in flight so that abandon and shutdown can find it, and
// gives it its context; unless the connection has the most operations in flight it may
// have. A message ID already in flight is a client bug that no answer can untangle
// (both responses would carry the same ID): the connection is closed with a notice.
func (c *conn) register(req *Request) int {
	id := req.MessageID
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ops) >= c.srv.maxOps() {
		return registerBusy
	}
	if _, dup := c.ops[id]; dup {
		c.log.Warn("connection closed: message ID reused while in flight", "msgid", id)
		c.notice(ldap.LDAPResultProtocolError, fmt.Sprintf("message ID %d is already in use", id))
		return registerReused
	}
	if req.op == nil {
		req.op = newOpContext(c.ctx)
	} else {
		req.op.parent = c.ctx
	}
	req.ctx = req.op
	c.ops[id] = req.op
	c.opsWG.Add(1)
	return registered
}

func (c *conn) unregister(req *Request) {
	c.mu.Lock()
	delete(c.ops, req.MessageID)
	c.mu.Unlock()
	req.op.end()
	c.opsWG.Done()
}

func (c *conn) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ops)
}

// abortOps cancels every operation in flight (unbind, client gone).
func (c *conn) abortOps() {
	c.mu.Lock()
	for _, op := range c.ops {
		op.abandon()
	}
	c.mu.Unlock()
}

// run calls the handler for one operation, registered (every operation but a bind) or
// not. A panic is contained here: the operation is answered with `other`, the panic is
// logged with its stack, and the server goes on.
func (c *conn) run(req *Request, registered bool) {
	w := &req.w
	*w = responseWriter{c: c, req: req, inline: req.inline}
	defer func() {
		if registered {
			c.unregister(req)
		}
		if w.answered {
			c.answered.Add(-1)
		}
	}()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("panic while handling a request", "panic", p, "request", req, "stack", string(debug.Stack()))
			if !w.done {
				w.WriteResult(&Result{Code: ldap.LDAPResultOther, Diagnostic: "internal error"})
			}
			return
		}
		if !w.done && req.Context().Err() == nil {
			c.log.Error("handler returned without a result", "request", req)
			w.WriteResult(&Result{Code: ldap.LDAPResultOther, Diagnostic: "internal error: no result"})
		}
	}()
	c.srv.Handler.ServeLDAP(w, req)
}

// startTLS performs the StartTLS extended operation (RFC 4511 §4.14). It runs on the
// read loop: no other operation may be in flight, and nothing may be read until the
// handshake is done.
func (c *conn) startTLS(req *Request) bool {
	fail := func(code uint16, diag string) bool {
		c.sendResult(req.MessageID, OpExtended, &Result{Code: code, Diagnostic: diag, ResponseName: OIDStartTLS})
		return true
	}
	switch {
	case c.srv.TLSConfig == nil:
		return fail(ldap.LDAPResultProtocolError, "StartTLS is not configured on this server")
	case c.sess.TLS() != nil:
		return fail(ldap.LDAPResultOperationsError, "TLS is already established")
	case c.inFlight() > int(c.answered.Load()):
		return fail(ldap.LDAPResultOperationsError, "operations are still in flight")
	case c.rd.Buffered() > 0:
		c.log.Warn("connection closed: data sent after StartTLS before the handshake")
		return false
	}
	c.sendResult(req.MessageID, OpExtended, &Result{Code: ldap.LDAPResultSuccess, ResponseName: OIDStartTLS})
	tc := tls.Server(c.sock, c.srv.TLSConfig)
	c.wmu.Lock()
	dead := c.wdead
	c.wdst = tc // the success result went out in clear; everything after goes through TLS
	if c.bw != nil {
		c.bw.Reset(tc)
	}
	c.wmu.Unlock()
	if dead {
		return false
	}
	c.raw.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Info("StartTLS handshake failed", "err", err)
		return false
	}
	c.raw.SetDeadline(time.Time{})
	c.rdl = time.Time{}
	c.src.r = tc
	c.rd.Reset(&c.src)
	c.sess.setTLS(tc.ConnectionState())
	c.log.Debug("StartTLS established", "version", tls.VersionName(tc.ConnectionState().Version))
	return true
}

// stopReading makes the read loop stop at the next message boundary (Shutdown).
func (c *conn) stopReading() {
	c.stopped.Store(true)
	c.raw.SetReadDeadline(time.Now())
}

// abort tears the connection down at once.
func (c *conn) abort() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.raw.Close()
	})
}

// finish runs when the read loop ends: operations in flight finish (or, if the client is
// gone, are cancelled), their responses are flushed, and the connection closes.
func (c *conn) finish() {
	if !c.stopped.Load() {
		// The client left or broke the protocol: nobody will read what is in flight.
		c.abortOps()
	}
	c.opsWG.Wait()
	c.flush()
	c.abort()
	c.sess.close()
	c.srv.removeConn(c)
	c.log.Debug("connection closed")
}

// notice sends a notice of disconnection; the caller closes the connection afterwards.
func (c *conn) notice(code uint16, diag string) {
	c.send(c.ctx, false, func(b []byte) ([]byte, error) { return appendNotice(b, code, diag), nil })
}

// sendResult sends a final result outside of a handler (protocol-level answers).
func (c *conn) sendResult(id int64, op Op, res *Result) {
	c.send(c.ctx, false, func(b []byte) ([]byte, error) { return appendResult(b, id, op, res), nil })
}

// writeBufferSize is the size of a connection's write buffer.
const writeBufferSize = 16 << 10

// minRoom is the room, at least, that a message is encoded into: with less free, what
// the buffer holds is flushed first.
const minRoom = 512

// send writes one message to the client. enc appends the message to the slice it is
// given, the free space of the connection's buffer: the message is encoded where it is
// sent from (one larger than the buffer is encoded into a slice of its own). The
// buffer is flushed unless another sender is waiting for the lock (it will flush both)
// or hold is set: another message is known to follow at once from the same caller,
// which then flushes both. A write that takes longer than the write timeout tears the
// connection down. send gives up, writing nothing, when ctx has ended or the connection
// is broken; enc's error is returned, with nothing written but what others left to
// flush.
func (c *conn) send(ctx context.Context, hold bool, enc func([]byte) ([]byte, error)) error {
	if ctx.Err() != nil {
		return ErrAbandoned
	}
	c.waiting.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	last := c.waiting.Add(-1) == 0
	if c.wdead {
		return ErrAbandoned
	}
	if c.bw == nil {
		c.bw = bufio.NewWriterSize(c.wdst, writeBufferSize)
	}
	// Room for a message like the last one, so that it is encoded in place rather than
	// into a slice of its own.
	if c.bw.Buffered() > 0 && c.bw.Available() < max(c.wlast, minRoom) && c.flushLocked() != nil {
		return ErrAbandoned
	}
	b, encErr := enc(c.bw.AvailableBuffer())
	if encErr != nil {
		b = nil
	}
	c.wlast = len(b)
	// The deadline bounds each write to the socket, not a batch: a batch goes on for as
	// long as senders keep coming, and a client that reads steadily must not be cut.
	// With timedWrites, the socket bounds each write that waits by itself.
	if !c.timedWrites && (len(b) > c.bw.Available() || last && !hold) {
		c.raw.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
	}
	_, err := c.bw.Write(b)
	if err == nil && last && !hold {
		err = c.bw.Flush()
	}
	if err != nil {
		c.writeFailed(err)
		return ErrAbandoned
	}
	return encErr
}

// flush sends whatever responses are still buffered (held ones of an abandoned
// operation) before the connection closes.
func (c *conn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wdead || c.bw == nil || c.bw.Buffered() == 0 {
		return
	}
	c.flushLocked()
}

// flushLocked writes out the buffer; wmu is held. A failed write tears the connection
// down.
func (c *conn) flushLocked() error {
	if !c.timedWrites {
		c.raw.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
	}
	err := c.bw.Flush()
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// writeFailed tears the connection down after a failed write; wmu is held.
func (c *conn) writeFailed(err error) {
	c.wdead = true
	if isTimeout(err) {
		c.log.Warn("connection closed: client does not read its responses", "write_timeout", c.srv.writeTimeout())
	} else {
		c.log.Debug("connection closed: write failed", "err", err)
	}
	c.abort()
}

// responseWriter implements ResponseWriter for one request.
type responseWriter struct {
	c        *conn
	req      *Request
	done     bool
	answered bool // counted in c.answered
	inline   bool // answered by the read loop (Server.Inline)
	detached bool // Detach started another read loop
	out      Outcome
}

// Outcome tells what the handler has written or relayed (OutcomeReporter).
func (w *responseWriter) Outcome() Outcome { return w.out }

// Detach lets the connection read on, on another goroutine, while the handler of a
// request answered inline goes on (Server.Inline); for any other request it does
// nothing. It is called from the handler's goroutine.
func (w *responseWriter) Detach() {
	if !w.inline || w.detached {
		return
	}
	w.detached = true
	go w.c.readLoop()
}

// Detach is ResponseWriter.Detach where w has it (the server's writers, and wrappers
// that pass it on): see Server.Inline.
func Detach(w ResponseWriter) {
	if d, ok := w.(interface{ Detach() }); ok {
		d.Detach()
	}
}

// answer counts the operation as answered, just before its final response is written.
func (w *responseWriter) answer() {
	w.answered = true
	w.c.answered.Add(1)
}

func (w *responseWriter) WriteEntry(e *Entry, controls ...Control) error {
	w.out.Entries++
	if w.done || w.req.Op != OpSearch {
		return errors.New("ldap: WriteEntry after the result or outside a search")
	}
	ctx := w.req.Context()
	if ctx.Err() != nil {
		return ErrAbandoned
	}
	id, typesOnly := w.req.MessageID, w.req.Search.TypesOnly
	return w.c.send(ctx, true, func(b []byte) ([]byte, error) {
		return ldapwire.AppendEntry(b, id, e, typesOnly, controls), nil
	})
}

func (w *responseWriter) WriteReference(urls []string, controls ...Control) error {
	if w.done || w.req.Op != OpSearch {
		return errors.New("ldap: WriteReference after the result or outside a search")
	}
	ctx := w.req.Context()
	if ctx.Err() != nil {
		return ErrAbandoned
	}
	id := w.req.MessageID
	return w.c.send(ctx, true, func(b []byte) ([]byte, error) {
		return ldapwire.AppendReference(b, id, urls, controls), nil
	})
}

func (w *responseWriter) WriteResult(res *Result) error {
	w.out.Answered, w.out.Code = true, res.Code
	if w.done {
		return errors.New("ldap: result already written")
	}
	w.done = true
	ctx := w.req.Context()
	if ctx.Err() != nil {
		return ErrAbandoned // an abandoned operation gets no response (RFC 4511 §4.11)
	}
	w.answer()
	id, op := w.req.MessageID, w.req.Op
	return w.c.send(ctx, false, func(b []byte) ([]byte, error) { return appendResult(b, id, op, res), nil })
}

func (w *responseWriter) Relay(resp ldapwire.Response) error {
	switch {
	case resp.Final:
		w.out.Answered, w.out.Code = true, resp.Code
	case resp.Tag == ldapwire.TagSearchResultEntry:
		w.out.Entries++
	}
	if w.done {
		return errors.New("ldap: relay after the result")
	}
	if resp.Final {
		w.done = true
	}
	ctx := w.req.Context()
	if ctx.Err() != nil {
		return ErrAbandoned
	}
	if resp.Final {
		w.answer()
	}
	id := w.req.MessageID
	// The response is copied into the connection's buffer once, its message ID replaced
	// on the way.
	return w.c.send(ctx, resp.More && !resp.Final, func(b []byte) ([]byte, error) {
		out, err := ldapwire.WithMessageID(b, resp.Msg, id)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		return out, nil
	})
}

func (r *Request) withCtx(ctx context.Context) *Request {
	r.ctx = ctx
	return r
}
