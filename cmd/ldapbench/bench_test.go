package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

func TestRoundOrder(t *testing.T) {
	tests := []struct {
		n, round int
		want     []int
	}{
		{1, 0, []int{0}},
		{1, 1, []int{0}},
		{2, 0, []int{0, 1}},
		{2, 1, []int{1, 0}},
		{2, 2, []int{0, 1}},
		{2, 3, []int{1, 0}},
		{3, 0, []int{0, 1, 2}},
		{3, 1, []int{2, 1, 0}},
		{3, 4, []int{0, 1, 2}},
	}
	for _, tt := range tests {
		if got := roundOrder(tt.n, tt.round); !slices.Equal(got, tt.want) {
			t.Errorf("roundOrder(%d, %d) = %v, want %v", tt.n, tt.round, got, tt.want)
		}
	}
}

func mustConfig(t *testing.T, args ...string) *config {
	t.Helper()
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSummarize(t *testing.T) {
	cfg := mustConfig(t, "-targets", "proxy=h:1,slapd=h:2", "-mode", "login")
	ms := time.Millisecond
	res := func(name string, opsPerSec float64, ops, errs uint64, p50, p99 time.Duration) *targetResult {
		return &targetResult{Target: name, OpsPerSec: opsPerSec, Ops: ops, Errors: errs, P50: p50, P99: p99,
			StepP50: []time.Duration{p50, p50, p50, p50, p50}, StepP99: []time.Duration{p99, p99, p99, p99, p99}}
	}
	rounds := []roundResult{
		{Round: 1, Results: []*targetResult{res("proxy", 100, 1000, 0, 3*ms, 9*ms), res("slapd", 400, 4000, 0, 1*ms, 4*ms)}},
		{Round: 2, Results: []*targetResult{res("slapd", 390, 3900, 10, 2*ms, 5*ms), res("proxy", 300, 3000, 0, 1*ms, 7*ms)}},
		{Round: 3, Results: []*targetResult{res("proxy", 200, 2000, 30, 2*ms, 8*ms), res("slapd", 410, 4100, 0, 3*ms, 6*ms)}},
	}
	sums := summarize(cfg, rounds)
	type row struct {
		target         string
		rounds         int
		opsPerSec      float64
		p50, p99       time.Duration
		ops, errs      uint64
		errRate, ratio float64
	}
	var got []row
	for _, s := range sums {
		if !s.HasRatio {
			t.Errorf("%s: no ratio", s.Target)
		}
		if !slices.Equal(s.StepP50, []time.Duration{2 * ms, 2 * ms, 2 * ms, 2 * ms, 2 * ms}) {
			t.Errorf("%s: step p50 = %v", s.Target, s.StepP50)
		}
		got = append(got, row{s.Target, s.Rounds, s.MedianOpsPerSec, s.MedianP50, s.MedianP99, s.Ops, s.Errors, s.ErrorRate, s.Ratio})
	}
	want := []row{
		{"proxy", 3, 200, 2 * ms, 8 * ms, 6000, 30, 30.0 / 6030, 0.5},
		{"slapd", 3, 400, 2 * ms, 5 * ms, 12000, 10, 10.0 / 12010, 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("summary =\n%+v\nwant\n%+v", got, want)
	}

	var buf bytes.Buffer
	printSummary(&buf, cfg, sums)
	for _, s := range []string{"summary (median over 3 rounds)", "proxy/slapd = 0.50", "search-groups", "0.50%"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("summary output lacks %q:\n%s", s, buf.String())
		}
	}

	// A single target has no ratio; a dead baseline has none either.
	one := mustConfig(t, "-targets", "only=h:1")
	if s := summarize(one, []roundResult{{Results: []*targetResult{res("only", 5, 5, 0, ms, ms)}}}); s[0].HasRatio {
		t.Error("single target has a ratio")
	}
	dead := summarize(cfg, []roundResult{{Results: []*targetResult{res("proxy", 5, 5, 0, ms, ms), res("slapd", 0, 0, 5, 0, 0)}}})
	if dead[0].HasRatio || dead[1].ErrorRate != 1 {
		t.Errorf("dead baseline: %+v", dead)
	}
}

// fakeServer accepts TCP connections on loopback and hands each to handle.
func fakeServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	return "ldap://" + ln.Addr().String()
}

// runJSON runs the program with -json and decodes its report.
func runJSON(t *testing.T, args ...string) (int, jsonReport, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append(args, "-json"), &out, &errOut)
	var rep jsonReport
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("bad JSON output: %v\n%s", err, out.String())
		}
	}
	return code, rep, errOut.String()
}

