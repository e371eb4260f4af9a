package parallel

import (
	"runtime"
	"sync"
	"testing"
)

func TestRangesCoverEachItemOnce(t *testing.T) {
	for _, tc := range []struct{ n, minChunk int }{{0, 1}, {1, 1}, {7, 1}, {1000, 10}, {1000, 2000}, {5, 0}} {
		seen := make([]int, tc.n)
		var mu sync.Mutex
		calls := 0
		Ranges(tc.n, tc.minChunk, func(lo, hi int) {
			mu.Lock()
			calls++
			mu.Unlock()
			for i := lo; i < hi; i++ {
				seen[i]++
			}
		})
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: item %d done %d times", tc.n, i, c)
			}
		}
		if want := min(runtime.GOMAXPROCS(0), tc.n/max(tc.minChunk, 1)); want > 1 && calls != want {
			t.Errorf("n=%d minChunk=%d: %d calls, want %d", tc.n, tc.minChunk, calls, want)
		}
		if tc.n < 2*max(tc.minChunk, 1) && calls != 1 {
			t.Errorf("n=%d minChunk=%d: %d calls for less than two chunks of work", tc.n, tc.minChunk, calls)
		}
	}
}
