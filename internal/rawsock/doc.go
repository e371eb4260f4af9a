// Package rawsock makes a TCP connection's reads and writes as raw system calls, in the
// steps of Go's network poller: the sockets are non-blocking, so a read or write never
// waits in the kernel, and the runtime's bookkeeping for a call that might (entersyscall,
// and the system monitor handing the processor to another thread when the call seems to
// take long) only costs. On a busy machine, where the kernel often preempts a thread in
// the middle of a write to a local peer, that hand-off woke a thread and switched
// context about once per forwarded request.
package rawsock
