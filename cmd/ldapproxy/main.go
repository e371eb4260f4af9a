// Command ldapproxy is an LDAP proxy: it sits between applications and a real directory
// (Active Directory, OpenLDAP, FreeIPA), forwards binds to a pool of failover servers and
// answers searches. Run `ldapproxy --help` for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes
// from the module's build information.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

const usage = `ldapproxy — an LDAP proxy in front of Active Directory, OpenLDAP or FreeIPA.

Usage:
  ldapproxy serve   --config FILE   run the proxy
  ldapproxy check   --config FILE   test every upstream server: connect, TLS, service bind, base DN
  ldapproxy sync    --config FILE   run one sync of users and groups into the store, then exit
  ldapproxy status  --config FILE   show the last sync of each kind: start, end, result, counts, errors
  ldapproxy mapping preview --config FILE --dn DN
                                    show an upstream entry and what the property mappings make of it
  ldapproxy version                 print the version
  ldapproxy help [COMMAND]          show help

Every key of the configuration file is documented in examples/ldapproxy.yaml.
Run 'ldapproxy COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(rest, stdout, stderr)
	case "check":
		return check(rest, stdout, stderr)
	case "sync":
		return syncOnce(rest, stdout, stderr)
	case "status":
		return status(rest, stdout, stderr)
	case "mapping":
		if len(rest) == 0 || rest[0] != "preview" {
			fmt.Fprintf(stderr, "ldapproxy: mapping takes the subcommand preview\n\n%s", usage)
			return 2
		}
		return preview(rest[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "ldapproxy", buildVersion())
		return 0
	case "help", "-h", "--help", "-help":
		if len(rest) > 0 {
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ldapproxy: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// commandFlags builds a subcommand's flag set with a --config flag and a usage text.
func commandFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "ldapproxy.yaml", "configuration `file` (every key is documented in examples/ldapproxy.yaml)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ldapproxy %s --config FILE\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs, config
}

// loadConfig reads the configuration file, reporting a failure on stderr.
func loadConfig(path string, stderr io.Writer) (*app.Config, bool) {
	cfg, err := app.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy: %v\n", err)
		return nil, false
	}
	return cfg, true
}

func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return 2, false
	}
	return 0, true
}

func serve(args []string, _, stderr io.Writer) int {
	fs, config := commandFlags("serve", `Runs the proxy: the LDAP listeners (plain with StartTLS, and LDAPS) and the
HTTP endpoints /metrics, /healthz and /readyz. SIGTERM or SIGINT stops it
gracefully: no new connections, requests in flight finish, then it exits.
SIGHUP reloads the configuration file: log.level and the listen.tls files are
applied; other changed keys are logged as needing a restart.`, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	log, level := cfg.Log.NewReloadableLogger(os.Stderr)
	// SIGHUP reloads what can change safely (handled once serving). Caught from here on,
	// so that one sent during a slow start-up does not end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a, err := app.New(cfg, log, buildVersion())
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	a.SetLogLevel(level)
	if err := a.Start(); err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Reload logs the outcome itself; a file that does not load leaves the running
	// configuration as it was.
	go func() {
		for {
			select {
			case <-hup:
				a.Reload(*config)
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		return 1
	}
	return 0
}

func check(args []string, stdout, stderr io.Writer) int {
	fs, config := commandFlags("check", `Tests every upstream server in turn: TCP connect, TLS (when configured), the
service account's bind and a read of the base DN. Prints one line per server
and exits non-zero if any server fails.`, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	log := cfg.Log.NewLogger(os.Stderr)
	pool, err := upstream.New(cfg.Upstream, log, nil)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy: upstream: %v\n", err)
		return 1
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := 0
	for _, r := range pool.Check(ctx) {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", r.Server, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "ok   %s:", r.Server)
		for i, s := range r.Steps {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(stdout, "%s %s", sep, s)
		}
		fmt.Fprintln(stdout)
	}
	if failed > 0 {
		return 1
	}
	return 0
}
