package sync

import (
	"fmt"
	"maps"
	"strings"
	"sync/atomic"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/secret"
)

// computedAttributes are operational attributes a directory computes for each entry
// where it serves it (its DN, its children, the subschema it answers with): the served
// tree computes its own, so the upstream's are not kept.
var computedAttributes = map[string]bool{
	"entrydn": true, "hassubordinates": true, "numsubordinates": true, "subschemasubentry": true,
}

// keeper decides which of an upstream entry's attributes a synced object keeps
// (sync.attributes, sync.exclude_attributes). Secrets are never kept, whatever the lists
// say.
type keeper struct {
	// confidential are the upstream's confidential attributes (Active Directory), read
	// at each full read; never kept either.
	confidential *confidentialSet
	all          bool            // sync.attributes is ["*"]: everything read
	keep         map[string]bool // the names listed, lowercased, without options; objectClass always
	drop         map[string]bool // sync.exclude_attributes, lowercased
	// decided remembers kept's answers by attribute description as spelled (the same
	// few dozen names come with every entry), with the confidential list they were
	// made with.
	decided *keptMemo
}

// keptMemo is an immutable map of kept's answers, replaced whole on a miss: reading it
// takes an atomic load and a map lookup, from any goroutine.
type keptMemo struct {
	m atomic.Pointer[keptAnswers]
}

type keptAnswers struct {
	confidential *map[string]bool // the list the answers were made with
	kept         map[string]bool
}

// maxKeptMemo bounds the names remembered: a directory whose entries carry ever new
// descriptions (options, ranges) gets its answers computed each time beyond it.
const maxKeptMemo = 1024

func newKeeper(c *Config) keeper {
	k := keeper{all: keepsAll(c.Attributes), drop: map[string]bool{}, decided: &keptMemo{}}
	if !k.all {
		k.keep = map[string]bool{"objectclass": true}
		for _, a := range c.Attributes {
			k.keep[strings.ToLower(a)] = true
		}
	}
	for _, a := range c.ExcludeAttributes {
		k.drop[strings.ToLower(a)] = true
	}
	return k
}

// keepsAll tells whether the sync.attributes list keeps every attribute.
func keepsAll(list []string) bool { return len(list) == 0 || (len(list) == 1 && list[0] == "*") }

// kept tells whether the attribute description name (options allowed) is kept.
func (k keeper) kept(name string) bool {
	if k.decided == nil {
		return k.decide(name)
	}
	var conf *map[string]bool
	if k.confidential != nil {
		conf = k.confidential.names.Load()
	}
	memo := k.decided.m.Load()
	if memo != nil && memo.confidential == conf {
		if v, ok := memo.kept[name]; ok {
			return v
		}
	}
	v := k.decide(name)
	next := &keptAnswers{confidential: conf, kept: map[string]bool{}}
	if memo != nil && memo.confidential == conf {
		if len(memo.kept) >= maxKeptMemo {
			return v
		}
		maps.Copy(next.kept, memo.kept)
	}
	// name may share the memory of a whole entry: the memo keeps a copy.
	next.kept[strings.Clone(name)] = v
	k.decided.m.Store(next) // a racing miss may drop this answer: it is computed again
	return v
}

// decide is kept's answer, computed.
func (k keeper) decide(name string) bool {
	typ, opts, _ := strings.Cut(name, ";")
	typ = strings.ToLower(typ)
	switch {
	case secret.Attribute(typ), computedAttributes[typ], k.drop[typ], k.confidential.has(typ):
		return false
	case strings.Contains(strings.ToLower(opts), "range="):
		// Active Directory's ranged retrieval of a long member list: a part of the
		// values under a name no client asked for. The membership is served from the
		// synced memberships instead.
		return false
	}
	return k.all || k.keep[typ]
}

// upstream returns the attributes e keeps, in the upstream's order, with values byte
// for byte. The values are the entry's own strings (see values), not copies.
func (k keeper) upstream(e *ldap.Entry) []cache.Attribute {
	out := make([]cache.Attribute, 0, len(e.Attributes))
	for _, a := range e.Attributes {
		if vals := values(a); len(vals) > 0 && k.kept(a.Name) {
			out = append(out, cache.Attribute{Name: a.Name, Values: vals})
		}
	}
	return out
}

// validateAttributeLists checks sync.attributes and sync.exclude_attributes.
func validateAttributeLists(c *Config) []error {
	var errs []error
	for _, l := range []struct {
		key  string
		list []string
	}{{"attributes", c.Attributes}, {"exclude_attributes", c.ExcludeAttributes}} {
		for _, a := range l.list {
			switch {
			case a == "*" && l.key == "attributes":
				if len(l.list) > 1 {
					errs = append(errs, fmt.Errorf("attributes: \"*\" keeps every attribute; list names or \"*\" alone"))
				}
			case !attributeName(a):
				errs = append(errs, fmt.Errorf("%s: %q is not an attribute name", l.key, a))
			case secret.Attribute(a) && l.key == "attributes":
				errs = append(errs, fmt.Errorf("attributes: %q holds a secret, which is never stored or served", a))
			}
		}
	}
	return errs
}

// attributeName tells whether s is an attribute type name (RFC 4512 descr: a letter,
// then letters, digits and hyphens) or a numeric OID.
func attributeName(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		for _, r := range s {
			if (r < '0' || r > '9') && r != '.' {
				return false
			}
		}
		return true
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-'):
		default:
			return false
		}
	}
	return true
}
