// Command ldapflood measures what unauthenticated connections that never finish a
// request cost a server in memory: the attack in which many clients each declare a large
// LDAP message and send most of it, then go silent.
//
// For each target in turn it opens -conns connections, writes on each the header of one
// LDAP message declaring -size bytes followed by -send bytes of it, holds them for
// -hold, closes them and waits -settle. Meanwhile it samples the resident memory (VmRSS,
// from /proc) of the processes named by -pids. It reports, per target, the memory before
// the attack, the peak while the connections were held, and after they closed, and how
// many connections the server closed by itself (having refused the message).
//
//	ldapflood -targets proxy=127.0.0.1:3389,slapd=127.0.0.1:4389 \
//	    -pids proxy=1234,slapd=1200 -conns 1500 -size 250000 -send 240000
//
// Compare the memory added by the same attack on the proxy and on the directory server.
// scripts/bench-flood.sh runs it against a proxy and the slapd behind it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type named struct{ name, value string }

// parseNamed parses "name=value,name=value".
func parseNamed(s string) ([]named, error) {
	var out []named
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("%q: want name=value", part)
		}
		out = append(out, named{name, value})
	}
	return out, nil
}

type options struct {
	targets     []named
	pids        []named
	conns       int
	size, send  int
	hold        time.Duration
	settle      time.Duration
	dialTimeout time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ldapflood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "", "servers to flood, one after the other: name=host:port,name=host:port (required)")
	pids := fs.String("pids", "", "processes whose resident memory to report: name=pid,name=pid")
	var o options
	fs.IntVar(&o.conns, "conns", 1500, "connections per target")
	fs.IntVar(&o.size, "size", 250_000, "length each connection declares for its message, in bytes")
	fs.IntVar(&o.send, "send", 240_000, "bytes of the message each connection sends before going silent")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "how long the connections are held once open")
	fs.DurationVar(&o.settle, "settle", 30*time.Second, "how long to wait after closing them before measuring again")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", 5*time.Second, "timeout of one connect")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ldapflood -targets name=host:port[,...] [-pids name=pid[,...]] [flags]\n\n"+
			"Opens -conns unauthenticated connections to each target, each sending -send bytes of an\n"+
			"LDAP message that declares -size bytes, holds them, closes them, and reports the\n"+
			"resident memory of the -pids processes before, during and after.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if o.targets, err = parseNamed(*targets); err != nil || len(o.targets) == 0 {
		fmt.Fprintln(stderr, "ldapflood: -targets: want name=host:port[,...]", err)
		return 2
	}
	if o.pids, err = parseNamed(*pids); err != nil {
		fmt.Fprintln(stderr, "ldapflood: -pids:", err)
		return 2
	}
	for _, p := range o.pids {
		if _, err := rss(p.value); err != nil {
			fmt.Fprintf(stderr, "ldapflood: -pids %s: %v\n", p.name, err)
			return 2
		}
	}
	if o.conns < 1 || o.size < 16 || o.send < 0 || o.send > o.size {
		fmt.Fprintln(stderr, "ldapflood: want -conns ≥ 1, -size ≥ 16 and 0 ≤ -send ≤ -size")
		return 2
	}
	for _, t := range o.targets {
		if err := flood(ctx, t, o, stdout); err != nil {
			fmt.Fprintf(stderr, "ldapflood: %s: %v\n", t.name, err)
			return 1
		}
	}
	return 0
}

// message returns the first send bytes of an LDAP bind request of size bytes in all:
// a SEQUENCE, a message ID and a bindRequest whose name is one long OCTET STRING.
func message(size, send int) []byte {
	b := make([]byte, 0, send)
	length := func(n int) []byte { return []byte{0x84, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
	body := size - 6 // after the SEQUENCE header
	b = append(b, 0x30)
	b = append(b, length(body)...)
	b = append(b, 0x02, 0x01, 0x01)        // messageID 1
	b = append(b, 0x60)                    // bindRequest
	b = append(b, length(body-3-6)...)     // its length
	b = append(b, 0x02, 0x01, 0x03)        // version 3
	b = append(b, 0x04)                    // name: OCTET STRING
	b = append(b, length(body-3-6-3-6)...) // the rest
	for len(b) < send {
		b = append(b, 'a')
	}
	if len(b) > send {
		b = b[:send]
	}
	return b
}

// sample is the resident memory of each -pids process, in bytes.
type sample map[string]int64

func measure(pids []named) sample {
	s := sample{}
	for _, p := range pids {
		if v, err := rss(p.value); err == nil {
			s[p.name] = v
		}
	}
	return s
}

// rss reads VmRSS of a process from /proc.
func rss(pid string) (int64, error) {
	if _, err := strconv.Atoi(pid); err != nil {
		return 0, fmt.Errorf("%q is not a process id", pid)
	}
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + pid + "/status")
}

func flood(ctx context.Context, t named, o options, out io.Writer) error {
	before := measure(o.pids)
	msg := message(o.size, o.send)

	// Sample the peak while the attack runs.
	peak := sample{}
	for k, v := range before {
		peak[k] = v
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for k, v := range measure(o.pids) {
				peak[k] = max(peak[k], v)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	var (
		mu                  sync.Mutex
		conns               []net.Conn
		opened, sentAll     atomic.Int64
		closedByServer      atomic.Int64
		dialErrs, writeErrs atomic.Int64
		wg                  sync.WaitGroup
	)
	sem := make(chan struct{}, 64) // connects in flight
	d := net.Dialer{Timeout: o.dialTimeout}
	for i := 0; i < o.conns && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(ctx, "tcp", t.value)
			<-sem
			if err != nil {
				dialErrs.Add(1)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			opened.Add(1)
			c.SetWriteDeadline(time.Now().Add(o.hold))
			if _, err := c.Write(msg); err != nil {
				writeErrs.Add(1)
			} else {
				sentAll.Add(1)
			}
			// Whatever the server answers, the connection is closed by it when a read
			// ends before the hold does.
			c.SetReadDeadline(time.Now().Add(o.hold + time.Minute))
			if _, err := io.Copy(io.Discard, c); err == nil || !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
				closedByServer.Add(1)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(o.hold):
	}
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	close(stopSampling)
	<-sampled

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.settle):
	}
	after := measure(o.pids)

	fmt.Fprintf(out, "%s: %d connections opened (%d connect errors), %d sent all %d bytes of a %d-byte message, %d closed by the server\n",
		t.name, opened.Load(), dialErrs.Load(), sentAll.Load(), o.send, o.size, closedByServer.Load())
	for _, p := range o.pids {
		b, ok := before[p.name]
		if !ok {
			continue
		}
		fmt.Fprintf(out, "  %s RSS: before %s, peak %s (%+.1f MiB), %s after closing (%+.1f MiB)\n",
			p.name, mib(b), mib(peak[p.name]), float64(peak[p.name]-b)/(1<<20), mib(after[p.name]), float64(after[p.name]-b)/(1<<20))
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
