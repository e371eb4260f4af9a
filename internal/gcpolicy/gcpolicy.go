// Package gcpolicy fits the Go runtime to the container the process runs in: under a
// cgroup memory limit (v2, else v1; the smallest from the process's own cgroup up, so
// that a systemd unit's MemoryMax= counts as a container's limit does) it sets the
// runtime's soft memory limit to limitShare of it, so that the collector works harder as the heap nears the limit
// instead of the process being killed for crossing it. GOMEMLIMIT set in the
// environment is the operator's choice and left alone.
//
// After Start the collector lets the heap grow by 4 MiB between collections
// (steadyHeadroom), or by a tenth of what is live when that is more, and never by more
// than half of it (GOGC 50, defaultPercent), not Go's default of as much: most of the
// heap is the directory, kept from one sync to the next, so the growth is the garbage
// of the requests between two collections, which does not grow with the directory.
// Go's default keeps about twice the directory's heap resident. After each collection
// the growth is set again from the live heap it found (a finalizer runs once per
// collection). A collection is cheap once the store's records and the served tree's
// entries hold no pointers (a forced one at 100,000 users: a few ms of CPU), so a
// small headroom costs little: at 100,000 users, 4 MiB against 8 MiB, CPU per cached
// search and per login no higher within the machine's noise, and RSS after a login
// load a few MiB lower (docs/performance.md, "The collector's headroom"). GOGC set in the environment is
// the operator's choice and left alone. A run that fills the heap with data it keeps,
// such as a first sync or the first build of the served tree, paces the heap's growth
// by its own headroom for its duration (Bounded).
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
)

// limitShare is the part of a container's memory limit given to the Go runtime as its
// soft limit; the rest is for memory-mapped files, stacks and the kernel's accounting
// of the process.
const limitShare = 0.85

// The collector's growth between collections unless GOGC is set: steadyHeadroom bytes,
// or steadyMinPercent of the live heap when that is more, and never more than
// defaultPercent of it.
const (
	defaultPercent   = 50
	steadyHeadroom   = 4 << 20
	steadyMinPercent = 10
)

// Start paces the collector (steadyHeadroom, steadyMinPercent, defaultPercent) unless
// GOGC is set, and sets the soft memory limit from the container's limit, if there is
// one and GOMEMLIMIT is not set, and logs it.
func Start(log *slog.Logger) {
	pacer.mu.Lock()
	pacer.steady = nil
	if os.Getenv("GOGC") == "" {
		pacer.steady = &pace{headroom: steadyHeadroom, min: steadyMinPercent, max: defaultPercent}
		if pacer.bounded == nil {
			pacer.apply()
		}
	}
	pacer.mu.Unlock()
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

// Bounded paces the collector for a run that builds a large heap that stays, such as a
// sync into an empty store: after each collection it lets the heap grow by headroom
// bytes before the next one, or by minPercent of the live heap when that is more, and
// never by more than the setting in force before (Start's, or Go's default of 100).
// That setting would let the heap of such a run end at up to twice what it keeps. stop
// restores the pacing before (Start's, or none). GOGC set in the environment is the
// operator's choice and left alone, and a Bounded while another runs does nothing: stop
// then does nothing either.
func Bounded(headroom uint64, minPercent int) (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	pacer.mu.Lock()
	defer pacer.mu.Unlock()
	if pacer.bounded != nil {
		return func() {}
	}
	limit := pacer.fixed()
	if pacer.steady != nil {
		limit = pacer.steady.max
	}
	b := &pace{headroom: headroom, min: minPercent, max: limit}
	pacer.bounded = b
	pacer.apply()
	var once sync.Once
	return func() {
		once.Do(func() {
			pacer.mu.Lock()
			defer pacer.mu.Unlock()
			pacer.bounded = nil
			if pacer.steady == nil {
				debug.SetGCPercent(b.max)
				return
			}
			pacer.apply()
		})
	}
}

// pace is a growth between collections: headroom bytes, or min percent of the live heap
// when that is more, never more than max percent.
type pace struct {
	headroom uint64
	min, max int
}

// percent is the GOGC that lets a heap of live bytes grow as p says.
func (p *pace) percent(live uint64) int {
	if live == 0 {
		return p.max
	}
	return min(p.max, max(p.min, int(min(p.headroom*100/live, 1<<20))))
}

// pacer sets the collector's growth after each collection from the live heap it found,
// by Bounded's pace while one runs, else by Start's.
var pacer pacerState

type pacerState struct {
	mu      sync.Mutex
	steady  *pace // Start's; nil before Start, or with GOGC set
	bounded *pace // while a Bounded runs
	armed   bool  // a sentinel waits for the next collection
}

// fixed is the collector's setting in force (Go's default when none: 100).
func (s *pacerState) fixed() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	if p <= 0 {
		return 100
	}
	return p
}

// apply sets the growth from the last collection's live heap and has it set again after
// the next one. Called with mu held.
func (s *pacerState) apply() {
	p := s.bounded
	if p == nil {
		p = s.steady
	}
	if p == nil {
		return
	}
	debug.SetGCPercent(p.percent(liveHeap()))
	if !s.armed {
		s.armed = true
		arm()
	}
}

// sentinel is garbage from the moment it is made: its finalizer runs after the next
// collection. It holds a pointer, so that it is never one of the tiny objects that
// share a block, whose finalizers may not run.
type sentinel struct{ p *pacerState }

// arm has adjust called after the next collection.
func arm() {
	runtime.SetFinalizer(&sentinel{p: &pacer}, func(s *sentinel) { s.p.adjust() })
}

// adjust sets the growth from the live heap the last collection found, and waits for
// the next one while anything paces.
func (s *pacerState) adjust() {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.bounded
	if p == nil {
		p = s.steady
	}
	if p == nil {
		s.armed = false
		return
	}
	debug.SetGCPercent(p.percent(liveHeap()))
	arm()
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
