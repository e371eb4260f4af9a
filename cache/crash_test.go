package cache

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ldapproxy/ldapproxy/directory"
)

// crashDirEnv tells TestHelperProcess, run by TestCrash in a child process,
// which store to write to.
const crashDirEnv = "LDAPPROXY_CACHE_CRASH_DIR"

// crashBatchEnv makes TestHelperProcess write batches (after a first sync) instead of
// syncs.
const crashBatchEnv = "LDAPPROXY_CACHE_CRASH_BATCH"

// crashFirstEnv makes TestHelperProcess write the first sync of an empty store only, and
// then wait to be killed.
const crashFirstEnv = "LDAPPROXY_CACHE_CRASH_FIRST"

// Sizes of the crash test's syncs: enough users for a Commit to span many
// Badger batches.
const (
	crashUsers  = 6_000
	crashGroups = 100
)

// crashUser is user i as sync generation gen writes it, or nil when that
// generation leaves it out: each generation deletes a fifth of the users and
// brings back others, renames a third, and changes every user's tag.
func crashUser(i int, gen uint64) *User {
	if (uint64(i)+gen)%5 == 0 {
		return nil
	}
	u := testUser(i, crashGroups, strconv.FormatUint(gen, 10))
	if i%3 == 0 {
		u.DN = fmt.Sprintf("uid=%s,ou=moved%d,dc=example,dc=org", u.Username, gen%2)
	}
	return u
}

// crashGroup is group i as generation gen writes it, or nil.
func crashGroup(i int, gen uint64) *Group {
	if (uint64(i)+gen)%4 == 1 {
		return nil
	}
	return testGroup(i, strconv.FormatUint(gen, 10))
}

// batchTouches reports whether the batch that writes generation gen (from 2 on)
// changes object i: a seventh of the objects each time.
func batchTouches(i int, gen uint64) bool { return gen >= 2 && uint64(i)%7 == gen%7 }

// batchUser is user i as of generation gen of the batch writer: as the last batch that
// touched it wrote it (crashUser of that generation: deleted, renamed, retagged), or as
// the first sync did.
func batchUser(i int, gen uint64) *User {
	for g := gen; g >= 2; g-- {
		if batchTouches(i, g) {
			return crashUser(i, g)
		}
	}
	return crashUser(i, 1)
}

// batchGroup is group i as of generation gen of the batch writer.
func batchGroup(i int, gen uint64) *Group {
	for g := gen; g >= 2; g-- {
		if batchTouches(i, g) {
			return crashGroup(i, g)
		}
	}
	return crashGroup(i, 1)
}

// crashCookie is the cookie committed with generation gen.
func crashCookie(gen uint64) string { return "csn=" + strconv.FormatUint(gen, 10) }

// writeBatches writes one batch after another until killed, as TestHelperProcess
// writes syncs.
func writeBatches(s *Store) {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for {
		gen := s.Snapshot().Generation() + 1
		fmt.Println("begin", gen)
		b, err := s.BeginBatch()
		if err != nil {
			fail(err)
		}
		for i := range crashGroups {
			if !batchTouches(i, gen) {
				continue
			}
			if g := crashGroup(i, gen); g != nil {
				if err := b.PutGroup(g); err != nil {
					fail(err)
				}
			} else {
				b.DeleteGroup(groupID(i))
			}
		}
		for i := range crashUsers {
			if !batchTouches(i, gen) {
				continue
			}
			if u := crashUser(i, gen); u != nil {
				if err := b.PutUser(u); err != nil {
					fail(err)
				}
			} else {
				b.DeleteUser(userID(i))
			}
		}
		b.SetCookie("test", []byte(crashCookie(gen)))
		fmt.Println("commit", gen)
		if _, err := b.Commit(); err != nil {
			fail(err)
		}
		fmt.Println("committed", gen)
	}
}

// TestHelperProcess is not a test of its own: TestCrash runs it in a child
// process, where it writes one sync after another until it is killed,
// printing "begin N", "commit N" and "committed N" as it goes.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	s, err := Open(Config{Path: dir}, nil, directory.NormalizeDN)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	batches := os.Getenv(crashBatchEnv) != ""
	first := os.Getenv(crashFirstEnv) != ""
	for {
		gen := s.Snapshot().Generation() + 1
		if batches && gen > 1 {
			writeBatches(s)
		}
		if first && gen > 1 {
			select {} // killed
		}
		fmt.Println("begin", gen)
		w, err := s.BeginSync(KindUsers, KindGroups)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := range crashGroups {
			if g := crashGroup(i, gen); g != nil {
				if err := w.PutGroup(g); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
			}
		}
		for i := range crashUsers {
			if u := crashUser(i, gen); u != nil {
				if err := w.PutUser(u); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
			}
		}
		w.SetCookie("test", []byte(crashCookie(gen)))
		fmt.Println("commit", gen)
		if err := w.Commit(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("committed", gen)
	}
}

