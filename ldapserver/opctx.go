package ldapserver

import (
	"context"
	"sync/atomic"
	"time"
)

// opContext is the context of an operation in flight (Request.Context): the
// connection's context, which also ends when the client abandons the operation and
// when its handler returns.
//
// Most handlers only ask it for Err (a search through the tree, now and then) and for
// values, and most operations end without anyone cancelling them: a cancelable
// context.Context made for each one, registered with the connection's and cancelled
// again at its end, was 2–3% of the proxy's CPU on searches answered from memory (and
// two allocations each). This one is a flag until somebody asks for Done (to wait on
// it, or to derive a context from it): only then is a cancelable context made, once,
// under the connection's.
type opContext struct {
	parent context.Context // the connection's context
	ended  atomic.Bool     // abandoned, or the handler returned
	inner  atomic.Pointer[cancelable]
}

// cancelable is the context an opContext hands out once Done is asked for.
type cancelable struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newOpContext(parent context.Context) *opContext { return &opContext{parent: parent} }

// Deadline is the connection's: an operation has none of its own.
func (o *opContext) Deadline() (time.Time, bool) { return o.parent.Deadline() }

// Done makes the cancelable context the first time it is called.
func (o *opContext) Done() <-chan struct{} { return o.cancelable().ctx.Done() }

// Err is context.Canceled once the operation was abandoned, it ended or the connection
// went away; nil before.
func (o *opContext) Err() error {
	if o.ended.Load() {
		return context.Canceled
	}
	if in := o.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	return o.parent.Err()
}

// Value is the connection context's value, the handler's per-connection state
// (Server.ConnContext) among them. Once the cancelable context is made, it answers:
// the context package finds it that way, so that a context derived from this one is
// cancelled with it and needs no goroutine of its own to learn of it.
func (o *opContext) Value(key any) any {
	if in := o.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return o.parent.Value(key)
}

// cancelable returns the cancelable context, making it if it is not made yet. It is
// cancelled at once if the operation has already ended.
func (o *opContext) cancelable() *cancelable {
	if in := o.inner.Load(); in != nil {
		return in
	}
	ctx, cancel := context.WithCancel(o.parent)
	in := &cancelable{ctx: ctx, cancel: cancel}
	if !o.inner.CompareAndSwap(nil, in) {
		cancel() // another caller's won
		return o.inner.Load()
	}
	if o.ended.Load() {
		cancel()
	}
	return in
}

// end ends the operation's context: its handler returned. Nothing is made for it when
// nobody asked for Done.
func (o *opContext) end() {
	o.ended.Store(true)
	// Either this sees the cancelable context a concurrent cancelable() stores, or that
	// sees ended: one of them cancels it.
	if in := o.inner.Load(); in != nil {
		in.cancel()
	}
}

// abandon ends the operation's context for an Abandon, or as the connection goes away:
// as a cancelled context.Context would, its Value then names the cancelled context
// (context.Cause finds it that way).
func (o *opContext) abandon() {
	o.ended.Store(true)
	o.cancelable().cancel()
}
