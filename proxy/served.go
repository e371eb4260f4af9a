package proxy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// ServedOptions say how synced objects become the entries cached searches serve.
type ServedOptions struct {
	// BaseDN is the naming context: the root of the served tree.
	BaseDN string
	// NestedGroups makes a user's memberOf list every ancestor group, and a group's
	// memberOf every ancestor of it.
	NestedGroups bool
}

// ServedEntries turns a snapshot of the store into the entries of the served tree, in the
// clean schema: per user uid, cn, displayName, sn, givenName, mail, memberOf,
// objectClass, entryUUID and every mapped attributes.* field; per group cn, member,
// memberOf and objectClass; and the containers (the base DN, OUs) between them. No
// password or hash is ever among them: the store holds none.
func ServedEntries(sn *cache.Snapshot, o ServedOptions) []*directory.Entry {
	groupDN := map[string]string{}
	sn.Groups(func(g *cache.Group) bool {
		groupDN[g.ID] = g.DN
		return true
	})
	parents := map[string][]string{}
	sn.Groups(func(g *cache.Group) bool {
		parents[g.ID] = g.Parents
		return true
	})
	ancestors := func(direct []string) []string {
		if !o.NestedGroups {
			return direct
		}
		seen := map[string]bool{}
		var out []string
		var walk func(ids []string)
		walk = func(ids []string) {
			for _, id := range ids {
				if seen[id] {
					continue // cycles happen in real directories
				}
				seen[id] = true
				out = append(out, id)
				walk(parents[id])
			}
		}
		walk(direct)
		return out
	}
	dnsOf := func(ids []string) [][]byte {
		var out [][]byte
		for _, id := range ids {
			if dn, ok := groupDN[id]; ok {
				out = append(out, []byte(dn))
			}
		}
		return out
	}

	userDN := map[string]string{}
	var entries []*directory.Entry
	sn.Users(func(u *cache.User) bool {
		dn := u.DN
		if u.Path != "" {
			dn = u.Path
		}
		userDN[u.ID] = dn
		e := &directory.Entry{DN: dn}
		add := func(name string, vals ...string) {
			var vs [][]byte
			for _, v := range vals {
				if v != "" {
					vs = append(vs, []byte(v))
				}
			}
			if len(vs) > 0 {
				e.Attributes = append(e.Attributes, directory.Attribute{Name: name, Values: vs})
			}
		}
		add("objectClass", "top", "person", "organizationalPerson", "inetOrgPerson")
		add("uid", u.Username)
		cn := u.Name
		if cn == "" {
			cn = u.Username
		}
		add("cn", cn)
		add("displayName", u.Name)
		sn := attrString(u.Attributes["surname"])
		if sn == "" {
			sn = cn
		}
		add("sn", sn)
		add("givenName", attrString(u.Attributes["given_name"]))
		add("mail", u.Email)
		add("entryUUID", u.ID)
		if m := dnsOf(ancestors(u.Groups)); len(m) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: "memberOf", Values: m})
		}
		addMapped(e, u.Attributes)
		entries = append(entries, e)
		return true
	})
	sn.Groups(func(g *cache.Group) bool {
		e := &directory.Entry{DN: g.DN}
		e.Attributes = append(e.Attributes,
			directory.Attribute{Name: "objectClass", Values: [][]byte{[]byte("top"), []byte("groupOfNames")}},
			directory.Attribute{Name: "cn", Values: [][]byte{[]byte(g.Name)}},
			directory.Attribute{Name: "entryUUID", Values: [][]byte{[]byte(g.ID)}})
		users, groups := sn.Members(g.ID)
		var members [][]byte
		for _, id := range users {
			if dn, ok := userDN[id]; ok {
				members = append(members, []byte(dn))
			}
		}
		members = append(members, dnsOf(groups)...)
		if len(members) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: "member", Values: members})
		}
		if m := dnsOf(ancestors(g.Parents)); len(m) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: "memberOf", Values: m})
		}
		addMapped(e, g.Attributes)
		entries = append(entries, e)
		return true
	})
	return append(containers(o.BaseDN, entries), entries...)
}