// TestCrash kills a process writing syncs with SIGKILL at random moments,
// while it puts objects and while it commits, then opens the store and checks
// that it holds exactly the last committed generation or the one after it.
func TestCrash(t *testing.T) { testCrash(t, false) }

// TestCrashBatches does the same to a process writing batches: the store holds the
// state and the cookie of the last committed batch, or of the one after it.
func TestCrashBatches(t *testing.T) { testCrash(t, true) }

// crashSetup skips a crash test in -short mode, and otherwise returns its random
// source, seeded and logged so that a failing run can be repeated, and its store's
// directory.
func crashSetup(t *testing.T) (*rand.Rand, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("kills child processes for a while")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0)), t.TempDir()
}

func testCrash(t *testing.T, batches bool) {
	rnd, dir := crashSetup(t)
	var committed uint64
	var putTime, commitTime time.Duration = 500 * time.Millisecond, 100 * time.Millisecond
	for round := range 6 {
		duringCommit := round%2 == 1
		last, p, c := crashRound(t, dir, rnd, batches, duringCommit, putTime, commitTime)
		if p > 0 {
			putTime, commitTime = p, c
		}
		if last > committed {
			committed = last
		}
		s, err := Open(Config{Path: dir}, testLogger(t), directory.NormalizeDN)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		gen := s.Snapshot().Generation()
		t.Logf("round %d: killed at random after %q; last reported commit %d, store at %d",
			round, map[bool]string{false: "begin", true: "commit"}[duringCommit], committed, gen)
		if gen != committed && gen != committed+1 {
			t.Fatalf("round %d: store at generation %d, last commit reported %d", round, gen, committed)
		}
		if batches {
			checkCrashState(t, s, gen, batchUser, batchGroup)
		} else {
			checkCrashState(t, s, gen, crashUser, crashGroup)
		}
		if got := string(s.Cookie("test")); gen > 0 && got != crashCookie(gen) {
			t.Fatalf("round %d: generation %d with cookie %q", round, gen, got)
		}
		committed = gen
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// crashRound starts the writer, lets it commit once, kills it at a random
// moment of the next sync's put phase (or its commit), and returns the last
// generation it reported committed, and how long its last complete sync
// spent putting and committing.
func crashRound(t *testing.T, dir string, rnd *rand.Rand, batches, duringCommit bool, putTime, commitTime time.Duration) (last uint64, put, commit time.Duration) {
	t.Helper()
	env := []string{crashDirEnv + "=" + dir}
	if batches {
		env = append(env, crashBatchEnv+"=1")
	}
	cmd, out := startWriter(t, env...)
	killed := false
	kill := func(after time.Duration) {
		time.AfterFunc(after, func() { cmd.Process.Signal(syscall.SIGKILL) })
		killed = true
	}
	var begun, commitStart time.Time
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		word, arg, _ := strings.Cut(sc.Text(), " ")
		now := time.Now()
		switch word {
		case "begin":
			begun = now
			if !killed && last > 0 && !duringCommit {
				kill(time.Duration(rnd.Int64N(int64(putTime))))
			}
		case "commit":
			commitStart = now
			if !killed && last > 0 && duringCommit {
				kill(time.Duration(rnd.Int64N(int64(commitTime) * 3 / 2)))
			}
		case "committed":
			var err error
			if last, err = strconv.ParseUint(arg, 10, 64); err != nil {
				t.Fatal(err)
			}
			put, commit = commitStart.Sub(begun), now.Sub(commitStart)
		case "error":
			t.Fatalf("writer: %s", arg)
		}
	}
	if err := cmd.Wait(); err == nil || !killed {
		t.Fatalf("writer ended by itself: %v", err)
	}
	return last, put, commit
}

// checkCrashState checks that the store holds generation gen exactly as the
// writer wrote it (user and group say what that is), with nothing of another
// generation and no leftovers.
func checkCrashState(t *testing.T, s *Store, gen uint64, user func(int, uint64) *User, group func(int, uint64) *Group) {
	t.Helper()
	sn := s.Snapshot()
	var wantUsers, wantGroups int
	for i := range crashUsers {
		want := user(i, gen)
		got, ok := sn.UserByID(userID(i))
		if want == nil {
			if ok {
				t.Fatalf("generation %d: user %d should be deleted", gen, i)
			}
			continue
		}
		wantUsers++
		if !ok || got.DN != want.DN || got.Attributes["tag"] != want.Attributes["tag"] {
			t.Fatalf("generation %d: user %d is %+v", gen, i, got)
		}
		if byDN, ok := sn.UserByDN(want.DN); !ok || byDN.ID != want.ID {
			t.Fatalf("generation %d: user %d not found by DN", gen, i)
		}
	}
	for i := range crashGroups {
		want := group(i, gen)
		got, ok := sn.GroupByID(groupID(i))
		if want == nil {
			if ok {
				t.Fatalf("generation %d: group %d should be deleted", gen, i)
			}
			continue
		}
		wantGroups++
		if !ok || got.Attributes["tag"] != want.Attributes["tag"] {
			t.Fatalf("generation %d: group %d is %+v", gen, i, got)
		}
	}
	if u, g := sn.Counts(); u != wantUsers || g != wantGroups {
		t.Fatalf("generation %d: %d users and %d groups, want %d and %d", gen, u, g, wantUsers, wantGroups)
	}
	members := map[string][]string{}
	for u := range sn.Users {
		for _, gid := range u.Groups {
			if _, ok := sn.GroupByID(gid); ok {
				members[gid] = append(members[gid], u.ID)
			}
		}
	}
	for g := range sn.Groups {
		if users, _ := sn.Members(g.ID); !slices.Equal(users, members[g.ID]) {
			t.Fatalf("generation %d: members of %s are %d users, want %d", gen, g.ID, len(users), len(members[g.ID]))
		}
	}
	if n := countRecords(t, s); n != wantUsers+wantGroups {
		t.Fatalf("generation %d: %d records in Badger for %d objects", gen, n, wantUsers+wantGroups)
	}
}

// TestCrashFirstSync kills a process writing the first sync of an empty store with
// SIGKILL at random moments of its commit, which writes every record (loadFirst), and
// checks that the store then opens empty, without records, or as that sync wrote it. A
// store left empty is used again, with what the kill left in it.
func TestCrashFirstSync(t *testing.T) {
	rnd, dir := crashSetup(t)
	commitTime := 300 * time.Millisecond
	for round := range 8 {
		committed, c := crashFirstRound(t, dir, rnd, commitTime)
		if c > 0 {
			commitTime = c
		}
		s, err := Open(Config{Path: dir}, testLogger(t), directory.NormalizeDN)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		gen := s.Snapshot().Generation()
		t.Logf("round %d: killed during the first sync's commit (reported committed: %v), store at %d", round, committed, gen)
		switch {
		case gen > 1 || committed && gen != 1:
			t.Fatalf("round %d: store at generation %d", round, gen)
		case gen == 1:
			checkCrashState(t, s, gen, crashUser, crashGroup)
			if got := string(s.Cookie("test")); got != crashCookie(gen) {
				t.Fatalf("round %d: generation %d with cookie %q", round, gen, got)
			}
		default:
			if u, g := s.Snapshot().Counts(); u != 0 || g != 0 {
				t.Fatalf("round %d: generation 0 with %d users and %d groups", round, u, g)
			}
			if n := countRecords(t, s); n != 0 {
				t.Fatalf("round %d: %d object records at generation 0", round, n)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if gen == 1 {
			dir = t.TempDir()
		}
	}
}

// startWriter starts TestHelperProcess, the writer, with env added to this process's
// environment, and returns it with its standard output, where it reports its steps.
func startWriter(t *testing.T, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// crashFirstRound starts the writer of a first sync on dir, kills it at a random moment
// of its commit (up to one and a half times commitTime after it began), and returns
// whether it reported the commit done, and how long the commit took if it did.
func crashFirstRound(t *testing.T, dir string, rnd *rand.Rand, commitTime time.Duration) (committed bool, commit time.Duration) {
	t.Helper()
	cmd, out := startWriter(t, crashDirEnv+"="+dir, crashFirstEnv+"=1")
	killed := false
	var commitStart time.Time
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		word, arg, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "begin":
			if arg != "1" {
				t.Fatalf("writer begins generation %s of a store that should be empty", arg)
			}
		case "commit":
			commitStart = time.Now()
			time.AfterFunc(time.Duration(rnd.Int64N(int64(commitTime)*3/2)), func() { cmd.Process.Signal(syscall.SIGKILL) })
			killed = true
		case "committed":
			committed, commit = true, time.Since(commitStart)
		case "error":
			t.Fatalf("writer: %s", arg)
		}
	}
	if err := cmd.Wait(); err == nil || !killed {
		t.Fatalf("writer ended by itself: %v", err)
	}
	return committed, commit
}
