package cache

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// DefaultAuthCacheSize bounds the entries of an AuthCache: one per DN, about
// 250 bytes each, so at most some 25 MB.
const DefaultAuthCacheSize = 100_000

// AuthCache remembers, in memory only and for a short time, which DN and
// password pairs the upstream accepted, so that a client binding again and
// again (bind.cached_auth_ttl, like SSSD's cached_auth_timeout) is not sent
// to the upstream each time.
//
// It holds no password: each DN's entry is an HMAC-SHA256 of the DN and the
// password under a key made at random when the cache is, which never leaves
// the process. One password per DN is remembered, the last accepted; a bind
// with any other password misses and goes to the upstream.
type AuthCache struct {
	ttl  time.Duration
	norm func(string) string // the DN normaliser
	max  int
	now  func() time.Time // time.Now; tests replace it
	macs sync.Pool        // of hash.Hash, HMACs under the cache's key

	mu    sync.RWMutex
	byDN  map[string]*list.Element // by norm; values are *authEntry
	order *list.List               // oldest Remember first
}

// authEntry is the last password the upstream accepted for a DN.
type authEntry struct {
	dn  string
	mac [sha256.Size]byte
	at  time.Time
}

// NewAuthCache returns a cache whose entries count for ttl after the bind
// that the upstream accepted. With ttl 0 it is off: it remembers nothing and
// every Check misses.
//
// normalizeDN is the project's DN normaliser: every spelling of a DN is one entry.
func NewAuthCache(ttl time.Duration, normalizeDN func(string) string) *AuthCache {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		// crypto/rand does not fail on the platforms Go supports.
		panic("auth cache key: " + err.Error())
	}
	return &AuthCache{
		ttl:   ttl,
		norm:  normalizeDN,
		max:   DefaultAuthCacheSize,
		now:   time.Now,
		macs:  sync.Pool{New: func() any { return hmac.New(sha256.New, key[:]) }},
		byDN:  map[string]*list.Element{},
		order: list.New(),
	}
}

// Remember records that the upstream accepted password for dn, replacing
// the password remembered for dn before. An empty password (an
// unauthenticated bind, which proves nothing) is never remembered.
func (a *AuthCache) Remember(dn string, password []byte) {
	if a.ttl <= 0 || len(password) == 0 {
		return
	}
	dn = a.norm(dn)
	mac := a.mac(dn, password)
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if el := a.byDN[dn]; el != nil {
		e := el.Value.(*authEntry)
		e.mac, e.at = mac, now
		a.order.MoveToBack(el)
	} else {
		a.byDN[dn] = a.order.PushBack(&authEntry{dn: dn, mac: mac, at: now})
	}
	// The oldest entries are at the front: drop those expired, and any
	// beyond the bound.
	for el := a.order.Front(); el != nil; el = a.order.Front() {
		if e := el.Value.(*authEntry); a.order.Len() <= a.max && now.Sub(e.at) < a.ttl {
			break
		}
		a.removeLocked(el)
	}
}

// Check reports whether the upstream accepted this dn and password less
// than the TTL ago, so that the bind may succeed without asking it.
func (a *AuthCache) Check(dn string, password []byte) bool {
	if a.ttl <= 0 || len(password) == 0 {
		return false
	}
	dn = a.norm(dn)
	mac := a.mac(dn, password)
	now := a.now()
	a.mu.RLock()
	el := a.byDN[dn]
	var e authEntry
	if el != nil {
		e = *el.Value.(*authEntry)
	}
	a.mu.RUnlock()
	return el != nil && now.Sub(e.at) < a.ttl && hmac.Equal(e.mac[:], mac[:])
}

// Forget drops what the cache holds for dn: the upstream rejected a bind of
// it, or its password was changed through the proxy.
func (a *AuthCache) Forget(dn string) {
	dn = a.norm(dn)
	a.mu.Lock()
	defer a.mu.Unlock()
	if el := a.byDN[dn]; el != nil {
		a.removeLocked(el)
	}
}

// Len returns the number of DNs remembered, expired ones included until
// they are swept.
func (a *AuthCache) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.order.Len()
}

func (a *AuthCache) removeLocked(el *list.Element) {
	delete(a.byDN, el.Value.(*authEntry).dn)
	a.order.Remove(el)
}

// mac is the HMAC of the normalised dn and password. The DN's length comes
// first, so that no two pairs give the same input.
func (a *AuthCache) mac(dn string, password []byte) [sha256.Size]byte {
	m := a.macs.Get().(hash.Hash)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(dn)))
	m.Write(n[:])
	m.Write([]byte(dn))
	m.Write(password)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	m.Reset() // the hash's buffer holds the end of the password until then
	a.macs.Put(m)
	return sum
}
