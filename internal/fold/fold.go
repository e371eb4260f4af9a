// Package fold looks names up case-insensitively in maps keyed by lower-case names
// (attribute types, object classes), without the copy strings.ToLower makes.
package fold

import (
	"strings"
	"unicode/utf8"
)

// Get returns m[strings.ToLower(name)]. For ASCII names up to 64 bytes, which attribute
// types and object classes are, it allocates nothing.
func Get[V any](m map[string]V, name string) V {
	var buf [64]byte
	if len(name) > len(buf) {
		return m[strings.ToLower(name)]
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= utf8.RuneSelf:
			return m[strings.ToLower(name)]
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return m[string(b)] // no copy: the compiler looks the bytes up as they are
}
