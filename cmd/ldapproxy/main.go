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
	"strings"
	"syscall"
	"time"

	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/gcpolicy"
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
  ldapproxy hash-password           read a password on standard input, print its argon2id hash
  ldapproxy version                 print the version
  ldapproxy help [COMMAND]          show help

Every key of the configuration file is documented in examples/ldapproxy.yaml.
Run 'ldapproxy help COMMAND' or 'ldapproxy COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commandFunc runs one command with its arguments. Help that was asked for goes to
// stdout with exit code 0; a usage error goes to stderr with exit code 2.
type commandFunc func(args []string, stdout, stderr io.Writer) int

// command returns the command called name, or nil.
func command(name string) commandFunc {
	switch name {
	case "serve":
		return serve
	case "check":
		return check
	case "sync":
		return syncOnce
	case "status":
		return status
	case "mapping":
		return mapping
	case "version":
		return versionCmd
	case "hash-password":
		return hashPassword
	case "help":
		return help
	}
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		name = "help"
	case "--version", "-version":
		name = "version"
	}
	cmd := command(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "ldapproxy: unknown command %q\n\n%s", name, usage)
		return 2
	}
	return cmd(rest, stdout, stderr)
}

// isHelpFlag reports whether arg asks for help the way the flag package understands it.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "--h"
}

const helpUsage = `Usage: ldapproxy help [COMMAND [SUBCOMMAND]]

Shows the list of commands, or a command's description and flags: 'ldapproxy help
COMMAND' prints what 'ldapproxy COMMAND --help' prints.
`

// help prints the usage, or a command's, on stdout. It asks the command for its help
// (as --help does), which every command answers without running; for help itself that
// is the -h case below, so help never calls itself more than once.
func help(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage)
		return 0
	case isHelpFlag(args[0]):
		fmt.Fprint(stdout, helpUsage)
		return 0
	case len(args) == 1 && command(args[0]) != nil:
		return command(args[0])([]string{"--help"}, stdout, stderr)
	case len(args) == 2 && args[0] == "mapping":
		// mapping reports a subcommand it does not know.
		return mapping([]string{args[1], "--help"}, stdout, stderr)
	}
	fmt.Fprintf(stderr, "ldapproxy: help: unknown command %q\n\n%s", strings.Join(args, " "), usage)
	return 2
}

const mappingUsage = `Usage: ldapproxy mapping preview --config FILE --dn DN

Commands about the property mappings (sync.mappings):
  preview   show an upstream entry and what the property mappings make of it

Run 'ldapproxy help mapping preview' for its flags.
`

// mapping dispatches to its subcommand.
func mapping(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprintf(stderr, "ldapproxy: mapping takes the subcommand preview\n\n%s", mappingUsage)
		return 2
	case isHelpFlag(args[0]):
		fmt.Fprint(stdout, mappingUsage)
		return 0
	case args[0] == "preview":
		return preview(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "ldapproxy: unknown mapping subcommand %q\n\n%s", args[0], mappingUsage)
	return 2
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "Prints the version of this build.", stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fmt.Fprintln(stdout, "ldapproxy", buildVersion())
	return 0
}

// newFlags builds a command's flag set. line is its usage line after "ldapproxy "
// (the command and its arguments), synopsis what it does.
func newFlags(line, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(line, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ldapproxy %s\n\n%s\n", line, synopsis)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// commandFlags builds the flag set of a command whose usage line is line (after
// "ldapproxy "), with a --config flag.
func commandFlags(line, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlags(line, synopsis, stderr)
	config := fs.String("config", "ldapproxy.yaml", "configuration `file` (every key is documented in examples/ldapproxy.yaml)")
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

// parseFlags parses a command's arguments. It reports false when the command is not to
// run, with the exit code: 0 after the help that -h or --help asked for (on stdout), 2
// after a usage error (on stderr, with the usage).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, on the stream that fits
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		stderr := fs.Output()
		fs.SetOutput(stdout)
		fs.Usage()
		fs.SetOutput(stderr)
		return 0, false
	case err != nil:
		// The flag package has said what is wrong.
		fs.Usage()
		return 2, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return 2, false
	}
	return 0, true
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs, config := commandFlags("serve --config FILE", `Runs the proxy: the LDAP listeners (plain with StartTLS, and LDAPS) and the
HTTP endpoints /metrics, /healthz and /readyz. SIGTERM or SIGINT stops it
gracefully: no new connections, requests in flight finish, then it exits.
SIGHUP reloads the configuration file: log.level and the listen.tls files are
applied; other changed keys are logged as needing a restart.`, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	log, level := cfg.Log.NewReloadableLogger(os.Stderr)
	gcpolicy.Start(log)
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
	fs, config := commandFlags("check --config FILE", `Tests every upstream server in turn: TCP connect, TLS (when configured), the
service account's bind and a read of the base DN. Prints one line per server
and exits non-zero if any server fails.`, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
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
