package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// A full read's paged searches go over a raw session connection (upstream.Conn.Forward)
// and decode each entry in place, as the frontend decodes requests: one copy of the
// entry's bytes, the DN, names and values slices of it. go-ldap's reader allocates at
// least 512 bytes per value it reads and copies every element into its parent; over a
// full read of 100,000 users that was most of the sync's allocations and time.

// pagedSearch runs a paged search of base with scope as the service account and calls fn
// for each entry; references are skipped. An entry passed to fn stays valid after fn
// returns.
func (s *Syncer) pagedSearch(ctx context.Context, what, base string, scope int, filter string, attrs []string, fn func(*ldap.Entry) error) error {
	compiled, err := ldap.CompileFilter(filter)
	if err != nil {
		return fmt.Errorf("%s: filter %q: %w", what, filter, err)
	}
	filterBER := compiled.Bytes()
	c, err := s.pool.DialService(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer c.Close()
	var cookie []byte
	for page := 1; ; page++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg := searchRequest(base, scope, filterBER, attrs, s.cfg.PageSize, cookie)
		var done error
		var next []byte
		err := c.Forward(ctx, upstream.KindSearch, msg, func(r ldapwire.Response) error {
			switch r.Tag {
			case ldapwire.TagSearchResultEntry:
				e, err := decodeEntry(r.Msg)
				if err != nil {
					return err
				}
				return fn(e)
			case ldapwire.TagSearchResultReference, ldapwire.TagIntermediateResponse:
				return nil
			}
			if done = r.Err(); done == nil {
				c, _ := ldapwire.PagedCookie(r.Msg)
				next = bytes.Clone(c)
			}
			return nil
		})
		if err == nil {
			err = done
		}
		if err != nil {
			return fmt.Errorf("%s page %d: %w", what, page, err)
		}
		if len(next) == 0 {
			return nil
		}
		cookie = next
	}
}

// searchRequest encodes a search of base with scope, the filter (BER), the attributes
// and the paged results control (size, cookie). The message ID is the connection's.
func searchRequest(base string, scope int, filter []byte, attrs []string, size int, cookie []byte) []byte {
	var e ldapwire.Encoder
	e.Begin(ldapwire.TagSequence)
	e.Int(ldapwire.TagInteger, 1)
	e.Begin(ldapwire.AppConstructed | 3)
	e.Str(ldapwire.TagOctetString, base)
	e.Int(ldapwire.TagEnumerated, int64(scope))
	e.Int(ldapwire.TagEnumerated, ldap.NeverDerefAliases)
	e.Int(ldapwire.TagInteger, 0)
	e.Int(ldapwire.TagInteger, 0)
	e.Bytes(ldapwire.TagBoolean, []byte{0})
	e.Raw(filter)
	e.Begin(ldapwire.TagSequence)
	for _, a := range attrs {
		e.Str(ldapwire.TagOctetString, a)
	}
	e.End()
	e.End()
	e.Begin(ldapwire.TagControls)
	e.Begin(ldapwire.TagSequence)
	e.Str(ldapwire.TagOctetString, ldap.ControlTypePaging)
	var v ldapwire.Encoder
	v.Begin(ldapwire.TagSequence)
	v.Int(ldapwire.TagInteger, int64(size))
	v.Bytes(ldapwire.TagOctetString, cookie)
	v.End()
	e.Bytes(ldapwire.TagOctetString, v.B)
	e.End()
	e.End()
	e.End()
	return e.B
}

var errBadEntry = errors.New("malformed search result entry")

// decodeEntry decodes a SearchResultEntry message into a go-ldap entry whose names,
// values and byte values all share one copy of msg.
func decodeEntry(msg []byte) (*ldap.Entry, error) {
	b := bytes.Clone(msg)
	str := func(start, end int) string { return unsafe.String(unsafe.SliceData(b[start:end]), end-start) }
	tag, pos, end, err := ldapwire.Header(b, 0)
	if err != nil || tag != ldapwire.TagSequence {
		return nil, errBadEntry
	}
	if _, _, pos, err = ldapwire.Header(b[:end], pos); err != nil { // message ID
		return nil, errBadEntry
	}
	tag, pos, opEnd, err := ldapwire.Header(b[:end], pos)
	if err != nil || tag != ldapwire.TagSearchResultEntry {
		return nil, errBadEntry
	}
	tag, dnStart, dnEnd, err := ldapwire.Header(b[:opEnd], pos)
	if err != nil || tag != ldapwire.TagOctetString {
		return nil, errBadEntry
	}
	// The DN is copied: it is kept, normalised or not, in maps that outlive the entry,
	// and a slice of b would keep all of b alive with it.
	e := &ldap.Entry{DN: string(b[dnStart:dnEnd])}
	tag, pos, listEnd, err := ldapwire.Header(b[:opEnd], dnEnd)
	if err != nil || tag != ldapwire.TagSequence {
		return nil, errBadEntry
	}
	for pos < listEnd {
		tag, aStart, aEnd, err := ldapwire.Header(b[:listEnd], pos)
		if err != nil || tag != ldapwire.TagSequence {
			return nil, errBadEntry
		}
		pos = aEnd
		tag, nStart, nEnd, err := ldapwire.Header(b[:aEnd], aStart)
		if err != nil || tag != ldapwire.TagOctetString {
			return nil, errBadEntry
		}
		tag, vPos, vEnd, err := ldapwire.Header(b[:aEnd], nEnd)
		if err != nil || tag != ldapwire.TagSet {
			return nil, errBadEntry
		}
		a := &ldap.EntryAttribute{Name: str(nStart, nEnd)}
		for vPos < vEnd {
			tag, s, end, err := ldapwire.Header(b[:vEnd], vPos)
			if err != nil || tag != ldapwire.TagOctetString {
				return nil, errBadEntry
			}
			vPos = end
			a.ByteValues = append(a.ByteValues, b[s:end:end])
			a.Values = append(a.Values, str(s, end))
		}
		e.Attributes = append(e.Attributes, a)
	}
	return e, nil
}
