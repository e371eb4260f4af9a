package directory

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/sambatest"
)

// sambaADFile holds a Samba 4 domain controller's aggregate schema (its subschema
// subentry, CN=Aggregate) and the entries a proxy syncing it with the active-directory
// preset serves: the domain's users and groups, as read with "*", and the containers
// above them. TestSambaTestdata writes it from the DC that internal/sambatest provisions.
const sambaADFile = "testdata/samba-ad.json"

var updateSambaTestdata = flag.Bool("update-samba-testdata", false, "rewrite "+sambaADFile+" from a Samba DC")

// sambaAD is the content of sambaADFile.
type sambaAD struct {
	Subschema       string       `json:"subschema"`
	AttributeTypes  []string     `json:"attributeTypes"`
	ObjectClasses   []string     `json:"objectClasses"`
	DITContentRules []string     `json:"dITContentRules"`
	BaseDN          string       `json:"baseDN"`
	Entries         []sambaEntry `json:"entries"`
}

type sambaEntry struct {
	DN         string           `json:"dn"`
	Attributes []sambaAttribute `json:"attributes"`
}

// sambaAttribute's values are base64 when one of them is not UTF-8 (objectGUID,
// objectSid).
type sambaAttribute struct {
	Name   string   `json:"name"`
	Base64 bool     `json:"base64,omitempty"`
	Values []string `json:"values"`
}

// loadSambaAD reads sambaADFile.
func loadSambaAD(tb testing.TB) *sambaAD {
	tb.Helper()
	data, err := os.ReadFile(sambaADFile)
	if err != nil {
		tb.Fatal(err)
	}
	var ad sambaAD
	if err := json.Unmarshal(data, &ad); err != nil {
		tb.Fatal(err)
	}
	return &ad
}

// descriptions are the schema as the sync reads it (Samba publishes no matchingRules
// nor ldapSyntaxes).
func (ad *sambaAD) descriptions() Descriptions {
	return Descriptions{AttributeTypes: ad.AttributeTypes, ObjectClasses: ad.ObjectClasses}
}

// entries are the served entries, made anew at each call.
func (ad *sambaAD) entries(tb testing.TB) []*Entry {
	tb.Helper()
	out := make([]*Entry, 0, len(ad.Entries))
	for _, se := range ad.Entries {
		e := &Entry{DN: se.DN}
		for _, sa := range se.Attributes {
			a := Attribute{Name: sa.Name}
			for _, v := range sa.Values {
				b := []byte(v)
				if sa.Base64 {
					var err error
					if b, err = base64.StdEncoding.DecodeString(v); err != nil {
						tb.Fatalf("%s %s: %v", se.DN, sa.Name, err)
					}
				}
				a.Values = append(a.Values, b)
			}
			e.Attributes = append(e.Attributes, a)
		}
		out = append(out, e)
	}
	return out
}

// TestSambaTestdata rewrites sambaADFile from a Samba DC when -update-samba-testdata is
// given: go test -run TestSambaTestdata -update-samba-testdata ./directory/
func TestSambaTestdata(t *testing.T) {
	if !*updateSambaTestdata {
		t.Skip("rewrites " + sambaADFile + " with -update-samba-testdata")
	}
	dc := sambatest.New(t, sambatest.Options{})
	conn := dc.Conn(t)
	ad := sambaAD{Subschema: "CN=Aggregate,CN=Schema,CN=Configuration," + dc.BaseDN, BaseDN: dc.BaseDN}
	agg, err := conn.Search(ldap.NewSearchRequest(ad.Subschema, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"attributeTypes", "objectClasses", "dITContentRules"}, nil))
	if err != nil || len(agg.Entries) != 1 {
		t.Fatalf("read the aggregate schema: %v", err)
	}
	ad.AttributeTypes = agg.Entries[0].GetAttributeValues("attributeTypes")
	ad.ObjectClasses = agg.Entries[0].GetAttributeValues("objectClasses")
	ad.DITContentRules = agg.Entries[0].GetAttributeValues("dITContentRules")

	// The objects the active-directory preset syncs, and the entries above them.
	res, err := conn.SearchWithPaging(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(|(&(objectCategory=person)(objectClass=user))(objectClass=group))", []string{"*"}, nil), 500)
	if err != nil {
		t.Fatalf("read the domain: %v", err)
	}
	want := map[string]bool{}
	for _, e := range res.Entries {
		dn, err := ldap.ParseDN(e.DN)
		if err != nil {
			t.Fatal(err)
		}
		for i := range dn.RDNs {
			want[strings.ToLower((&ldap.DN{RDNs: dn.RDNs[i:]}).String())] = true
		}
	}
	all, err := conn.SearchWithPaging(ldap.NewSearchRequest(dc.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"*"}, nil), 500)
	if err != nil {
		t.Fatalf("read the domain: %v", err)
	}
	for _, e := range all.Entries {
		dn, err := ldap.ParseDN(e.DN)
		if err != nil || !want[strings.ToLower(dn.String())] {
			continue
		}
		se := sambaEntry{DN: e.DN}
		for _, a := range e.Attributes {
			sa := sambaAttribute{Name: a.Name}
			sa.Base64 = slices.ContainsFunc(a.ByteValues, func(v []byte) bool { return !utf8.Valid(v) })
			for _, v := range a.ByteValues {
				if sa.Base64 {
					sa.Values = append(sa.Values, base64.StdEncoding.EncodeToString(v))
				} else {
					sa.Values = append(sa.Values, string(v))
				}
			}
			se.Attributes = append(se.Attributes, sa)
		}
		ad.Entries = append(ad.Entries, se)
	}
	data, err := json.MarshalIndent(&ad, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sambaADFile, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d attribute types, %d object classes, %d DIT content rules, %d entries", sambaADFile,
		len(ad.AttributeTypes), len(ad.ObjectClasses), len(ad.DITContentRules), len(ad.Entries))
}
