//go:build unix

package directory

import (
	"runtime"
	"runtime/metrics"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// mapCopy returns a copy of b in memory mapped outside the Go heap, as the proxy's
// image and the store's checkpoint are, and a function that unmaps it.
func mapCopy(tb testing.TB, b []byte) ([]byte, func()) {
	tb.Helper()
	m, err := syscall.Mmap(-1, 0, max(len(b), 1), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		tb.Skip("no anonymous mapping:", err)
	}
	copy(m, b)
	return m[:len(b)], func() { syscall.Munmap(m) }
}

// mappedSources copies sources, one after another, into one mapping: the strings
// returned are slices of it (returned too), as the store's checkpoint records are.
func mappedSources(tb testing.TB, sources []string) ([]string, string, func()) {
	buf := []byte(strings.Join(sources, ""))
	m, unmap := mapCopy(tb, buf)
	all := unsafe.String(unsafe.SliceData(m), len(m))
	out := make([]string, len(sources))
	off := 0
	for i, s := range sources {
		out[i] = all[off : off+len(s)]
		off += len(s)
	}
	return out, all, unmap
}

// gcCPU is the CPU time the collector has used so far.
func gcCPU() time.Duration {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return time.Duration(s[0].Value.Float64() * float64(time.Second))
}

// BenchmarkGC100k measures what a collection costs with a tree of 100,000 users live:
// read from its image with the image and the sources mapped outside the heap, as the
// proxy serves it (image), and built in memory from entries whose sources are the
// heap's (built). gc-cpu-ms is the collector's CPU time per forced collection
// (runtime/metrics), wall-ms its wall time.
func BenchmarkGC100k(b *testing.B) {
	measure := func(b *testing.B, keep *Tree) {
		runtime.GC()
		cpu0, start := gcCPU(), time.Now()
		for b.Loop() {
			runtime.GC()
		}
		b.ReportMetric(float64(gcCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "gc-cpu-ms")
		b.ReportMetric(float64(time.Since(start))/float64(time.Millisecond)/float64(b.N), "wall-ms")
		runtime.KeepAlive(keep)
	}
	b.Run("image", func(b *testing.B) {
		_, data, sources := sourcedImage(b, 100_000)
		msrc, all, unmapSrc := mappedSources(b, sources)
		defer unmapSrc()
		mdata, unmapData := mapCopy(b, data)
		defer unmapData()
		read, err := ReadTree(nil, []string{testBase}, mdata, []byte("k"), msrc, mappedOptions(all)...)
		if err != nil {
			b.Fatal(err)
		}
		measure(b, read)
	})
	b.Run("built", func(b *testing.B) {
		built, _, _ := sourcedImage(b, 100_000)
		measure(b, built)
	})
}

// mappedOptions are the options of a tree whose sources are slices of all, a mapping
// that outlives it.
func mappedOptions(all string) []TreeOption {
	return []TreeOption{WithSourceBases(func() []string { return []string{all} })}
}

// BenchmarkReadTreeMapped100k is BenchmarkReadTree100k/read with the image and the
// sources mapped outside the heap, as the proxy's warm start reads them.
func BenchmarkReadTreeMapped100k(b *testing.B) {
	_, data, sources := sourcedImage(b, 100_000)
	msrc, all, unmapSrc := mappedSources(b, sources)
	defer unmapSrc()
	mdata, unmapData := mapCopy(b, data)
	defer unmapData()
	sources, data = nil, nil
	for b.Loop() {
		if _, err := ReadTree(nil, []string{testBase}, mdata, []byte("k"), msrc, mappedOptions(all)...); err != nil {
			b.Fatal(err)
		}
	}
}
