//go:build !linux

package rawsock

import (
	"net"
	"time"
)

// Wrap returns nc: raw system calls are made on Linux only.
func Wrap(nc net.Conn) net.Conn { return nc }

// SetWriteTimeout reports false: no connection is Wrap's own off Linux, and the caller
// sets write deadlines itself.
func SetWriteTimeout(net.Conn, time.Duration) bool { return false }
