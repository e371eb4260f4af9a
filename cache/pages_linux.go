package cache

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseBadgerPages asks the kernel to take back the resident pages of Badger's files
// (tables, value log, memtable logs) that this process maps from dir, and returns the
// bytes of mapping it asked for. Badger writes its files through shared mappings, so
// what a sync wrote stays resident, and counted in the process's memory, long after
// anything reads it: the proxy serves from the checkpoint and the served tree's image,
// and touches Badger again only at the next commit, which faults back what it needs.
//
// MADV_PAGEOUT reclaims clean pages (msync writes the dirty ones first) and never
// changes what a mapping holds: a range unmapped and mapped again by something else
// since /proc/self/maps was read is at worst written out and paged out, never lost.
// Badger itself is not called: this is safe whatever state it is in. Our own mapped
// files (checkpoint, derived files) are left alone: they are what is served from.
func releaseBadgerPages(dir string) (advised int64) {
	if dir == "" {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	for sc.Scan() {
		head, path, ok := mapsLine(sc.Text())
		if !ok || len(head[1]) < 4 || head[1][3] != 's' {
			continue
		}
		if filepath.Dir(path) != dir {
			continue
		}
		switch filepath.Ext(path) {
		case ".sst", ".vlog", ".mem":
		default:
			continue
		}
		lo, hi, ok := strings.Cut(head[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// Dirty pages are written first (the kernel reclaims clean ones only), by
		// msync on the range: like madvise, harmless on a range mapped anew meanwhile.
		unix.Syscall(unix.SYS_MSYNC, uintptr(start), uintptr(end-start), unix.MS_SYNC)
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); errno == 0 {
			advised += int64(end - start)
		}
	}
	return advised
}

// mapsLine splits a line of /proc/self/maps (start-end perms offset dev inode path):
// its first five fields, and the path as the kernel wrote it, runs of spaces in it
// kept ("" for a mapping of no file).
func mapsLine(line string) (head [5]string, path string, ok bool) {
	rest := line
	for i := range head {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return head, "", false
		}
		head[i], rest = rest[:end], rest[end:]
	}
	return head, strings.TrimLeft(rest, " "), true
}

// mappingDir is dir as /proc/self/maps names the files in it: absolute, links resolved.
func mappingDir(dir string) string {
	if dir == "" {
		return ""
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs
}
