//go:build !linux

package slapdtest

import (
	"syscall"
	"time"
)

// sysProcAttr has nothing to add where there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopped cannot look at thread states here; a short pause lets SIGSTOP land.
func waitStopped(pid int, timeout time.Duration) error {
	time.Sleep(50 * time.Millisecond)
	return nil
}
