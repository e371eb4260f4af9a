package sync_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/metrics"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// fakeSyncprov answers syncrepl requests as a provider would, with an empty directory:
// a refreshOnly search ends with the cookie "good", a refreshAndPersist search from
// "good" stays open without news, and one from any other cookie gets
// e-syncRefreshRequired (4096).
type fakeSyncprov struct {
	mu      gosync.Mutex
	cookies []string // the cookie of each refreshAndPersist request, in order
}

func (f *fakeSyncprov) ServeLDAP(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	if r.Op != ldapserver.OpSearch {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
		return
	}
	if r.Search.Scope == ldapserver.ScopeBase && r.Search.BaseDN == "" {
		w.WriteEntry(&ldapserver.Entry{Attributes: []ldapserver.Attribute{attr("supportedControl", ldap.ControlTypeSyncRequest)}})
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
		return
	}
	for _, c := range r.Controls {
		if c.Type != ldap.ControlTypeSyncRequest {
			continue
		}
		p, err := ber.DecodePacketErr(c.Value)
		if err != nil || len(p.Children) == 0 {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultProtocolError})
			return
		}
		mode, _ := p.Children[0].Value.(int64)
		var cookie []byte
		if len(p.Children) > 1 && p.Children[1].Tag == ber.TagOctetString {
			cookie = p.Children[1].Data.Bytes()
		}
		if mode == int64(ldap.SyncRequestModeRefreshOnly) {
			done := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "syncDoneValue")
			done.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "good", "cookie"))
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess, Controls: []ldapserver.Control{
				{Type: ldap.ControlTypeSyncDone, Value: done.Bytes(), HasValue: true}}})
			return
		}
		f.mu.Lock()
		f.cookies = append(f.cookies, string(cookie))
		f.mu.Unlock()
		if !bytes.Equal(cookie, []byte("good")) {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSyncRefreshRequired, Diagnostic: "fake: refresh required"})
			return
		}
		<-r.Context().Done() // persist: nothing ever changes
		return
	}
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess}) // the full read's searches: nothing
}

// TestSyncreplRefreshRequiredFake: e-syncRefreshRequired in answer to a stored cookie
// makes the stream read everything again and resume from the new cookie.
func TestSyncreplRefreshRequiredFake(t *testing.T) {
	f := &fakeSyncprov{}
	e := serveFake(t, f)
	b, err := e.store.BeginBatch()
	if err != nil {
		t.Fatal(err)
	}
	b.SetCookie("syncrepl-users", []byte("outdated"))
	b.SetCookie("syncrepl-groups", []byte("outdated"))
	if _, err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := config(t, func(c *ldapsync.Config) { c.Mode = ldapsync.ModeSyncrepl })
	s, err := ldapsync.New(cfg, e.pool, e.store, slog.New(slog.DiscardHandler), metrics.Registerer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Loop(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		required, _ := metricValue(t, reg, "ldapproxy_sync_stream_full_reads_total", "reason", "refresh_required")
		connected, _ := metricValue(t, reg, "ldapproxy_sync_stream_connected")
		if required >= 1 && connected == 1 && string(e.store.Cookie("syncrepl-users")) == "good" {
			break
		}
		if time.Now().After(deadline) {
			f.mu.Lock()
			t.Fatalf("no full read and resume after e-syncRefreshRequired; requests from cookies %q", f.cookies)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.Contains(strings.Join(f.cookies, " "), "outdated") {
		t.Fatalf("cookies asked from: %q", f.cookies)
	}
}
