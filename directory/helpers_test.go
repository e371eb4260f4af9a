package directory

import (
	"context"
	"errors"
	"slices"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// Request is a search or compare as the tests hand it to a tree.
type Request struct {
	Op       int
	Search   *SearchRequest
	Compare  *CompareRequest
	Controls []Control
	ctx      context.Context
}

// The operations a Request may carry.
const (
	OpSearch = iota + 1
	OpCompare
)

func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// WithContext returns a copy of r with its context replaced.
func (r *Request) WithContext(ctx context.Context) *Request {
	r2 := *r
	r2.ctx = ctx
	return &r2
}

// errAbandoned is what a writer returns once the client is gone.
var errAbandoned = errors.New("abandoned")

// resultWriter is what searchInto writes to.
type resultWriter interface {
	WriteEntry(*Entry) error
	WriteResult(*Result) error
}

// searchInto runs r's search on t, as a server's handler does: entries to w, then the
// result.
func searchInto(t *Tree, w resultWriter, r *Request) {
	if res := t.Search(r.Context(), r.Search, r.Controls, func(e *Entry) error { return w.WriteEntry(e) }); res != nil {
		w.WriteResult(res)
	}
}

// compareInto runs r's compare on t and writes its result to w.
func compareInto(t *Tree, w *collectWriter, r *Request) {
	w.WriteResult(t.Compare(r.Compare))
}

var controlFromLDAP = ldapwire.ControlFromLDAP

// cloneEntry copies an entry a search sent, which is valid only while it is being sent.
func cloneEntry(e *Entry) *Entry {
	c := &Entry{DN: e.DN, Attributes: make([]Attribute, len(e.Attributes))}
	for i, a := range e.Attributes {
		c.Attributes[i] = Attribute{Name: a.Name, Values: slices.Clone(a.Values)}
	}
	return c
}

// testSegments keeps the segments setEntry makes for the life of the tests: the
// entries it sets are not all in an ID table whose chunks would.
var testSegments []*segment

// setEntry sets te's meta and DN (and canonical DN ndn), without a source or values
// kept whole, in segments of their own.
func setEntry(te *treeEntry, meta, dn, ndn string) {
	enc := newEncoder(nil).into(nil)
	ext, flags := []string{dn}, uint32(entryDNOwn)
	if ndn != dn {
		ext, flags = append(ext, ndn), flags|entryNDNOwn
	}
	seg, metaOff, extOff := enc.write(te.id, meta, ext)
	enc.arena.seal()
	testSegments = append(testSegments, enc.arena.made...)
	te.setPlaces(seg, metaOff, meta, 0, 0, false, "", dn, seg, extOff, 0, flags)
}
