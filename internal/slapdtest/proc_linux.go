package slapdtest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel kill slapd when the process that started it
// dies, so a test binary killed by a timeout leaves no slapd behind.
//
// Pdeathsig fires when the starting OS thread exits; the Go runtime only ends
// a thread when a goroutine exits while locked to it (runtime.LockOSThread),
// so Start must not be called from such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until every thread of process pid is stopped (state T in
// /proc/PID/task/*/stat): SIGSTOP is delivered asynchronously, and a request sent
// before it took effect would still be answered.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		stopped := len(tasks) > 0
		for _, t := range tasks {
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
			if err != nil {
				continue // the thread ended
			}
			// The state follows the command name, which is in parentheses.
			if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || (stat[i+2] != 'T' && stat[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slapd (pid %d) not stopped after %v", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
