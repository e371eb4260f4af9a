package sync

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/go-ldap/ldap/v3"
)

// Active Directory marks an attribute confidential with bit 0x80 of its attributeSchema
// object's searchFlags (fCONFIDENTIAL): only principals with the control-access right
// read it (BitLocker keys, credential roaming blobs, LAPS passwords, and whatever an
// administrator marks so). Such attributes are secrets: a service account that can read
// them (an administrator) must not make the proxy keep or serve them. The list is read
// from the schema naming context the root DSE names; a directory that has none (OpenLDAP,
// 389-DS, FreeIPA) marks nothing so.
const confidentialFilter = "(&(objectClass=attributeSchema)(searchFlags:1.2.840.113556.1.4.803:=128))"

// confidentialSet is the upstream's confidential attributes, lowercased lDAPDisplayNames;
// shared by the keepers of one syncer.
type confidentialSet struct {
	names atomic.Pointer[map[string]bool]
}

func (c *confidentialSet) has(lowerName string) bool {
	if c == nil {
		return false
	}
	m := c.names.Load()
	return m != nil && (*m)[lowerName]
}

// readConfidential reads the upstream's confidential attributes into s.confidential. A
// failure keeps the list read before (and is logged): it does not fail a sync.
func (s *Syncer) readConfidential(ctx context.Context) {
	var schemaNC string
	err := s.pool.WithService(ctx, "sync confidential attributes", func(lc *ldap.Conn) error {
		res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
			"(objectClass=*)", []string{"schemaNamingContext"}, nil))
		if err == nil && len(res.Entries) > 0 {
			schemaNC = res.Entries[0].GetAttributeValue("schemaNamingContext")
		}
		return err
	})
	names := map[string]bool{}
	if err == nil && schemaNC != "" {
		err = s.pagedSearch(ctx, "confidential attributes", schemaNC, ldap.ScopeSingleLevel, confidentialFilter,
			[]string{"lDAPDisplayName"}, func(e *ldap.Entry) error {
				for _, a := range e.Attributes {
					if strings.EqualFold(a.Name, "lDAPDisplayName") {
						for _, v := range a.Values {
							names[strings.ToLower(v)] = true
						}
					}
				}
				return nil
			})
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("sync: cannot read the upstream's confidential attributes; keeping the list read before", "err", err)
		}
		return
	}
	if old := s.confidential.names.Load(); old == nil || len(*old) != len(names) {
		s.log.Info("sync: the upstream's confidential attributes are never kept", "count", len(names))
	}
	s.confidential.names.Store(&names)
}
