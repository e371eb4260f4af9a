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

// lockFile holds an exclusive lock on path (created if missing) until unlock is called,
// so that test binaries running at once provision the template one after the other.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
