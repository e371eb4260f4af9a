package ldapserver

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// After a burst of large requests, such as many clients each sending most of a big
// message and going silent, the buffers they held are garbage once the connections
// close, but the Go runtime keeps the pages for reuse and gives them back to the system
// slowly, if ever, while the heap stays below its goal. A burst that pressed on the
// partial-request budget therefore hands its memory back explicitly once the last large
// request still arriving or waiting to be decoded is gone, at most once per releaseEvery.
const (
	releaseDelay = time.Second      // a new burst within it cancels nothing, only waits
	releaseEvery = 30 * time.Second // a flood that comes and goes costs one full GC per period
)

type memoryRelease struct {
	free  func() // returns freed memory to the system: debug.FreeOSMemory, or a test's
	mu    sync.Mutex
	timer *time.Timer // pending release
	last  time.Time   // of the last release
}

// notePressure marks the partial-request budget as pressed on when it holds more than
// half of its cap (takePartial marks it too when it refuses a request).
func (s *Server) notePressure(held int64) {
	if held > s.maxPartialBytes()/2 {
		s.pressure.Store(true)
	}
}

// partialDone gives n bytes of the partial-request budget back and, when that empties a
// budget that was pressed on, schedules the memory's release.
func (s *Server) partialDone(n int64) {
	if n == 0 {
		return
	}
	if s.partial.Add(-n) == 0 && s.pressure.CompareAndSwap(true, false) {
		s.scheduleRelease()
	}
}

func (s *Server) scheduleRelease() {
	r := &s.release
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil || s.shutdown.Load() {
		return
	}
	delay := max(releaseDelay, releaseEvery-time.Since(r.last))
	free := r.free
	if free == nil {
		free = debug.FreeOSMemory
	}
	r.timer = time.AfterFunc(delay, func() {
		free()
		r.mu.Lock()
		r.last, r.timer = time.Now(), nil
		r.mu.Unlock()
		s.logger().Info("memory of large requests returned to the system after a burst")
	})
}

// stopRelease cancels a pending release, at shutdown.
func (s *Server) stopRelease() {
	r := &s.release
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// Decoding a request costs up to 100 times its size (go-asn1-ber's packets take about
// 200 bytes per BER element, and an element may take two bytes). Requests over
// smallFrame, rare in LDAP (a filter with thousands of items), are therefore decoded one
// at a time, which costs little (a dense 256 KiB request decodes in some 40 ms):
// clients that complete many large requests at the same moment (a flood before
// authentication, each connection sending all but the last byte of a dense 256 KiB
// request, then all of them the last one) wait their turn here instead of each building
// 25 MiB of packets at once. Their bytes count against the partial-request budget until
// they are decoded, so that no more of them wait here than the budget holds.
func (s *Server) acquireDecode(ctx context.Context) bool {
	select {
	case s.decoding <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) releaseDecode() { <-s.decoding }
