package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// TestSubschema reads the subschema subentry the root DSE names, before any bind, with
// go-ldap and ldapsearch, in both search modes, and checks that it describes what cached
// searches serve.
func TestSubschema(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5, Groups: 2})
	for _, mode := range []string{"cached", "direct"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, config(up, map[string]string{"mode": mode, "sync": syncOn}))
			if mode == "cached" {
				waitSynced(t, p, up)
			}
			c := dial(t, p.URL) // not bound: clients read the schema before they log in
			// Once the first sync has read slapd's schema, the subentry describes it (in
			// direct mode too): x121Address is in slapd's core schema, not the built-in one.
			eventually(t, 20*time.Second, "the upstream's schema to be served", func() bool {
				res, err := c.Search(ldap.NewSearchRequest("cn=Subschema", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)",
					[]string{"attributeTypes"}, nil))
				return err == nil && len(res.Entries) == 1 && strings.Contains(strings.Join(res.Entries[0].GetAttributeValues("attributeTypes"), " "), "'x121Address'")
			})

			root, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"subschemaSubentry"}, nil))
			if err != nil || len(root.Entries) != 1 || root.Entries[0].GetAttributeValue("subschemaSubentry") != "cn=Subschema" {
				t.Fatalf("root DSE subschemaSubentry: %v, %v", root, err)
			}

			res, err := c.Search(ldap.NewSearchRequest("cn=Subschema", ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=subschema)",
				[]string{"attributeTypes", "objectClasses", "objectClass"}, nil))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("subschema: %v, %v", res, err)
			}
			e := res.Entries[0]
			if oc := e.GetAttributeValues("objectClass"); !contains(oc, "subentry") || !contains(oc, "subschema") {
				t.Errorf("objectClass %q", oc)
			}
			types := e.GetAttributeValues("attributeTypes")
			attrs := checkDescriptions(t, "attributeTypes", types)
			classes := checkDescriptions(t, "objectClasses", e.GetAttributeValues("objectClasses"))
			for _, want := range []string{"uid", "memberOf", "entryUUID", "cn", "mail", "displayName", "member"} {
				if !contains(attrs, strings.ToLower(want)) {
					t.Errorf("attributeTypes lack %s", want)
				}
			}
			for _, want := range []string{"top", "person", "organizationalPerson", "inetOrgPerson", "groupOfNames", "organizationalUnit"} {
				if !contains(classes, strings.ToLower(want)) {
					t.Errorf("objectClasses lack %s", want)
				}
			}

			if mode == "cached" {
				// Every attribute a served user and group carries is described.
				if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
					t.Fatal(err)
				}
				served, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false,
					"(|(uid=user0001)(cn="+slapdtest.GroupName(1)+"))", []string{"*", "+"}, nil))
				if err != nil || len(served.Entries) != 2 {
					t.Fatalf("served entries: %v, %v", served, err)
				}
				for _, se := range served.Entries {
					for _, a := range se.Attributes {
						if !contains(attrs, strings.ToLower(a.Name)) {
							t.Errorf("%s carries %s, which the subschema does not describe", se.DN, a.Name)
						}
					}
				}
			}

			// What `ldapsearch -b cn=Subschema -s base '(objectClass=subschema)' +` prints.
			out, code := tool(t, nil, "ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", p.URL,
				"-b", "cn=Subschema", "-s", "base", "(objectClass=subschema)", "+")
			if code != 0 {
				t.Fatalf("ldapsearch: exit %d\n%s", code, out)
			}
			var toolTypes, ocs []string
			for line := range strings.SplitSeq(out, "\n") {
				if v, ok := strings.CutPrefix(line, "attributeTypes: "); ok {
					toolTypes = append(toolTypes, v)
				}
				if v, ok := strings.CutPrefix(line, "objectClasses: "); ok {
					ocs = append(ocs, v)
				}
			}
			toolAttrs := checkDescriptions(t, "ldapsearch attributeTypes", toolTypes)
			toolClasses := checkDescriptions(t, "ldapsearch objectClasses", ocs)
			if !contains(toolAttrs, "uid") || !contains(toolAttrs, "memberof") || !contains(toolClasses, "inetorgperson") {
				t.Errorf("ldapsearch + lacks uid, memberOf or inetOrgPerson:\n%s", tail(out, 20))
			}
			if len(toolTypes) != len(types) || strings.Contains(out, "\nobjectClass: ") {
				t.Errorf("ldapsearch + returned %d attribute types (go-ldap: %d), or user attributes", len(toolTypes), len(types))
			}
		})
	}
}

var (
	numericOID = regexp.MustCompile(`^[0-9]+(\.[0-9]+)+$`)
	// nameField matches NAME 'x' or NAME ( 'x' 'y' ).
	nameField = regexp.MustCompile(`NAME (?:'([^']+)'|\(((?: '[^']+')+) \))`)
)

// checkDescriptions checks RFC 4512 descriptions as a client's parser would need them:
// enclosed in balanced parentheses, a numeric OID first, a NAME. It returns the names,
// lowercased.
func checkDescriptions(t *testing.T, what string, descs []string) []string {
	t.Helper()
	if len(descs) == 0 {
		t.Errorf("%s: none", what)
	}
	var names []string
	for _, d := range descs {
		if err := checkDescription(d); err != nil {
			t.Errorf("%s %q: %v", what, d, err)
			continue
		}
		m := nameField.FindStringSubmatch(d)
		if m[1] != "" {
			names = append(names, strings.ToLower(m[1]))
		}
		for _, n := range strings.Fields(m[2]) {
			names = append(names, strings.ToLower(strings.Trim(n, "'")))
		}
	}
	return names
}

func checkDescription(d string) error {
	depth, quoted := 0, false
	for i, c := range d {
		switch {
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth < 0 || depth == 0 && i != len(d)-1 {
				return fmt.Errorf("unbalanced ')' at %d", i)
			}
		}
	}
	if depth != 0 || quoted {
		return fmt.Errorf("unbalanced parentheses or quotes")
	}
	fields := strings.Fields(d)
	if len(fields) < 4 || fields[0] != "(" || !numericOID.MatchString(fields[1]) {
		return fmt.Errorf("no numeric OID after '('")
	}
	if !nameField.MatchString(d) {
		return fmt.Errorf("no NAME")
	}
	return nil
}
