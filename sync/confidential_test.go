package sync_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/sambatest"
	"github.com/ldapproxy/ldapproxy/internal/secret"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// An attribute Active Directory marks confidential (searchFlags bit 0x80) is a secret:
// synced as the domain's Administrator, which reads it, a user still keeps none of it,
// though the same user keeps its other attributes.
func TestConfidentialAttributesNotKept(t *testing.T) {
	dc := sambatest.New(t, sambatest.Options{})
	e := newEnvAt(t, dc.LDAPURL, dc.AdminDN, dc.AdminPassword, sambatest.BaseDN)
	alice := dc.User("alice")

	// Find a confidential attribute of the user class that Samba lets the
	// Administrator write, and give alice a value of it.
	admin := dc.Conn(t)
	cfg := config(t, func(c *ldapsync.Config) { c.Preset = "active-directory" })
	s := e.syncer(cfg, nil)
	e.run(s)
	confidential := s.Confidential()
	if len(confidential) == 0 {
		t.Fatal("no confidential attribute read from the schema")
	}
	t.Logf("%d confidential attributes, e.g. %v", len(confidential), slices.Sorted(func(yield func(string) bool) {
		n := 0
		for k := range confidential {
			if n++; n > 6 || !yield(k) {
				return
			}
		}
	}))
	// Attributes the built-in list of secrets does not name: only the schema says so.
	written := ""
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range confidential {
			if !secret.Attribute(k) && !yield(k) {
				return
			}
		}
	}) {
		if !confidential[strings.ToLower(name)] {
			continue
		}
		m := ldap.NewModifyRequest(alice.DN, nil)
		m.Replace(name, []string{"\x01\x02\x03\x04\x05\x06\x07\x08"})
		if err := admin.Modify(m); err == nil {
			written = name
			break
		} else {
			t.Logf("cannot write %s: %v", name, err)
		}
	}
	if written == "" {
		t.Fatal("no confidential attribute of the user class could be written")
	}
	t.Logf("alice has a value of the confidential %s", written)
	res, err := admin.Search(ldap.NewSearchRequest(alice.DN, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{written}, nil))
	if err != nil || len(res.Entries) != 1 || !slices.ContainsFunc(res.Entries[0].Attributes, func(a *ldap.EntryAttribute) bool {
		return strings.EqualFold(a.Name, written) && len(a.ByteValues) > 0
	}) {
		t.Fatalf("the Administrator does not read %s back (%v): the test proves nothing", written, err)
	}

	sn := e.run(s)
	u, ok := sn.UserByUsername("alice")
	if !ok {
		t.Fatal("alice not synced")
	}
	var names []string
	for _, a := range u.Upstream {
		names = append(names, strings.ToLower(a.Name))
	}
	if slices.Contains(names, strings.ToLower(written)) {
		t.Errorf("alice keeps the confidential %s", written)
	}
	if !slices.Contains(names, "samaccountname") || !slices.Contains(names, "objectguid") {
		t.Errorf("alice keeps %v: her other attributes are missing", names)
	}
}
