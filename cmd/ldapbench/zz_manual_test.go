package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func TestZZManual(t *testing.T) {
	if os.Getenv("LDAPBENCH_MANUAL") == "" {
		t.Skip()
	}
	s := slapdtest.New(t, slapdtest.Options{Users: 1000, TLS: true})
	args := strings.Fields(os.Getenv("LDAPBENCH_MANUAL"))
	for i, a := range args {
		a = strings.ReplaceAll(a, "@URL", s.URL)
		a = strings.ReplaceAll(a, "@LDAPS", s.LDAPSURL)
		a = strings.ReplaceAll(a, "@CA", s.PKI.CAFile)
		a = strings.ReplaceAll(a, "@SVC", s.ServiceDN)
		a = strings.ReplaceAll(a, "@PW", s.ServicePassword)
		args[i] = a
	}
	cmd := exec.Command("/tmp/ldapbench", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t.Log(cmd.Run(), "cpu user", cmd.ProcessState.UserTime(), "sys", cmd.ProcessState.SystemTime())
}