func TestServerDropsConnections(t *testing.T) {
	url := fakeServer(t, func(c net.Conn) { c.Close() })
	start := time.Now()
	code, rep, stderr := runJSON(t, "-targets", "drop="+url, "-c", "2", "-d", "300ms", "-warmup", "50ms", "-rounds", "1")
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("run took %v", elapsed)
	}
	if code != exitFailed {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	s := rep.Summary[0]
	if s.Ops != 0 || s.Errors == 0 || s.ErrorRate != 1 {
		t.Errorf("summary %+v: want 0 ops, some errors", s)
	}
	if r := rep.Results[0].Targets[0]; r.Reconnects == 0 {
		t.Errorf("no reconnects counted: %+v", r)
	}
	for _, want := range []string{"warning: drop: 100.00% of operations failed", "error: drop: no operation succeeded"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestServerHangs checks that the watchdog breaks operations a server never
// finishes, silent or stopped in the middle of a response, with each client
// (run with -race: the watchdog closes the connection the worker reads).
func TestServerHangs(t *testing.T) {
	silent := func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }
	halfway := func(c net.Conn) {
		br := bufio.NewReader(c)
		msg, err := ldapwire.ReadFrame(br, 1<<20, nil)
		if err != nil {
			return
		}
		id, _ := ldapwire.MessageID(msg)
		b := ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{})
		_, _ = c.Write(b[:len(b)-2])
		_, _ = io.Copy(io.Discard, br)
	}
	for _, client := range []string{clientWire, clientGoLDAP} {
		for name, handle := range map[string]func(net.Conn){"silent": silent, "halfway": halfway} {
			t.Run(client+"/"+name, func(t *testing.T) {
				url := fakeServer(t, handle)
				start := time.Now()
				code, rep, stderr := runJSON(t, "-client", client, "-targets", "hang="+url, "-c", "2", "-d", "800ms", "-warmup", "0s", "-rounds", "1", "-timeout", "100ms")
				if elapsed := time.Since(start); elapsed > 5*time.Second {
					t.Errorf("run took %v", elapsed)
				}
				if code != exitFailed {
					t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, stderr)
				}
				if s := rep.Summary[0]; s.Ops != 0 || s.Errors == 0 {
					t.Errorf("summary %+v: want 0 ops, some errors", s)
				}
				if r := rep.Results[0].Targets[0]; r.Reconnects == 0 {
					t.Errorf("no reconnect after the watchdog broke a connection: %+v", r)
				}
			})
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ldap://" + ln.Addr().String()
	ln.Close()
	code, rep, _ := runJSON(t, "-targets", url, "-c", "1", "-d", "100ms", "-warmup", "0s", "-rounds", "1")
	if code != exitFailed {
		t.Errorf("exit code %d, want %d", code, exitFailed)
	}
	if s := rep.Summary[0]; s.Errors != maxDialAttempts || !strings.Contains(s.FirstError, "connect") {
		t.Errorf("summary %+v: want %d dial errors", s, maxDialAttempts)
	}
}

func TestInterrupt(t *testing.T) {
	url := fakeServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"-targets", url, "-c", "2", "-d", "1m", "-timeout", "1m"}, &out, &errOut)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("interrupted run took %v", elapsed)
	}
	if code != exitInterrupted || !strings.Contains(errOut.String(), "interrupted") {
		t.Errorf("exit code %d, stderr %q", code, errOut.String())
	}
}

