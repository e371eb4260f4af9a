package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// The whole message is one well-formed LDAP bind request of the declared size, so that
// a server reads it as a real request and has to hold it.
func TestMessageIsARequestOfTheDeclaredSize(t *testing.T) {
	for _, size := range []int{64, 1000, 250_000} {
		m := message(size, size)
		if len(m) != size {
			t.Fatalf("size %d: message of %d bytes", size, len(m))
		}
		p, err := ber.ReadPacket(bytes.NewReader(m))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(p.Children) != 2 || p.Children[1].Tag != 0 || p.Children[1].ClassType != ber.ClassApplication {
			t.Fatalf("size %d: not a message with a bind request: %s", size, p.Description)
		}
		if part := message(size, size/2); !bytes.Equal(part, m[:size/2]) {
			t.Fatalf("size %d: the partial message is not the start of the whole", size)
		}
	}
}

// A server that reads everything and closes half of the connections: the report counts
// them, and the process's own memory is sampled.
func TestFloodReports(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(close bool) {
				buf := make([]byte, 100)
				io.ReadFull(c, buf)
				if close {
					c.Close()
				}
			}(i%2 == 0)
		}
	}()
	var out bytes.Buffer
	o := options{
		targets: []named{{"srv", l.Addr().String()}},
		pids:    []named{{"self", strconv.Itoa(osPid())}},
		conns:   10, size: 1000, send: 100,
		hold: 500 * time.Millisecond, dialTimeout: time.Second,
	}
	if err := flood(context.Background(), o.targets[0], o, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"srv: 10 connections opened (0 connect errors), 10 sent all 100 bytes of a 1000-byte message, 5 closed by the server", "self RSS: before "} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &out, &out); code != 0 || !strings.Contains(out.String(), "Usage: ldapflood") {
		t.Errorf("-h: exit %d, %q", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"-targets", "x"}, &out, &out); code != 2 {
		t.Errorf("bad -targets: exit %d, want 2", code)
	}
}

func osPid() int { return os.Getpid() }
