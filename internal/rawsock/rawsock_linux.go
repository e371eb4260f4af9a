//go:build linux

package rawsock

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is a TCP connection whose reads and writes are made by sysRead and sysWrite, in
// the steps of Go's network poller (syscall.RawConn).
type conn struct {
	net.Conn
	rc syscall.RawConn

	rmu      sync.Mutex // one Read at a time uses the fields below
	rbuf     []byte
	rn       int
	rerr     syscall.Errno
	readStep func(fd uintptr) bool // c.stepRead, made once

	wmu       sync.Mutex // one Write at a time uses the fields below
	wbuf      []byte
	wn        int
	werr      syscall.Errno
	wnowait   bool                  // stepWrite gives up where it would wait
	writeStep func(fd uintptr) bool // c.stepWrite, made once

	wtimeout atomic.Int64 // SetWriteTimeout's, in nanoseconds; 0: none
}

// Wrap returns nc with its reads and writes made as raw system calls when nc is a TCP
// connection, and nc itself otherwise. Everything else (deadlines, Close, addresses)
// is nc's own; so is the socket (SyscallConn).
func Wrap(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	c := &conn{Conn: nc, rc: rc}
	c.readStep, c.writeStep = c.stepRead, c.stepWrite
	return c
}

// SetWriteTimeout bounds each later Write of nc, a connection Wrap returned, by d from
// the moment it finds the socket's buffer full (0: no bound), and reports whether nc is
// one. A Write the socket's buffer takes at once, the usual case, costs no deadline:
// setting one, as the caller of a plain net.Conn does before every Write, reads the
// clock twice and moves a runtime timer. The write deadline is the timeout's own while
// a Write waits, and none after: with a timeout, SetWriteDeadline is not to be used.
func SetWriteTimeout(nc net.Conn, d time.Duration) bool {
	c, ok := nc.(*conn)
	if ok {
		c.wtimeout.Store(int64(d))
	}
	return ok
}

// SyscallConn returns the socket, as the wrapped connection's does.
func (c *conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// maxRW is the most one system call reads or writes, as the net package limits it.
const maxRW = 1 << 30

// Read reads as net.Conn's Read does: what the socket holds, up to len(p), waiting for
// something to arrive (within the read deadline) when it holds nothing; io.EOF once the
// peer closed its side.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readStep)
	n, errno := c.rn, c.rerr
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// stepRead is one step of Read: false asks the poller to wait until the socket can be
// read.
func (c *conn) stepRead(fd uintptr) bool {
	for {
		n, errno := sysRead(fd, c.rbuf)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerr = n, errno
		return true
	}
}

// Write writes all of p, as net.Conn's Write does, waiting (within the write deadline,
// or the write timeout) while the socket's buffer is full. Concurrent Writes do not
// interleave.
func (c *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	timeout := time.Duration(c.wtimeout.Load())
	c.wnowait = timeout > 0
	err := c.rc.Write(c.writeStep)
	if err == nil && c.werr == 0 && c.wn < len(p) {
		// The socket's buffer is full: the rest waits, within the timeout from now.
		c.wnowait = false
		if err = c.Conn.SetWriteDeadline(time.Now().Add(timeout)); err == nil {
			err = c.rc.Write(c.writeStep)
			c.Conn.SetWriteDeadline(time.Time{})
		}
	}
	n, errno := c.wn, c.werr
	c.wbuf = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// stepWrite is one step of Write: false asks the poller to wait until the socket can be
// written again.
func (c *conn) stepWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		chunk := c.wbuf[c.wn:]
		if len(chunk) > maxRW {
			chunk = chunk[:maxRW]
		}
		n, errno := sysWrite(fd, chunk)
		switch errno {
		case 0:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return c.wnowait
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// opError reports a failed read or write as the net package does: an *net.OpError, whose
// Timeout says whether a deadline passed and which wraps net.ErrClosed for a connection
// closed under it.
func (c *conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
