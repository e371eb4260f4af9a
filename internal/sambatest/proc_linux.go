package sambatest

import (
	"os"
	"syscall"
)

// sysProcAttr puts samba in a process group of its own, so that signals reach any
// process it forks, and makes the kernel kill it when the process that started it
// dies, so a test binary killed by a timeout leaves no samba behind.
//
// Pdeathsig fires when the starting OS thread exits; the Go runtime only ends a
// thread when a goroutine exits while locked to it (runtime.LockOSThread), so Start
// must not be called from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to samba's process group: samba and whatever it forked.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
