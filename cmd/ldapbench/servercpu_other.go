//go:build !linux

package main

import (
	"errors"
	"time"
)

// serverCPU needs Linux's /proc.
func serverCPU(int) (time.Duration, error) {
	return 0, errors.New("-server-pids needs Linux's /proc")
}
