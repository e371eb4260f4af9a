//go:build !linux

package upstream

import (
	"net"
	"syscall"
)

// socketOf returns nil: a reader goroutine reads every connection (see wireConn).
func socketOf(net.Conn) syscall.RawConn { return nil }

// peekSocket is never called without a socket.
func peekSocket(uintptr) (bool, error) { return false, nil }
