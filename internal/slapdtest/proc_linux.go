package slapdtest

import "syscall"

// sysProcAttr makes the kernel kill slapd when the process that started it
// dies, so a test binary killed by a timeout leaves no slapd behind.
//
// Pdeathsig fires when the starting OS thread exits; the Go runtime only ends
// a thread when a goroutine exits while locked to it (runtime.LockOSThread),
// so Start must not be called from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
