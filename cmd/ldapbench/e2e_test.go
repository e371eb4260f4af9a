package main

import (
	"strconv"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestEndToEnd runs every mode with each client briefly against a real slapd,
// reached both over ldap:// and ldaps:// as two targets, and expects a clean run.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts slapd")
	}
	const users = 50
	s := slapdtest.New(t, slapdtest.Options{Users: users, TLS: true})
	for _, tc := range []struct{ client, mode string }{
		{clientWire, modeBind}, {clientWire, modeSearch}, {clientWire, modeLogin},
		{clientGoLDAP, modeBind}, {clientGoLDAP, modeSearch}, {clientGoLDAP, modeLogin},
	} {
		mode := tc.mode
		t.Run(tc.client+"/"+mode, func(t *testing.T) {
			pid := strconv.Itoa(s.PID())
			code, rep, stderr := runJSON(t, "-client", tc.client, "-server-pids", "plain="+pid+",tls="+pid,
				"-targets", "plain="+s.URL+",tls="+s.LDAPSURL, "-ca", s.PKI.CAFile,
				"-mode", mode, "-users", "50", "-c", "2", "-rounds", "2", "-d", "400ms", "-warmup", "100ms",
				"-base", s.Suffix, "-user-dn-format", "uid=%s,"+s.PeopleDN,
				"-bind-dn", s.ServiceDN, "-bind-password", s.ServicePassword,
			)
			if code != exitOK {
				t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
			}
			if len(rep.Results) != 2 || len(rep.Summary) != 2 || rep.Baseline != "tls" || rep.Client != tc.client {
				t.Fatalf("unexpected report shape: %+v", rep)
			}
			if got := rep.Results[1].Order; len(got) != 2 || got[0] != "tls" {
				t.Errorf("round 2 order = %v, want tls first", got)
			}
			for _, sum := range rep.Summary {
				if sum.Ops == 0 || sum.Errors != 0 || sum.MedianOpsPerSec <= 0 || sum.MedianP50us <= 0 || sum.RatioToBaseline == nil || sum.ClientCPUus <= 0 {
					t.Errorf("%s: %+v", sum.Target, sum)
				}
				if mode == modeLogin && len(sum.Steps) != len(loginSteps) {
					t.Errorf("%s: steps %+v", sum.Target, sum.Steps)
				}
			}
			// slapd's CPU per operation: whole ticks of 10 ms over a few
			// hundred operations, so only their sum is sure to be above 0.
			if rep.Summary[0].ServerCPUus+rep.Summary[1].ServerCPUus <= 0 {
				t.Errorf("no server CPU measured: %+v", rep.Summary)
			}
			for _, r := range rep.Results {
				for _, tr := range r.Targets {
					if mode == modeSearch && tr.Entries != tr.Ops {
						t.Errorf("round %d %s: %d entries for %d searches", r.Round, tr.Target, tr.Entries, tr.Ops)
					}
				}
			}
			t.Logf("%s: plain %.0f ops/s, tls %.0f ops/s", mode, rep.Summary[0].MedianOpsPerSec, rep.Summary[1].MedianOpsPerSec)
		})
	}
}
