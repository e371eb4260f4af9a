package sync_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/metrics"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// byteCounter forwards TCP connections to an upstream and counts the bytes the upstream
// sends back.
type byteCounter struct {
	addr string
	read atomic.Int64
}

func newByteCounter(t *testing.T, upstream string) *byteCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &byteCounter{addr: ln.Addr().String()}
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			go func() { _, _ = io.Copy(up, down); up.Close() }()
			go func() { _, _ = io.Copy(countingWriter{down, &c.read}, up); down.Close() }()
		}
	}()
	return c
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestTimestampPollCost measures what timestamp mode reads from the upstream: the bytes
// of the first full read, of a poll interval with no change, then of one in which 100
// users changed, which must be at most 1% of the full read. A measurement, run when
// LDAPPROXY_SYNC_COST_USERS gives the number of users (20,000 or more for the 1%; one
// group per 50 users).
func TestTimestampPollCost(t *testing.T) {
	users, err := strconv.Atoi(os.Getenv("LDAPPROXY_SYNC_COST_USERS"))
	if err != nil || users < 100 {
		t.Skip("a measurement: set LDAPPROXY_SYNC_COST_USERS (e.g. 100000)")
	}
	srv := slapdtest.New(t, slapdtest.Options{Users: users, Groups: users / 50})
	// The sample data is loaded at once; a directory's newest change is usually one
	// entry. The first polls read again the objects changed within a few seconds before
	// the full read, which here would be all of them.
	time.Sleep(3 * time.Second)
	modify(t, srv.Conn(t), srv.UserDN(1), func(r *ldap.ModifyRequest) { r.Replace("description", []string{"recent"}) })
	cnt := newByteCounter(t, strings.TrimPrefix(srv.URL, "ldap://"))
	e := newEnvAt(t, "ldap://"+cnt.addr, srv.ServiceDN, srv.ServicePassword, srv.Suffix)
	store, err := cache.Open(cache.Config{Path: t.TempDir()}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const poll = 2 * time.Second
	cfg := config(t, func(c *ldapsync.Config) { c.Mode, c.PollInterval = ldapsync.ModeTimestamp, poll })
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := ldapsync.New(cfg, e.pool, store, log, metrics.Registerer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Loop(ctx) }()
	defer func() { cancel(); <-done }()

	wait := func(d time.Duration, what string, ok func(*cache.Snapshot) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok(store.Snapshot()) {
			if time.Since(start) > d {
				t.Fatalf("no %s within %v", what, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(start)
	}
	took := wait(10*time.Minute, "full read", func(sn *cache.Snapshot) bool { u, _ := sn.Counts(); return u == users })
	full := cnt.read.Load()
	// The first polls read again the objects changed shortly before the full read; then
	// an interval with no change.
	var idle int64
	for start := time.Now(); ; {
		from := cnt.read.Load()
		time.Sleep(poll + poll/2)
		if idle = cnt.read.Load() - from; idle < 1024 {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("the polls still read %d bytes per interval with no change", idle)
		}
	}

	before := cnt.read.Load()
	admin := srv.Conn(t)
	for i := range 100 {
		modify(t, admin, srv.UserDN(1+i*(users/100)), func(r *ldap.ModifyRequest) {
			r.Replace("mail", []string{fmt.Sprintf("changed%d@example.org", i)})
		})
	}
	visible := wait(time.Minute, "the 100 changes", func(sn *cache.Snapshot) bool {
		for i := range 100 {
			u, ok := sn.UserByDN(srv.UserDN(1 + i*(users/100)))
			if !ok || u.Email != fmt.Sprintf("changed%d@example.org", i) {
				return false
			}
		}
		return true
	})
	changed := cnt.read.Load() - before
	ratio := float64(changed) / float64(full)
	t.Logf("%d users, %d groups: full read %d bytes in %v; an idle poll interval %d bytes; 100 changes visible after %v, their interval read %d bytes = %.3f%% of the full read",
		users, users/50, full, took.Round(time.Millisecond), idle, visible.Round(time.Millisecond), changed, 100*ratio)
	if ratio > 0.01 {
		t.Errorf("an interval with 100 changes read %.2f%% of a full read's bytes, want at most 1%%", 100*ratio)
	}
}
