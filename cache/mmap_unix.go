//go:build unix

package cache

import (
	"os"
	"syscall"
)

// mapFile maps the file at path read-only into memory. A write to its pages is a
// fault: nothing may modify a stored record.
func mapFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 || int64(int(fi.Size())) != fi.Size() {
		return nil, syscall.EINVAL
	}
	return syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
}

// unmapFile releases a mapping made by mapFile whose bytes nothing refers to.
func unmapFile(data []byte) { _ = syscall.Munmap(data) }

// dropPages lets the kernel take back the resident pages of a mapping made by mapFile,
// once what had to read them all (a checksum) has: they count in the process's
// resident memory no more until they are read again, and are read back from the file,
// which nothing changes in place (a new file is renamed over it).
func dropPages(data []byte) { _ = syscall.Madvise(data, syscall.MADV_DONTNEED) }
