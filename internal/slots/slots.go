// Package slots sizes and walks the open-addressing hash tables of 4-byte slots that
// hold the large read-only indexes (the served tree's, the store's): twice as many
// slots as keys, so that at most half are full and a probe ends soon, or three for two
// keys in a table whose slots hold bits of their key's hash beside the position (a
// probe passes other keys without reading them); no rounding up to a power of two,
// which cost up to twice the memory.
package slots

import "math/bits"

// For returns the number of slots of a table of n keys.
func For(n int) int { return max(2*n, 2) }

// Home returns the slot a key of hash h probes first in a table of size slots: the
// high half of h scaled to size, which needs no power of two.
func Home(h uint64, size int) int { return int((h >> 32) * uint64(size) >> 32) }

// Next returns the slot probed after i: the next one, wrapping around.
func Next(i, size int) int {
	if i++; i == size {
		return 0
	}
	return i
}

// ForTagged returns the number of slots of a table of n keys whose slots hold bits of
// their key's hash above the position (Tag): a probe passes the slots of other keys
// without reading their records, so the table can be fuller: three slots for two keys.
func ForTagged(n int) int { return max(n+n/2, 2) }

// PosBits returns the number of low bits of a slot that hold 1 + a position below n.
func PosBits(n int) uint { return uint(bits.Len(uint(n))) }

// Tag returns the bits of hash h that a slot holds above posBits bits of position
// (none when the position takes all 32).
func Tag(h uint64, posBits uint) uint32 { return uint32(h) << posBits }