// TestCPUWindowLateStart checks that the CPU used in the measured window is
// taken between a start and an end sample in that order, even when the start
// sample, taken by a timer at the warm-up's end, runs late on a busy machine
// and the workers are done before it finishes: the end waits for it rather
// than losing the start or taking the end before it.
func TestCPUWindowLateStart(t *testing.T) {
	url := scriptedServer(t, func(id int64, _ *ber.Packet) []byte {
		return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{})
	})
	cfg := mustConfig(t, "-targets", "fake="+url, "-c", "1", "-d", "200ms", "-warmup", "0s", "-users", "10")
	b, err := newBench(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	b.processCPU = func() (time.Duration, bool) {
		mu.Lock()
		first := calls == 0
		calls++
		mu.Unlock()
		if first { // the start sample: late until well after the window
			time.Sleep(600 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		return time.Duration(calls) * time.Second, true
	}
	res := b.runTarget(context.Background(), 0, 0)
	if res.Ops == 0 {
		t.Fatalf("no operations: %+v", res)
	}
	if res.ClientCPU <= 0 {
		t.Errorf("client cpu/op %v with a late start sample, want it measured and positive", res.ClientCPU)
	}
}

// TestSummarizeCPU checks the CPU columns: medians over the rounds that
// measured them, and the ratio of the baseline's server cpu/op to each
// target's, in the direction of the ops/s ratio (above 1: the target does an
// operation with less server CPU), worded so, and in the JSON report.
func TestSummarizeCPU(t *testing.T) {
	cfg := mustConfig(t, "-targets", "proxy=h:1,slapd=h:2", "-server-pids", "proxy=1,slapd=1")
	us := time.Microsecond
	res := func(name string, client, server time.Duration) *targetResult {
		return &targetResult{Target: name, OpsPerSec: 100, Ops: 1000, ClientCPU: client, ServerCPU: server}
	}
	rounds := []roundResult{
		{Round: 1, Results: []*targetResult{res("proxy", 10*us, 50*us), res("slapd", 12*us, 100*us)}},
		{Round: 2, Results: []*targetResult{res("slapd", 14*us, 0), res("proxy", 30*us, 0)}}, // not measured
		{Round: 3, Results: []*targetResult{res("proxy", 20*us, 70*us), res("slapd", 16*us, 140*us)}},
	}
	sums := summarize(cfg, rounds)
	if p, s := sums[0], sums[1]; p.ClientCPU != 20*us || p.ServerCPU != 60*us || s.ClientCPU != 14*us || s.ServerCPU != 120*us {
		t.Errorf("medians: proxy client %v server %v, slapd client %v server %v; want 20us 60us 14us 120us",
			p.ClientCPU, p.ServerCPU, s.ClientCPU, s.ServerCPU)
	}
	if p := sums[0]; !p.HasServerCPURatio || p.ServerCPURatio != 2 {
		t.Errorf("proxy's server cpu ratio %v (%v), want 2: half slapd's CPU per operation", p.ServerCPURatio, p.HasServerCPURatio)
	}
	var buf bytes.Buffer
	printSummary(&buf, cfg, sums)
	for _, s := range []string{"client cpu/op", "server cpu/op", "60.0us", "ratio of operations per server CPU second to slapd (slapd's server cpu/op / each target's)\n  proxy/slapd = 2.00\n"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("summary output lacks %q:\n%s", s, buf.String())
		}
	}
	buf.Reset()
	if err := writeJSON(&buf, cfg, 1, rounds, sums, false); err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if r := rep.Summary[0].ServerCPURatio; r == nil || *r != 2 || rep.Summary[0].ServerCPUus != 60 {
		t.Errorf("JSON summary %+v: want server_cpu_ratio_to_baseline 2", rep.Summary[0])
	}
}

// TestResponseBytes checks that each target's response bytes per operation
// are reported, with either client, so that a target answering with less
// than another (fewer attributes, shorter values) shows.
func TestResponseBytes(t *testing.T) {
	server := func(value int) string {
		return scriptedServer(t, func(id int64, req *ber.Packet) []byte {
			if req.Tag == ldap.ApplicationBindRequest {
				return ldapwire.AppendResult(nil, id, 1, &ldapwire.Result{})
			}
			b := ldapwire.AppendEntry(nil, id, &ldapwire.Entry{DN: "uid=x,dc=example,dc=org", Attributes: []ldapwire.Attribute{
				{Name: "description", Values: [][]byte{bytes.Repeat([]byte("v"), value)}}}}, false, nil)
			return ldapwire.AppendResult(b, id, 5, &ldapwire.Result{})
		})
	}
	full, lean := server(1000), server(10)
	for _, client := range []string{clientWire, clientGoLDAP} {
		t.Run(client, func(t *testing.T) {
			code, rep, stderr := runJSON(t, "-client", client, "-mode", "search", "-targets", "full="+full+",lean="+lean,
				"-c", "2", "-d", "500ms", "-warmup", "100ms", "-rounds", "1", "-users", "10")
			if code != exitOK {
				t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
			}
			// An entry and the search's done message; message IDs from 128
			// on take a byte more in each.
			for i, value := range []int{1000, 10} {
				ent := ldapwire.AppendEntry(nil, 1, &ldapwire.Entry{DN: "uid=x,dc=example,dc=org", Attributes: []ldapwire.Attribute{
					{Name: "description", Values: [][]byte{bytes.Repeat([]byte("v"), value)}}}}, false, nil)
				want := float64(len(ldapwire.AppendResult(ent, 1, 5, &ldapwire.Result{})))
				if s := rep.Summary[i]; s.RxPerOp < want || s.RxPerOp > want+2 {
					t.Errorf("%s: %v response bytes per op, want %v (+ up to 2)", s.Target, s.RxPerOp, want)
				}
			}
		})
	}
}
