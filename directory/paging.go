package directory

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// The paged-results control (RFC 2696) for cached searches. A page needs no state on
// the server: the cookie carries the entry ID the next page starts at (one past the last
// entry sent) and how many entries went out before it (the size limit counts every
// page, as in slapd), bound to the search it belongs to and to the tree's line of
// versions (NewTree and every version Apply made from it), and authenticated with a key
// of this process. Entry IDs keep their order across versions, so a paged search goes on
// across syncs as slapd's back-mdb does: an entry added or changed to match ahead of the
// cursor is returned, one deleted ahead of it is not, none is returned twice. A cookie of
// another search or of a tree built anew is refused; so is a forged or garbled one.

// pagingRequest is a client's paged-results control.
type pagingRequest struct {
	size   int
	cookie []byte
}

// parsePaging decodes the control's value: SEQUENCE { size INTEGER, cookie OCTET STRING }.
func parsePaging(c Control) (pagingRequest, error) {
	bad := errors.New("malformed paged results control")
	p, err := ber.DecodePacketErr(c.Value)
	if err != nil || len(p.Children) != 2 {
		return pagingRequest{}, bad
	}
	sz, ck := p.Children[0], p.Children[1]
	if sz.ClassType != ber.ClassUniversal || sz.Tag != ber.TagInteger || sz.TagType != ber.TypePrimitive ||
		ck.ClassType != ber.ClassUniversal || ck.Tag != ber.TagOctetString || ck.TagType != ber.TypePrimitive {
		return pagingRequest{}, bad
	}
	size, err := ber.ParseInt64(sz.Data.Bytes())
	if err != nil || size < 0 || size > 1<<31-1 {
		return pagingRequest{}, bad
	}
	return pagingRequest{size: int(size), cookie: ck.Data.Bytes()}, nil
}

// pagingResponse is the control that goes with each page; an empty cookie ends the
// search.
func pagingResponse(cookie []byte) Control {
	e := ldapwire.Encoder{}
	e.Begin(ldapwire.TagSequence)
	e.Int(ldapwire.TagInteger, 0) // no estimate of the total
	e.Bytes(ldapwire.TagOctetString, cookie)
	e.End()
	return Control{Type: ldap.ControlTypePaging, Value: e.B, HasValue: true}
}

// pageState is where a paged search stands.
type pageState struct {
	hash [8]byte // the search the cookie belongs to
	from entryID // the ID to resume at
	sent int     // entries sent on earlier pages
}

// searchHash identifies a search for its cookies: the base, scope, filter, attributes
// and typesOnly. A page request that changes any of them is another search.
func searchHash(base string, q *SearchRequest) [8]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%d\x00%t\x00", len(base), base, q.Scope, q.TypesOnly)
	for _, a := range q.Attributes {
		fmt.Fprintf(h, "%d\x00%s\x00", len(a), a)
	}
	if f, ok := q.FilterElement(); ok {
		hashFilter(h, f)
	}
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

// hashFilter writes f to h as its elements' classes, tags and contents, not as its
// bytes: the same filter with its lengths encoded in another of BER's forms hashes
// alike.
func hashFilter(h io.Writer, f ldapwire.Filter) {
	fmt.Fprintf(h, "%d/%d/%t(", f.Class(), f.Tag(), f.Primitive())
	if f.Primitive() {
		fmt.Fprintf(h, "%d\x00%s", len(f.Text()), f.Text())
	} else {
		var room filterKids
		kids, _ := f.Children(room[:0])
		for _, k := range kids {
			hashFilter(h, k)
		}
	}
	io.WriteString(h, ")")
}

// cookieKey authenticates this process's cookies.
var cookieKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

const (
	cookieVersion = 2
	cookieBody    = 1 + 8 + 8 + 4 + 8 // version, line of trees, search, next ID, sent
	cookieMACLen  = 16
	cookieLen     = cookieBody + cookieMACLen
)

func (t *Tree) makeCookie(hash [8]byte, from entryID, sent int) []byte {
	b := make([]byte, 0, cookieLen)
	b = append(b, cookieVersion)
	b = binary.BigEndian.AppendUint64(b, t.line)
	b = append(b, hash[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(from))
	b = binary.BigEndian.AppendUint64(b, uint64(sent))
	return append(b, cookieMAC(b)...)
}

func cookieMAC(body []byte) []byte {
	m := hmac.New(sha256.New, cookieKey)
	m.Write(body)
	return m.Sum(nil)[:cookieMACLen]
}

// errCookieInvalid is a cookie this process did not make; errCookieOld one it made for
// a tree built anew since, or for another search.
var (
	errCookieInvalid = errors.New("paged results cookie is invalid")
	errCookieOld     = errors.New("paged results cookie is invalid or old")
)

// readCookie checks a cookie and returns the ID to resume at and the number of entries
// sent before.
func (t *Tree) readCookie(c []byte, hash [8]byte) (from entryID, sent int, err error) {
	if len(c) != cookieLen || c[0] != cookieVersion || !hmac.Equal(c[cookieBody:], cookieMAC(c[:cookieBody])) {
		return 0, 0, errCookieInvalid
	}
	if binary.BigEndian.Uint64(c[1:9]) != t.line {
		return 0, 0, fmt.Errorf("%w: the served directory was rebuilt since the previous page; start the search again", errCookieOld)
	}
	if [8]byte(c[9:17]) != hash {
		return 0, 0, fmt.Errorf("%w: it belongs to another search", errCookieOld)
	}
	from = binary.BigEndian.Uint32(c[17:21])
	n := binary.BigEndian.Uint64(c[21:29])
	if n > 1<<31 {
		return 0, 0, errCookieInvalid
	}
	return from, int(n), nil
}

// cookieError answers a bad cookie as slapd does: protocolError for one that is not a
// cookie at all, unwillingToPerform for one that is out of date or for another search.
func cookieError(err error) *Result {
	if errors.Is(err, errCookieOld) {
		return &Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: err.Error()}
	}
	return &Result{Code: ldap.LDAPResultProtocolError, Diagnostic: err.Error()}
}
