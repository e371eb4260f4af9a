package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bench is one benchmark run over all targets and rounds.
type bench struct {
	cfg   *config
	users *userSet
	tls   *tls.Config
	seed  uint64
	epoch time.Time   // reference point for worker.busy
	stop  atomic.Bool // set on interrupt; workers finish promptly
	// processCPU reads ldapbench's own CPU time (the platform's processCPU;
	// tests replace it).
	processCPU func() (time.Duration, bool)

	// onResult, if set, is called after each target's run in a round.
	onResult func(round int, res *targetResult)
}

// newBench prepares a run: it loads TLS material and formats the user set.
func newBench(cfg *config) (*bench, error) {
	b := &bench{cfg: cfg, users: newUserSet(cfg), seed: cfg.Seed, epoch: time.Now(), processCPU: processCPU}
	if b.seed == 0 {
		b.seed = uint64(time.Now().UnixNano())
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // opt-in via -insecure
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s: no PEM certificates found", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	b.tls = tc
	return b, nil
}

// dialNet opens the transport connection to t (TCP, plus TLS for ldaps).
// The -timeout bounds connecting and the TLS handshake.
func (b *bench) dialNet(t target) (net.Conn, error) {
	port := t.URL.Port()
	if port == "" {
		port = "389"
		if t.URL.Scheme == "ldaps" {
			port = "636"
		}
	}
	addr := net.JoinHostPort(t.URL.Hostname(), port)
	d := &net.Dialer{Timeout: b.cfg.Timeout}
	if t.URL.Scheme == "ldaps" {
		td := &tls.Dialer{NetDialer: d, Config: b.tls}
		return td.Dial("tcp", addr)
	}
	return d.Dial("tcp", addr)
}

// roundOrder returns the order in which n targets run in round r (0-based):
// the given order in even rounds and reversed in odd rounds, so that with
// two targets each one goes first equally often.
func roundOrder(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		if r%2 == 0 {
			order[i] = i
		} else {
			order[i] = n - 1 - i
		}
	}
	return order
}

// targetResult is one target's measurement in one round.
type targetResult struct {
	Target      string
	Ops         uint64
	Errors      uint64
	Entries     uint64
	RxBytes     uint64 // response bytes of the counted operations
	Reconnects  uint64
	OpsPerSec   float64
	P50, P99    time.Duration
	StepP50     []time.Duration // login mode, indexed like loginSteps
	StepP99     []time.Duration
	FirstError  string
	Interrupted bool
	// ClientCPU is ldapbench's own CPU time (all its threads, user and
	// system) per operation in the measured window, 0 when not measured:
	// what the load generator takes of the CPU it shares with the servers.
	ClientCPU time.Duration
	// ServerCPU is the CPU time per operation of the processes -server-pids
	// names for this target, 0 when not measured.
	ServerCPU time.Duration
}

// roundResult is the outcome of one round.
type roundResult struct {
	Round   int // 1-based
	Order   []string
	Results []*targetResult // in run order
}

// errInterrupted is returned by run when the benchmark was stopped early.
var errInterrupted = errors.New("interrupted")

// run executes all rounds. On interruption it returns the rounds completed
// so far together with errInterrupted.
func (b *bench) run(ctx context.Context) ([]roundResult, error) {
	var rounds []roundResult
	for r := 0; r < b.cfg.Rounds; r++ {
		rr := roundResult{Round: r + 1}
		for _, ti := range roundOrder(len(b.cfg.Targets), r) {
			rr.Order = append(rr.Order, b.cfg.Targets[ti].Name)
		}
		for _, ti := range roundOrder(len(b.cfg.Targets), r) {
			if ctx.Err() != nil {
				return rounds, errInterrupted
			}
			res := b.runTarget(ctx, r, ti)
			if res.Interrupted {
				return rounds, errInterrupted
			}
			rr.Results = append(rr.Results, res)
			if b.onResult != nil {
				b.onResult(r+1, res)
			}
		}
		rounds = append(rounds, rr)
	}
	return rounds, nil
}

