package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// loginSteps names the steps of one login-mode operation, in order.
var loginSteps = []string{"bind-svc", "search-user", "bind-user", "rebind-svc", "search-groups"}

// maxDialAttempts bounds consecutive failed connection attempts; a worker
// that exhausts them sits out the rest of the round.
const maxDialAttempts = 5

// workerStats is what one worker measured in one round. Only its worker
// writes it; the round reads it after the worker has finished.
type workerStats struct {
	ops        uint64 // successful operations completed in the measured window
	errors     uint64 // failed operations in the measured window plus connection failures
	entries    uint64 // search mode: entries returned by counted operations
	rxBytes    uint64 // response bytes of counted operations
	reconnects uint64 // connections re-established after a drop
	lat        hist
	steps      []hist // login mode: per-step latency, indexed like loginSteps
	firstErr   error
}

// roundClock holds the time boundaries of one target's run in a round.
type roundClock struct {
	warmupEnd time.Time // operations completing before this are not measured
	end       time.Time // measured window is [warmupEnd, end)
}

// worker drives one connection. Operations are plain method calls on the
// worker's goroutine; with the wire client nothing else runs per operation
// and nothing of ours is allocated on the success path.
type worker struct {
	b     *bench
	tgt   target
	rng   *rand.Rand
	st    *workerStats
	conn  client
	op    func(t0 time.Time) error
	found int // entries returned by the last search-mode operation

	// busy is 1 + the start of the running operation in ns since b.epoch,
	// or 0 when idle; the watchdog uses it to break hung operations.
	busy atomic.Int64
	mu   sync.Mutex // guards nc against the watchdog
	nc   net.Conn
	rx   *countingConn // the connection's reading side, for the response bytes

	userSearch  searchSpec
	groupSearch searchSpec
	stepDur     [5]time.Duration
}

// newWorker prepares worker i for target ti in round r.
func (b *bench) newWorker(t target, r, ti, i int) *worker {
	cfg := b.cfg
	w := &worker{
		b:           b,
		tgt:         t,
		rng:         rand.New(rand.NewPCG(b.seed, uint64(r)<<40|uint64(ti)<<20|uint64(i))),
		st:          &workerStats{},
		userSearch:  newSearchSpec(cfg.Base, cfg.Attrs),
		groupSearch: newSearchSpec(cfg.GroupBase, []string{"cn"}),
	}
	switch cfg.Mode {
	case modeBind:
		w.op = w.bindOp
	case modeSearch:
		w.op = w.searchOp
	case modeLogin:
		w.op = w.loginOp
		w.st.steps = make([]hist, len(loginSteps))
	}
	return w
}

// pick returns a random user.
func (w *worker) pick() user {
	return w.b.users.get(w.rng.IntN(w.b.users.n) + 1)
}

// fail counts an error and remembers the first one.
func (w *worker) fail(err error) {
	w.st.errors++
	if w.st.firstErr == nil {
		w.st.firstErr = err
	}
}

