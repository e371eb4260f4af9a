//go:build !linux

package cache

// releaseBadgerPages does nothing where the process's mappings cannot be listed.
func releaseBadgerPages(string) int64 { return 0 }

// mappingDir is "": there is nothing to release.
func mappingDir(string) string { return "" }
