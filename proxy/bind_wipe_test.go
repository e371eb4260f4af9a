package proxy

import (
	"bytes"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// TestBindRewrittenPasswordCleared checks that a bind whose name resolves to a synced
// user, which goes upstream as a new request naming the user's DN, leaves no copy of
// the password once forwarded: the request's own bytes are the server's to clear
// (ldapserver's TestBindPasswordWiped), the rewritten request the binder's.
func TestBindRewrittenPasswordCleared(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 2, Groups: -1})
	log := slog.New(slog.DiscardHandler)
	pool, err := upstream.New(upstream.Config{URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword, BaseDN: srv.Suffix, Timeout: 5 * time.Second}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	store := namesStore(t, cache.Domain{}, &cache.User{ID: "1", DN: srv.UserDN(1), Username: slapdtest.UserName(1), IsActive: true})
	b := &binder{pool: pool, names: &resolver{store: store}, log: log, passwords: &passwordCaches{log: log}}

	password := []byte(slapdtest.UserPassword(1))
	var (
		mu     sync.Mutex
		copies []string
		codes  []uint16
	)
	front := &ldapserver.Server{Handler: ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		c := clientOf(r)
		l := b.resolve(r, c)
		code, _, err := b.forward(w, r, c, l)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("forward: %v", err)
		}
		codes = append(codes, code)
		if l.user == nil {
			t.Errorf("%s resolved to no user", r.Bind.Name)
		}
		raw := r.Raw()
		if len(l.msg) > 0 && &l.msg[0] != &raw[0] && bytes.Contains(l.msg, password) {
			copies = append(copies, r.Bind.Name)
		}
	}), ConnContext: withClient, Logger: log}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	t.Cleanup(func() { front.Close() })
	c := dialLDAP(t, ln.Addr().String())
	if err := c.Bind(slapdtest.UserName(1), string(password)); err != nil {
		t.Fatalf("bind by user name: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(codes) != 1 || codes[0] != 0 {
		t.Fatalf("upstream answers %v, want one success", codes)
	}
	for _, name := range copies {
		t.Errorf("bind of %s: the rewritten request keeps the password once forwarded", name)
	}
}
