package e2e

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func TestMetricsAndHealth(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 5})
	p := startProxy(t, config(up, nil))

	c := dial(t, p.URL)
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(up.UserDN(1), "wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Fatal(err)
	}
	if err := c.Bind(up.UserDN(1), slapdtest.UserPassword(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=user0002)", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compare(up.UserDN(2), "uid", "user0002"); err != nil {
		t.Fatal(err)
	}

	// A request is counted just after its response is handed to the writer: wait for
	// the last one.
	var text string
	eventually(t, settleWithin, "the compare to be counted", func() bool {
		text = p.scrape(t)
		// Not only op="compare": the upstream's histogram has its compare before the
		// request is counted.
		return strings.Contains(text, `ldapproxy_requests_total{op="compare"`)
	})
	for _, want := range []string{
		`ldapproxy_requests_total{op="bind",result="success"} 2`,
		`ldapproxy_requests_total{op="bind",result="invalidCredentials"} 1`,
		`ldapproxy_requests_total{op="search",result="success"} 1`,
		`ldapproxy_requests_total{op="compare",result="compareTrue"} 1`,
		`ldapproxy_request_duration_seconds_count{op="bind"} 3`,
		`ldapproxy_connections_open 1`,
		`ldapproxy_upstream_up{server="` + up.URL + `"} 1`,
		`ldapproxy_upstream_request_duration_seconds_count{op="bind",server="` + up.URL + `"}`,
		`ldapproxy_build_info{version="test"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No DN or user name ever becomes a label value.
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "#") && (strings.Contains(line, "uid=") || strings.Contains(line, "user000") || strings.Contains(line, "dc=example")) {
			t.Errorf("a metric label carries a DN or user name: %s", line)
		}
	}

	if code, body := p.get(t, "/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _ := p.get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d with the upstream up", code)
	}
	up.Stop()
	// The pool learns that a server is gone from a failed connect, then re-checks it in
	// the background until it answers.
	c2 := dial(t, p.URL)
	if err := c2.Bind(up.UserDN(1), slapdtest.UserPassword(1)); resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("bind with the upstream stopped: %v, want unavailable (52)", err)
	}
	eventually(t, settleWithin, "/readyz to report the upstream down", func() bool {
		code, body := p.get(t, "/readyz")
		return code == 503 && strings.Contains(body, "upstream")
	})
	if code, _ := p.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the upstream is down; the process is alive", code)
	}
}

// TestNoPasswordInLogs binds with marked passwords, right and wrong, through every
// path (a session bound again on the second server after the first one died included),
// with the log at debug level, and looks for the marks in the log.
func TestNoPasswordInLogs(t *testing.T) {
	const mark = "Zq7-secret-mark"
	opts := slapdtest.Options{Users: 3, Groups: 1, ExtraLDIF: `
dn: uid=marked,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: marked
cn: marked
sn: marked
userPassword: ` + mark + `
`}
	up, second := withSlapd(t, opts), withSlapd(t, opts)
	p := startProxy(t, config(up, map[string]string{"urls": up.URL + "," + second.URL}))
	dn := "uid=marked,ou=people," + up.Suffix
	c := dial(t, p.URL)
	if err := c.Bind(dn, mark); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(dn, mark+"-wrong"); resultCode(err) != ldap.LDAPResultInvalidCredentials {
		t.Fatal(err)
	}
	tool(t, nil, "ldapwhoami", "-x", "-H", p.URL, "-D", dn, "-w", mark)
	tool(t, nil, "ldapsearch", "-x", "-H", p.URL, "-D", dn, "-w", mark+"-x", "-b", up.Suffix, "(uid=marked)")
	// A session that keeps its credential for failover, bound again on the second server.
	kept := dial(t, p.URL)
	if err := kept.Bind(dn, mark); err != nil {
		t.Fatal(err)
	}
	if err := up.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Search(ldap.NewSearchRequest(up.Suffix, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=marked)", nil, nil)); err != nil {
		t.Fatalf("search after the failover: %v", err)
	}
	if !strings.Contains(p.logs.String(), "upstream session bound again") {
		t.Fatal("the session was not bound again on the second server; the test would prove nothing for that path")
	}
	second.Stop()
	c2 := dial(t, p.URL)
	if err := c2.Bind(dn, mark); resultCode(err) != ldap.LDAPResultUnavailable {
		t.Fatalf("bind with the upstream down: %v, want unavailable", err)
	}
	p.Stop()
	logs := p.logs.String()
	if !strings.Contains(logs, "marked") {
		t.Fatal("the log does not mention the binds at all; the test would prove nothing")
	}
	if strings.Contains(logs, mark) {
		t.Fatalf("a password reached the log:\n%s", logs)
	}
}

// TestGracefulShutdown starts a long search, stops the proxy, and checks that the search
// completes, new connections are refused, and the proxy exits.
func TestGracefulShutdown(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 3000, Groups: 3})
	p := startProxy(t, config(up, nil))
	c := dial(t, p.URL)
	// The client's timeout bounds the whole search, which a loaded machine running the
	// tests with -race took over dial's 10 s to read: it only guards against a hang.
	c.SetTimeout(time.Minute)
	if err := c.Bind(up.ServiceDN, up.ServicePassword); err != nil {
		t.Fatal(err)
	}
	// A slow reader keeps the search in flight while the proxy is told to stop.
	resp := c.SearchAsync(context.Background(), ldap.NewSearchRequest(up.PeopleDN, ldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", nil, nil), 1)
	if !resp.Next() {
		t.Fatalf("no first entry: %v", resp.Err())
	}
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop() }()
	eventually(t, settleWithin, "the listener to close", func() bool {
		l, err := ldap.DialURL(p.URL)
		if err == nil {
			l.Close()
		}
		return err != nil
	})
	n := 1
	for resp.Next() {
		if resp.Entry() != nil {
			n++
		}
		if n%500 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := resp.Err(); err != nil || n != 3000 {
		t.Fatalf("the search in flight got %d of 3000 entries, err %v", n, err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not exit after its last search ended")
	}
}

// TestConcurrentClients runs many clients at once, each checking that it sees its own
// identity: no session's upstream connection may serve another's requests.
func TestConcurrentClients(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 40})
	p := startProxy(t, config(up, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 1; i <= 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := ldap.DialURL(p.URL)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for round := 0; round < 20; round++ {
				if err := c.Bind(up.UserDN(i), slapdtest.UserPassword(i)); err != nil {
					errs <- err
					return
				}
				// slapd lets a user read its own userPassword and nobody else's: the
				// value proves which identity the upstream saw.
				res, err := c.Search(ldap.NewSearchRequest(up.UserDN(i), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"userPassword"}, nil))
				if err != nil {
					errs <- err
					return
				}
				if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("userPassword") == "" {
					errs <- errString("user " + up.UserDN(i) + " did not read its own password: wrong identity upstream")
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	re := regexp.MustCompile(`ldapproxy_requests_total\{op="bind",result="success"\} (\d+)`)
	eventually(t, settleWithin, "800 successful binds counted", func() bool {
		m := re.FindStringSubmatch(p.scrape(t))
		return m != nil && m[1] == "800"
	})
}

type errString string

func (e errString) Error() string { return string(e) }
