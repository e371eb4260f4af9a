// Package gcpolicy sizes the Go collector for a process whose heap is mostly one large,
// long-lived structure (the served directory): it keeps the heap's growth between
// collections to a headroom of its own instead of letting it double, and under a
// container's memory limit sets the Go runtime's soft limit below it.
//
// Go's default (GOGC=100) lets the heap grow by as much as is live before collecting,
// and keeps the memory it freed up to that goal: with 300 MiB of directory that is
// 300 MiB more, for garbage that the requests make at a few MiB per second. Here the
// growth is max(Headroom, live/4): GOGC becomes 100·growth/live, between MinPercent and
// 100, re-read every Interval from the live heap the runtime measured at its last
// collection, unless the heap is growing fast (a tree being built, a first sync). A
// small heap keeps Go's default. GOGC or GOMEMLIMIT set in the
// environment are the operator's choice and left alone.
package gcpolicy

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

const (
	// Headroom is the least growth allowed between collections.
	Headroom = 64 << 20
	// MinPercent bounds GOGC from below: a larger heap grows by a quarter of itself.
	MinPercent = 25
	// Interval is how often the live heap is looked at.
	Interval = 5 * time.Second
	// limitShare is the part of a container's memory limit given to the Go runtime as
	// its soft limit; the rest is for memory-mapped files, stacks and the kernel's
	// accounting of the process.
	limitShare = 0.85
)

// Percent is the GOGC for a live heap of live bytes.
func Percent(live uint64) int {
	if live == 0 {
		return 100
	}
	growth := max(uint64(Headroom), live/4)
	p := int(math.Ceil(100 * float64(growth) / float64(live)))
	return min(100, max(MinPercent, p))
}

// Growing tells whether the live heap grew from prev to live as a build does: by more
// than a quarter and 16 MiB since the last look. Then Go's default stays, so that the
// served tree is built (or a first sync read) at full speed; the headroom is made small
// once the heap holds still.
func Growing(prev, live uint64) bool {
	return live > prev+prev/4+16<<20
}

// Start applies the policy for the life of ctx: a soft memory limit from the
// container's limit, and GOGC from the live heap. It logs what it set.
func Start(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit, ok := cgroupLimit(); ok {
			soft := int64(float64(limit) * limitShare)
			debug.SetMemoryLimit(soft)
			log.Info("memory: soft limit for the Go runtime set from the container's limit",
				"container_limit_bytes", limit, "soft_limit_bytes", soft)
		}
	}
	if os.Getenv("GOGC") != "" {
		return
	}
	go func() {
		t := time.NewTicker(Interval)
		defer t.Stop()
		current, prev := 100, uint64(0)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				live := sample[0].Value.Uint64()
				p := Percent(live)
				if Growing(prev, live) {
					p = 100 // a build or a first sync: collections would slow it down
				}
				if p != current {
					debug.SetGCPercent(p)
					log.Debug("memory: collector target changed", "gogc", p, "live_heap_bytes", live)
					current = p
				}
				prev = live
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// cgroupLimit returns the memory limit of the process's cgroup (v2, else v1), if it
// has one.
func cgroupLimit() (int64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		return parseLimit(string(data))
	}
	return 0, false
}

// parseLimit reads a cgroup memory limit file's content: bytes, or "max" for none (v1
// says none with a number near 2^63).
func parseLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0, false
	}
	return n, true
}
