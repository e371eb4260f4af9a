package sync

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// decodeEntry reads what a server sends, binary values byte for byte, and refuses
// (never panics on) every cut and every damaged byte of it.
func TestDecodeEntry(t *testing.T) {
	guid := []byte{0, 0xff, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	in := &ldapwire.Entry{DN: "uid=alice,ou=people,dc=example,dc=org", Attributes: []ldapwire.Attribute{
		{Name: "objectClass", Values: [][]byte{[]byte("inetOrgPerson"), []byte("posixAccount")}},
		{Name: "objectGUID", Values: [][]byte{guid}},
		{Name: "description", Values: [][]byte{bytes.Repeat([]byte("x"), 300)}},
		{Name: "member;range=0-1499", Values: [][]byte{[]byte("cn=a"), {}}},
	}}
	msg := ldapwire.AppendEntry(nil, 7, in, false, nil)
	e, err := decodeEntry(msg)
	if err != nil {
		t.Fatal(err)
	}
	if e.DN != in.DN || len(e.Attributes) != len(in.Attributes) {
		t.Fatalf("decoded %+v", e)
	}
	for i, a := range e.Attributes {
		if a.Name != in.Attributes[i].Name || len(a.Values) != len(in.Attributes[i].Values) {
			t.Fatalf("attribute %d: %q %d values", i, a.Name, len(a.Values))
		}
		for j, v := range values(a) {
			if v != string(in.Attributes[i].Values[j]) {
				t.Errorf("%s value %d: %x", a.Name, j, v)
			}
		}
	}
	msg[len(msg)-1] ^= 0xff // the entry is a copy: the message may be reused
	if e.Attributes[3].Values[0] != "cn=a" {
		t.Error("the entry shares the message's memory")
	}
	msg[len(msg)-1] ^= 0xff

	for n := range len(msg) {
		if _, err := decodeEntry(msg[:n]); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decodes", n, len(msg))
		}
	}
	for i := range msg {
		for _, c := range []byte{0, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(msg)
			b[i] = c
			decodeEntry(b) // must not panic
		}
	}
}

// searchRequest encodes what go-ldap would: a search with the paged results
// control, which go-ldap's own decoder reads back.
func TestSearchRequestEncoding(t *testing.T) {
	f, err := ldap.CompileFilter("(&(objectClass=user)(!(uid=x*)))")
	if err != nil {
		t.Fatal(err)
	}
	msg := searchRequest("dc=example,dc=org", ldap.ScopeSingleLevel, f.Bytes(), []string{"*", "+", "entryUUID"}, 500, []byte("cookie\x00"))
	p, err := ber.DecodePacketErr(msg)
	if err != nil {
		t.Fatal(err)
	}
	op := p.Children[1]
	if op.Tag != ldap.ApplicationSearchRequest || op.Children[0].Value != "dc=example,dc=org" || op.Children[1].Value != int64(ldap.ScopeSingleLevel) {
		t.Fatalf("operation %v", op.Tag)
	}
	filter, err := ldap.DecompileFilter(op.Children[6])
	if err != nil || filter != "(&(objectClass=user)(!(uid=x*)))" {
		t.Errorf("filter %q, %v", filter, err)
	}
	if n := len(op.Children[7].Children); n != 3 {
		t.Errorf("%d attributes", n)
	}
	cookie, paged := ldapwire.PagedCookie(msg)
	if !paged || string(cookie) != "cookie\x00" {
		t.Errorf("paged %v cookie %q", paged, cookie)
	}
}

// benchUserEntry is a SearchResultEntry of a user as the test directory's slapd sends it
// for "*" and "+": 25 attributes.
func benchUserEntry() []byte {
	attr := func(name string, vals ...string) ldapwire.Attribute {
		a := ldapwire.Attribute{Name: name}
		for _, v := range vals {
			a.Values = append(a.Values, []byte(v))
		}
		return a
	}
	in := &ldapwire.Entry{DN: "uid=user0005,ou=people,dc=example,dc=org", Attributes: []ldapwire.Attribute{
		attr("objectClass", "inetOrgPerson", "posixAccount"), attr("uid", "user0005"), attr("cn", "User 0005"),
		attr("sn", "0005"), attr("givenName", "User"), attr("displayName", "User 0005"),
		attr("mail", "user0005@example.org"), attr("uidNumber", "10005"), attr("gidNumber", "20005"),
		attr("homeDirectory", "/home/user0005"), attr("loginShell", "/bin/bash"), attr("gecos", "User 0005"),
		attr("telephoneNumber", "+1 555 0000005"), attr("manager", "uid=user0001,ou=people,dc=example,dc=org"),
		attr("structuralObjectClass", "inetOrgPerson"), attr("entryUUID", "66c770e0-858c-1041-9abe-091165cd5d61"),
		attr("creatorsName", "cn=admin,dc=example,dc=org"), attr("createTimestamp", "20261206064542Z"),
		attr("entryCSN", "20261206064542.745488Z#000000#000#000000"), attr("modifiersName", "cn=admin,dc=example,dc=org"),
		attr("modifyTimestamp", "20261206064542Z"), attr("entryDN", "uid=user0005,ou=people,dc=example,dc=org"),
		attr("subschemaSubentry", "cn=Subschema"), attr("hasSubordinates", "FALSE"),
	}}
	return ldapwire.AppendEntry(nil, 7, in, false, nil)
}

