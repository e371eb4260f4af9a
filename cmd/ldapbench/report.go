package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// errorWarnRate is the error rate above which a warning is printed.
const errorWarnRate = 0.01

// targetSummary aggregates one target over all completed rounds.
type targetSummary struct {
	Target          string
	URL             string
	Rounds          int
	MedianOpsPerSec float64
	MedianP50       time.Duration
	MedianP99       time.Duration
	StepP50         []time.Duration // login mode: per-step medians over rounds
	StepP99         []time.Duration
	ClientCPU       time.Duration // median of the rounds' ClientCPU (0: not measured)
	RxPerOp         float64       // response bytes per operation over all rounds
	ServerCPU       time.Duration // median of the rounds' ServerCPU (0: not measured)
	Ops             uint64
	Errors          uint64
	ErrorRate       float64 // errors / (ops + errors)
	Ratio           float64 // MedianOpsPerSec / the last target's
	HasRatio        bool    // Ratio is defined (>= 2 targets, baseline > 0)
	// ServerCPURatio is the last target's ServerCPU / this one's: operations
	// per server CPU second relative to the last target, in the direction of
	// Ratio. HasServerCPURatio: both were measured.
	ServerCPURatio    float64
	HasServerCPURatio bool
	FirstError        string
}

// summarize computes per-target medians over rounds and the ratios to the
// last target.
func summarize(cfg *config, rounds []roundResult) []targetSummary {
	sums := make([]targetSummary, len(cfg.Targets))
	for i, t := range cfg.Targets {
		s := &sums[i]
		s.Target, s.URL = t.Name, t.URL.String()
		var opsPerSec []float64
		var rx uint64
		var p50, p99, cpu, srv []time.Duration
		var stepP50, stepP99 [][]time.Duration
		for _, rr := range rounds {
			for _, res := range rr.Results {
				if res.Target != t.Name {
					continue
				}
				s.Rounds++
				s.Ops += res.Ops
				s.Errors += res.Errors
				rx += res.RxBytes
				if s.FirstError == "" {
					s.FirstError = res.FirstError
				}
				opsPerSec = append(opsPerSec, res.OpsPerSec)
				p50 = append(p50, res.P50)
				p99 = append(p99, res.P99)
				if res.ClientCPU > 0 {
					cpu = append(cpu, res.ClientCPU)
				}
				if res.ServerCPU > 0 {
					srv = append(srv, res.ServerCPU)
				}
				if stepP50 == nil {
					stepP50 = make([][]time.Duration, len(res.StepP50))
					stepP99 = make([][]time.Duration, len(res.StepP99))
				}
				for j := range res.StepP50 {
					stepP50[j] = append(stepP50[j], res.StepP50[j])
					stepP99[j] = append(stepP99[j], res.StepP99[j])
				}
			}
		}
		if s.Ops > 0 {
			s.RxPerOp = float64(rx) / float64(s.Ops)
		}
		s.MedianOpsPerSec = median(opsPerSec)
		s.MedianP50, s.MedianP99 = medianDuration(p50), medianDuration(p99)
		if len(cpu) > 0 {
			s.ClientCPU = medianDuration(cpu)
		}
		if len(srv) > 0 {
			s.ServerCPU = medianDuration(srv)
		}
		for j := range stepP50 {
			s.StepP50 = append(s.StepP50, medianDuration(stepP50[j]))
			s.StepP99 = append(s.StepP99, medianDuration(stepP99[j]))
		}
		if total := s.Ops + s.Errors; total > 0 {
			s.ErrorRate = float64(s.Errors) / float64(total)
		}
	}
	if n := len(sums); n >= 2 && sums[n-1].MedianOpsPerSec > 0 {
		base := sums[n-1].MedianOpsPerSec
		for i := range sums {
			sums[i].Ratio, sums[i].HasRatio = sums[i].MedianOpsPerSec/base, true
		}
	}
	if n := len(sums); n >= 2 && sums[n-1].ServerCPU > 0 {
		base := sums[n-1].ServerCPU
		for i := range sums {
			if sums[i].ServerCPU > 0 {
				sums[i].ServerCPURatio, sums[i].HasServerCPURatio = float64(base)/float64(sums[i].ServerCPU), true
			}
		}
	}
	return sums
}

