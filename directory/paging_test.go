package directory

import (
	"slices"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

func pagingControl(size int, cookie []byte) Control {
	p := ldap.NewControlPaging(uint32(size))
	p.SetCookie(cookie)
	return controlFromLDAP(p)
}

// page runs one page of a search and returns the entries' DNs, the result and the
// response cookie.
func page(t *testing.T, tree *Tree, req *Request, size int, cookie []byte) ([]string, *Result, []byte) {
	t.Helper()
	r := *req
	r.Controls = []Control{pagingControl(size, cookie)}
	w := &collectWriter{}
	searchInto(tree, w, &r)
	var next []byte
	for _, c := range w.result.Controls {
		if c.Type == ldap.ControlTypePaging {
			p, err := ber.DecodePacketErr(c.Value)
			if err != nil || len(p.Children) != 2 {
				t.Fatalf("bad paging response control %x", c.Value)
			}
			next = p.Children[1].Data.Bytes()
		}
	}
	return w.dns(), w.result, next
}

func TestPagingWalksTheWholeResult(t *testing.T) {
	tree := benchTree(t, 100)
	for _, f := range []string{"(objectClass=*)", "(objectClass=person)", "(|(uid=user001*)(cn=group0*))", "(cn=*5*)"} {
		for _, scope := range []int{ScopeSubtree, ScopeOne} {
			base := testBase
			if scope == ScopeOne {
				base = "ou=people," + testBase
			}
			req := searchRequest(t, base, scope, f, "1.1")
			all := &collectWriter{}
			searchInto(tree, all, req)
			var got []string
			var cookie []byte
			for pages := 1; ; pages++ {
				dns, res, next := page(t, tree, req, 7, cookie)
				if res.Code != 0 || len(dns) > 7 {
					t.Fatalf("%s page %d: %d entries, code %d %s", f, pages, len(dns), res.Code, res.Diagnostic)
				}
				got = append(got, dns...)
				if len(next) == 0 {
					break
				}
				if len(dns) < 7 {
					t.Errorf("%s page %d: %d entries and a cookie", f, pages, len(dns))
				}
				cookie = next
			}
			slices.Sort(got)
			if !slices.Equal(got, all.dns()) {
				t.Errorf("%s scope %d: pages returned %d entries, the search %d", f, scope, len(got), len(all.entries))
			}
		}
	}
}

func TestPagingCookies(t *testing.T) {
	tree := benchTree(t, 50)
	req := searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)", "1.1")
	_, _, cookie := page(t, tree, req, 10, nil)
	if len(cookie) == 0 {
		t.Fatal("no cookie after the first page")
	}

	flipped := slices.Clone(cookie)
	flipped[len(flipped)/2] ^= 1
	other, err := NewTree([]string{testBase}, benchEntries(50))
	if err != nil {
		t.Fatal(err)
	}
	_, _, foreign := page(t, other, req, 10, nil)
	for _, c := range []struct {
		name   string
		tree   *Tree
		req    *Request
		cookie []byte
		code   uint16
		diag   string
	}{
		{"tampered", tree, req, flipped, ldap.LDAPResultProtocolError, "paged results cookie is invalid"},
		{"truncated", tree, req, cookie[:len(cookie)-1], ldap.LDAPResultProtocolError, "paged results cookie is invalid"},
		{"garbage", tree, req, []byte("garbage"), ldap.LDAPResultProtocolError, "paged results cookie is invalid"},
		{"a tree built anew", tree, req, foreign, ldap.LDAPResultUnwillingToPerform, "invalid or old: the served directory was rebuilt"},
		{"another search", tree, searchRequest(t, testBase, ScopeSubtree, "(uid=*)", "1.1"), cookie, ldap.LDAPResultUnwillingToPerform, "invalid or old: it belongs to another search"},
		{"other attributes", tree, searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)", "cn"), cookie, ldap.LDAPResultUnwillingToPerform, "another search"},
		{"other base", tree, searchRequest(t, "ou=people,"+testBase, ScopeSubtree, "(objectClass=*)", "1.1"), cookie, ldap.LDAPResultUnwillingToPerform, "another search"},
	} {
		dns, res, _ := page(t, c.tree, c.req, 10, c.cookie)
		if res.Code != c.code || !strings.Contains(res.Diagnostic, c.diag) || len(dns) != 0 {
			t.Errorf("%s cookie: %d entries, code %d %q; want code %d %q", c.name, len(dns), res.Code, res.Diagnostic, c.code, c.diag)
		}
	}

	// The same filter encoded otherwise (a length in its long form), or decoded into a
	// packet tree on the server's other path, is the same search.
	minimal := mustFilter(t, "(objectClass=*)").Bytes() // 0x87 len "objectClass"
	long := append([]byte{minimal[0], 0x81}, minimal[1:]...)
	for _, q := range []*SearchRequest{
		{BaseDN: testBase, Scope: ScopeSubtree, Attributes: []string{"1.1"}, Filter: mustFilter(t, "(objectClass=*)")},
		func() *SearchRequest {
			q := &SearchRequest{BaseDN: testBase, Scope: ScopeSubtree, Attributes: []string{"1.1"}}
			q.SetFilterEncoding(string(long))
			return q
		}(),
	} {
		dns, res, _ := page(t, tree, &Request{Op: OpSearch, Search: q}, 10, cookie)
		if res.Code != 0 || len(dns) != 10 {
			t.Errorf("the next page of the same search with its filter encoded %x: %d entries, code %d %q", q.FilterPacket().Bytes(), len(dns), res.Code, res.Diagnostic)
		}
	}

	// The same cookie may be used again: pages are not state on the server.
	a, _, _ := page(t, tree, req, 10, cookie)
	b, _, _ := page(t, tree, req, 10, cookie)
	if !slices.Equal(a, b) || len(a) != 10 {
		t.Errorf("the same cookie gave %d and %d entries", len(a), len(b))
	}
}

