//go:build !unix

package cache

import "os"

// mapFile reads the file at path into memory (no mapping on this system).
func mapFile(path string) ([]byte, error) { return os.ReadFile(path) }

// unmapFile does nothing: the bytes are the collector's.
func unmapFile([]byte) {}

// dropPages does nothing: the bytes are the collector's.
func dropPages([]byte) {}