// ms formats a duration in milliseconds with microsecond precision, so
// that columns are directly comparable.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

// nameWidth returns the width of the longest target name.
func nameWidth(cfg *config) int {
	n := 0
	for _, t := range cfg.Targets {
		n = max(n, len(t.Name))
	}
	return n
}

// printHeader describes the run.
func printHeader(w io.Writer, cfg *config, seed uint64) {
	fmt.Fprintf(w, "ldapbench: mode=%s client=%s c=%d d=%s warmup=%s rounds=%d users=%d seed=%d\n",
		cfg.Mode, cfg.Client, cfg.Concurrency, cfg.Duration, cfg.Warmup, cfg.Rounds, cfg.Users, seed)
	for _, t := range cfg.Targets {
		fmt.Fprintf(w, "  target %-*s %s\n", nameWidth(cfg), t.Name, t.URL)
	}
}

// newProgressPrinter returns a bench.onResult callback printing each
// result as it arrives, preceded by a header at the start of each round.
func newProgressPrinter(w io.Writer, cfg *config) func(int, *targetResult) {
	last := 0
	width := nameWidth(cfg)
	return func(round int, res *targetResult) {
		if round != last {
			last = round
			order := roundOrder(len(cfg.Targets), round-1)
			names := make([]string, len(order))
			for i, ti := range order {
				names[i] = cfg.Targets[ti].Name
			}
			fmt.Fprintf(w, "round %d/%d (%s)\n", round, cfg.Rounds, strings.Join(names, ", "))
		}
		fmt.Fprintf(w, "  %-*s %10.1f ops/s  p50 %s  p99 %s  errors %d", width, res.Target, res.OpsPerSec, ms(res.P50), ms(res.P99), res.Errors)
		if res.Reconnects > 0 {
			fmt.Fprintf(w, "  reconnects %d", res.Reconnects)
		}
		if cfg.Mode == modeSearch && res.Ops > 0 {
			fmt.Fprintf(w, "  entries/op %.2f", float64(res.Entries)/float64(res.Ops))
		}
		if res.Ops > 0 {
			fmt.Fprintf(w, "  bytes/op %.0f", float64(res.RxBytes)/float64(res.Ops))
		}
		if res.ClientCPU > 0 {
			fmt.Fprintf(w, "  client cpu %.1fus/op", us(res.ClientCPU))
		}
		if res.ServerCPU > 0 {
			fmt.Fprintf(w, "  server cpu %.1fus/op", us(res.ServerCPU))
		}
		fmt.Fprintln(w)
		if len(res.StepP50) > 0 {
			fmt.Fprintf(w, "  %-*s steps p50:", width, "")
			for i, d := range res.StepP50 {
				fmt.Fprintf(w, " %s %s", loginSteps[i], ms(d))
			}
			fmt.Fprintln(w)
		}
		if res.FirstError != "" {
			fmt.Fprintf(w, "  %-*s first error: %s\n", width, "", res.FirstError)
		}
	}
}

