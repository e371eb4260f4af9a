package main

import (
	"testing"
	"time"
)

// TestStatCPU checks the reading of /proc/PID/stat's utime and stime behind a
// command name with spaces and parentheses, and its refusals.
func TestStatCPU(t *testing.T) {
	const rest = " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1234 5678 90 18446744073709551615\n"
	d, err := statCPU([]byte("4242 (slapd (x) ) y)" + rest))
	if want := 3250 * time.Millisecond; err != nil || d != want {
		t.Errorf("statCPU = %v, %v; want %v (325 ticks of 10 ms)", d, err, want)
	}
	for _, bad := range []string{"", "4242 slapd S 1", "4242 (slapd) S 1 2 3", "4242 (slapd) S 1 2 3 0 -1 4194560 100 0 0 0 x 75"} {
		if _, err := statCPU([]byte(bad)); err == nil {
			t.Errorf("statCPU(%q) accepted", bad)
		}
	}
}
