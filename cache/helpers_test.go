package cache

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/directory"
)

// testLogger logs warnings and errors to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func openMem(t testing.TB) *Store {
	t.Helper()
	s, err := Open(Config{Path: InMemory}, testLogger(t), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// setCheckpointInterval sets checkpointInterval for the test and sets it back once the
// test and its cleanups are done: after the stores it opens next have closed (cleanups
// run last registered first), whose checkpointers read it.
func setCheckpointInterval(t testing.TB, d time.Duration) {
	old := checkpointInterval
	checkpointInterval = d
	t.Cleanup(func() { checkpointInterval = old })
}

func openDir(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Path: dir}, testLogger(t), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userID and groupID are stable fake uniqueness values (entryUUID-shaped).
func userID(i int) string  { return fmt.Sprintf("6f1e0a52-0000-4000-8000-%012d", i) }
func groupID(i int) string { return fmt.Sprintf("0b7c93d4-0000-4000-9000-%012d", i) }

var created = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// testUser is a realistic mapped user: ten attributes, in one to three of
// numGroups groups. tag goes into an attribute, so that a sync can change
// every user at once.
func testUser(i, numGroups int, tag string) *User {
	name := fmt.Sprintf("user%06d", i)
	groups := []string{groupID(i % numGroups)}
	for k := 1; k < 1+i%3; k++ {
		groups = append(groups, groupID((i*7+k*13)%numGroups))
	}
	return &User{
		ID:             userID(i),
		DN:             "uid=" + name + ",ou=people,dc=example,dc=org",
		Username:       name,
		Name:           "User " + name,
		Email:          name + "@example.org",
		IsActive:       i%17 != 0,
		PasswordMarker: "20240101000000Z",
		Groups:         groups,
		Attributes: map[string]any{
			"givenName":       "Given" + name,
			"sn":              "Surname" + name,
			"telephoneNumber": fmt.Sprintf("+49 30 %07d", i),
			"title":           "Engineer",
			"departmentName":  fmt.Sprintf("Department %d", i%40),
			"employeeNumber":  int64(100000 + i),
			"objectClass":     []string{"top", "person", "organizationalPerson", "inetOrgPerson"},
			"createTimestamp": created.Add(time.Duration(i) * time.Minute),
			"loginShell":      "/bin/bash",
			"tag":             tag,
		},
	}
}

// testGroup is a group under a common parent group (group 0).
func testGroup(i int, tag string) *Group {
	g := &Group{
		ID:   groupID(i),
		DN:   fmt.Sprintf("cn=group%04d,ou=groups,dc=example,dc=org", i),
		Name: fmt.Sprintf("group%04d", i),
		Attributes: map[string]any{
			"description": "Group number " + fmt.Sprint(i),
			"gidNumber":   int64(20000 + i),
			"tag":         tag,
		},
	}
	if i != 0 {
		g.Parents = []string{groupID(0)}
	}
	return g
}

// writeSync runs one complete sync of users 0..numUsers-1 (but those for
// which skip returns true) and groups 0..numGroups-1.
func writeSync(t testing.TB, s *Store, numUsers, numGroups int, tag string, skip func(i int) bool) {
	t.Helper()
	w := beginFullSync(t, s, numUsers, numGroups, tag, skip)
	defer w.Abort()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// beginFullSync begins a sync and puts writeSync's groups and users, uncommitted.
func beginFullSync(t testing.TB, s *Store, numUsers, numGroups int, tag string, skip func(i int) bool) *Sync {
	t.Helper()
	w, err := s.BeginSync(KindUsers, KindGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i := range numGroups {
		if err := w.PutGroup(testGroup(i, tag)); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	for i := range numUsers {
		if skip != nil && skip(i) {
			continue
		}
		if err := w.PutUser(testUser(i, numGroups, tag)); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	return w
}

// peakRSS is the process's peak resident set size in MiB (VmHWM).
func peakRSS(t testing.TB) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
