package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBoundaries(t *testing.T) {
	tests := []struct {
		v         uint64
		bucket    int
		lo, width uint64
	}{
		{0, 0, 0, 1},
		{255, 255, 255, 1},
		{256, 256, 256, 2},
		{257, 256, 256, 2},
		{258, 257, 258, 2},
		{511, 383, 510, 2},
		{512, 384, 512, 4},
		{1000, 378 + 128, 1000, 4},
		{500000, 256 + 10*128 + 244 - 128, 499712, 2048},
		{1<<histMaxBits - 1, histBuckets - 1, 255 << (histMaxBits - 8), 1 << (histMaxBits - 8)},
		{1 << histMaxBits, histBuckets - 1, 255 << (histMaxBits - 8), 1 << (histMaxBits - 8)},
		{1 << 62, histBuckets - 1, 255 << (histMaxBits - 8), 1 << (histMaxBits - 8)},
	}
	for _, tt := range tests {
		b := bucketOf(tt.v)
		lo, w := bucketRange(b)
		if b != tt.bucket || lo != tt.lo || w != tt.width {
			t.Errorf("v=%d: bucket %d [%d,+%d), want bucket %d [%d,+%d)", tt.v, b, lo, w, tt.bucket, tt.lo, tt.width)
		}
	}
	// Every bucket's range maps back to it, and buckets tile the range.
	next := uint64(0)
	for i := range histBuckets {
		lo, w := bucketRange(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, lo, next)
		}
		if bucketOf(lo) != i || bucketOf(lo+w-1) != i {
			t.Fatalf("bucket %d [%d,+%d) does not map back", i, lo, w)
		}
		next = lo + w
	}
	if next != 1<<histMaxBits {
		t.Errorf("buckets end at %d, want %d", next, uint64(1)<<histMaxBits)
	}
}

func TestPercentile(t *testing.T) {
	seq := func(from, to, step int) []time.Duration {
		var ds []time.Duration
		for v := from; v <= to; v += step {
			ds = append(ds, time.Duration(v))
		}
		return ds
	}
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", []time.Duration{7}, 50, 7},
		{"single p99", []time.Duration{7}, 99, 7},
		{"1..10 p50", seq(1, 10, 1), 50, 5},
		{"1..10 p90", seq(1, 10, 1), 90, 9},
		{"1..10 p99", seq(1, 10, 1), 99, 10},
		{"1..10 p100", seq(1, 10, 1), 100, 10},
		{"1..100 p50", seq(1, 100, 1), 50, 50},
		{"1..100 p99", seq(1, 100, 1), 99, 99}, // not 100: rank is exact
		{"1..200 p99", seq(1, 200, 1), 99, 198},
		{"1..200 p0.1", seq(1, 200, 1), 0.1, 1},
		{"unsorted", []time.Duration{9, 1, 5, 3, 7}, 50, 5},
		{"duplicates", []time.Duration{4, 4, 4, 4, 200}, 50, 4},
		{"duplicates p99", []time.Duration{4, 4, 4, 4, 200}, 99, 200},
		// Above 255ns values are bucketed; the result is the middle of the
		// bucket, rounded down: 1000 is in [1000,1004) -> 1001.
		{"bucketed 1000", []time.Duration{1000, 1000, 1000, 3000}, 50, 1001},
		// 500us is in [499712,501760) -> 500735.
		{"bucketed 500us", []time.Duration{400 * time.Microsecond, 500 * time.Microsecond, 501 * time.Microsecond}, 50, 500735},
		// Clamped to the exact observed extremes.
		{"clamp max", []time.Duration{1000, 1000}, 50, 1000},
		{"clamp min", []time.Duration{1002, 1003}, 50, 1002},
		{"negative is zero", []time.Duration{-5}, 50, 0},
		{"huge", []time.Duration{time.Hour}, 50, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h hist
			for _, v := range tt.values {
				h.record(v)
			}
			if got := h.percentile(tt.p); got != tt.want {
				t.Errorf("p%v = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
}

func TestPercentileRelativeError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		v := time.Duration(rng.Int64N(int64(10 * time.Second)))
		var h hist
		h.record(v)
		h.record(v + 1) // so the min/max clamp does not hide the bucketing
		got := h.percentile(50)
		if diff := float64(got-v) / float64(v); v > 0 && (diff > 1.0/histSub || diff < -1.0/histSub) {
			t.Fatalf("value %d reported as %d (%.4f%% off)", v, got, 100*diff)
		}
	}
}

func TestHistMerge(t *testing.T) {
	var a, b, all hist
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var m hist
	m.merge(&a)
	m.merge(&hist{})
	m.merge(&b)
	if m != all {
		t.Fatalf("merged histogram differs: n=%d/%d min=%v/%v max=%v/%v", m.n, all.n, m.min, all.min, m.max, all.max)
	}
	for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
		if m.percentile(p) != all.percentile(p) {
			t.Errorf("p%v differs", p)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{100, 1, 50, 2, 3}, 3},
		{[]float64{1000.5, 999.5}, 1000},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.in)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if !slices.Equal(in, tt.in) {
			t.Errorf("median modified its input: %v", tt.in)
		}
	}
}

func TestMedianDuration(t *testing.T) {
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{time.Millisecond}, time.Millisecond},
		{[]time.Duration{3, 1, 2}, 2},
		{[]time.Duration{4, 1}, 2}, // (1+4)/2 rounds down
		{[]time.Duration{10, 40, 20, 30}, 25},
		{[]time.Duration{time.Second, 3 * time.Second}, 2 * time.Second},
	}
	for _, tt := range tests {
		if got := medianDuration(tt.in); got != tt.want {
			t.Errorf("medianDuration(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
