package proxy

import (
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// isRootDSE reports whether a search asks for the root DSE (RFC 4512 §5.1): the empty
// DN, base scope; or, base scope too, for the subschema subentry the root DSE names
// (subschema.go), which is answered the same way.
func isRootDSE(q *SearchRequest) bool {
	return q.Scope == ScopeBase && (q.BaseDN == "" || isSubschemaDN(q.BaseDN))
}

// rootDSE answers the root DSE from the proxy's own configuration. It is readable
// without a bind, because clients read it to discover StartTLS and the naming context
// before they authenticate.
func (h *local) rootDSE(w ResponseWriter, r *Request) {
	if r.Search.BaseDN != "" {
		subschema(w, r)
		return
	}
	e := &Entry{DN: ""}
	add := func(name string, vals ...string) {
		a := Attribute{Name: name}
		for _, v := range vals {
			a.Values = append(a.Values, []byte(v))
		}
		e.Attributes = append(e.Attributes, a)
	}
	add("objectClass", "top", "extensibleObject")
	if base := h.opts.Upstream.BaseDN(); base != "" {
		add("namingContexts", base)
	}
	add("supportedLDAPVersion", "3")
	add("supportedControl", ldap.ControlTypePaging)
	exts := []string{OIDWhoAmI}
	if h.opts.Listen.TLS.CertFile != "" {
		exts = append(exts, OIDStartTLS)
	}
	if h.opts.Writeback.Config.Enabled {
		exts = append(exts, OIDPasswordModify)
	}
	add("supportedExtension", exts...)
	add("vendorName", "ldapproxy")
	add("vendorVersion", h.opts.Version)
	add("subschemaSubentry", SubschemaDN)

	if matchesPresence(r.Search.Filter, e) {
		e.Attributes = selectAttributes(e.Attributes, r.Search.Attributes)
		if err := w.WriteEntry(e); err != nil {
			return
		}
	}
	w.WriteResult(&Result{Code: ldap.LDAPResultSuccess})
}

// matchesPresence evaluates the filters clients send for the root DSE. Presence and
// equality filters are checked against the entry; anything more elaborate matches, as
// the entry is the only candidate and clients ask for it on purpose.
func matchesPresence(f *ber.Packet, e *Entry) bool {
	if f == nil || f.ClassType != ber.ClassContext {
		return true
	}
	switch f.Tag {
	case ldap.FilterPresent:
		return hasAttribute(e, f.Data.String())
	case ldap.FilterEqualityMatch:
		if len(f.Children) != 2 {
			return false
		}
		name, val := f.Children[0].Data.String(), f.Children[1].Data.String()
		for _, a := range e.Attributes {
			if strings.EqualFold(a.Name, name) {
				for _, v := range a.Values {
					if strings.EqualFold(string(v), val) {
						return true
					}
				}
			}
		}
		return false
	}
	return true
}

func hasAttribute(e *Entry, name string) bool {
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, name) {
			return true
		}
	}
	return false
}

// selectAttributes applies a search's attribute list to a root DSE entry, whose
// attributes are all operational: they are returned for "+", or when named, and also
// for an empty list or "*", which is what clients that print the root DSE send.
func selectAttributes(attrs []Attribute, want []string) []Attribute {
	if len(want) == 0 {
		return attrs
	}
	out := attrs[:0:0]
	for _, a := range attrs {
		for _, w := range want {
			if w == "*" || w == "+" || strings.EqualFold(w, a.Name) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}
