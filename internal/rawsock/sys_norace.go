//go:build linux && !race

package rawsock

import (
	"syscall"
	"unsafe"
)

// sysRead is read(2) as a raw system call: the socket never blocks, so the runtime need
// not prepare for a thread held in the kernel (syscall.Read's entersyscall and
// exitsyscall), and the processor is never handed to another thread under it.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}

// sysWrite is write(2) as a raw system call (see sysRead).
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), errno
}
