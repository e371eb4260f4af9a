package cache

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/directory"
)

const authDN = "uid=alice,ou=people,dc=example,dc=org"

func newTestAuthCache(ttl time.Duration) (*AuthCache, *fakeClock) {
	a := NewAuthCache(ttl, directory.NormalizeDN)
	clk := newFakeClock()
	a.now = clk.now
	return a, clk
}

func TestAuthCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(a *AuthCache, clk *fakeClock) // what happens after the successful bind
		dn    string
		pw    []byte
		want  bool
	}{
		{"same dn and password", nil, authDN, testPassword, true},
		{"dn spelt differently", nil, "UID=Alice, OU=People,dc=Example,dc=org", testPassword, true},
		{"just within ttl", func(a *AuthCache, clk *fakeClock) { clk.advance(time.Minute - time.Nanosecond) }, authDN, testPassword, true},
		{"ttl passed", func(a *AuthCache, clk *fakeClock) { clk.advance(time.Minute) }, authDN, testPassword, false},
		{"wrong password", nil, authDN, []byte("Tr0ub4dor&3-correct-horse-7f3a9C"), false},
		{"password prefix", nil, authDN, testPassword[:len(testPassword)-1], false},
		{"empty password", nil, authDN, nil, false},
		{"other dn same password", nil, "uid=bob,ou=people,dc=example,dc=org", testPassword, false},
		{"forgotten", func(a *AuthCache, clk *fakeClock) { a.Forget(authDN) }, authDN, testPassword, false},
		{"forgotten under another spelling", func(a *AuthCache, clk *fakeClock) { a.Forget("uid=ALICE,ou=people,dc=example,dc=org") }, authDN, testPassword, false},
		{"other dn forgotten", func(a *AuthCache, clk *fakeClock) { a.Forget("uid=bob,ou=people,dc=example,dc=org") }, authDN, testPassword, true},
		{"password changed", func(a *AuthCache, clk *fakeClock) { a.Remember(authDN, []byte("new password")) }, authDN, testPassword, false},
		{"renewed", func(a *AuthCache, clk *fakeClock) {
			clk.advance(50 * time.Second)
			a.Remember(authDN, testPassword)
			clk.advance(50 * time.Second)
		}, authDN, testPassword, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := newTestAuthCache(time.Minute)
			a.Remember(authDN, testPassword)
			if tc.after != nil {
				tc.after(a, clk)
			}
			if got := a.Check(tc.dn, tc.pw); got != tc.want {
				t.Fatalf("Check = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAuthCacheOff(t *testing.T) {
	a, _ := newTestAuthCache(0)
	a.Remember(authDN, testPassword)
	if a.Check(authDN, testPassword) || a.Len() != 0 {
		t.Fatal("a cache with ttl 0 remembered a bind")
	}
	a, _ = newTestAuthCache(time.Minute)
	a.Remember(authDN, nil)
	if a.Check(authDN, nil) || a.Len() != 0 {
		t.Fatal("an unauthenticated bind was remembered")
	}
}

func TestAuthCacheHoldsNoPassword(t *testing.T) {
	a, _ := newTestAuthCache(time.Minute)
	a.Remember(authDN, testPassword)
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.byDN) != 1 {
		t.Fatalf("%d entries", len(a.byDN))
	}
	for dn, el := range a.byDN {
		e := el.Value.(*authEntry)
		if bytes.Contains([]byte(dn), testPassword) || bytes.Contains([]byte(e.dn), testPassword) ||
			bytes.Contains(e.mac[:], testPassword) || bytes.Contains(e.mac[:], testPassword[:8]) {
			t.Fatalf("entry %q holds the password", dn)
		}
	}
	// The key is random per process: two caches give different MACs.
	b, _ := newTestAuthCache(time.Minute)
	if a.mac(authDN, testPassword) == b.mac(authDN, testPassword) {
		t.Fatal("two caches share their HMAC key")
	}
}

func TestAuthCacheBound(t *testing.T) {
	a, clk := newTestAuthCache(time.Minute)
	a.max = 3
	dn := func(i int) string { return fmt.Sprintf("uid=user%d,dc=example,dc=org", i) }
	for i := range 5 {
		a.Remember(dn(i), testPassword)
		clk.advance(time.Second)
	}
	if a.Len() != 3 {
		t.Fatalf("%d entries, want 3", a.Len())
	}
	for i, want := range []bool{false, false, true, true, true} {
		if got := a.Check(dn(i), testPassword); got != want {
			t.Errorf("user%d: Check = %v, want %v (oldest evicted first)", i, got, want)
		}
	}
	// Expired entries go with the next Remember.
	clk.advance(time.Minute)
	a.Remember(dn(9), testPassword)
	if a.Len() != 1 {
		t.Fatalf("%d entries after the others expired, want 1", a.Len())
	}
}

func TestAuthCacheConcurrent(t *testing.T) {
	a := NewAuthCache(time.Minute, directory.NormalizeDN)
	a.max = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				dn := fmt.Sprintf("uid=user%d,dc=example,dc=org", (g*500+i)%100)
				pw := []byte(dn)
				a.Remember(dn, pw)
				if i%7 == 0 {
					a.Forget(dn)
				} else {
					a.Check(dn, pw)
				}
			}
		})
	}
	wg.Wait()
	if a.Len() > 50 {
		t.Fatalf("%d entries, bound 50", a.Len())
	}
}

// BenchmarkAuthCacheCheck is the bind hot path with cached_auth_ttl on: a
// hit among 100,000 remembered DNs.
func BenchmarkAuthCacheCheck(b *testing.B) {
	a := NewAuthCache(time.Hour, directory.NormalizeDN)
	dns := make([]string, DefaultAuthCacheSize)
	for i := range dns {
		dns[i] = fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=org", i)
		a.Remember(dns[i], testPassword)
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if !a.Check(dns[i%len(dns)], testPassword) {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if !a.Check(dns[i%len(dns)], testPassword) {
					b.Fatal("miss")
				}
				i += 7
			}
		})
	})
}