// addMapped adds the mapped attributes.* fields, sorted by name so entries are stable.
// A field's name becomes an LDAP attribute name in lower camel case (given_name →
// givenName), since LDAP names allow no underscore; a field whose name the entry already
// has (givenName, sn from the presets) is not repeated.
func addMapped(e *directory.Entry, attrs map[string]any) {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		name := ldapAttrName(k)
		if name == "surname" {
			name = "sn"
		}
		if slices.ContainsFunc(e.Attributes, func(a directory.Attribute) bool { return strings.EqualFold(a.Name, name) }) {
			continue
		}
		var vals [][]byte
		switch v := attrs[k].(type) {
		case []string:
			for _, s := range v {
				vals = append(vals, []byte(s))
			}
		default:
			if s := attrString(v); s != "" {
				vals = [][]byte{[]byte(s)}
			}
		}
		if len(vals) > 0 {
			e.Attributes = append(e.Attributes, directory.Attribute{Name: name, Values: vals})
		}
	}
}

// ldapAttrName turns a mapped field name (letters, digits, '-', '_') into an LDAP
// attribute name: underscores dropped, the next letter upper-cased.
func ldapAttrName(field string) string {
	if !strings.Contains(field, "_") {
		return field
	}
	var b strings.Builder
	up := false
	for _, r := range field {
		switch {
		case r == '_':
			up = b.Len() > 0
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// attrString renders a mapped value in its LDAP string form.
func attrString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []string:
		if len(v) > 0 {
			return v[0]
		}
		return ""
	case bool:
		if v {
			return "TRUE"
		}
		return "FALSE"
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.UTC().Format("20060102150405Z")
	}
	return fmt.Sprint(v)
}

// containers makes the entries between the base DN and the synced objects (the base
// itself, OUs), which the directory has but the sync does not copy.
func containers(base string, entries []*directory.Entry) []*directory.Entry {
	baseNorm := directory.NormalizeDN(base)
	have := map[string]bool{}
	for _, e := range entries {
		have[directory.NormalizeDN(e.DN)] = true
	}
	var out []*directory.Entry
	want := func(dn string) {
		n := directory.NormalizeDN(dn)
		if have[n] {
			return
		}
		have[n] = true
		out = append(out, containerEntry(dn))
	}
	want(base)
	for _, e := range entries {
		parsed, err := ldap.ParseDN(e.DN)
		if err != nil {
			continue
		}
		for i := 1; i < len(parsed.RDNs); i++ {
			anc := &ldap.DN{RDNs: parsed.RDNs[i:]}
			n := directory.NormalizeDN(anc.String())
			if n == baseNorm || !strings.HasSuffix(n, ","+baseNorm) {
				break
			}
			want(anc.String())
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].DN) < len(out[j].DN) })
	return out
}

// containerEntry is a minimal entry for a container DN, classed by its RDN's type.
func containerEntry(dn string) *directory.Entry {
	e := &directory.Entry{DN: dn}
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return e
	}
	rdn := parsed.RDNs[0].Attributes[0]
	class := map[string][]string{
		"ou": {"top", "organizationalUnit"},
		"dc": {"top", "dcObject", "organization"},
		"o":  {"top", "organization"},
		"cn": {"top", "container"},
		"c":  {"top", "country"},
		"l":  {"top", "locality"},
	}[strings.ToLower(rdn.Type)]
	if class == nil {
		class = []string{"top", "extensibleObject"}
	}
	oc := directory.Attribute{Name: "objectClass"}
	for _, c := range class {
		oc.Values = append(oc.Values, []byte(c))
	}
	e.Attributes = append(e.Attributes, oc, directory.Attribute{Name: rdn.Type, Values: [][]byte{[]byte(rdn.Value)}})
	if strings.EqualFold(rdn.Type, "dc") {
		e.Attributes = append(e.Attributes, directory.Attribute{Name: "o", Values: [][]byte{[]byte(rdn.Value)}})
	}
	return e
}
