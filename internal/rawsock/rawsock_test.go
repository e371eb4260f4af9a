package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a connected TCP pair on loopback: a wrapped by Wrap, b as it is.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	a = Wrap(dialed)
	if runtime.GOOS == "linux" && a == dialed {
		t.Fatal("Wrap left a TCP connection as it was on Linux")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestReadWriteBothWays(t *testing.T) {
	a, b := pair(t)
	// Larger than the sockets' buffers: writes must wait for the reader and go on.
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	for _, dir := range []struct {
		name string
		w, r net.Conn
	}{{"wrapped writes", a, b}, {"wrapped reads", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				n, err := dir.w.Write(want)
				if err == nil && n != len(want) {
					err = io.ErrShortWrite
				}
				errc <- err
			}()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(dir.r, got); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the bytes read are not the bytes written")
			}
		})
	}
}

// TestConcurrentWritesDoNotInterleave: each Write goes out whole, as net.Conn's does,
// even when the socket's buffer fills in the middle of it.
func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	a, b := pair(t)
	const writers, size = 4, 1 << 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Write(bytes.Repeat([]byte{byte('A' + i)}, size)); err != nil {
				t.Error(err)
			}
		}()
	}
	got := make([]byte, writers*size)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := 0; i < len(got); i += size {
		block := got[i : i+size]
		if bytes.Count(block, block[:1]) != size {
			t.Fatalf("block %d mixes the writes of several writers", i/size)
		}
	}
}

func TestReadReturnsWhatArrived(t *testing.T) {
	a, b := pair(t)
	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := a.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

func TestEOF(t *testing.T) {
	a, b := pair(t)
	b.Write([]byte("last"))
	b.Close()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll = %q, %v; want last and no error (io.EOF at the end)", got, err)
	}
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after the end = %v, want io.EOF", err)
	}
}

func TestReadDeadline(t *testing.T) {
	a, _ := pair(t)
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := a.Read(make([]byte, 1))
	assertTimeout(t, "read", err)
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("Read gave up after %v, before its deadline", d)
	}
	// A new deadline lets the next Read go on where the first stopped.
	a.SetReadDeadline(time.Time{})
}

// TestWriteDeadline: a Write whose deadline passes while it is under way reports the
// bytes it wrote. The deadline is set once the peer has received a byte, so that the
// Write has begun whatever the load: one set before the Write may pass before it starts.
func TestWriteDeadline(t *testing.T) {
	a, b := pair(t) // the peer reads one byte, then no more: the buffers fill
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := a.Write(make([]byte, 64<<20))
		done <- result{n, err}
	}()
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	a.SetWriteDeadline(time.Now())
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write went on after its deadline")
	}
	assertTimeout(t, "write", r.err)
	if r.n <= 0 || r.n >= 64<<20 {
		t.Fatalf("Write reported %d bytes written; want what the buffers took", r.n)
	}
}

func TestWriteTimeout(t *testing.T) {
	a, _ := pair(t) // the peer never reads: the buffers fill
	if !SetWriteTimeout(a, 100*time.Millisecond) {
		t.Fatal("SetWriteTimeout does not take a wrapped connection")
	}
	start := time.Now()
	n, err := a.Write(make([]byte, 64<<20))
	assertTimeout(t, "write", err)
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("Write gave up after %v, before its timeout", d)
	}
	if n <= 0 || n >= 64<<20 {
		t.Fatalf("Write reported %d bytes written; want what the buffers took", n)
	}
}

// TestWriteTimeoutEachWrite: the timeout bounds each Write that waits, from when it
// waits, and leaves no deadline behind it: a later Write, long after, goes through.
//
// The timeout is long beside the time the reader takes (about 50 ms), which a loaded
// machine may multiply.
func TestWriteTimeoutEachWrite(t *testing.T) {
	a, b := pair(t)
	const timeout = 2 * time.Second
	SetWriteTimeout(a, timeout)
	big := make([]byte, 16<<20)
	got := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer waits for this reader
		_, err := io.ReadFull(b, make([]byte, len(big)+4))
		got <- err
	}()
	start := time.Now()
	if _, err := a.Write(big); err != nil {
		t.Fatalf("a Write the reader takes within the timeout: %v", err)
	}
	time.Sleep(time.Until(start.Add(timeout + 100*time.Millisecond)))
	if _, err := a.Write([]byte("more")); err != nil {
		t.Fatalf("a Write after the timeout's span: %v (a deadline left behind?)", err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if SetWriteTimeout(b, timeout) {
		t.Fatal("SetWriteTimeout took a connection Wrap did not make")
	}
}

func assertTimeout(t *testing.T, op string, err error) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op {
		t.Fatalf("error %v (%T), want a *net.OpError of op %q", err, err, op)
	}
	if !oe.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v does not say the deadline passed", err)
	}
}

func TestCloseUnderRead(t *testing.T) {
	a, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read under Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the Read")
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// TestReset: an error of the socket itself comes back as the net package reports it.
func TestReset(t *testing.T) {
	a, b := pair(t)
	b.(*net.TCPConn).SetLinger(0) // Close sends a reset
	b.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := a.Read(make([]byte, 1))
	var se *os.SyscallError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset = %v (%T), want ECONNRESET as an *os.SyscallError", err, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset = %v, want a *net.OpError of op read", err)
	}
}

func TestWrapLeavesOtherConnections(t *testing.T) {
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if Wrap(p) != p {
		t.Fatal("Wrap changed a connection that is not TCP")
	}
}

func TestSyscallConn(t *testing.T) {
	a, _ := pair(t)
	sc, ok := a.(syscall.Conn)
	if !ok {
		t.Fatal("the wrapped connection does not give its socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil || fd == 0 {
		t.Fatalf("Control: fd %d, %v", fd, err)
	}
}