// BenchmarkDecodeEntry is the decoding of one user entry of a full read.
func BenchmarkDecodeEntry(b *testing.B) {
	msg := benchUserEntry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEntry(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUserEntry is what a full read does with one user entry besides writing it:
// decode it, take its identity, map it and make the stored user (with the attributes it
// keeps).
func BenchmarkUserEntry(b *testing.B) {
	msg := benchUserEntry()
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	pool, err := upstream.New(upstream.Config{URLs: "ldap://127.0.0.1:1", BaseDN: "dc=example,dc=org"}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	s, err := New(cfg, pool, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	r := &run{s: s, status: map[string]*cache.Status{}}
	b.ReportAllocs()
	for b.Loop() {
		e, err := decodeEntry(msg)
		if err != nil {
			b.Fatal(err)
		}
		id, obj, ok := r.mapEntry(cache.KindUsers, s.users, e)
		if !ok {
			b.Fatal("not mapped")
		}
		if u := s.newUser(e, id, obj, nil); len(u.Upstream) == 0 {
			b.Fatal("no upstream attributes")
		}
	}
}

// pagingSyncer is a syncer of srv (no store) that reads pageSize entries a page.
func pagingSyncer(t *testing.T, srv *slapdtest.Server, pageSize int) *Syncer {
	t.Helper()
	pool, err := upstream.New(upstream.Config{
		URLs: srv.URL, BindDN: srv.ServiceDN, BindPassword: srv.ServicePassword, BaseDN: srv.Suffix,
		Timeout: 10 * time.Second,
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	cfg := Default()
	cfg.PageSize = pageSize
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, pool, nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pagedSearch hands the entries to fn in the upstream's order, on one goroutine, across
// pages read ahead; an fn that fails stops the search, which returns fn's error once fn
// is no longer running; a cancelled context stops it too.
func TestPagedSearchPipeline(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 120, Groups: 3})
	s := pagingSyncer(t, srv, 7)
	defer func(c, d int) { pipelineChunk, pipelineDepth = c, d }(pipelineChunk, pipelineDepth)
	pipelineChunk, pipelineDepth = 3, 2 // chunks smaller than pages, and the reader ahead of fn
	ctx := context.Background()
	read := func(fn func(*ldap.Entry) error) error {
		return s.pagedSearch(ctx, "users", "ou=people,"+srv.Suffix, ldap.ScopeWholeSubtree, "(objectClass=inetOrgPerson)",
			[]string{"uid"}, fn)
	}

	var uids []string
	if err := read(func(e *ldap.Entry) error {
		time.Sleep(100 * time.Microsecond) // slower than the reader
		uids = append(uids, e.GetAttributeValue("uid"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(uids) != 120 || !slices.IsSorted(uids) || uids[0] != "user0001" {
		t.Fatalf("%d entries, in this order: %v", len(uids), uids)
	}

	stop := errors.New("stop here")
	n := 0
	running := false
	err := read(func(e *ldap.Entry) error {
		if running {
			t.Error("fn called twice at once")
		}
		running = true
		defer func() { running = false }()
		if n++; n == 40 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 40 {
		t.Fatalf("after fn failed at entry 40: %d calls, %v", n, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	n = 0
	err = s.pagedSearch(cctx, "users", "ou=people,"+srv.Suffix, ldap.ScopeWholeSubtree, "(objectClass=inetOrgPerson)",
		[]string{"uid"}, func(e *ldap.Entry) error {
			if n++; n == 10 {
				cancel()
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) || n > 10+pipelineChunk {
		t.Fatalf("cancelled at entry 10: %d calls, %v", n, err)
	}
}

// TestCancelledPagedSearchIsNotSuccess: a read cancelled after the reader has sent its
// last page, while entries still wait for fn, reports the cancellation: it must never
// look like a read of everything (a full sync would then commit the rest as deleted).
func TestCancelledPagedSearchIsNotSuccess(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 120, Groups: 3})
	s := pagingSyncer(t, srv, 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := s.pagedSearch(ctx, "users", "ou=people,"+srv.Suffix, ldap.ScopeWholeSubtree, "(objectClass=inetOrgPerson)",
		[]string{"uid"}, func(e *ldap.Entry) error {
			if n++; n == 1 {
				time.Sleep(time.Second) // the reader reads every page meanwhile
				cancel()                // a shutdown or a reload
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("pagedSearch gave fn %d of 120 entries and returned %v; want the cancellation", n, err)
	}
}
