package sync_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// tsChildEnv holds "URL|bind DN|password|base DN|store dir" for
// TestTimestampHelperProcess, which TestTimestampKill runs as a child to kill.
const tsChildEnv = "LDAPPROXY_SYNC_TIMESTAMP_CHILD"

// TestTimestampHelperProcess is not a test: run by TestTimestampKill with tsChildEnv set,
// it runs a timestamp-mode loop until killed.
func TestTimestampHelperProcess(t *testing.T) {
	arg := os.Getenv(tsChildEnv)
	if arg == "" {
		t.Skip("helper process for TestTimestampKill")
	}
	f := strings.Split(arg, "|")
	pool, err := upstream.New(upstream.Config{URLs: f[0], BindDN: f[1], BindPassword: f[2], BaseDN: f[3],
		Timeout: 10 * time.Second, RetryInterval: 50 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := cache.Open(cache.Config{Path: f[4]}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	store.OnCommit(func(sn *cache.Snapshot) { fmt.Printf("committed %d\n", sn.Generation()) })
	cfg := ldapsync.Default()
	cfg.Mode, cfg.PollInterval = ldapsync.ModeTimestamp, 20*time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := ldapsync.New(cfg, pool, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Loop(context.Background())
}

// TestTimestampKill: a timestamp-mode syncer killed (SIGKILL) at random moments (during
// its first full read, then just after a commit: during a poll or between two), while users move between OUs, change and join and
// leave groups upstream, leaves a store that opens, whose memberships agree from both
// sides; resumed, it converges to the upstream's memberships.
func TestTimestampKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process repeatedly")
	}
	const users, groups = 1500, 10
	e := newEnv(t, slapdtest.Options{Users: users, Groups: groups, RefInt: true,
		ExtraLDIF: "dn: ou=moved," + slapdtest.DefaultSuffix + "\nobjectClass: organizationalUnit\nou: moved\n"})
	srv, dir := e.srv, t.TempDir()

	// Changes upstream until stopped: moves there and back, joins and leaves, modifies.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		admin := srv.Conn(t)
		at := map[int]string{} // users moved: their current DN
		in := map[[2]int]bool{}
		for n := 0; ctx.Err() == nil; n++ {
			i := 1 + rand.IntN(users)
			dn, moved := at[i]
			if !moved {
				dn = srv.UserDN(i)
			}
			var err error
			switch n % 3 {
			case 0:
				sup := "ou=moved," + srv.Suffix
				if moved {
					sup = srv.PeopleDN
				}
				err = admin.ModifyDN(ldap.NewModifyDNRequest(dn, "uid="+slapdtest.UserName(i), true, sup))
				if moved {
					delete(at, i)
				} else {
					at[i] = "uid=" + slapdtest.UserName(i) + "," + sup
				}
			case 1:
				g := 1 + rand.IntN(groups)
				if slices.Contains(srv.UserGroups(i), g) {
					continue // the sample memberships stay: a group keeps a member
				}
				req := ldap.NewModifyRequest(srv.GroupDN(g), nil)
				if in[[2]int{i, g}] {
					req.Delete("member", []string{dn})
				} else {
					req.Add("member", []string{dn})
				}
				in[[2]int{i, g}] = !in[[2]int{i, g}]
				err = admin.Modify(req)
			default:
				req := ldap.NewModifyRequest(dn, nil)
				req.Replace("mail", []string{fmt.Sprintf("m%d@example.org", n)})
				err = admin.Modify(req)
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("change %d: %v", n, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var first, last uint64
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTimestampHelperProcess$")
		cmd.Env = append(os.Environ(), tsChildEnv+"="+strings.Join([]string{srv.URL, srv.ServiceDN, srv.ServicePassword, srv.Suffix, dir}, "|"))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		commits := make(chan struct{}, 1000)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "committed ") {
					commits <- struct{}{}
				}
			}
		}()
		// Round 0 kills the first full read in the middle; the others wait for a commit
		// (the full read or a poll), then kill the child a moment later: during the next
		// poll, or between two.
		wait := time.Duration(200+rand.IntN(800)) * time.Millisecond
		if round > 0 {
			select {
			case <-commits:
			case <-time.After(60 * time.Second):
				t.Fatalf("round %d: nothing committed within a minute", round)
			}
			wait = time.Duration(rand.IntN(400)) * time.Millisecond
		}
		time.Sleep(wait)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		store, err := cache.Open(cache.Config{Path: dir}, nil, directory.NormalizeDN)
		if err != nil {
			t.Fatalf("round %d: the store does not open after the kill: %v", round, err)
		}
		sn := store.Snapshot()
		graphOf(t, sn) // both sides agree
		u, _ := sn.Counts()
		t.Logf("round %d: killed after %v: generation %d, %d users, mark %q", round, wait, sn.Generation(), u, store.Cookie("timestamp"))
		if round > 0 && store.Cookie("timestamp") == nil {
			t.Fatalf("round %d: a commit, but no mark stored", round)
		}
		if last = sn.Generation(); round == 1 {
			first = last
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	wg.Wait()
	if last <= first {
		t.Errorf("generation %d after the rounds, %d after the second: no poll of a resumed syncer committed", last, first)
	}

	// Resumed, the store reaches the upstream's memberships.
	want := upstreamGraph(t, srv)
	st := startPoller(t, e, dir, nil)
	st.waitFor(10*time.Second, "the upstream's memberships", func(sn *cache.Snapshot) bool {
		return equalGraph(graphOf(t, sn), want)
	})
}

// upstreamGraph reads the memberships upstream as the admin: user name → group names,
// group name → parent group names.
func upstreamGraph(t *testing.T, srv *slapdtest.Server) graph {
	t.Helper()
	g := graph{users: map[string][]string{}, groups: map[string][]string{}}
	res, err := srv.Conn(t).Search(ldap.NewSearchRequest(srv.GroupsDN, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=groupOfNames)", []string{"cn", "member"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Entries {
		name := e.GetAttributeValue("cn")
		for _, m := range e.GetAttributeValues("member") {
			dn, err := ldap.ParseDN(m)
			if err != nil {
				t.Fatal(err)
			}
			rdn := dn.RDNs[0].Attributes[0]
			if rdn.Type == "uid" {
				g.users[rdn.Value] = append(g.users[rdn.Value], name)
			} else {
				g.groups[rdn.Value] = append(g.groups[rdn.Value], name)
			}
		}
	}
	for _, m := range []map[string][]string{g.users, g.groups} {
		for k := range m {
			slices.Sort(m[k])
		}
	}
	return g
}
