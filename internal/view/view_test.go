package view

import (
	"strings"
	"testing"
)

func TestOffset(t *testing.T) {
	s := strings.Repeat("abcdefgh", 4)
	for _, c := range []struct {
		v    string
		off  int
		with bool
	}{
		{s[3:9], 3, true},
		{s, 0, true},
		{s[31:], 31, true},
		{s[5:5], 0, false},                // empty
		{strings.Clone(s[3:9]), 0, false}, // the same bytes elsewhere
		{(s + "x")[30:33], 0, false},      // another string
	} {
		if off, ok := Offset(c.v, s); ok != c.with || off != c.off {
			t.Fatalf("%q: %d %v, want %d %v", c.v, off, ok, c.off, c.with)
		}
	}
	if _, ok := Offset("ab", ""); ok {
		t.Fatal("a view of the empty string")
	}
}
