package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/metrics"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// relayWriter takes what a handler answers, relayed or written, and keeps the final
// result's code; it tells the outcome as the server's writer does.
type relayWriter struct {
	code    uint16
	results int
}

func (w *relayWriter) Outcome() ldapserver.Outcome {
	return ldapserver.Outcome{Answered: true, Code: w.code}
}

func (w *relayWriter) WriteEntry(*ldapserver.Entry, ...Control) error { return nil }
func (w *relayWriter) WriteReference([]string, ...Control) error      { return nil }

func (w *relayWriter) WriteResult(res *Result) error {
	w.code, w.results = res.Code, w.results+1
	return nil
}

func (w *relayWriter) Relay(resp ldapwire.Response) error {
	if resp.Final {
		w.code, w.results = resp.Code, w.results+1
	}
	return nil
}

// BenchmarkDirectLogin is ldapbench's login round in direct mode, through the handler
// chain (decoding, metrics, name resolution through a synced store of the upstream's
// users, throttle, forwarding to slapd, relaying): bind as the service account, search
// the user, bind as the user, bind as the service account again, search the user's
// groups. The time is mostly slapd's and the loopback's; allocations per login are the
// proxy's own (go test -run - -bench DirectLogin -benchmem ./proxy/).
func BenchmarkDirectLogin(b *testing.B) {
	const users = 50
	srv := slapdtest.New(b, slapdtest.Options{Users: users, Groups: 5})
	log := slog.New(slog.DiscardHandler)
	pool, err := upstream.New(upstream.Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword,
		BaseDN: srv.Suffix, Timeout: 5 * time.Second}, log, metrics.Registerer(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pool.Close() })
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, log, directory.NormalizeDN)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	sw, err := store.BeginSync(cache.KindUsers, cache.KindGroups)
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= users; i++ {
		name := slapdtest.UserName(i)
		if err := sw.PutUser(&cache.User{ID: name, DN: srv.UserDN(i), Username: name, Name: name, IsActive: true}); err != nil {
			b.Fatal(err)
		}
	}
	if err := sw.Commit(); err != nil {
		b.Fatal(err)
	}
	h, _ := newHandler(Options{
		Search:   SearchConfig{Mode: ModeDirect},
		Upstream: pool,
		Store:    store,
		Logger:   log,
		Metrics:  NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 }),
	}, nil)

	type step struct {
		msg  []byte
		want uint16
	}
	var logins [users][]step
	for i := range logins {
		u := i + 1
		logins[i] = []step{
			{ldapwire.BindRequest(srv.ServiceDN, []byte(srv.ServicePassword)), 0},
			{searchMessage(b, 2, srv.Suffix, ldap.ScopeWholeSubtree, fmt.Sprintf("(uid=%s)", slapdtest.UserName(u)), "dn"), 0},
			{ldapwire.BindRequest(srv.UserDN(u), []byte(slapdtest.UserPassword(u))), 0},
			{ldapwire.BindRequest(srv.ServiceDN, []byte(srv.ServicePassword)), 0},
			{searchMessage(b, 5, srv.Suffix, ldap.ScopeWholeSubtree, fmt.Sprintf("(&(objectClass=groupOfNames)(member=%s))", srv.UserDN(u)), "cn"), 0},
		}
	}
	sess := &ldapserver.Session{}
	ctx := h.ConnContext(context.Background(), sess)
	w := &relayWriter{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for _, s := range logins[i%users] {
			r, err := ldapserver.ReadRequest(s.msg)
			if err != nil {
				b.Fatal(err)
			}
			r.Session = sess
			r = r.WithContext(ctx)
			n := w.results
			h.ServeLDAP(w, r)
			if w.results != n+1 || w.code != s.want {
				b.Fatalf("login %d: %d results, code %d", i%users, w.results-n, w.code)
			}
		}
	}
}
