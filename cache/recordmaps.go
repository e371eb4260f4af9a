package cache

import "unsafe"

// RecordMappings returns the checkpoints' files, mapped outside the Go heap, that the
// records of the store's snapshots may be slices of, and so the strings that UserSource,
// GroupSource and Sources return: whoever keeps such a string may keep its place in
// one of them (a number and an offset, which the collector does not follow) instead of
// a pointer. A mapping stays for the life of the process, as records of later snapshots
// may be its; none for a store in memory, or before a checkpoint was mapped.
func (s *Store) RecordMappings() []string {
	if p := s.recordMaps.Load(); p != nil {
		return *p
	}
	return nil
}

// noteRecordMapping adds data, a checkpoint's mapping that records are slices of from
// now on, to RecordMappings.
func (s *Store) noteRecordMapping(data []byte) {
	if len(data) == 0 {
		return
	}
	m := unsafe.String(unsafe.SliceData(data), len(data))
	for {
		old := s.recordMaps.Load()
		var next []string
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, m)
		if s.recordMaps.CompareAndSwap(old, &next) {
			return
		}
	}
}
