package cache

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// The upstream's Schema is stored as gzip-compressed JSON in chunks under prefixSchema
// + a 4-byte big-endian chunk number: Active Directory's attribute types alone are some
// 150 KB of descriptions (a Samba 4 domain's: 1,473 of them), more than one Badger
// value may hold in memory mode (64 KiB); compressed, the commit's transaction carries
// a fraction of that.
const (
	prefixSchema = "m/schema/"
	schemaChunk  = 32 << 10
)

// Schema is the upstream's own subschema as a full sync read it: the values of the
// subschema subentry that its root DSE names (OpenLDAP's and 389-DS's cn=Subschema or
// cn=schema, Active Directory's CN=Aggregate,CN=Schema,CN=Configuration,…), in RFC 4512
// description syntax. The served tree matches every attribute by it.
type Schema struct {
	// DN is the subschema subentry the descriptions were read from.
	DN             string   `json:"dn"`
	AttributeTypes []string `json:"attributeTypes,omitempty"`
	ObjectClasses  []string `json:"objectClasses,omitempty"`
	MatchingRules  []string `json:"matchingRules,omitempty"`
	LDAPSyntaxes   []string `json:"ldapSyntaxes,omitempty"`
}

// Equal reports whether s and o hold the same descriptions; nil is no schema.
func (s *Schema) Equal(o *Schema) bool {
	if s == nil || o == nil || s == o {
		return s == o
	}
	return s.DN == o.DN && slices.Equal(s.AttributeTypes, o.AttributeTypes) && slices.Equal(s.ObjectClasses, o.ObjectClasses) &&
		slices.Equal(s.MatchingRules, o.MatchingRules) && slices.Equal(s.LDAPSyntaxes, o.LDAPSyntaxes)
}

// SetSchema records the upstream's schema, which Commit stores with the generation when
// it differs from the stored one: it survives restarts, so the served tree matches as
// the upstream does from the start, while no upstream answers too. A run that does not
// call it (one that could not read the schema) keeps what was stored before.
func (w *Sync) SetSchema(s Schema) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.schema = &s
}

// Schema returns the upstream's schema as the last sync that read it stored it; nil when
// no sync has read one (a store written by a version that did not read schemas, or an
// upstream that publishes none).
func (sn *Snapshot) Schema() *Schema { return sn.schema }

// schemaChange is the schema the run commits: nil when it keeps the stored one.
func (w *Sync) schemaChange() *Schema {
	if w.schema == nil || w.schema.Equal(w.base.schema) {
		return nil
	}
	return w.schema
}

// writeSchema stores s in txn, replacing the stored one, and returns the bytes written.
func writeSchema(txn *badger.Txn, s *Schema) (int, error) {
	v, err := json.Marshal(s)
	if err != nil {
		return 0, err
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(v); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	stale := schemaKeys(txn)
	written := 0
	data := z.Bytes()
	for n := uint32(0); len(data) > 0; n++ {
		chunk := data[:min(len(data), schemaChunk)]
		data = data[len(chunk):]
		key := binary.BigEndian.AppendUint32([]byte(prefixSchema), n)
		if err := txn.Set(key, chunk); err != nil {
			return 0, err
		}
		written += len(key) + len(chunk)
		stale = slices.DeleteFunc(stale, func(k []byte) bool { return bytes.Equal(k, key) })
	}
	for _, k := range stale {
		if err := txn.Delete(k); err != nil {
			return 0, err
		}
	}
	return written, nil
}

// schemaKeys lists the keys of the stored schema's chunks, in order.
func schemaKeys(txn *badger.Txn) [][]byte {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSchema)})
	defer it.Close()
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	return keys
}

// readSchema reads the stored Schema; nil when none is stored.
func readSchema(txn *badger.Txn) (*Schema, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSchema), PrefetchValues: false})
	defer it.Close()
	var z []byte
	for it.Rewind(); it.Valid(); it.Next() {
		if err := it.Item().Value(func(v []byte) error { z = append(z, v...); return nil }); err != nil {
			return nil, err
		}
	}
	if len(z) == 0 {
		return nil, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("schema record: %w", err)
	}
	v, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("schema record: %w", err)
	}
	s := &Schema{}
	if err := json.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("schema record: %w", err)
	}
	return s, nil
}
