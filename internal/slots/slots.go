// Package slots sizes and walks the open-addressing hash tables of 4-byte slots that
// hold the large read-only indexes (the served tree's, the store's): twice as many
// slots as keys, so that at most half are full and a probe ends soon, and no rounding
// up to a power of two, which cost up to twice the memory.
package slots

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
