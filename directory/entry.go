package directory

import "github.com/ldapproxy/ldapproxy/internal/ldapwire"

// The directory speaks the project's LDAP message model (internal/ldapwire): it is fed
// Entries and answers SearchRequests and CompareRequests with Entries and Results.
type (
	// Entry is one entry of the directory: a DN and its attributes.
	Entry = ldapwire.Entry
	// Attribute is one attribute of an entry with its values.
	Attribute = ldapwire.Attribute
	// Control is a request or response control in its wire form.
	Control = ldapwire.Control
	// Result is the final answer to a search or compare.
	Result = ldapwire.Result
	// SearchRequest is a search (RFC 4511 §4.5.1).
	SearchRequest = ldapwire.SearchRequest
	// CompareRequest is a compare (RFC 4511 §4.10).
	CompareRequest = ldapwire.CompareRequest
)

// Search scopes (RFC 4511 §4.5.1.2).
const (
	ScopeBase     = ldapwire.ScopeBase
	ScopeOne      = ldapwire.ScopeOne
	ScopeSubtree  = ldapwire.ScopeSubtree
	ScopeChildren = ldapwire.ScopeChildren
)
