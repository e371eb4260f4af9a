package sync_test

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	gosync "sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// fakeAD answers like Active Directory for what a sync asks, which OpenLDAP cannot
// show: paged subtree searches for users and groups, and range retrieval of the members
// of a large group (member;range=0-1499, then member;range=1500-* and onwards), as AD
// does for groups of more than rangeSize members. It runs on the project's own frontend.
//
// The directory under fakeBase holds users CN=User 0001,OU=Users… (sAMAccountName
// user0001, userPrincipalName User.0001@corp.example.com, a 16-byte objectGUID), the
// group Big of every user, and the group Small of users 1 to 3 and of Big. When netbios
// is set, the root DSE names the configuration naming context, whose CN=Partitions holds
// the crossRef objects of the forest's domains: fakeBase's with nETBIOSName netbios and
// dnsRoot corp.example, and others around it.

type fakeAD struct {
	users     int
	rangeSize int

	mu gosync.Mutex
	// filters are the filters of the subtree searches received, in order.
	filters []string
	// ranges are the attributes asked for by range retrievals, in order.
	ranges []string
	// display is prefixed to the users' displayName.
	display string
	// failUsersPage makes the users search fail with `other` at that page (1-based).
	failUsersPage int
	// netbios is the domain's NetBIOS name; "": the root DSE names no configuration
	// naming context, as a directory other than AD.
	netbios string
	// failPartitions makes the search of CN=Partitions fail with `other`.
	failPartitions bool
	// schema are the attributeTypes of the aggregate schema (fakeAggregate), which the
	// root DSE then names as its subschemaSubentry; as AD, it returns them only when
	// asked for by name. failSchema makes the search of it fail with `other`.
	schema     []string
	failSchema bool
}

const (
	fakeBase       = "DC=corp,DC=example"
	fakeConfig     = "CN=Configuration," + fakeBase
	fakePartitions = "CN=Partitions," + fakeConfig
	fakeAggregate  = "CN=Aggregate,CN=Schema," + fakeConfig
)

// fakeUPN is user i's userPrincipalName, whose local part is not its sAMAccountName.
func fakeUPN(i int) string { return fmt.Sprintf("User.%04d@corp.example.com", i) }

func (f *fakeAD) userDN(i int) string { return fmt.Sprintf("CN=User %04d,OU=Users,%s", i, fakeBase) }
func (f *fakeAD) groupDN(cn string) string {
	return "CN=" + cn + ",OU=Groups," + fakeBase
}

// fakeGUID is user i's objectGUID, or a group's for the negative numbers.
func fakeGUID(i int) []byte {
	b := []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[12:], uint32(i))
	return b
}

func attr(name string, vals ...string) ldapserver.Attribute {
	a := ldapserver.Attribute{Name: name}
	for _, v := range vals {
		a.Values = append(a.Values, []byte(v))
	}
	return a
}

func (f *fakeAD) userEntry(i int, display string) *ldapserver.Entry {
	name := fmt.Sprintf("user%04d", i)
	return &ldapserver.Entry{DN: f.userDN(i), Attributes: []ldapserver.Attribute{
		attr("objectClass", "top", "person", "organizationalPerson", "user"),
		attr("cn", fmt.Sprintf("User %04d", i)),
		attr("sAMAccountName", name),
		attr("userPrincipalName", fakeUPN(i)),
		attr("displayName", display+name),
		attr("userAccountControl", "512"),
		{Name: "objectGUID", Values: [][]byte{fakeGUID(i)}},
	}}
}

// members returns the member values of a group; they spell the DNs in another case
// than the entries do, as nothing obliges a directory to keep one spelling.
func (f *fakeAD) members(cn string) []string {
	var vals []string
	switch cn {
	case "Big":
		for i := 1; i <= f.users; i++ {
			vals = append(vals, strings.ToLower(f.userDN(i)))
		}
	case "Small":
		vals = []string{f.userDN(1), f.userDN(2), f.userDN(3), f.groupDN("Big")}
	}
	return vals
}

