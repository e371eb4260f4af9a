package gcpolicy

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// Mount lines as /proc/self/mountinfo has them.
const (
	mountV2       = "41 31 0:38 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
	mountV1Memory = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
	mountV1CPU    = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu"
	mountUnified  = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

// The limit is found where the process's own cgroup is, whichever layout the host has,
// and is the smallest on the path up.
func TestContainerLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		want int64 // 0: none
	}{{
		name: "v2, a container's own cgroup at the mount",
		fs: fstest.MapFS{
			"proc/self/mountinfo":               file(mountV2 + "\n"),
			"proc/self/cgroup":                  file("0::/\n"),
			"sys/fs/cgroup/cgroup.controllers":  file("cpuset cpu io memory pids\n"),
			"sys/fs/cgroup/memory.max":          file("268435456\n"),
			"sys/fs/cgroup/other/memory.max":    file("1\n"),
			"sys/fs/cgroup/cgroup.subtree_ctrl": file(""),
		},
		want: 256 << 20,
	}, {
		name: "v2, a systemd service below the root, its slice's limit smaller",
		fs: fstest.MapFS{
			"proc/self/mountinfo": file(mountV2 + "\n"),
			"proc/self/cgroup":    file("0::/system.slice/ldapproxy.service\n"),
			"sys/fs/cgroup/system.slice/ldapproxy.service/cgroup.controllers": file("memory pids\n"),
			"sys/fs/cgroup/system.slice/ldapproxy.service/memory.max":         file("536870912\n"),
			"sys/fs/cgroup/system.slice/memory.max":                           file("402653184\n"),
			"sys/fs/cgroup/cgroup.controllers":                                file("memory pids\n"),
		},
		want: 384 << 20,
	}, {
		name: "v2, no limit anywhere",
		fs: fstest.MapFS{
			"proc/self/mountinfo": file(mountV2 + "\n"),
			"proc/self/cgroup":    file("0::/user.slice/session-1.scope\n"),
			"sys/fs/cgroup/user.slice/session-1.scope/cgroup.controllers": file("memory\n"),
			"sys/fs/cgroup/user.slice/session-1.scope/memory.max":         file("max\n"),
			"sys/fs/cgroup/user.slice/memory.max":                         file("max\n"),
		},
	}, {
		name: "v1 memory hierarchy, a cgroup below the root: its hierarchical limit",
		fs: fstest.MapFS{
			"proc/self/mountinfo": file(mountV1CPU + "\n" + mountV1Memory + "\n" + mountUnified + "\n"),
			"proc/self/cgroup":    file("4:memory:/pod/abc\n1:cpu:/\n0::/\n"),
			// The unified hierarchy without the memory controller is not asked.
			"sys/fs/cgroup/unified/cgroup.controllers":           file("\n"),
			"sys/fs/cgroup/memory/pod/abc/memory.stat":           file("cache 0\nhierarchical_memory_limit 201326592\nhierarchical_memsw_limit 9223372036854771712\n"),
			"sys/fs/cgroup/memory/pod/abc/memory.limit_in_bytes": file("9223372036854771712\n"),
		},
		want: 192 << 20,
	}, {
		name: "v1 without memory.stat: the smallest memory.limit_in_bytes up the path",
		fs: fstest.MapFS{
			"proc/self/mountinfo":                            file(mountV1Memory + "\n"),
			"proc/self/cgroup":                               file("9:memory,hugetlb:/a/b\n"),
			"sys/fs/cgroup/memory/a/b/memory.limit_in_bytes": file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/a/memory.limit_in_bytes":   file("134217728\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":     file("9223372036854771712\n"),
		},
		want: 128 << 20,
	}, {
		name: "v1 mount of a container's own cgroup (the mount's root is the cgroup)",
		fs: fstest.MapFS{
			"proc/self/mountinfo":              file("35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"),
			"proc/self/cgroup":                 file("4:memory:/docker/abc\n"),
			"sys/fs/cgroup/memory/memory.stat": file("hierarchical_memory_limit 67108864\n"),
		},
		want: 64 << 20,
	}, {
		name: "a mount whose root does not hold the cgroup is not it",
		fs: fstest.MapFS{
			"proc/self/mountinfo":              file("35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"),
			"proc/self/cgroup":                 file("4:memory:/docker/abcdef\n"),
			"sys/fs/cgroup/memory/memory.stat": file("hierarchical_memory_limit 67108864\n"),
		},
	}, {
		name: "a mount point with a space, escaped in mountinfo",
		fs: fstest.MapFS{
			"proc/self/mountinfo":               file(`41 31 0:38 / /run/my\040cgroups rw - cgroup2 cgroup2 rw` + "\n"),
			"proc/self/cgroup":                  file("0::/\n"),
			"run/my cgroups/cgroup.controllers": file("memory\n"),
			"run/my cgroups/memory.max":         file("100000000\n"),
		},
		want: 100000000,
	}, {
		name: "no cgroup files at all",
		fs:   fstest.MapFS{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := containerLimit(tc.fs)
			if got != tc.want || ok != (tc.want > 0) {
				t.Fatalf("containerLimit = %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
}

// In a memory cgroup made for it, below the one the test runs in, a process finds the
// limit set there: the kernel's own files, not a copy of them. Needs root and a memory
// cgroup hierarchy; skipped otherwise.
func TestContainerLimitInARealCgroup(t *testing.T) {
	if os.Getenv("GCPOLICY_PRINT_LIMIT") != "" {
		n, ok := containerLimit(os.DirFS("/"))
		fmt.Printf("limit %d %v\n", n, ok)
		return
	}
	const limit = 300 << 20
	dir, ok := makeMemoryCgroup(t, limit)
	if !ok {
		t.Skip("cannot make a memory cgroup here (needs root and cgroup v1 or v2 memory)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestContainerLimitInARealCgroup$")
	cmd.Env = append(os.Environ(), "GCPOLICY_PRINT_LIMIT=1")
	// The child joins the cgroup before it runs: through a shell that moves itself.
	sh := exec.Command("sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, dir)
	sh.Args = append(sh.Args, cmd.Args...)
	sh.Path, _ = exec.LookPath("sh")
	sh.Env = cmd.Env
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("limit %d true", limit); !strings.Contains(string(out), want) {
		t.Fatalf("child found %q; want %q", out, want)
	}
}

// makeMemoryCgroup makes a memory cgroup of limit bytes below this process's own, removed
// when the test ends; it returns its directory.
func makeMemoryCgroup(t *testing.T, limit int64) (string, bool) {
	t.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	var parent, limitFile string
	for _, l := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && parent == "" {
			if c, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(c), "memory") {
				parent, limitFile = filepath.Join("/sys/fs/cgroup", f[2]), "memory.max"
			}
		}
		if hasWord(f[1], "memory") {
			parent, limitFile = filepath.Join("/sys/fs/cgroup/memory", f[2]), "memory.limit_in_bytes"
		}
	}
	if parent == "" {
		return "", false
	}
	dir := filepath.Join(parent, "gcpolicy-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", false
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		return "", false
	}
	return dir, true
}

// Whatever /proc/self/mountinfo and /proc/self/cgroup hold (the kernel writes them, but a
// sandbox may fake or cut them), looking for the limit neither panics nor finds one that
// no limit file gives.
func FuzzContainerLimit(f *testing.F) {
	f.Add(mountV2+"\n", "0::/\n", "268435456\n")
	f.Add(mountV1Memory+"\n", "4:memory:/pod/abc\n", "max\n")
	f.Add(`41 31 0:38 / /run/my\040cgroups rw - cgroup2 cgroup2 rw`+"\n", "0::/a/../b\n", "1\n")
	f.Add("35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n", "4:memory:/docker/abc\n", "67108864")
	f.Add(" - \n\\\\\\0", "0::\n::\n:memory:\n", "")
	f.Fuzz(func(t *testing.T, mountinfo, cgroup, limit string) {
		fsys := fstest.MapFS{
			"proc/self/mountinfo": file(mountinfo),
			"proc/self/cgroup":    file(cgroup),
		}
		// The limit file, wherever the first mount line would put a cgroup v2 root.
		for _, m := range strings.Split(mountinfo, "\n") {
			if dir, ok := cgroupDir(m, "/", func(string, string) bool { return true }); ok && fs.ValidPath(dir) {
				fsys[path.Join(dir, "memory.max")] = file(limit)
				fsys[path.Join(dir, "cgroup.controllers")] = file("memory")
				fsys[path.Join(dir, "memory.stat")] = file("hierarchical_memory_limit " + limit)
				break
			}
		}
		got, ok := containerLimit(fsys)
		if !ok {
			return
		}
		want, wantOK := parseLimit(limit)
		if !wantOK || got != want {
			t.Fatalf("containerLimit = %d from a limit file of %q", got, limit)
		}
	})
}
