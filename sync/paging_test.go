package sync_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	gosync "sync"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

func TestPageSize(t *testing.T) {
	t.Parallel()
	// The service account gets at most 10 entries from a search without paging, and
	// everything with pages of up to 10.
	srv := slapdtest.New(t, slapdtest.Options{Users: 30, SizeLimit: "size.soft=10 size.hard=10 size.prtotal=unlimited"})
	spy := newSearchSpy(t, srv.URL)
	e := newEnvAt(t, spy.url, srv.ServiceDN, srv.ServicePassword, srv.Suffix)

	sn := e.sync(config(t, func(c *ldapsync.Config) { c.PageSize = 7; c.UserDN = "ou=people" }))
	if users, _ := sn.Counts(); users != 30 {
		t.Fatalf("%d users stored, want all 30", users)
	}

	// 30 users in pages of 7: 7, 7, 7, 7 and 2.
	var pages []int
	for _, s := range spy.searches() {
		if strings.EqualFold(s.base, srv.PeopleDN) {
			pages = append(pages, s.pageSize)
		}
	}
	if len(pages) != 5 {
		t.Errorf("%d searches of ou=people, want 5 pages of 7 for 30 users: %v", len(pages), pages)
	}
	for _, n := range pages {
		if n != 7 {
			t.Errorf("page sizes asked %v, want 7 each", pages)
			break
		}
	}
}

// searchSpy relays LDAP connections to an upstream and records the searches that
// pass, with the page size of their paged-results control (-1 without one).
type searchSpy struct {
	url string

	mu   gosync.Mutex
	seen []spiedSearch
	// cut, when set, is asked about each search; when it says so, the connection is
	// closed instead of the search being relayed.
	cut func(spiedSearch) bool
}

type spiedSearch struct {
	base     string
	pageSize int
}

func newSearchSpy(t *testing.T, upstreamURL string) *searchSpy {
	t.Helper()
	target := strings.TrimPrefix(upstreamURL, "ldap://")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &searchSpy{url: "ldap://" + l.Addr().String()}
	var wg gosync.WaitGroup
	var conns []net.Conn
	var mu gosync.Mutex
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			client, err := l.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Go(func() {
				io.Copy(client, server)
				client.Close()
			})
			wg.Go(func() {
				s.relay(client, server)
				server.Close()
			})
		}
	})
	return s
}

// relay copies the client's messages to the server one by one, noting the searches.
func (s *searchSpy) relay(client, server net.Conn) {
	r := bufio.NewReader(client)
	for {
		msg, err := ldapwire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			return
		}
		if p, err := ber.DecodePacketErr(msg); err == nil && len(p.Children) >= 2 && p.Children[1].Tag == ldap.ApplicationSearchRequest {
			seen := spiedSearch{pageSize: -1}
			if op := p.Children[1]; len(op.Children) > 0 {
				seen.base, _ = op.Children[0].Value.(string)
			}
			if len(p.Children) > 2 {
				for _, c := range p.Children[2].Children {
					if ctl, err := ldap.DecodeControl(c); err == nil {
						if paging, ok := ctl.(*ldap.ControlPaging); ok {
							seen.pageSize = int(paging.PagingSize)
						}
					}
				}
			}
			s.mu.Lock()
			s.seen = append(s.seen, seen)
			cut := s.cut != nil && s.cut(seen)
			s.mu.Unlock()
			if cut {
				return
			}
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

func (s *searchSpy) searches() []spiedSearch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]spiedSearch(nil), s.seen...)
}
