//go:build !linux

package sambatest

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to add where there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup sends sig to samba itself.
func signalGroup(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
