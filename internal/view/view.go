// Package view tells whether one string is a view of another's bytes: where the
// project keeps values as offsets into a record they were sliced from (the store's
// user keys, the served tree's values and DNs), it first asks where they lie.
package view

import "unsafe"

// Offset returns the offset of v in s when v's bytes are part of s's. Both must be
// live strings, which makes comparing their addresses sound; the caller reads the
// value back as a slice of s, never makes one from an address.
func Offset(v, s string) (int, bool) {
	if len(v) == 0 || len(s) == 0 {
		return 0, false
	}
	p, base := uintptr(unsafe.Pointer(unsafe.StringData(v))), uintptr(unsafe.Pointer(unsafe.StringData(s)))
	if p < base || p+uintptr(len(v)) > base+uintptr(len(s)) {
		return 0, false
	}
	return int(p - base), true
}
