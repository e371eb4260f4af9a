//go:build linux && race

package rawsock

import "syscall"

// sysRead is syscall.Read under the race detector, which that call tells about the
// memory the kernel wrote and the order I/O puts between goroutines (a raw system call
// tells it nothing).
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

// sysWrite is syscall.Write under the race detector (see sysRead).
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