func (f *fakeAD) groupEntry(cn string, guid int) *ldapserver.Entry {
	e := &ldapserver.Entry{DN: f.groupDN(cn), Attributes: []ldapserver.Attribute{
		attr("objectClass", "top", "group"),
		attr("cn", cn),
		{Name: "objectGUID", Values: [][]byte{fakeGUID(guid)}},
	}}
	vals := f.members(cn)
	if len(vals) > f.rangeSize {
		e.Attributes = append(e.Attributes, attr(fmt.Sprintf("member;range=0-%d", f.rangeSize-1), vals[:f.rangeSize]...))
	} else {
		e.Attributes = append(e.Attributes, attr("member", vals...))
	}
	return e
}

func (f *fakeAD) ServeLDAP(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	switch {
	case r.Op == ldapserver.OpBind:
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
	case r.Op != ldapserver.OpSearch:
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "fake AD: read-only"})
	case r.Search.Scope == ldapserver.ScopeBase && r.Search.BaseDN == "":
		dse := &ldapserver.Entry{DN: "", Attributes: []ldapserver.Attribute{attr("namingContexts", fakeBase)}}
		f.mu.Lock()
		if f.netbios != "" {
			dse.Attributes = append(dse.Attributes, attr("configurationNamingContext", fakeConfig), attr("defaultNamingContext", fakeBase))
		}
		if f.schema != nil {
			dse.Attributes = append(dse.Attributes, attr("subschemaSubentry", fakeAggregate))
		}
		f.mu.Unlock()
		w.WriteEntry(dse)
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
	case r.Search.Scope == ldapserver.ScopeOne && directory.NormalizeDN(r.Search.BaseDN) == directory.NormalizeDN(fakePartitions):
		f.partitions(w)
	case r.Search.Scope == ldapserver.ScopeBase && directory.NormalizeDN(r.Search.BaseDN) == directory.NormalizeDN(fakeAggregate):
		f.aggregate(w, r)
	case r.Search.Scope == ldapserver.ScopeBase:
		f.rangeRetrieval(w, r)
	default:
		filter, _ := r.Search.FilterString()
		f.mu.Lock()
		f.filters = append(f.filters, filter)
		display, failAt := f.display, f.failUsersPage
		f.mu.Unlock()
		switch lower := strings.ToLower(filter); {
		case strings.Contains(lower, "objectclass=user"):
			f.paged(w, r, f.users, failAt, func(i int) *ldapserver.Entry { return f.userEntry(i+1, display) })
		case strings.Contains(lower, "objectclass=group"):
			f.paged(w, r, 2, 0, func(i int) *ldapserver.Entry {
				return []*ldapserver.Entry{f.groupEntry("Big", -1), f.groupEntry("Small", -2)}[i]
			})
		default:
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
		}
	}
}

