package upstream

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"unsafe"
)

// socketOf returns the socket under nc (also under TLS), or nil.
func socketOf(nc net.Conn) syscall.RawConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// peekSocket looks at the socket fd without waiting and without taking anything from it:
// waiting says that something arrived; an error, that the peer closed or reset the
// connection.
func peekSocket(fd uintptr) (waiting bool, err error) {
	var b [1]byte
	// A raw system call, as rawsock makes the reads and writes: the socket never blocks.
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	switch {
	case errno == syscall.EAGAIN, errno == syscall.EINTR:
		return false, nil
	case errno != 0:
		return false, errno
	case n == 0:
		return false, io.EOF
	}
	return true, nil
}
