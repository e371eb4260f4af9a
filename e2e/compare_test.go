package e2e

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// answer is a search's outcome as a client sees it: the result code and the entries,
// each DN (lowercased) mapping to its attributes (names lowercased) and their values,
// sorted.
type answer struct {
	code    uint16
	entries map[string]map[string][]string
}

// ask runs req on c, paging with the paged-results control when paging > 0.
func ask(c *ldap.Conn, req *ldap.SearchRequest, paging uint32) answer {
	var res *ldap.SearchResult
	var err error
	if paging > 0 {
		res, err = c.SearchWithPaging(req, paging)
	} else {
		res, err = c.Search(req)
	}
	a := answer{code: resultCode(err), entries: map[string]map[string][]string{}}
	if res == nil {
		return a
	}
	for _, e := range res.Entries {
		attrs := map[string][]string{}
		for _, at := range e.Attributes {
			vals := make([]string, len(at.ByteValues))
			for i, v := range at.ByteValues {
				vals[i] = string(v)
			}
			sort.Strings(vals)
			attrs[strings.ToLower(at.Name)] = vals
		}
		a.entries[strings.ToLower(e.DN)] = attrs
	}
	return a
}

// differ describes how got (the proxy's answer) differs from want (the directory's),
// leaving out the attributes in except (lowercased names): "" when they are the same.
func differ(want, got answer, except ...string) string {
	var b strings.Builder
	if want.code != got.code {
		fmt.Fprintf(&b, "result code %d, want %d\n", got.code, want.code)
	}
	for _, dn := range slices.Sorted(maps.Keys(want.entries)) {
		g, ok := got.entries[dn]
		if !ok {
			fmt.Fprintf(&b, "missing entry %s\n", dn)
			continue
		}
		w := want.entries[dn]
		for _, name := range slices.Sorted(maps.Keys(w)) {
			if slices.Contains(except, name) {
				continue
			}
			if !slices.Equal(w[name], g[name]) {
				fmt.Fprintf(&b, "%s: %s = %q, want %q\n", dn, name, g[name], w[name])
			}
		}
		for name := range g {
			if _, ok := w[name]; !ok && !slices.Contains(except, name) {
				fmt.Fprintf(&b, "%s: extra attribute %s = %q\n", dn, name, g[name])
			}
		}
	}
	for dn := range got.entries {
		if _, ok := want.entries[dn]; !ok {
			fmt.Fprintf(&b, "extra entry %s\n", dn)
		}
	}
	return b.String()
}

// asService dials url and binds as up's service account: the two sides of a comparison
// read with the same identity.
func asService(t *testing.T, up *slapdtest.Server, url string) *ldap.Conn {
	t.Helper()
	c := dial(t, url)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	return c
}

// sameAnswer sends req to the directory and to the proxy and fails the test where the
// answers differ; it returns the directory's answer.
func sameAnswer(t *testing.T, what string, direct, proxied *ldap.Conn, req *ldap.SearchRequest, paging uint32, except ...string) answer {
	t.Helper()
	want := ask(direct, req, paging)
	got := ask(proxied, req, paging)
	if d := differ(want, got, except...); d != "" {
		t.Errorf("%s: %s %v: the proxy's answer differs from the directory's:\n%s", what, req.Filter, req.Attributes, d)
	}
	return want
}
