package main

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// The latency histogram is log-linear (HDR style): values below 2*histSub
// nanoseconds get one bucket each, and every further power of two is split
// into histSub equal buckets, so a recorded value is known to within
// 1/histSub (< 0.8%) of itself. Recording is a few shifts and an increment,
// with no allocation, and histograms merge by adding counts.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxBits bounds the tracked range to [0, 2^histMaxBits) ns
	// (about 137s); larger values land in the last bucket.
	histMaxBits = 37
	histBuckets = 2*histSub + (histMaxBits-histSubBits-1)*histSub
)

// hist is a fixed-size latency histogram. The zero value is empty and ready
// to use. It is not safe for concurrent use; each worker owns its own.
type hist struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max time.Duration
}

// bucketOf returns the bucket index for a non-negative value in ns.
func bucketOf(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	if v >= 1<<histMaxBits {
		return histBuckets - 1
	}
	shift := bits.Len64(v) - histSubBits - 1
	return 2*histSub + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	shift := (i-2*histSub)/histSub + 1
	m := uint64((i-2*histSub)%histSub + histSub)
	return m << uint(shift), 1 << uint(shift)
}

// record adds one observation.
func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.counts[bucketOf(uint64(d))]++
}

// merge adds all observations of o to h.
func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100): the
// smallest recorded value such that at least p% of all values are <= it.
// The value is reported as the middle of its bucket (rounded down), clamped
// to the exact observed minimum and maximum. An empty histogram yields 0.
func (h *hist) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	// p*n is exact for any realistic count, so e.g. p99 of 100 values is
	// rank 99, not 100 as 0.99*100 would give in floating point.
	rank := uint64(math.Ceil(p * float64(h.n) / 100))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, w := bucketRange(i)
			v := time.Duration(lo + (w-1)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// median returns the median of xs (the mean of the two middle values for an
// even count) without modifying xs. It returns 0 for an empty slice.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// medianDuration is median for durations; an even count averages the two
// middle values, rounding down to the nanosecond.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return s[m-1] + (s[m]-s[m-1])/2
}
