package errlist

import (
	"errors"
	"testing"
)

func TestPrefixEachError(t *testing.T) {
	inner := errors.Join(errors.New("a: bad"), errors.Join(errors.New("b: worse"), errors.New("c: worst")))
	err := Prefix("sync.", errors.Join(inner, errors.New("d: odd")))
	parts := Flatten(err)
	want := []string{"sync.a: bad", "sync.b: worse", "sync.c: worst", "sync.d: odd"}
	if len(parts) != len(want) {
		t.Fatalf("got %d parts: %v", len(parts), err)
	}
	for i, p := range parts {
		if p.Error() != want[i] {
			t.Errorf("part %d = %q, want %q", i, p, want[i])
		}
	}
	if Prefix("x.", nil) != nil || Flatten(nil) != nil {
		t.Error("nil must stay nil")
	}
}
