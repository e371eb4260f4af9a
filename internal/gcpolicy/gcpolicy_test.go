package gcpolicy

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{10 * MiB, 100},  // a small heap keeps Go's default
		{64 * MiB, 100},  // growth 64 MiB: as much as is live
		{128 * MiB, 50},  // growth 64 MiB
		{256 * MiB, 25},  // growth 64 MiB = a quarter
		{300 * MiB, 25},  // a quarter of itself
		{4096 * MiB, 25}, // never below a quarter
		{100 * MiB, 64},  // ceil(6400/100)
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live/MiB, got, c.want)
		}
	}
}

func TestGrowing(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		prev, live uint64
		want       bool
	}{
		{0, 10 * MiB, false},          // a small start
		{0, 100 * MiB, true},          // the first tree
		{200 * MiB, 240 * MiB, false}, // +20%
		{200 * MiB, 280 * MiB, true},  // +40%
		{300 * MiB, 250 * MiB, false}, // shrinking
		{300 * MiB, 300 * MiB, false},
	} {
		if got := Growing(c.prev, c.live); got != c.want {
			t.Errorf("Growing(%d, %d MiB) = %v, want %v", c.prev/MiB, c.live/MiB, got, c.want)
		}
	}
}

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

// With a large live heap, Start lowers GOGC within one interval; GOGC set in the
// environment is left alone.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	big := make([]byte, 300<<20) // live across the collections below
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	debug.SetGCPercent(100)
	runtime.GC()
	Start(ctx, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(3 * Interval)
	got := 100
	for time.Now().Before(deadline) {
		if got = gogc(); got == 25 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != 25 {
		t.Fatalf("GOGC %d with 300 MiB live, want 25", got)
	}
	_ = big[len(big)-1]
	cancel()

	t.Setenv("GOGC", "80")
	debug.SetGCPercent(80)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	Start(ctx2, slog.New(slog.DiscardHandler))
	time.Sleep(100 * time.Millisecond)
	if got := gogc(); got != 80 {
		t.Fatalf("GOGC %d after Start with GOGC=80 set, want 80 kept", got)
	}
	big[0] = 2
}

// gogc reads the collector's current GOGC.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
