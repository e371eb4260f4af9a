package gcpolicy

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
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
	debug.SetMemoryLimit(math.MaxInt64)
	t.Setenv("GOMEMLIMIT", "")
	Start(slog.New(slog.DiscardHandler))
	got := debug.SetMemoryLimit(-1)
	limit, ok := cgroupLimit()
	switch {
	case !ok && got != math.MaxInt64:
		t.Fatalf("soft limit %d without a container limit", got)
	case ok && got != int64(float64(limit)*limitShare):
		t.Fatalf("soft limit %d under a container limit of %d", got, limit)
	}
}