func TestPagingSizeZeroAndLimits(t *testing.T) {
	tree := benchTree(t, 50)
	req := searchRequest(t, testBase, ScopeSubtree, "(objectClass=*)", "1.1")
	_, _, cookie := page(t, tree, req, 10, nil)
	for _, c := range [][]byte{nil, cookie} {
		dns, res, next := page(t, tree, req, 0, c)
		if len(dns) != 0 || res.Code != 0 || len(next) != 0 || len(res.Controls) != 1 {
			t.Errorf("size 0, cookie %x: %d entries, code %d, cookie %x", c, len(dns), res.Code, next)
		}
	}

	// The size limit counts the entries of all pages, as slapd does.
	limited := *req.Search
	limited.SizeLimit = 15
	lreq := &Request{Op: OpSearch, Search: &limited}
	dns, res, next := page(t, tree, lreq, 10, nil)
	if len(dns) != 10 || res.Code != 0 || len(next) == 0 {
		t.Fatalf("first page: %d entries, code %d", len(dns), res.Code)
	}
	dns, res, _ = page(t, tree, lreq, 10, next)
	if len(dns) != 5 || res.Code != ldap.LDAPResultSizeLimitExceeded {
		t.Errorf("second page: %d entries, code %d; want 5 and sizeLimitExceeded", len(dns), res.Code)
	}
}

func TestParsePaging(t *testing.T) {
	seq := func(children ...*ber.Packet) []byte {
		p := ber.NewSequence("")
		for _, c := range children {
			p.AppendChild(c)
		}
		return p.Bytes()
	}
	integer := func(n int64) *ber.Packet {
		return ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, n, "")
	}
	str := func(s string) *ber.Packet {
		return ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, s, "")
	}
	for _, c := range []struct {
		name  string
		value []byte
		ok    bool
	}{
		{"valid", seq(integer(5), str("")), true},
		{"negative size", seq(integer(-1), str("")), false},
		{"no cookie", seq(integer(5)), false},
		{"cookie not a string", seq(integer(5), integer(5)), false},
		{"not BER", []byte{0xff}, false},
	} {
		_, err := parsePaging(Control{Type: ldap.ControlTypePaging, Value: c.value, HasValue: true})
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
}
