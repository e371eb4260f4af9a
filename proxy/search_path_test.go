package proxy

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// searchMessage encodes a search request as a client sends it.
func searchMessage(tb testing.TB, id int64, base string, scope int, filter string, attrs ...string) []byte {
	tb.Helper()
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		tb.Fatal(err)
	}
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(scope), ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ldap.NeverDerefAliases), ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	req.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	req.AppendChild(f)
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range attrs {
		list.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, ""))
	}
	req.AppendChild(list)
	msg.AppendChild(req)
	return msg.Bytes()
}

// encodingWriter encodes what a handler answers as the server would, into one buffer
// it reuses.
type encodingWriter struct {
	req     *Request
	buf     []byte
	entries int
}

func (w *encodingWriter) WriteEntry(e *ldapserver.Entry, controls ...Control) error {
	w.entries++
	w.buf = ldapwire.AppendEntry(w.buf, w.req.MessageID, e, w.req.Search.TypesOnly, controls)
	return nil
}

func (w *encodingWriter) WriteReference([]string, ...Control) error { return nil }

func (w *encodingWriter) WriteResult(res *Result) error {
	w.buf = ldapwire.AppendResult(w.buf, w.req.MessageID, 5, res)
	return nil
}

// BenchmarkCachedSearch is ldapbench's search round against the cached directory: one
// user by uid among 10,000 (with the attributes of a POSIX directory's users), all of
// its user attributes asked for, by an anonymous client. "handler" runs what the server
// runs for a request it has read (decoding, the handler chain with its metrics, the
// search, encoding the responses); "loopback" sends the requests through an
// ldapserver on a loopback connection, one at a time, and reads the responses, as a
// client does.
func BenchmarkCachedSearch(b *testing.B) {
	s := newBenchStoreWith(b, &benchStore{users: 10000, groups: 200, upstream: true})
	h, _ := newHandler(Options{
		Listen:  ListenConfig{AllowAnonymous: true},
		Search:  SearchConfig{Mode: ModeCached},
		Store:   s.store,
		Served:  ServedOptions{BaseDN: servedBase},
		Logger:  slog.New(slog.DiscardHandler),
		Metrics: NewMetrics(prometheus.NewRegistry(), func() float64 { return 0 }),
	}, nil)
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = searchMessage(b, int64(i+1), servedBase, ldap.ScopeWholeSubtree, fmt.Sprintf("(uid=u-%06d)", i*10))
	}

	b.Run("handler", func(b *testing.B) {
		sess := &ldapserver.Session{}
		ctx := h.ConnContext(context.Background(), sess)
		w := &encodingWriter{}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r, err := ldapserver.ReadRequest(msgs[i%len(msgs)])
			if err != nil {
				b.Fatal(err)
			}
			r.Session = sess
			r = r.WithContext(ctx)
			w.req, w.buf = r, w.buf[:0]
			h.ServeLDAP(w, r)
		}
		if w.entries != b.N {
			b.Fatalf("%d entries for %d searches", w.entries, b.N)
		}
	})

	b.Run("loopback", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &ldapserver.Server{Handler: h, ConnContext: h.ConnContext, Inline: h.Inline, Logger: slog.New(slog.DiscardHandler)}
		go srv.Serve(ln)
		defer srv.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		rd := bufio.NewReader(c)
		var frame []byte
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := c.Write(msgs[i%len(msgs)]); err != nil {
				b.Fatal(err)
			}
			for n := 0; ; n++ {
				if frame, err = ldapwire.ReadFrame(rd, 1<<20, frame[:0]); err != nil {
					b.Fatal(err)
				}
				if _, tag, err := ldapwire.PeekHeader(frame); err != nil {
					b.Fatal(err)
				} else if tag&0x1f == ldap.ApplicationSearchResultDone {
					if n != 1 {
						b.Fatalf("%d entries, want 1", n)
					}
					break
				}
			}
		}
	})
}

// detachingWriter is an encodingWriter that counts the calls of ldapserver.Detach.
type detachingWriter struct {
	encodingWriter
	detached int
}

func (w *detachingWriter) Detach() { w.detached++ }

// TestInlineCachedReads checks Handler.Inline: in both modes searches and compares are
// answered on the read loop, nothing else is; and a cached
// search that goes through much of the tree detaches (through the handler chain), one
// that looks up a few entries does not.
func TestInlineCachedReads(t *testing.T) {
	s := newBenchStore(t, 200, 10)
	opts := Options{
		Listen: ListenConfig{AllowAnonymous: true},
		Search: SearchConfig{Mode: ModeCached},
		Store:  s.store,
		Served: ServedOptions{BaseDN: servedBase},
		Logger: slog.New(slog.DiscardHandler),
	}
	h, _ := newHandler(opts, nil)
	direct := opts
	direct.Search.Mode = ModeDirect
	hd, _ := newHandler(direct, nil)
	for _, op := range []ldapserver.Op{ldapserver.OpBind, ldapserver.OpSearch, ldapserver.OpCompare, ldapserver.OpExtended, ldapserver.OpModify} {
		want := op == ldapserver.OpSearch || op == ldapserver.OpCompare
		if got := h.Inline(&Request{Op: op}); got != want {
			t.Errorf("cached mode: %s inline: %v, want %v", op, got, want)
		}
		if got := hd.Inline(&Request{Op: op}); got != want {
			t.Errorf("direct mode: %s inline: %v, want %v", op, got, want)
		}
	}

	sess := &ldapserver.Session{}
	ctx := h.ConnContext(context.Background(), sess)
	for _, c := range []struct {
		filter  string
		entries int
		detach  bool
	}{
		{"(uid=u-000042)", 1, false},
		{"(objectClass=inetOrgPerson)", 200, true},
		{"(title=Engineer)", 200, true},
	} {
		r, err := ldapserver.ReadRequest(searchMessage(t, 1, servedBase, ldap.ScopeWholeSubtree, c.filter))
		if err != nil {
			t.Fatal(err)
		}
		r.Session = sess
		r = r.WithContext(ctx)
		w := &detachingWriter{encodingWriter: encodingWriter{req: r}}
		h.ServeLDAP(w, r)
		if w.entries != c.entries || w.detached != map[bool]int{false: 0, true: 1}[c.detach] {
			t.Errorf("%s: %d entries, detached %d times; want %d, detached: %v", c.filter, w.entries, w.detached, c.entries, c.detach)
		}
	}
}
