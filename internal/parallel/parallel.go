// Package parallel splits work over the machine's cores.
package parallel

import (
	"runtime"
	"sync"
)

// Ranges calls fn for consecutive ranges [lo, hi) that together cover [0, n), on up to
// GOMAXPROCS goroutines at once, and returns when every call has. Each goroutine gets at
// least minChunk items: less work than that runs in one call, on the caller's goroutine.
func Ranges(n, minChunk int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(minChunk, 1))
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(w*n/workers, (w+1)*n/workers)
		}()
	}
	wg.Wait()
}
