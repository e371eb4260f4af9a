package gcpolicy

import (
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"268435456\n":           268435456,
		"max\n":                 0,
		"9223372036854771712\n": 0, // cgroup v1 without a limit
		"":                      0,
		"-1":                    0,
	} {
		got, ok := parseLimit(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// GOMEMLIMIT in the environment is left alone, whatever the container's limit.
func TestStartKeepsGOMEMLIMIT(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	noPacing(t) // Start paces the collector too
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "1GiB")
	Start(slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("soft limit %d after Start with GOMEMLIMIT set", got)
	}
}

// Without GOMEMLIMIT, the soft limit is 85% of the container's, when it has one.
func TestStartFollowsTheContainer(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	noPacing(t) // Start paces the collector too
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "")
	Start(slog.New(slog.DiscardHandler))
	got := debug.SetMemoryLimit(-1)
	limit, ok := containerLimit(os.DirFS("/"))
	switch {
	case !ok && got != math.MaxInt64:
		t.Fatalf("soft limit %d without a container limit", got)
	case ok && got != int64(float64(limit)*limitShare):
		t.Fatalf("soft limit %d under a container limit of %d", got, limit)
	}
}

// noPacing has the test start with the collector at Go's default and no pacing, and
// leaves it so.
func noPacing(t *testing.T) {
	reset := func() {
		pacer.mu.Lock()
		pacer.steady, pacer.bounded = nil, nil
		debug.SetGCPercent(100)
		pacer.mu.Unlock()
	}
	reset()
	t.Cleanup(reset)
}

// settle has a few collections run, and the finalizers they make due.
func settle() {
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

// gcPercent is the collector's current setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Bounded lets the heap grow by the headroom (64 MiB on 128 MiB live: 50%), by no less
// than the minimum percent and no more than Go's default, and stop restores the setting.
func TestBounded(t *testing.T) {
	t.Setenv("GOGC", "")
	noPacing(t)
	keep := make([][]byte, 128)
	for i := range keep {
		keep[i] = make([]byte, 1<<20)
	}
	// After a collection and the finalizer it runs, the percent follows the live heap.
	for _, c := range []struct {
		headroom   uint64
		min        int
		lo, hi     int
		constraint string
	}{
		{64 << 20, 10, 40, 50, "the headroom"},
		{1 << 20, 30, 30, 30, "the minimum"},
		{1 << 40, 10, 100, 100, "Go's default"},
	} {
		stop := Bounded(c.headroom, c.min)
		settle()
		if p := gcPercent(); p < c.lo || p > c.hi {
			t.Errorf("GOGC %d with %d bytes of headroom and a minimum of %d; want %d-%d (%s)", p, c.headroom, c.min, c.lo, c.hi, c.constraint)
		}
		// One at a time: a second does nothing, and its stop neither.
		Bounded(1<<40, 100)()
		settle()
		if p := gcPercent(); p < c.lo || p > c.hi {
			t.Errorf("GOGC %d after a Bounded inside another", p)
		}
		stop()
		stop()
		settle()
		if p := gcPercent(); p != 100 {
			t.Errorf("GOGC %d after stop, want 100", p)
		}
	}
	runtime.KeepAlive(keep)
}

// GOGC in the environment is the operator's choice: Bounded leaves it alone.
func TestBoundedKeepsGOGC(t *testing.T) {
	noPacing(t)
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	stop := Bounded(1<<20, 10)
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if p := gcPercent(); p != 200 {
		t.Fatalf("GOGC %d under Bounded with GOGC=200 set", p)
	}
	stop()
}

// Start sets the collector's growth to defaultPercent, unless GOGC is set; Bounded never
// lets the heap grow by more than that setting.
func TestStartPercent(t *testing.T) {
	noPacing(t)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	Start(slog.New(slog.DiscardHandler))
	if p := gcPercent(); p != defaultPercent {
		t.Fatalf("GOGC %d after Start, want %d", p, defaultPercent)
	}
	stop := Bounded(1<<40, 10) // a headroom that would allow any growth
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if p := gcPercent(); p != defaultPercent {
		t.Errorf("GOGC %d under Bounded, want at most the %d before", p, defaultPercent)
	}
	stop()
	if p := gcPercent(); p != defaultPercent {
		t.Errorf("GOGC %d after Bounded stopped, want %d again", p, defaultPercent)
	}

	debug.SetGCPercent(100)
	t.Setenv("GOGC", "100")
	Start(slog.New(slog.DiscardHandler))
	if p := gcPercent(); p != 100 {
		t.Fatalf("GOGC %d after Start with GOGC=100 set", p)
	}
}

// After Start, the heap grows by steadyHeadroom between collections, or by
// steadyMinPercent of the live heap when that is more, never by more than defaultPercent:
// the percent follows the live heap from one collection to the next. A Bounded run paces
// by its own headroom meanwhile, and Start's pacing comes back when it stops.
func TestStartPaces(t *testing.T) {
	noPacing(t)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	Start(slog.New(slog.DiscardHandler))
	hold := func(mib int) {
		held = make([][]byte, mib)
		for i := range held {
			held[i] = make([]byte, 1<<20)
		}
		settle()
	}
	want := func(what string, lo, hi int) {
		t.Helper()
		if p := gcPercent(); p < lo || p > hi {
			t.Errorf("GOGC %d %s; want %d-%d (live heap %d bytes)", p, what, lo, hi, liveHeap())
		}
	}
	hold(20) // 4 MiB on about 22 MiB live: about 18%
	want("with 20 MiB live", 14, 20)
	hold(256) // 4 MiB on 258 MiB: 1.5%, so the minimum
	want("with 256 MiB live", steadyMinPercent, steadyMinPercent)
	stop := Bounded(128<<20, 25) // 128 MiB on 258: about 50%, more than Start's limit
	settle()
	want("under Bounded", 40, defaultPercent)
	stop()
	settle()
	want("after Bounded", steadyMinPercent, steadyMinPercent)
	held = nil
	settle() // a small heap: 4 MiB is more than half of it
	want("with the heap given back", defaultPercent, defaultPercent)
}

// held is what TestStartPaces keeps live.
var held [][]byte
