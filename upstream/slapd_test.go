package upstream

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// The tests run against internal/slapdtest servers; their base DN is its
// default suffix.
const testBaseDN = slapdtest.DefaultSuffix

// fakeUserDN is a user's DN for the fake servers (hanging, dropping), which
// check no credentials.
const fakeUserDN = "uid=user0001,ou=people," + testBaseDN

// pause freezes srv (SIGSTOP) and waits until the kernel reports every
// thread of slapd stopped: the signal is delivered asynchronously, and a
// request sent before that could still be answered. The server's cleanup
// (or Resume) ends the pause.
func pause(t *testing.T, srv *slapdtest.Server) {
	t.Helper()
	pid := slapdPID(t, srv)
	if err := srv.Pause(); err != nil {
		t.Fatalf("pause slapd: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !allThreadsStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("slapd pid %d did not stop", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// slapdPID reads the pid of srv's running slapd from the pid file slapdtest
// configures in srv.Dir (slapd runs in the foreground, so it is our child)
// and checks that it is that slapd.
func slapdPID(t *testing.T, srv *slapdtest.Server) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.Dir, "slapd.pid"))
	if err != nil {
		t.Fatalf("slapd pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("slapd pid file: %v", err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(filepath.Join(srv.Dir, "slapd.conf"))) {
		t.Fatalf("pid %d from %s/slapd.pid is not its slapd (%q, %v)", pid, srv.Dir, cmdline, err)
	}
	return pid
}

func allThreadsStopped(pid int) bool {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false
	}
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		// The state follows the parenthesised command name.
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
