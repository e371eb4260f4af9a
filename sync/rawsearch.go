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
// entry's bytes, the names and values strings of it. go-ldap's reader allocates at
// least 512 bytes per value it reads and copies every element into its parent; over a
// full read of 100,000 users that was most of the sync's allocations and time.
//
// The entries are decoded on the connection's reader and handed, in chunks, to a second
// goroutine that calls fn: the next page is asked for as soon as a page ends, so the
// upstream reads it while the entries of the last one are still being mapped and written,
// and the two cores share the work. At most pipelineDepth chunks wait for fn.

// Variables for the tests and benchmarks.
var (
	pipelineChunk = 64 // entries handed to fn's goroutine at once
	pipelineDepth = 16 // chunks waiting: 1024 entries, two pages of the default 500
)

// pagedSearch runs a paged search of base with scope as the service account and calls fn
// for each entry, in order, on one goroutine (not the caller's) while later entries are
// being read; references are skipped. An entry passed to fn stays valid after fn returns.
// When fn fails, the search stops and pagedSearch returns fn's error. pagedSearch
// returns once fn has returned for the last time.
func (s *Syncer) pagedSearch(ctx context.Context, what, base string, scope int, filter string, attrs []string, fn func(*ldap.Entry) error) error {
	return s.rawSearch(ctx, what, base, scope, filter, attrs, s.cfg.PageSize, fn)
}

// rawSearch is pagedSearch in pages of pageSize entries; 0: one search without the
// paged results control (a base search of one large entry, such as the subschema).
func (s *Syncer) rawSearch(ctx context.Context, what, base string, scope int, filter string, attrs []string, pageSize int, fn func(*ldap.Entry) error) error {
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []*ldap.Entry, pipelineDepth)
	var fnErr error
	fnDone := make(chan struct{})
	go func() {
		defer close(fnDone)
		for chunk := range chunks {
			for _, e := range chunk {
				if fnErr == nil && ctx.Err() != nil {
					// Entries the reader had already sent are left unread: whatever
					// ended the search, this read did not succeed.
					fnErr = fmt.Errorf("%s: %w", what, ctx.Err())
				}
				if fnErr != nil {
					break // the search stops: the rest is drained
				}
				if fnErr = fn(e); fnErr != nil {
					cancel() // the reader stops at its next entry
				}
			}
		}
	}()
	err = readPages(ctx, c, what, base, scope, filterBER, attrs, pageSize, chunks)
	close(chunks)
	<-fnDone
	if fnErr != nil {
		return fnErr
	}
	return err
}

// readPages reads the pages of a search on c and sends its entries, decoded, to chunks.
func readPages(ctx context.Context, c *upstream.Conn, what, base string, scope int, filterBER []byte, attrs []string, pageSize int, chunks chan<- []*ldap.Entry) error {
	chunk := make([]*ldap.Entry, 0, pipelineChunk)
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case chunks <- chunk:
		case <-ctx.Done():
			return ctx.Err()
		}
		chunk = make([]*ldap.Entry, 0, pipelineChunk)
		return nil
	}
	var cookie []byte
	for page := 1; ; page++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg := searchRequest(base, scope, filterBER, attrs, pageSize, cookie)
		var done error
		var next []byte
		err := c.Forward(ctx, upstream.KindSearch, msg, func(r ldapwire.Response) error {
			switch r.Tag {
			case ldapwire.TagSearchResultEntry:
				e, err := decodeEntry(r.Msg)
				if err != nil {
					return err
				}
				if chunk = append(chunk, e); len(chunk) == cap(chunk) {
					return send()
				}
				return nil
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
		if err == nil {
			// The page's last entries go to fn before the next page is asked for, so
			// that they are written while the upstream prepares it.
			err = send()
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
// and the paged results control (size, cookie; none when size is 0). The message ID is
// the connection's.
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
	if size <= 0 {
		e.End()
		return e.B
	}
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

// decodeEntry decodes a SearchResultEntry message into a go-ldap entry whose names and
// values share one copy of msg. The values are strings holding the bytes as sent, binary
// ones too; ByteValues is left empty (values reads either). The attributes, and the
// values of all of them, are each allocated at once (a first pass counts them).
func decodeEntry(msg []byte) (*ldap.Entry, error) {
	tag, pos, end, err := ldapwire.Header(msg, 0)
	if err != nil || tag != ldapwire.TagSequence {
		return nil, errBadEntry
	}
	if _, _, pos, err = ldapwire.Header(msg[:end], pos); err != nil { // message ID
		return nil, errBadEntry
	}
	tag, pos, opEnd, err := ldapwire.Header(msg[:end], pos)
	if err != nil || tag != ldapwire.TagSearchResultEntry {
		return nil, errBadEntry
	}
	tag, dnStart, dnEnd, err := ldapwire.Header(msg[:opEnd], pos)
	if err != nil || tag != ldapwire.TagOctetString {
		return nil, errBadEntry
	}
	tag, listStart, listEnd, err := ldapwire.Header(msg[:opEnd], dnEnd)
	if err != nil || tag != ldapwire.TagSequence {
		return nil, errBadEntry
	}
	nAttrs, nValues, err := countAttributes(msg[:listEnd], listStart)
	if err != nil {
		return nil, err
	}
	b := bytes.Clone(msg[:opEnd])
	str := func(start, end int) string { return unsafe.String(unsafe.SliceData(b[start:end]), end-start) }
	// The DN is copied: it is kept, normalised or not, in maps that outlive the entry,
	// and a slice of b would keep all of b alive with it.
	e := &ldap.Entry{DN: string(b[dnStart:dnEnd]), Attributes: make([]*ldap.EntryAttribute, nAttrs)}
	attrs := make([]ldap.EntryAttribute, nAttrs)
	values := make([]string, nValues)
	pos = listStart
	for i := range attrs {
		// countAttributes checked the structure.
		_, aStart, aEnd, _ := ldapwire.Header(b[:listEnd], pos)
		pos = aEnd
		_, nStart, nEnd, _ := ldapwire.Header(b[:aEnd], aStart)
		_, vPos, vEnd, _ := ldapwire.Header(b[:aEnd], nEnd)
		a := &attrs[i]
		a.Name = str(nStart, nEnd)
		n := 0
		for p := vPos; p < vEnd; n++ {
			_, s, end, _ := ldapwire.Header(b[:vEnd], p)
			p = end
			values[n] = str(s, end)
		}
		a.Values, values = values[:n:n], values[n:]
		e.Attributes[i] = a
	}
	return e, nil
}

// countAttributes checks the attribute list of an entry (PartialAttributeList) that
// starts at pos and ends at the end of b, and counts its attributes and their values.
func countAttributes(b []byte, pos int) (attrs, values int, err error) {
	for pos < len(b) {
		tag, aStart, aEnd, err := ldapwire.Header(b, pos)
		if err != nil || tag != ldapwire.TagSequence {
			return 0, 0, errBadEntry
		}
		pos = aEnd
		tag, _, nEnd, err := ldapwire.Header(b[:aEnd], aStart)
		if err != nil || tag != ldapwire.TagOctetString {
			return 0, 0, errBadEntry
		}
		tag, vPos, vEnd, err := ldapwire.Header(b[:aEnd], nEnd)
		if err != nil || tag != ldapwire.TagSet {
			return 0, 0, errBadEntry
		}
		for vPos < vEnd {
			tag, _, end, err := ldapwire.Header(b[:vEnd], vPos)
			if err != nil || tag != ldapwire.TagOctetString {
				return 0, 0, errBadEntry
			}
			vPos = end
			values++
		}
		attrs++
	}
	return attrs, values, nil
}