// connect (re)establishes the worker's connection, trying up to
// maxDialAttempts times with exponential backoff. Each failure counts as an
// error. It gives up early once deadline (if non-zero) has passed or the
// benchmark is stopping, and reports whether a connection is up.
func (w *worker) connect(deadline time.Time) bool {
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if w.b.stop.Load() {
			return false
		}
		err := w.dial()
		if err == nil {
			return true
		}
		w.fail(err)
		if attempt == maxDialAttempts || (!deadline.IsZero() && time.Now().Add(backoff).After(deadline)) {
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// dial opens one connection and, in search mode, binds it as the service
// account.
func (w *worker) dial() error {
	nc, err := w.b.dialNet(w.tgt)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	rx := &countingConn{Conn: nc}
	nc = rx
	conn := newClient(w.b.cfg.Client, nc, w.tgt.URL.Scheme == "ldaps")
	if w.b.cfg.Mode == modeSearch && w.b.cfg.BindDN != "" {
		// The watchdog may not be running yet, so bound the bind with a
		// socket deadline instead.
		_ = nc.SetDeadline(time.Now().Add(w.b.cfg.Timeout))
		err := conn.bind(w.b.cfg.BindDN, w.b.cfg.BindPassword)
		_ = nc.SetDeadline(time.Time{})
		if err != nil {
			conn.close()
			return fmt.Errorf("bind as service account: %w", err)
		}
	}
	w.mu.Lock()
	w.nc = nc
	w.mu.Unlock()
	w.conn, w.rx = conn, rx
	return nil
}

// countingConn counts the bytes read from a connection (after TLS): the
// responses' size, which shows whether the targets compared send the same.
// The count is atomic as go-ldap reads on a goroutine of its own.
type countingConn struct {
	net.Conn
	n atomic.Uint64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(uint64(n))
	return n, err
}

// closeConn closes the worker's connection, if any.
func (w *worker) closeConn() {
	if w.conn == nil {
		return
	}
	w.conn.close()
	w.conn = nil
	w.mu.Lock()
	w.nc = nil
	w.mu.Unlock()
}

// abort breaks the worker's connection from another goroutine, making any
// operation in flight fail.
func (w *worker) abort() {
	w.mu.Lock()
	if w.nc != nil {
		_ = w.nc.Close()
	}
	w.mu.Unlock()
}

// run performs operations until the measured window ends or the benchmark
// stops. Latency is the time from before sending the first request of an
// operation to after its last response; only successful operations that
// complete inside [warmupEnd, end) are counted.
func (w *worker) run(c *roundClock) {
	st := w.st
	for !w.b.stop.Load() {
		if w.conn == nil {
			if !w.connect(c.end) {
				return
			}
			st.reconnects++
		}
		t0 := time.Now()
		if !t0.Before(c.end) {
			return
		}
		w.busy.Store(int64(t0.Sub(w.b.epoch)) + 1)
		rx0 := w.rx.n.Load()
		err := w.op(t0)
		t1 := time.Now()
		w.busy.Store(0)
		inWindow := !t1.Before(c.warmupEnd) && t1.Before(c.end)
		switch {
		case err != nil:
			if inWindow {
				w.fail(err)
			}
			if w.conn.closing() {
				// Dropped (by the server, or by the watchdog after
				// -timeout): reconnect on the next iteration. The drop
				// itself is counted, even outside the window.
				if !inWindow {
					w.fail(err)
				}
				w.closeConn()
			}
		case inWindow:
			st.ops++
			st.lat.record(t1.Sub(t0))
			st.entries += uint64(w.found)
			st.rxBytes += w.rx.n.Load() - rx0
			for i := range st.steps {
				st.steps[i].record(w.stepDur[i])
			}
		}
		if !t1.Before(c.end) {
			return
		}
	}
}

// bindOp simple-binds as a random user.
func (w *worker) bindOp(time.Time) error {
	u := w.pick()
	if err := w.conn.bind(u.DN, u.Password); err != nil {
		return fmt.Errorf("bind as %s: %w", u.DN, err)
	}
	return nil
}

// errNoEntries is wrapped by search errors for an empty result.
var errNoEntries = errors.New("no entries")

// searchOp searches for a random user on the service-bound connection.
func (w *worker) searchOp(time.Time) error {
	u := w.pick()
	n, _, err := w.conn.search(&w.userSearch, u.Filter, u.FilterBER, false)
	if err != nil {
		return fmt.Errorf("search %s: %w", u.Filter, err)
	}
	w.found = n
	if w.found == 0 && w.b.cfg.ExpectEntries {
		return fmt.Errorf("search %s under %q: %w", u.Filter, w.userSearch.base, errNoEntries)
	}
	return nil
}

// loginOp runs the typical application login flow for a random user and
// records each step's duration in w.stepDur.
func (w *worker) loginOp(t0 time.Time) error {
	u := w.pick()
	t := t0
	step := func(i int) {
		now := time.Now()
		w.stepDur[i] = now.Sub(t)
		t = now
	}

	cfg := w.b.cfg
	if err := w.conn.bind(cfg.BindDN, cfg.BindPassword); err != nil {
		return fmt.Errorf("bind as service account: %w", err)
	}
	step(0)

	n, dn, err := w.conn.search(&w.userSearch, u.Filter, u.FilterBER, true)
	if err != nil {
		return fmt.Errorf("search %s: %w", u.Filter, err)
	}
	if n != 1 {
		if n == 0 {
			return fmt.Errorf("search %s under %q: %w", u.Filter, w.userSearch.base, errNoEntries)
		}
		return fmt.Errorf("search %s under %q: %d entries, want 1", u.Filter, w.userSearch.base, n)
	}
	step(1)

	if err := w.conn.bind(dn, u.Password); err != nil {
		return fmt.Errorf("bind as %s: %w", dn, err)
	}
	step(2)

	if err := w.conn.bind(cfg.BindDN, cfg.BindPassword); err != nil {
		return fmt.Errorf("rebind as service account: %w", err)
	}
	step(3)

	filter, filterBER := u.GroupFilter, u.GroupFilterBER
	if dn != u.DN {
		filter = w.b.users.groupFilter(dn)
		filterBER = encodeFilter(filter)
	}
	if _, _, err := w.conn.search(&w.groupSearch, filter, filterBER, false); err != nil {
		return fmt.Errorf("search groups %s: %w", filter, err)
	}
	step(4)
	return nil
}
