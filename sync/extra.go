package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// ExtraSet is one entry of sync.extra: a further set of upstream entries mirrored as
// they are and served beside the users and groups (sudo rules, automount maps,
// netgroups, service accounts, ...).
type ExtraSet struct {
	// Name identifies the set in logs and the store. Required, unique.
	Name string `yaml:"name"`
	// BaseDN is prepended to upstream.base_dn, as user_dn is ("ou=sudoers"); empty:
	// the base DN itself.
	BaseDN string `yaml:"base_dn"`
	// Filter selects the entries. Default (objectClass=*).
	Filter string `yaml:"filter"`
	// Scope is sub (default), one or base.
	Scope string `yaml:"scope"`
}

var extraScopes = map[string]int{"": ldap.ScopeWholeSubtree, "sub": ldap.ScopeWholeSubtree, "one": ldap.ScopeSingleLevel, "base": ldap.ScopeBaseObject}

// validateExtra checks sync.extra and fills in the defaults.
func validateExtra(sets []ExtraSet) []error {
	var errs []error
	seen := map[string]bool{}
	for i := range sets {
		x := &sets[i]
		key := fmt.Sprintf("extra[%d]", i)
		switch {
		case x.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", key))
		case seen[x.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", key, x.Name))
		}
		seen[x.Name] = true
		if x.Filter == "" {
			x.Filter = "(objectClass=*)"
		}
		if _, err := ldap.CompileFilter(x.Filter); err != nil {
			errs = append(errs, fmt.Errorf("%s.filter: %q: %w", key, x.Filter, err))
		}
		if x.BaseDN != "" {
			if _, err := ldap.ParseDN(x.BaseDN); err != nil {
				errs = append(errs, fmt.Errorf("%s.base_dn: %q is not a DN: %w", key, x.BaseDN, err))
			}
		}
		x.Scope = strings.ToLower(x.Scope)
		if _, ok := extraScopes[x.Scope]; !ok {
			errs = append(errs, fmt.Errorf("%s.scope: %q is not one of sub, one, base", key, x.Scope))
		}
	}
	return errs
}

// readExtra reads every sync.extra set for the run's commit. A set whose base does not
// exist upstream is empty (and logged); any other failure fails the run, which keeps the
// stored sets. An entry that is also a synced user or group is served as that and left
// out of the set.
func (r *run) readExtra(ctx context.Context) error {
	s := r.s
	if len(s.cfg.Extra) == 0 {
		if len(r.w.Base().EntrySetNames()) == 0 {
			return nil
		}
		return r.w.SetEntrySets(map[string][]cache.Entry{}) // sets no longer configured
	}
	sets := map[string][]cache.Entry{}
	keys := map[string]bool{}
	for _, x := range s.cfg.Extra {
		entries, err := s.readSet(ctx, x)
		if err != nil {
			return fmt.Errorf("extra set %s: %w", x.Name, err)
		}
		sets[x.Name] = entries
		for _, e := range entries {
			keys[s.store.NormalizeDN(e.DN)] = true
		}
	}
	users := r.w.UserIDs(keys, false)
	for name, entries := range sets {
		sets[name] = slices.DeleteFunc(entries, func(e cache.Entry) bool {
			n := s.store.NormalizeDN(e.DN)
			_, group := r.groupsByDN[n]
			_, user := users[n]
			return group || user
		})
	}
	return r.w.SetEntrySets(sets)
}

// readSet reads one extra set, sorted by DN.
func (s *Syncer) readSet(ctx context.Context, x ExtraSet) ([]cache.Entry, error) {
	var entries []cache.Entry
	base := join(x.BaseDN, s.base)
	err := s.pagedSearch(ctx, "extra set "+x.Name, base, extraScopes[x.Scope], x.Filter, s.readAll(s.keepExtra), func(e *ldap.Entry) error {
		entries = append(entries, cache.Entry{DN: e.DN, Upstream: s.keepExtra.upstream(e)})
		return nil
	})
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		s.log.Warn("sync: the base of an extra set does not exist upstream; the set is empty", "set", x.Name, "base", base)
		return nil, nil
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("sync: an extra set cannot be read", "set", x.Name, "err", err)
	}
	slices.SortFunc(entries, func(a, b cache.Entry) int { return strings.Compare(a.DN, b.DN) })
	return entries, err
}