// aggregate answers the base search of the aggregate schema: attributeTypes when named,
// and no matchingRules or ldapSyntaxes, as AD.
func (f *fakeAD) aggregate(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	f.mu.Lock()
	types, fail := f.schema, f.failSchema
	f.mu.Unlock()
	if fail {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultOther, Diagnostic: "fake AD: simulated failure"})
		return
	}
	e := &ldapserver.Entry{DN: fakeAggregate, Attributes: []ldapserver.Attribute{attr("objectClass", "top", "subSchema"), attr("cn", "Aggregate")}}
	for _, a := range r.Search.Attributes {
		if strings.EqualFold(a, "attributeTypes") {
			e.Attributes = append(e.Attributes, attr("attributeTypes", types...))
		}
	}
	w.WriteEntry(e)
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// partitions answers the one-level search of CN=Partitions: the crossRef objects of the
// configuration and schema partitions (which have no nETBIOSName), of the domain, of a
// child domain below it and of another tree's domain, as in a forest.
func (f *fakeAD) partitions(w ldapserver.ResponseWriter) {
	f.mu.Lock()
	netbios, fail := f.netbios, f.failPartitions
	f.mu.Unlock()
	if netbios == "" {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultNoSuchObject, Diagnostic: "fake AD: no configuration partition"})
		return
	}
	if fail {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultOther, Diagnostic: "fake AD: simulated failure"})
		return
	}
	crossRef := func(cn, nc, name, dns string) *ldapserver.Entry {
		e := &ldapserver.Entry{DN: "CN=" + cn + "," + fakePartitions, Attributes: []ldapserver.Attribute{
			attr("objectClass", "top", "crossRef"), attr("cn", cn), attr("nCName", nc), attr("dnsRoot", dns)}}
		if name != "" {
			e.Attributes = append(e.Attributes, attr("nETBIOSName", name))
		}
		return e
	}
	for _, e := range []*ldapserver.Entry{
		crossRef("Enterprise Configuration", fakeConfig, "", "corp.example"),
		crossRef("Enterprise Schema", "CN=Schema,"+fakeConfig, "", "corp.example"),
		crossRef("EU", "DC=eu,"+fakeBase, "EU", "eu.corp.example"),
		crossRef(netbios, fakeBase, netbios, "corp.example"),
		crossRef("OTHER", "DC=other,DC=example", "OTHER", "other.example"),
	} {
		if w.WriteEntry(e) != nil {
			return
		}
	}
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// paged sends entries [0, n) made by entry, one page as the paged-results control
// asks (its cookie is the offset of the page). Page failAt fails instead.
func (f *fakeAD) paged(w ldapserver.ResponseWriter, r *ldapserver.Request, n, failAt int, entry func(int) *ldapserver.Entry) {
	size, offset := n, 0
	for _, c := range r.Controls {
		if c.Type != ldap.ControlTypePaging {
			continue
		}
		p, err := ber.DecodePacketErr(c.Value)
		if err != nil || len(p.Children) != 2 {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "fake AD: bad paging control"})
			return
		}
		size = int(p.Children[0].Value.(int64))
		if cookie := p.Children[1].Data.String(); cookie != "" {
			offset, _ = strconv.Atoi(cookie)
		}
	}
	size = max(size, 1)
	if failAt > 0 && offset/size+1 == failAt {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultOther, Diagnostic: "fake AD: simulated failure"})
		return
	}
	end := min(offset+size, n)
	for i := offset; i < end; i++ {
		if w.WriteEntry(entry(i)) != nil {
			return
		}
	}
	next := ""
	if end < n {
		next = strconv.Itoa(end)
	}
	ctl := ldap.NewControlPaging(0)
	ctl.SetCookie([]byte(next))
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess, Controls: []ldapserver.Control{ldapwire.ControlFromLDAP(ctl)}})
}

// rangeRetrieval answers a base search for member;range=N-* on a group.
func (f *fakeAD) rangeRetrieval(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	var cn string
	for _, name := range []string{"Big", "Small"} {
		if directory.NormalizeDN(r.Search.BaseDN) == directory.NormalizeDN(f.groupDN(name)) {
			cn = name
		}
	}
	if cn == "" || len(r.Search.Attributes) != 1 {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultNoSuchObject, Diagnostic: "fake AD: unexpected base search"})
		return
	}
	asked := r.Search.Attributes[0]
	f.mu.Lock()
	f.ranges = append(f.ranges, asked)
	f.mu.Unlock()
	var low int
	if _, err := fmt.Sscanf(strings.ToLower(asked), "member;range=%d-*", &low); err != nil || !strings.HasSuffix(asked, "-*") {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "fake AD: unexpected attribute " + asked})
		return
	}
	vals := f.members(cn)
	low = min(low, len(vals))
	end := min(low+f.rangeSize, len(vals))
	name := fmt.Sprintf("member;range=%d-%d", low, end-1)
	if end == len(vals) {
		name = fmt.Sprintf("member;range=%d-*", low)
	}
	w.WriteEntry(&ldapserver.Entry{DN: f.groupDN(cn), Attributes: []ldapserver.Attribute{attr(name, vals[low:end]...)}})
	w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
}

// serveFake serves h on a loopback port until the test ends and returns a pool and a
// store connected to it.
func serveFake(t *testing.T, h ldapserver.Handler) *env {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &ldapserver.Server{Handler: h, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return newEnvAt(t, "ldap://"+l.Addr().String(), "cn=svc,"+fakeBase, "svc-secret", fakeBase)
}
