package proxy

import (
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// local answers what the proxy knows by itself (the root DSE, the subschema subentry,
// WhoAmI) and enforces who may read before a request reaches the tree or the upstream.
type local struct {
	opts Options
	// schema is the schema the served tree matches with, which the subschema subentry
	// describes; nil: the built-in one.
	schema func() *directory.Schema
}

// readersOnly refuses reads from clients that have not authenticated, unless anonymous
// access is on.
func (h *local) readersOnly(next ldapserver.Handler) ldapserver.Handler {
	return ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		if !r.Session.Authenticated() && !h.opts.Listen.AllowAnonymous {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultInsufficientAccessRights, Diagnostic: "bind first: anonymous access is not allowed"})
			return
		}
		next.ServeLDAP(w, r)
	})
}

// rootDSEOr answers searches of the root DSE and the subschema subentry itself and
// passes every other search to next.
func (h *local) rootDSEOr(next ldapserver.Handler) ldapserver.Handler {
	return ldapserver.HandlerFunc(func(w ldapserver.ResponseWriter, r *ldapserver.Request) {
		if isRootDSE(r.Search) {
			h.rootDSE(w, r)
			return
		}
		next.ServeLDAP(w, r)
	})
}

// whoAmI answers the WhoAmI extended operation (RFC 4532): "dn:<DN>" for a bound client,
// an empty authzId for an anonymous one.
func whoAmI(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	id := ""
	if r.Session.Authenticated() {
		id = "dn:" + r.Session.BoundDN()
	}
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess, ResponseValue: []byte(id), HasValue: true})
}

// isRootDSE reports whether a search asks for the root DSE (RFC 4512 §5.1): the empty
// DN, base scope; or, base scope too, for the subschema subentry the root DSE names
// (subschema.go), which is answered the same way.
func isRootDSE(q *ldapserver.SearchRequest) bool {
	return q.Scope == ldapserver.ScopeBase && (q.BaseDN == "" || directory.IsSubschemaDN(q.BaseDN))
}

// rootDSE answers the root DSE from the proxy's own configuration. It is readable
// without a bind, because clients read it to discover StartTLS and the naming context
// before they authenticate.
func (h *local) rootDSE(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	send := func(e *directory.Entry) error { return w.WriteEntry(e) }
	if r.Search.BaseDN != "" {
		if res := h.subschema().SearchSubschema(r.Search, send); res != nil {
			w.WriteResult(res)
		}
		return
	}
	e := &ldapserver.Entry{DN: ""}
	add := func(name string, vals ...string) {
		a := ldapserver.Attribute{Name: name}
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
	exts := []string{ldapserver.OIDWhoAmI}
	if h.opts.Listen.TLS.CertFile != "" {
		exts = append(exts, ldapserver.OIDStartTLS)
	}
	if h.opts.Writeback.Config.Enabled {
		exts = append(exts, ldapserver.OIDPasswordModify)
	}
	add("supportedExtension", exts...)
	add("vendorName", "ldapproxy")
	add("vendorVersion", h.opts.Version)
	add("subschemaSubentry", directory.SubschemaDN)

	if directory.MatchesPresence(r.Search.FilterPacket(), e) {
		e.Attributes = selectAttributes(e.Attributes, r.Search.Attributes)
		if err := w.WriteEntry(e); err != nil {
			return
		}
	}
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// subschema is the schema the subschema subentry describes: the served tree's.
func (h *local) subschema() *directory.Schema {
	if h.schema == nil {
		return directory.BuiltinSchema()
	}
	return h.schema()
}

// selectAttributes applies a search's attribute list to a root DSE entry, whose
// attributes are all operational: they are returned for "+", or when named, and also
// for an empty list or "*", which is what clients that print the root DSE send.
func selectAttributes(attrs []ldapserver.Attribute, want []string) []ldapserver.Attribute {
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
