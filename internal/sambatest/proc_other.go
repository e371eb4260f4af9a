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

// lockFile does nothing here: test binaries running at once may each provision a
// template, and the first rename wins.
func lockFile(path string) (unlock func(), err error) { return func() {}, nil }
