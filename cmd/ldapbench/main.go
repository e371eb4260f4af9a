// Command ldapbench is an end-to-end LDAP load generator used to compare
// servers, typically ldapproxy against the slapd behind it, side by side in
// one run.
//
// Each round runs every target in turn: -c workers, each holding one
// connection, first warm up for -warmup and then are measured for -d. The
// target order alternates between rounds so that a noisy machine affects
// all targets alike, and the summary reports medians over rounds plus each
// target's median throughput relative to the last target. Compare ratios,
// not absolute numbers.
//
// Modes:
//
//   - bind: each operation is a simple bind as a random user.
//   - search: each worker binds once as -bind-dn; each operation is a
//     subtree search for a random user.
//   - login: each operation is an application login: bind as the service
//     account, search the user, bind as the user, bind back as the service
//     account, search the user's groups.
//
// The tool shares the machine with the server under test, so it stays light:
// one goroutine per connection, no per-operation goroutines or timers of its
// own, latencies kept in fixed-size per-worker histograms, and a GC target
// of GOGC=400 unless GOGC is set. -cpuprofile shows what it costs.
//
// Run "ldapbench -h" for all flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

// defaultGCPercent replaces Go's default GOGC=100 unless GOGC is set: the
// tool's live heap is small and go-ldap allocates per response, so a
// larger GC target saves some of the CPU this shares with the server under
// test, for a few MB of memory.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1 // a target completed no successful operation
	exitUsage       = 2
	exitInterrupted = 130
)

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "ldapbench: %v\nRun 'ldapbench -h' for usage.\n", err)
		}
		return exitUsage
	}
	b, err := newBench(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ldapbench: %v\n", err)
		return exitUsage
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "ldapbench: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "ldapbench: %v\n", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}

	progress := stdout
	if cfg.JSON {
		progress = stderr
	}
	printHeader(progress, cfg, b.seed)
	b.onResult = newProgressPrinter(progress, cfg)

	rounds, err := b.run(ctx)
	interrupted := errors.Is(err, errInterrupted)
	if interrupted {
		fmt.Fprintf(stderr, "ldapbench: interrupted; summarizing %d completed round(s)\n", len(rounds))
	}
	sums := summarize(cfg, rounds)
	if cfg.JSON {
		if err := writeJSON(stdout, cfg, b.seed, rounds, sums, interrupted); err != nil {
			fmt.Fprintf(stderr, "ldapbench: %v\n", err)
			return exitFailed
		}
	} else if len(rounds) > 0 {
		printSummary(stdout, cfg, sums)
	}

	code := exitOK
	for _, s := range sums {
		if s.ErrorRate > errorWarnRate {
			fmt.Fprintf(stderr, "ldapbench: warning: %s: %.2f%% of operations failed (%d errors); first error: %s\n",
				s.Target, 100*s.ErrorRate, s.Errors, s.FirstError)
		}
		if s.Rounds > 0 && s.Ops == 0 {
			fmt.Fprintf(stderr, "ldapbench: error: %s: no operation succeeded\n", s.Target)
			code = exitFailed
		}
	}
	if interrupted {
		return exitInterrupted
	}
	return code
}
