package proxy

import (
	"strings"
	"sync"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// access is the one rule for what a session may read from the synced store, in both
// search modes (search.readers):
//
//   - `clients:` accounts and the listed readers (identities, and members of listed
//     groups, nested ones included) read the whole synced directory;
//   - with no readers listed, in cached mode, so does every session that may read at all
//     (bound, or anonymous where allowed);
//   - any other identity reads its own entry and the groups it is a member of, and in
//     direct mode nothing: the store never answers it in the upstream's place, since
//     the upstream may grant it less than the store holds.
type access struct {
	readers []string // as configured
	cached  bool     // search.mode is cached
	names   *resolver
	store   *cache.Store

	mu  sync.Mutex
	gen uint64 // of the snapshot set was made from
	set *readerSet
}

// readerSet is search.readers resolved against one snapshot.
type readerSet struct {
	dns    map[string]bool // normalised DNs: identities, and the DNs of listed users
	groups map[string]bool // IDs of listed groups
}

func newAccess(readers []string, cached bool, names *resolver, store *cache.Store) *access {
	return &access{readers: readers, cached: cached, names: names, store: store}
}

// view is what one session may read: everything, or the entries named by dns.
type view struct {
	all bool
	dns []string // served DNs, when not all
}

// viewOf returns what the session of r may read from the store.
func (a *access) viewOf(r *ldapserver.Request) view {
	// Checked first, as it needs no look-up: the session's client account is one in
	// the request's context, a few levels up.
	if len(a.readers) == 0 && a.cached {
		return view{all: true}
	}
	if clientOf(r).clientAccount() != nil {
		return view{all: true}
	}
	s := r.Session
	if !s.Authenticated() {
		return view{}
	}
	id := s.BoundDN()
	var sn *cache.Snapshot
	if a.store != nil {
		sn = a.store.Snapshot()
	}
	set := a.readerSet(sn)
	if set.dns[directory.NormalizeDN(id)] {
		return view{all: true}
	}
	u := a.names.user(id)
	if u == nil {
		return view{dns: []string{id}}
	}
	if set.dns[directory.NormalizeDN(u.DN)] || set.dns[directory.NormalizeDN(servedDN(u))] {
		return view{all: true}
	}
	v := view{dns: []string{servedDN(u)}}
	memberOf(sn, u, func(g *cache.Group) bool {
		if set.groups[g.ID] {
			v.all = true
			return false
		}
		v.dns = append(v.dns, g.DN)
		return true
	})
	if v.all {
		return view{all: true}
	}
	return v
}

// storeMayAnswer says whether the store may answer the session of r when no upstream can
// (direct mode): only for `clients:` accounts and listed readers.
func (a *access) storeMayAnswer(r *ldapserver.Request) bool {
	if clientOf(r).clientAccount() != nil {
		return true
	}
	if len(a.readers) == 0 || !r.Session.Authenticated() {
		return false
	}
	return a.viewOf(r).all
}

// readerSet resolves search.readers against the latest snapshot, once per generation.
func (a *access) readerSet(sn *cache.Snapshot) *readerSet {
	var gen uint64
	if sn != nil {
		gen = sn.Generation()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.set != nil && a.gen == gen {
		return a.set
	}
	set := &readerSet{dns: map[string]bool{}, groups: map[string]bool{}}
	for _, r := range a.readers {
		if u := a.names.user(r); u != nil {
			set.dns[directory.NormalizeDN(u.DN)] = true
			set.dns[directory.NormalizeDN(servedDN(u))] = true
			continue
		}
		if !strings.Contains(r, "=") {
			continue // a name the store does not know (yet)
		}
		set.dns[directory.NormalizeDN(r)] = true
		if sn != nil {
			if g, ok := sn.GroupByDN(r); ok {
				set.groups[g.ID] = true
			}
		}
	}
	a.set, a.gen = set, gen
	return set
}

// memberOf calls fn with each group u is a member of, directly or through nested
// groups, each once, until fn returns false.
func memberOf(sn *cache.Snapshot, u *cache.User, fn func(*cache.Group) bool) {
	if sn == nil {
		return
	}
	seen := map[string]bool{}
	todo := append([]string(nil), u.Groups...)
	for len(todo) > 0 {
		id := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[id] {
			continue
		}
		seen[id] = true
		g, ok := sn.GroupByID(id)
		if !ok {
			continue
		}
		if !fn(g) {
			return
		}
		todo = append(todo, g.Parents...)
	}
}
