package slots

import (
	"math"
	"testing"
)

func TestHomeInRange(t *testing.T) {
	for _, size := range []int{2, 3, 7, 200000, 1<<31 - 1} {
		for _, h := range []uint64{0, 1, 1 << 32, math.MaxUint64, 0x9e3779b97f4a7c15} {
			if i := Home(h, size); i < 0 || i >= size {
				t.Fatalf("Home(%x, %d) = %d", h, size, i)
			}
		}
	}
	if Next(4, 5) != 0 || Next(3, 5) != 4 {
		t.Fatal("Next does not wrap at the end")
	}
	if For(0) != 2 || For(100) != 200 {
		t.Fatal("For")
	}
}

// TestHomeSpreads: hashes that differ in their high bits land all over the table.
func TestHomeSpreads(t *testing.T) {
	const size = 1000
	seen := make([]bool, size)
	for k := range uint64(1 << 16) {
		seen[Home(k*0x9e3779b97f4a7c15, size)] = true
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("slot %d never a home", i)
		}
	}
}

// TestTag: a tag sits above the position's bits and leaves them clear; a position that
// takes all 32 bits leaves no room for one.
func TestTag(t *testing.T) {
	if ForTagged(0) != 2 || ForTagged(100) != 150 {
		t.Fatal("ForTagged")
	}
	if PosBits(1) != 1 || PosBits(255) != 8 || PosBits(256) != 9 {
		t.Fatal("PosBits")
	}
	h := uint64(0x9e3779b97f4a7c15)
	for _, bits := range []uint{1, 8, 24, 31} {
		if tag := Tag(h, bits); tag&(1<<bits-1) != 0 || tag == 0 {
			t.Fatalf("Tag(%x, %d) = %x", h, bits, tag)
		}
	}
	if Tag(h, 32) != 0 {
		t.Fatal("a tag beside a 32-bit position")
	}
}
