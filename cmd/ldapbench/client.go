package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Clients ldapbench can drive its connections with (-client).
const (
	clientWire   = "wire"
	clientGoLDAP = "go-ldap"
)

// client is one benchmark connection: the two requests the modes send, each
// answered before the next is sent, as an application's connection does.
type client interface {
	// bind simple-binds as dn.
	bind(dn, password string) error
	// search runs s with the user's filter and returns the number of entries
	// and, when wantDN is set, the first entry's DN.
	search(s *searchSpec, filter string, filterBER []byte, wantDN bool) (n int, dn string, err error)
	// closing reports whether the connection is gone (dropped by the server or
	// broken by the watchdog), so the worker dials again.
	closing() bool
	close()
}

// searchSpec is what a mode's searches share: base, scope and attributes.
type searchSpec struct {
	base  string
	attrs []string
	req   ldap.SearchRequest // the same, for the go-ldap client
}

func newSearchSpec(base string, attrs []string) searchSpec {
	return searchSpec{base: base, attrs: attrs, req: ldap.SearchRequest{
		BaseDN:       base,
		Scope:        ldap.ScopeWholeSubtree,
		DerefAliases: ldap.NeverDerefAliases,
		Attributes:   attrs,
	}}
}

// newClient starts a client of the given kind on nc.
func newClient(kind string, nc net.Conn, tls bool) client {
	if kind == clientGoLDAP {
		c := ldap.NewConn(nc, tls)
		c.Start()
		return &goLDAPClient{c: c}
	}
	return &wireClient{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
}

// goLDAPClient sends the requests with go-ldap, as applications built on it
// do: a reader and a dispatcher goroutine per connection and channels per
// request. It costs the load generator two to four times the CPU of a
// wireClient per operation, the most for searches (README).
type goLDAPClient struct {
	c   *ldap.Conn
	req ldap.SimpleBindRequest
}

func (g *goLDAPClient) bind(dn, password string) error {
	g.req.Username, g.req.Password = dn, password
	g.req.AllowEmptyPassword = dn == ""
	_, err := g.c.SimpleBind(&g.req)
	return err
}

func (g *goLDAPClient) search(s *searchSpec, filter string, _ []byte, wantDN bool) (int, string, error) {
	s.req.Filter = filter
	res, err := g.c.Search(&s.req)
	if err != nil {
		return 0, "", err
	}
	if wantDN && len(res.Entries) > 0 {
		return len(res.Entries), res.Entries[0].DN, nil
	}
	return len(res.Entries), "", nil
}

func (g *goLDAPClient) closing() bool { return g.c.IsClosing() }
func (g *goLDAPClient) close()        { g.c.Close() }

// maxResponse bounds one response message the wire client accepts.
const maxResponse = 16 << 20

// wireClient speaks LDAP on the worker's own goroutine: it encodes a request
// into a reused buffer, writes it, and reads the answers until the one that
// ends the operation, looking only at their message IDs, tags, result codes
// and (when asked) the first entry's DN. Nothing is allocated per request but
// that DN, so the load generator's CPU stays a small part of the machine's
// and the servers compared get the rest.
type wireClient struct {
	nc     net.Conn
	br     *bufio.Reader
	out    ldapwire.Encoder
	in     []byte
	id     int64
	broken bool
}

// next returns the next message ID, 1 to 2^31-1.
func (w *wireClient) next() int64 {
	w.id++
	if w.id > 1<<31-1 {
		w.id = 1
	}
	return w.id
}

// errEmptyPassword is go-ldap's refusal of a bind with a DN and no password,
// which a server would take as an unauthenticated bind and may let succeed.
var errEmptyPassword = ldap.NewError(ldap.ErrorEmptyPassword, errors.New("ldap: empty password not allowed by the client"))

func (w *wireClient) bind(dn, password string) error {
	if password == "" && dn != "" {
		return errEmptyPassword
	}
	e, id := w.begin(0x60) // [APPLICATION 0] BindRequest
	e.Int(0x02, 3)
	e.Str(0x04, dn)
	e.Str(0x80, password) // [0] simple
	e.End()
	e.End()
	_, _, err := w.roundTrip(id, false)
	return err
}

// begin starts the next request in the reused buffer: the LDAPMessage, with
// a new message ID, and its protocolOp op. The caller writes the op's fields
// and closes both.
func (w *wireClient) begin(op byte) (*ldapwire.Encoder, int64) {
	id := w.next()
	e := &w.out
	e.B = e.B[:0]
	e.Begin(0x30)
	e.Int(0x02, id)
	e.Begin(op)
	return e, id
}

func (w *wireClient) search(s *searchSpec, filter string, filterBER []byte, wantDN bool) (int, string, error) {
	if len(filterBER) == 0 { // as go-ldap, which compiles the filter first
		return 0, "", ldap.NewError(ldap.ErrorFilterCompile, fmt.Errorf("ldap: filter %q does not compile", filter))
	}
	e, id := w.begin(0x63) // [APPLICATION 3] SearchRequest
	e.Str(0x04, s.base)
	e.Int(0x0a, int64(ldap.ScopeWholeSubtree))
	e.Int(0x0a, int64(ldap.NeverDerefAliases))
	e.Int(0x02, 0)                   // sizeLimit
	e.Int(0x02, 0)                   // timeLimit
	e.B = append(e.B, 0x01, 1, 0x00) // typesOnly FALSE
	e.Raw(filterBER)
	e.Begin(0x30)
	for _, a := range s.attrs {
		e.Str(0x04, a)
	}
	e.End()
	e.End()
	e.End()
	return w.roundTrip(id, wantDN)
}

// roundTrip sends the encoded request and reads responses to message id until
// the final one. Any failure to write, read or parse breaks the connection: a
// stream whose place is lost cannot be read on.
func (w *wireClient) roundTrip(id int64, wantDN bool) (n int, dn string, err error) {
	if w.broken {
		return 0, "", errConnBroken
	}
	if _, err := w.nc.Write(w.out.B); err != nil {
		return 0, "", w.fail(err)
	}
	for {
		msg, err := ldapwire.ReadFrame(w.br, maxResponse, w.in)
		if err != nil {
			return 0, "", w.fail(err)
		}
		w.in = msg[:0]
		got, tag, err := ldapwire.PeekHeader(msg)
		if err != nil {
			return 0, "", w.fail(err)
		}
		if got != id {
			if got == 0 { // notice of disconnection
				return 0, "", w.fail(responseError(msg, "notice of disconnection"))
			}
			return 0, "", w.fail(fmt.Errorf("response to message %d while waiting for %d", got, id))
		}
		switch tag {
		case ldapwire.TagSearchResultEntry:
			if wantDN && n == 0 {
				if dn, err = entryDN(msg); err != nil {
					return 0, "", w.fail(err)
				}
			}
			n++
		case ldapwire.TagSearchResultReference, ldapwire.TagIntermediateResponse:
		default:
			r, err := ldapwire.ParseResponse(msg)
			if err != nil {
				return 0, "", w.fail(err)
			}
			if r.Code != ldap.LDAPResultSuccess {
				return n, dn, r.Err()
			}
			return n, dn, nil
		}
	}
}

// errConnBroken is returned by requests on a connection that already failed.
var errConnBroken = errors.New("connection broken")

// fail marks the connection broken and closes it.
func (w *wireClient) fail(err error) error {
	w.broken = true
	_ = w.nc.Close()
	return err
}

func (w *wireClient) closing() bool { return w.broken }

func (w *wireClient) close() {
	if !w.broken {
		w.broken = true
		_ = w.nc.Close()
	}
}

// entryDN returns the objectName of a SearchResultEntry message.
func entryDN(msg []byte) (string, error) {
	_, start, end, err := ldapwire.Header(msg, 0)
	if err != nil {
		return "", err
	}
	_, _, pos, err := ldapwire.Header(msg[:end], start) // message ID
	if err != nil {
		return "", err
	}
	_, start, end, err = ldapwire.Header(msg[:end], pos) // the entry
	if err != nil {
		return "", err
	}
	tag, s, e, err := ldapwire.Header(msg[:end], start)
	if err != nil {
		return "", err
	}
	if tag != 0x04 {
		return "", errors.New("search entry without an objectName")
	}
	return string(msg[s:e]), nil
}

// responseError decodes the LDAPResult of msg for an error message.
func responseError(msg []byte, what string) error {
	r, err := ldapwire.ParseResponse(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return errors.New(what)
}
