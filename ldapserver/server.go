package ldapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Handler answers LDAP requests, as http.Handler answers HTTP ones. The server itself
// deals with unbind, abandon and StartTLS; every other operation reaches the handler,
// which must end it with exactly one w.WriteResult (the server answers `other` when a
// handler returns without one).
type Handler interface {
	ServeLDAP(w ResponseWriter, r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w ResponseWriter, r *Request)

// ServeLDAP calls f(w, r).
func (f HandlerFunc) ServeLDAP(w ResponseWriter, r *Request) { f(w, r) }

// ResponseWriter sends the responses to one request.
type ResponseWriter interface {
	// WriteEntry sends a search result entry. Entries and references are buffered: they
	// reach the client when the buffer fills or with the operation's result. It returns
	// an error once the operation has been abandoned or the connection has closed; the
	// handler should then stop.
	WriteEntry(e *Entry, controls ...Control) error
	// WriteReference sends a search result reference (continuation URLs).
	WriteReference(urls []string, controls ...Control) error
	// WriteResult sends the final response; later writes fail.
	WriteResult(res *Result) error
}

// Relayer is implemented by ResponseWriters that can send a response message received
// from elsewhere (an upstream server) as it came, but for its message ID, which becomes
// the request's; as http.Flusher is, it is an optional ability a handler asks for with a
// type assertion. A final response (anything but a search entry, reference or
// intermediate response) ends the operation as WriteResult does.
type Relayer interface {
	Relay(resp ldapwire.Response) error
}

// Outcome is what a handler has answered a request so far.
type Outcome struct {
	// Answered says a final response was written or relayed; Code is its result code.
	Answered bool
	Code     uint16
	// Entries counts the search result entries written or relayed.
	Entries int
}

// OutcomeReporter is implemented by ResponseWriters that tell what the handler has
// answered through them, the server's among them: a handler that counts or logs the
// requests it passes on asks for it by type assertion, rather than wrapping the writer
// (an allocation per request). Each write counts when it is made, whether or not it
// reaches the client (an abandoned operation's result is not sent).
type OutcomeReporter interface {
	Outcome() Outcome
}

// Defaults for the Server's limits, sized for a sidecar in front of one application or
// a small service in front of many.
const (
	DefaultMaxMessageSize = 1 << 20
	// DefaultMaxMessageSizeAnonymous bounds a request before the client has bound, as
	// OpenLDAP's sockbuf_max_incoming does: a client nobody knows yet cannot make the
	// server hold more than this for it.
	DefaultMaxMessageSizeAnonymous = 256 << 10
	// DefaultMaxPartialBytes caps the memory held, over all connections, by large
	// requests still arriving or waiting to be decoded.
	DefaultMaxPartialBytes = 16 << 20
	DefaultMaxFilterDepth  = 100
	DefaultMaxOpsPerConn   = 128
	DefaultWriteTimeout    = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("ldap: server closed")

// Server is an LDAP server. Its fields are set before Serve is called and not changed
// afterwards.
type Server struct {
	// Handler answers requests.
	Handler Handler
	// TLSConfig enables StartTLS on plain listeners; nil means StartTLS is refused. For
	// LDAPS, wrap the listener with tls.NewListener before Serve.
	TLSConfig *tls.Config
	// MaxConnections caps open client connections; 0 means no limit. A connection over
	// the cap receives a notice of disconnection (unavailable) and is closed.
	MaxConnections int
	// IdleTimeout closes a connection that has sent nothing and has nothing in flight for
	// this long. Any request, and any response still being written, resets it. 0: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds how long a response may wait for a client that does not read.
	WriteTimeout time.Duration
	// MaxMessageSize bounds one request, header included, once the client has bound.
	MaxMessageSize int
	// MaxMessageSizeAnonymous bounds one request from a client that has not bound (or
	// bound anonymously). Default DefaultMaxMessageSizeAnonymous, and never more than
	// MaxMessageSize.
	MaxMessageSizeAnonymous int
	// MaxPartialBytes caps the bytes held by large requests still arriving or waiting to
	// be decoded, over all connections: a buffer grows with the data actually received,
	// and a connection whose request would take the total over the cap is closed with a
	// notice (busy). Requests of up to smallFrame bytes, the usual case, are not counted.
	MaxPartialBytes int
	// MaxConnectionsPerAddress caps the open connections of one client address; 0 means
	// no limit. Addresses in LimitExempt are not capped.
	MaxConnectionsPerAddress int
	// LimitExempt lists the networks whose clients the per-address connection cap does
	// not apply to (loopback, say, where every client of a sidecar comes from).
	LimitExempt []netip.Prefix
	// ProxyProtocolFrom lists the peers (load balancers) whose connections start with a
	// PROXY protocol header, version 1 or 2. The header is required from them, and its
	// source address becomes the Session's RemoteAddr; connections from other peers are
	// served as they come, and one that starts with a PROXY header is closed, so no
	// client can choose its own address. Empty: the protocol is off.
	ProxyProtocolFrom []netip.Prefix
	// MaxFilterDepth bounds how deeply search filters (and any other element) may nest.
	MaxFilterDepth int
	// MaxOpsPerConn bounds operations in flight on one connection; more get `busy`.
	MaxOpsPerConn int
	// Logger receives connection-level events. Nil: slog.Default().
	Logger *slog.Logger
	// ConnContext, when set, derives the context of a new connection's requests from
	// ctx, as http.Server.ConnContext does: a handler keeps per-connection state of its
	// own there (and releases it with Session.OnClose).
	ConnContext func(ctx context.Context, s *Session) context.Context
	// Inline, when set, picks the requests that the read loop answers itself, before it
	// reads the next one, instead of handing each to another goroutine: requests the
	// handler answers from memory at once (the proxy's cached searches), for which the
	// hand-off costs more than the answer. A handler that finds such a request will take
	// longer (a search through much of a directory) calls Detach: the connection then
	// reads its next requests, an Abandon of this one included, on another goroutine
	// while the handler goes on. Binds, StartTLS, Abandon and Unbind are handled as
	// without it.
	Inline func(*Request) bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perAddr   map[netip.Addr]int // open connections by client address; under mu
	partial   atomic.Int64       // bytes held by large requests not yet decoded
	decoding  chan struct{}      // holds a token while a large request is decoded; made by serve
	pressure  atomic.Bool        // the partial budget was pressed on since the last release
	release   memoryRelease
	shutdown  atomic.Bool
	nextID    atomic.Uint64
	open      atomic.Int64
	connWG    sync.WaitGroup
}

// OpenConnections returns the number of client connections currently open.
func (s *Server) OpenConnections() int64 { return s.open.Load() }

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxMessageSize() int64 {
	if s.MaxMessageSize > 0 {
		return int64(s.MaxMessageSize)
	}
	return DefaultMaxMessageSize
}

func (s *Server) maxMessageSizeAnonymous() int64 {
	n := int64(s.MaxMessageSizeAnonymous)
	if n <= 0 {
		n = DefaultMaxMessageSizeAnonymous
	}
	return min(n, s.maxMessageSize())
}

func (s *Server) maxPartialBytes() int64 {
	if s.MaxPartialBytes > 0 {
		return int64(s.MaxPartialBytes)
	}
	return DefaultMaxPartialBytes
}

func (s *Server) maxFilterDepth() int {
	if s.MaxFilterDepth > 0 {
		return s.MaxFilterDepth
	}
	return DefaultMaxFilterDepth
}

func (s *Server) maxOps() int {
	if s.MaxOpsPerConn > 0 {
		return s.MaxOpsPerConn
	}
	return DefaultMaxOpsPerConn
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

// Serve accepts connections on l and serves each on its own goroutine. It returns
// ErrServerClosed after Shutdown, or the listener's error.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS serves LDAPS on l: every connection starts with a TLS handshake with
// TLSConfig (after the PROXY protocol header, when the peer sends one).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.TLSConfig == nil {
		return errors.New("ldap: ServeTLS without a TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.shutdown.Load() { // checked under the lock, or a Shutdown in between would miss l
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	if s.decoding == nil {
		s.decoding = make(chan struct{}, 1)
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		rw, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rw, implicitTLS)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

func (s *Server) newConn(rw net.Conn, implicitTLS bool) *conn {
	if s.MaxConnections > 0 && s.open.Load() >= int64(s.MaxConnections) {
		s.logger().Warn("connection refused: too many connections", "remote", rw.RemoteAddr().String(), "max", s.MaxConnections)
		rw.SetWriteDeadline(time.Now().Add(time.Second))
		rw.Write(appendNotice(nil, 52, "too many connections"))
		rw.Close()
		return nil
	}
	s.mu.Lock()
	if s.shutdown.Load() {
		// Accepted just before Shutdown closed the listener: Shutdown has already stopped
		// the connections it knew of and would wait for this one forever.
		s.mu.Unlock()
		rw.Close()
		return nil
	}
	c := newConn(s, rw, implicitTLS)
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	s.open.Add(1)
	return c
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.counted.IsValid() {
		if s.perAddr[c.counted]--; s.perAddr[c.counted] <= 0 {
			delete(s.perAddr, c.counted)
		}
	}
	s.mu.Unlock()
	s.open.Add(-1)
	s.connWG.Done()
}

// admitAddr counts a connection against its client address's cap. It reports false,
// counting nothing, when the address already has MaxConnectionsPerAddress open.
func (s *Server) admitAddr(c *conn, ip netip.Addr) bool {
	if s.MaxConnectionsPerAddress <= 0 || !ip.IsValid() || inPrefixes(ip, s.LimitExempt) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[ip] >= s.MaxConnectionsPerAddress {
		return false
	}
	if s.perAddr == nil {
		s.perAddr = make(map[netip.Addr]int)
	}
	s.perAddr[ip]++
	c.counted = ip
	return true
}

// takePartial reserves n bytes of the partial-request budget; false when it is spent.
func (s *Server) takePartial(n int64) bool {
	held := s.partial.Add(n)
	if held > s.maxPartialBytes() {
		s.pressure.Store(true)
		s.partialDone(n)
		return false
	}
	s.notePressure(held)
	return true
}

// AddrIP is the IP address of a connection's address, IPv4-mapped IPv6 addresses as
// IPv4; invalid when addr carries none (a pipe, say).
func AddrIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().WithZone("")
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

func inPrefixes(ip netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Shutdown stops the server gracefully: it closes the listeners, stops reading new
// requests, lets the operations in flight finish and their responses reach the clients,
// then closes the connections. If ctx ends first, the remaining connections are closed
// at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.stopRelease()
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, abandoning operations in flight.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.stopRelease()
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.abort()
	}
	return nil
}
