// Command demo brings up a local OpenLDAP slapd loaded with sample users and groups, puts
// ldapproxy in front of it, and prints commands to try. It needs Debian's slapd and
// ldap-utils packages. Ctrl-C stops both and removes the demo's files.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/gcpolicy"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func main() {
	users := flag.Int("users", 1000, "sample users to load into the demo directory")
	groups := flag.Int("groups", 20, "sample groups")
	listen := flag.String("listen", "127.0.0.1:3389", "the proxy's plain LDAP address")
	listenTLS := flag.String("listen-tls", "127.0.0.1:3636", "the proxy's LDAPS address")
	metricsAddr := flag.String("http", "127.0.0.1:9389", "the proxy's metrics address")
	logLevel := flag.String("log-level", "info", "log level of the proxy: debug logs every request")
	mode := flag.String("mode", "cached", "search mode: cached (answered from the synced store) or direct (forwarded)")
	noSync := flag.Bool("no-sync", false, "do not run the proxy's syncer (with -mode direct: a plain forwarding proxy)")
	cachedAuth := flag.Duration("cached-auth-ttl", 0, "bind.cached_auth_ttl: accept a recent successful bind without the upstream (cached mode)")
	cachePasswords := flag.Bool("cache-passwords", false, "bind.cache_passwords: keep argon2id hashes for logins while the upstream is down")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: go run ./cmd/demo [flags]

Starts a throw-away OpenLDAP slapd with sample users (uid=user0001, password
pass-user0001, ...) and ldapproxy in front of it, prints commands to try, and
runs until Ctrl-C.

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*users, *groups, *listen, *listenTLS, *metricsAddr, *logLevel, *mode, !*noSync, *cachedAuth, *cachePasswords); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(users, groups int, listen, listenTLS, metricsAddr, logLevel, mode string, syncOn bool, cachedAuth time.Duration, cachePasswords bool) error {
	dir, err := os.MkdirTemp("", "ldapproxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Printf("Starting slapd with %d users and %d groups...\n", users, groups)
	up, err := slapdtest.Start(slapdtest.Options{Users: users, Groups: groups, TLS: true, Dir: filepath.Join(dir, "slapd")})
	if err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	defer up.Close()

	certFile, keyFile, err := up.PKI.IssueServer("proxy", "127.0.0.1", "localhost")
	if err != nil {
		return err
	}
	cfgText := fmt.Sprintf(`listen:
  ldap: %q
  ldaps: %q
  tls: {cert_file: %q, key_file: %q}
http:
  listen: %q
  pprof: true
upstream:
  urls: %q
  ca_file: %q
  bind_dn: %q
  bind_password: %q
  base_dn: %q
search:
  mode: %s
store:
  path: %q
sync:
  enabled: %t
  interval: 1m
  nested_groups: true
bind:
  cached_auth_ttl: %s
  cache_passwords: %t
password_writeback: true
log:
  level: %s
  format: text
`, listen, listenTLS, certFile, keyFile, metricsAddr, up.URL, up.PKI.CAFile, up.ServiceDN, up.ServicePassword, up.Suffix,
		mode, filepath.Join(dir, "store"), syncOn, cachedAuth, cachePasswords, logLevel)
	cfgFile := filepath.Join(dir, "ldapproxy.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := app.Load(cfgFile)
	if err != nil {
		return err
	}
	log := cfg.Log.NewLogger(os.Stderr)
	gcpolicy.Start(log) // as ldapproxy serve does
	a, err := app.New(cfg, log, "demo")
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		return err
	}

	user, pass := up.UserDN(1), slapdtest.UserPassword(1)
	fmt.Printf(`
ldapproxy is running in front of %s (config: %s, service account %s / %s).
%s

Try:
  ldapwhoami  -x -H ldap://%s -D %q -w %s
  ldapsearch  -x -H ldap://%s -D %q -w %s -b %q '(uid=user0002)'
  ldapsearch  -x -H ldap://%s -D %q -w %s -b %q -E pr=100/noprompt '(objectClass=inetOrgPerson)' dn | grep -c ^dn:
  ldapcompare -x -H ldap://%s -D %q -w %s %q mail:user0001@example.org
  ldapwhoami  -x -H ldap://%s -D user0003 -w pass-user0003        # bind by user name
  LDAPTLS_CACERT=%s ldapwhoami -x -ZZ -H ldap://%s -D %q -w %s
  LDAPTLS_CACERT=%s ldapwhoami -x -H ldaps://%s -D %q -w %s
  ldappasswd  -x -H ldap://%s -D %q -w %s -a %s -s new-password-1   # writeback
  ldapwhoami  -x -H ldap://%s -D %q -w wrong          # invalidCredentials (49)
  ldapwhoami  -x -H ldap://%s -D %q                   # unauthenticated bind: refused (53)
  ldapsearch  -x -H ldap://%s -b '' -s base +         # root DSE
  curl -s http://%s/metrics | grep ^ldapproxy_

Press Ctrl-C to stop.
`, up.URL, cfgFile, up.ServiceDN, up.ServicePassword, modeLine(mode, syncOn),
		listen, user, pass,
		listen, user, pass, up.Suffix,
		listen, up.ServiceDN, up.ServicePassword, up.Suffix,
		listen, user, pass, user,
		listen,
		up.PKI.CAFile, listen, user, pass,
		up.PKI.CAFile, listenTLS, user, pass,
		listen, up.UserDN(2), slapdtest.UserPassword(2), slapdtest.UserPassword(2),
		listen, user,
		listen, user,
		listen,
		metricsAddr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		return err
	}
	slog.Info("demo stopped")
	return nil
}

// modeLine says where the demo's searches are answered.
func modeLine(mode string, sync bool) string {
	switch {
	case mode != "direct":
		return "Searches are answered from the synced store (search.mode: cached); the first sync runs now."
	case sync:
		return "Searches are forwarded to slapd (search.mode: direct); the syncer keeps the store, the fallback, up to date."
	}
	return "Searches are forwarded to slapd (search.mode: direct), and no syncer runs: a plain forwarding proxy."
}