// runTarget runs -c workers against target ti for -warmup plus -d and
// merges their measurements.
func (b *bench) runTarget(ctx context.Context, r, ti int) *targetResult {
	cfg := b.cfg
	t := cfg.Targets[ti]
	ws := make([]*worker, cfg.Concurrency)
	for i := range ws {
		ws[i] = b.newWorker(t, r, ti, i)
	}

	quit := make(chan struct{})
	var wdDone sync.WaitGroup
	wdDone.Add(1)
	go func() {
		defer wdDone.Done()
		b.watchdog(ctx, ws, quit)
	}()

	// Connect all workers first, then start the clock for everybody.
	clock := &roundClock{}
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	for _, w := range ws {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ok := w.connect(time.Time{})
			ready.Done()
			<-start
			if ok {
				w.run(clock)
			}
		}()
	}
	ready.Wait()
	clock.warmupEnd = time.Now().Add(cfg.Warmup)
	clock.end = clock.warmupEnd.Add(cfg.Duration)
	// The window's CPU is the difference of two samples: one when the
	// warm-up ends, one once the workers are done. A timer takes the first;
	// on a busy machine it may run late, even after the workers are done, so
	// the second waits for it.
	var cpuStart, serverStart time.Duration
	var cpuStartOK, serverStartOK bool
	pids := cfg.ServerPIDs[t.Name]
	sampled := make(chan struct{})
	warm := time.AfterFunc(cfg.Warmup, func() {
		defer close(sampled)
		cpuStart, cpuStartOK = b.processCPU()
		serverStart, serverStartOK = serversCPU(pids)
	})
	close(start)
	done.Wait()
	if !warm.Stop() {
		<-sampled
	}
	cpuEnd, cpuOK := b.processCPU()
	serverEnd, serverOK := serversCPU(pids)
	close(quit)
	wdDone.Wait()
	for _, w := range ws {
		w.closeConn()
	}
	res := b.merge(t.Name, ws)
	if res.Ops > 0 && !res.Interrupted {
		if cpuStartOK && cpuOK {
			res.ClientCPU = (cpuEnd - cpuStart) / time.Duration(res.Ops)
		}
		if serverStartOK && serverOK {
			res.ServerCPU = (serverEnd - serverStart) / time.Duration(res.Ops)
		}
	}
	return res
}

// serversCPU sums the CPU time of the given processes; false when there are
// none or one cannot be read (it has exited).
func serversCPU(pids []int) (time.Duration, bool) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := serverCPU(pid)
		if err != nil {
			return 0, false
		}
		sum += d
	}
	return sum, len(pids) > 0
}

// watchdog breaks the connection of any operation running longer than
// -timeout, and of every worker once ctx is cancelled. It scans all
// workers a few times per second, so operations themselves pay only two
// atomic stores for this protection.
func (b *bench) watchdog(ctx context.Context, ws []*worker, quit <-chan struct{}) {
	tick := min(100*time.Millisecond, b.cfg.Timeout/4)
	ticker := time.NewTicker(max(tick, time.Millisecond))
	defer ticker.Stop()
	timeout := int64(b.cfg.Timeout)
	cancelled := ctx.Done()
	for {
		select {
		case <-quit:
			return
		case <-cancelled:
			b.stop.Store(true)
			for _, w := range ws {
				w.abort()
			}
			cancelled = nil
		case <-ticker.C:
			now := int64(time.Since(b.epoch))
			for _, w := range ws {
				if s := w.busy.Load(); s != 0 && now-(s-1) > timeout {
					w.abort()
				}
			}
		}
	}
}

// merge combines the workers' measurements into one result.
func (b *bench) merge(name string, ws []*worker) *targetResult {
	res := &targetResult{Target: name, Interrupted: b.stop.Load()}
	var lat hist
	var steps []hist
	if b.cfg.Mode == modeLogin {
		steps = make([]hist, len(loginSteps))
	}
	for _, w := range ws {
		st := w.st
		res.Ops += st.ops
		res.Errors += st.errors
		res.Entries += st.entries
		res.RxBytes += st.rxBytes
		res.Reconnects += st.reconnects
		if res.FirstError == "" && st.firstErr != nil {
			res.FirstError = st.firstErr.Error()
		}
		lat.merge(&st.lat)
		for i := range steps {
			steps[i].merge(&st.steps[i])
		}
	}
	res.OpsPerSec = float64(res.Ops) / b.cfg.Duration.Seconds()
	res.P50, res.P99 = lat.percentile(50), lat.percentile(99)
	for i := range steps {
		res.StepP50 = append(res.StepP50, steps[i].percentile(50))
		res.StepP99 = append(res.StepP99, steps[i].percentile(99))
	}
	return res
}