// writeTable prints rows as aligned columns, indented by two spaces: the
// first column left-aligned, the others right-aligned.
func writeTable(w io.Writer, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		b.WriteString(" ")
		for i, cell := range row {
			b.WriteString(" ")
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], cell)
			} else {
				fmt.Fprintf(&b, " %*s", widths[i], cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// printSummary prints the per-target medians and the ratios.
func printSummary(w io.Writer, cfg *config, sums []targetSummary) {
	n := 0
	if len(sums) > 0 {
		n = sums[0].Rounds
	}
	fmt.Fprintf(w, "\nsummary (median over %d rounds)\n", n)
	rows := [][]string{{"target", "ops/s", "p50", "p99", "ops", "errors", "bytes/op", "client cpu/op"}}
	servers := len(cfg.ServerPIDs) > 0
	if servers {
		rows[0] = append(rows[0], "server cpu/op")
	}
	perOp := func(d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fus", us(d))
	}
	for _, s := range sums {
		row := []string{s.Target, fmt.Sprintf("%.1f", s.MedianOpsPerSec), ms(s.MedianP50), ms(s.MedianP99),
			fmt.Sprint(s.Ops), fmt.Sprintf("%d (%.2f%%)", s.Errors, 100*s.ErrorRate), fmt.Sprintf("%.0f", s.RxPerOp), perOp(s.ClientCPU)}
		if servers {
			row = append(row, perOp(s.ServerCPU))
		}
		rows = append(rows, row)
	}
	writeTable(w, rows)
	if cfg.Mode == modeLogin && len(sums) > 0 && len(sums[0].StepP50) > 0 {
		fmt.Fprintln(w, "\nlogin steps (median p50 / p99)")
		rows = [][]string{append([]string{"target"}, loginSteps...)}
		for _, s := range sums {
			row := []string{s.Target}
			for i := range s.StepP50 {
				row = append(row, ms(s.StepP50[i])+" / "+ms(s.StepP99[i]))
			}
			rows = append(rows, row)
		}
		writeTable(w, rows)
	}
	if len(sums) >= 2 {
		base := sums[len(sums)-1].Target
		fmt.Fprintf(w, "\nratio of median ops/s to %s\n", base)
		for _, s := range sums[:len(sums)-1] {
			if s.HasRatio {
				fmt.Fprintf(w, "  %s/%s = %.2f\n", s.Target, base, s.Ratio)
			} else {
				fmt.Fprintf(w, "  %s/%s = n/a (%s completed no operations)\n", s.Target, base, base)
			}
		}
		if sums[len(sums)-1].HasServerCPURatio {
			// What the ratio of ops/s would be with the servers alone on the
			// machine's CPU: the load generator's share taken out.
			fmt.Fprintf(w, "\nratio of operations per server CPU second to %s (%s's server cpu/op / each target's)\n", base, base)
			for _, s := range sums[:len(sums)-1] {
				if s.HasServerCPURatio {
					fmt.Fprintf(w, "  %s/%s = %.2f\n", s.Target, base, s.ServerCPURatio)
				}
			}
		}
	}
}

// JSON output types. Latencies are in microseconds.
type (
	jsonReport struct {
		Mode        string        `json:"mode"`
		Client      string        `json:"client"`
		Concurrency int           `json:"concurrency"`
		DurationS   float64       `json:"duration_s"`
		WarmupS     float64       `json:"warmup_s"`
		Rounds      int           `json:"rounds"`
		Users       int           `json:"users"`
		Seed        uint64        `json:"seed"`
		Baseline    string        `json:"baseline,omitempty"`
		Interrupted bool          `json:"interrupted,omitempty"`
		Results     []jsonRound   `json:"results"`
		Summary     []jsonSummary `json:"summary"`
	}
	jsonRound struct {
		Round   int          `json:"round"`
		Order   []string     `json:"order"`
		Targets []jsonResult `json:"targets"`
	}
	jsonResult struct {
		Target      string     `json:"target"`
		Ops         uint64     `json:"ops"`
		Errors      uint64     `json:"errors"`
		Reconnects  uint64     `json:"reconnects"`
		Entries     uint64     `json:"entries,omitempty"`
		RxBytes     uint64     `json:"response_bytes"`
		OpsPerSec   float64    `json:"ops_per_sec"`
		P50us       float64    `json:"p50_us"`
		P99us       float64    `json:"p99_us"`
		ClientCPUus float64    `json:"client_cpu_us_per_op,omitempty"`
		ServerCPUus float64    `json:"server_cpu_us_per_op,omitempty"`
		Steps       []jsonStep `json:"steps,omitempty"`
		FirstError  string     `json:"first_error,omitempty"`
	}
	jsonStep struct {
		Name  string  `json:"name"`
		P50us float64 `json:"p50_us"`
		P99us float64 `json:"p99_us"`
	}
	jsonSummary struct {
		Target          string     `json:"target"`
		URL             string     `json:"url"`
		Rounds          int        `json:"rounds"`
		MedianOpsPerSec float64    `json:"median_ops_per_sec"`
		MedianP50us     float64    `json:"median_p50_us"`
		MedianP99us     float64    `json:"median_p99_us"`
		RxPerOp         float64    `json:"response_bytes_per_op"`
		ClientCPUus     float64    `json:"median_client_cpu_us_per_op,omitempty"`
		ServerCPUus     float64    `json:"median_server_cpu_us_per_op,omitempty"`
		Ops             uint64     `json:"ops"`
		Errors          uint64     `json:"errors"`
		ErrorRate       float64    `json:"error_rate"`
		RatioToBaseline *float64   `json:"ratio_to_baseline,omitempty"`
		ServerCPURatio  *float64   `json:"server_cpu_ratio_to_baseline,omitempty"`
		Steps           []jsonStep `json:"steps,omitempty"`
		FirstError      string     `json:"first_error,omitempty"`
	}
)

// us converts a duration to microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// jsonSteps pairs step names with latencies.
func jsonSteps(p50, p99 []time.Duration) []jsonStep {
	var out []jsonStep
	for i := range p50 {
		out = append(out, jsonStep{Name: loginSteps[i], P50us: us(p50[i]), P99us: us(p99[i])})
	}
	return out
}

// writeJSON writes the machine-readable report.
func writeJSON(w io.Writer, cfg *config, seed uint64, rounds []roundResult, sums []targetSummary, interrupted bool) error {
	rep := jsonReport{
		Mode:        cfg.Mode,
		Client:      cfg.Client,
		Concurrency: cfg.Concurrency,
		DurationS:   cfg.Duration.Seconds(),
		WarmupS:     cfg.Warmup.Seconds(),
		Rounds:      cfg.Rounds,
		Users:       cfg.Users,
		Seed:        seed,
		Interrupted: interrupted,
		Results:     []jsonRound{},
	}
	if len(cfg.Targets) >= 2 {
		rep.Baseline = cfg.Targets[len(cfg.Targets)-1].Name
	}
	for _, rr := range rounds {
		jr := jsonRound{Round: rr.Round, Order: rr.Order}
		for _, r := range rr.Results {
			jr.Targets = append(jr.Targets, jsonResult{
				Target: r.Target, Ops: r.Ops, Errors: r.Errors, Reconnects: r.Reconnects, Entries: r.Entries, RxBytes: r.RxBytes,
				OpsPerSec: r.OpsPerSec, P50us: us(r.P50), P99us: us(r.P99), ClientCPUus: us(r.ClientCPU), ServerCPUus: us(r.ServerCPU),
				Steps: jsonSteps(r.StepP50, r.StepP99), FirstError: r.FirstError,
			})
		}
		rep.Results = append(rep.Results, jr)
	}
	for _, s := range sums {
		js := jsonSummary{
			Target: s.Target, URL: s.URL, Rounds: s.Rounds,
			MedianOpsPerSec: s.MedianOpsPerSec, MedianP50us: us(s.MedianP50), MedianP99us: us(s.MedianP99),
			RxPerOp: s.RxPerOp, ClientCPUus: us(s.ClientCPU), ServerCPUus: us(s.ServerCPU),
			Ops: s.Ops, Errors: s.Errors, ErrorRate: s.ErrorRate,
			Steps: jsonSteps(s.StepP50, s.StepP99), FirstError: s.FirstError,
		}
		if s.HasRatio {
			js.RatioToBaseline = &s.Ratio
		}
		if s.HasServerCPURatio {
			js.ServerCPURatio = &s.ServerCPURatio
		}
		rep.Summary = append(rep.Summary, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
