// Package gcpolicy fits the Go runtime to the container the process runs in: under a
// cgroup memory limit (v2, else v1; the smallest from the process's own cgroup up, so
// that a systemd unit's MemoryMax= counts as a container's limit does) it sets the
// runtime's soft memory limit to limitShare of it, so that the collector works harder as the heap nears the limit
// instead of the process being killed for crossing it. GOMEMLIMIT set in the
// environment is the operator's choice and left alone.
//
// The collector lets the heap grow by half of what is live between collections (GOGC
// 50, defaultPercent), not Go's default of as much: most of the heap is the directory,
// kept from one sync to the next and pointing at little, so a collection costs little,
// and Go's default keeps about twice that heap resident. At 100,000 users, two serve
// processes side by side under a cached search load: 194 against 220 MiB of RSS, and
// 21.4 against 20.8–21.1 µs of CPU per search (scripts/bench-gogc.sh;
// docs/performance.md has the figures). GOGC set in the environment is the operator's
// choice and left alone. A run that fills the heap with data it keeps, such as a first
// sync or the first build of the served tree, bounds the heap's growth for its
// duration (Bounded).
package gcpolicy

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// limitShare is the part of a container's memory limit given to the Go runtime as its
// soft limit; the rest is for memory-mapped files, stacks and the kernel's accounting
// of the process.
const limitShare = 0.85

// defaultPercent is the collector's growth between collections unless GOGC is set.
const defaultPercent = 50

// Start sets the collector's growth to defaultPercent unless GOGC is set, and the soft
// memory limit from the container's limit, if there is one and GOMEMLIMIT is not set,
// and logs it.
func Start(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, ok := containerLimit(os.DirFS("/"))
	if !ok {
		return
	}
	soft := int64(float64(limit) * limitShare)
	debug.SetMemoryLimit(soft)
	log.Info("memory: soft limit for the Go runtime set from the container's limit",
		"container_limit_bytes", limit, "soft_limit_bytes", soft)
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

// pacing is set while Bounded paces the collector: one at a time.
var pacing atomic.Bool

// Bounded paces the collector for a run that builds a large heap that stays, such as a
// sync into an empty store: after each collection it lets the heap grow by headroom
// bytes before the next one, or by minPercent of the live heap when that is more, and
// never by more than the setting in force before (Start's, or Go's default of 100).
// That setting would let the heap of such a run end at up to twice what it keeps. stop restores the collector's
// previous setting. GOGC set in the environment is the operator's choice and left
// alone, and a Bounded while another runs does nothing: stop then does nothing either.
func Bounded(headroom uint64, minPercent int) (stop func()) {
	if os.Getenv("GOGC") != "" || !pacing.CompareAndSwap(false, true) {
		return func() {}
	}
	p := &pacer{headroom: headroom, min: minPercent}
	p.old = debug.SetGCPercent(100)
	debug.SetGCPercent(p.percent(liveHeap()))
	p.arm()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.stopped = true
			debug.SetGCPercent(p.old)
			pacing.Store(false)
		})
	}
}

// pacer is Bounded's state.
type pacer struct {
	headroom uint64
	min      int
	mu       sync.Mutex
	old      int // the setting before
	stopped  bool
}

// percent is the GOGC that lets a heap of live bytes grow by the headroom, never more
// than the setting before.
func (p *pacer) percent(live uint64) int {
	limit := p.old
	if limit <= 0 {
		limit = 100
	}
	if live == 0 {
		return limit
	}
	return min(limit, max(p.min, int(p.headroom*100/live)))
}

// sentinel is garbage from the moment it is made: its finalizer runs after the next
// collection. It holds a pointer, so that it is never one of the tiny objects that
// share a block, whose finalizers may not run.
type sentinel struct{ p *pacer }

// arm has adjust called after the next collection.
func (p *pacer) arm() {
	runtime.SetFinalizer(&sentinel{p: p}, func(s *sentinel) { s.p.adjust() })
}

// adjust sets the growth from the live heap the last collection found, and waits for
// the next one.
func (p *pacer) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	debug.SetGCPercent(p.percent(liveHeap()))
	p.arm()
}

// liveHeap is the heap the last collection marked live, in bytes.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
