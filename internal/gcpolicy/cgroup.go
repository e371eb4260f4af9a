package gcpolicy

import (
	"bufio"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// containerLimit returns the memory limit that applies to this process, read from
// root (the file system's root: os.DirFS("/")): the smallest limit on the path from
// its own cgroup up to the hierarchy's root, as the kernel enforces every one of them.
// The process's cgroup is found in /proc/self/cgroup and the hierarchy's mount in
// /proc/self/mountinfo, so that a limit is found wherever the process runs: in a
// container that sees its own cgroup at /sys/fs/cgroup, in a systemd service whose
// unit sets MemoryMax= (a cgroup below the root, which a container would not show
// alone), or in a cgroup made below a container's. cgroup v2 is asked first when its
// memory controller is on, else v1's memory hierarchy.
func containerLimit(root fs.FS) (int64, bool) {
	mounts := readLines(root, "proc/self/mountinfo")
	groups := readLines(root, "proc/self/cgroup")
	// v2: the line "0::/path"; the mount of fstype cgroup2.
	for _, g := range groups {
		rel, ok := strings.CutPrefix(g, "0::")
		if !ok {
			continue
		}
		for _, m := range mounts {
			dir, ok := cgroupDir(m, rel, func(fstype, _ string) bool { return fstype == "cgroup2" })
			if !ok || !hasController(root, dir, "memory") {
				continue
			}
			return smallestLimit(root, dir, "memory.max")
		}
	}
	// v1: the line "N:...memory...:/path"; the mount of fstype cgroup with the memory
	// option. Its memory.stat has the smallest limit up the path, as the kernel keeps
	// it (hierarchical_memory_limit); memory.limit_in_bytes of each level otherwise.
	for _, g := range groups {
		f := strings.SplitN(g, ":", 3)
		if len(f) != 3 || !hasWord(f[1], "memory") {
			continue
		}
		for _, m := range mounts {
			dir, ok := cgroupDir(m, f[2], func(fstype, opts string) bool { return fstype == "cgroup" && hasWord(opts, "memory") })
			if !ok {
				continue
			}
			for _, l := range readLines(root, path.Join(dir, "memory.stat")) {
				if v, ok := strings.CutPrefix(l, "hierarchical_memory_limit "); ok {
					return parseLimit(v)
				}
			}
			return smallestLimit(root, dir, "memory.limit_in_bytes")
		}
	}
	return 0, false
}

// cgroupDir returns the directory (relative to the file system's root) of the cgroup
// rel (a path in its hierarchy, as /proc/self/cgroup gives it) under the mount that
// mountinfo line m describes, if m is a mount of the hierarchy (is tells from its
// fstype and super options) whose root holds rel.
func cgroupDir(m, rel string, is func(fstype, opts string) bool) (string, bool) {
	pre, post, ok := strings.Cut(m, " - ")
	if !ok {
		return "", false
	}
	f, g := strings.Fields(pre), strings.Fields(post)
	if len(f) < 5 || len(g) < 3 || !is(g[0], g[2]) {
		return "", false
	}
	mroot, point := unescape(f[3]), unescape(f[4])
	sub, ok := strings.CutPrefix(path.Clean(rel), mroot)
	if !ok || sub != "" && mroot != "/" && !strings.HasPrefix(sub, "/") {
		return "", false
	}
	dir := strings.TrimPrefix(path.Join(point, sub), "/")
	if dir == "" {
		dir = "."
	}
	return dir, true
}

// smallestLimit is the smallest limit in the files named file from dir up to the
// top, which is the first directory up the path without that file (the hierarchy's
// root has no limit file).
func smallestLimit(root fs.FS, dir, file string) (int64, bool) {
	var least int64
	for {
		data, err := fs.ReadFile(root, path.Join(dir, file))
		if err != nil {
			break
		}
		if n, ok := parseLimit(string(data)); ok && (least == 0 || n < least) {
			least = n
		}
		if dir == "." {
			break
		}
		dir = path.Dir(dir)
	}
	return least, least > 0
}

// hasController reports whether the cgroup v2 at dir has the controller (its
// cgroup.controllers lists it).
func hasController(root fs.FS, dir, c string) bool {
	data, err := fs.ReadFile(root, path.Join(dir, "cgroup.controllers"))
	return err == nil && hasWord(strings.ReplaceAll(string(data), " ", ","), c)
}

// hasWord reports whether the comma-separated list l has w.
func hasWord(l, w string) bool {
	for x := range strings.SplitSeq(strings.TrimSpace(l), ",") {
		if x == w {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readLines returns the lines of the file name in root; none if it cannot be read.
func readLines(root fs.FS, name string) []string {
	f, err := root.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	var l []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l = append(l, sc.Text())
	}
	return l
}
