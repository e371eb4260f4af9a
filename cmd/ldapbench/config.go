package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Benchmark modes accepted by -mode.
const (
	modeBind   = "bind"
	modeSearch = "search"
	modeLogin  = "login"
)

// target is one named LDAP endpoint under test.
type target struct {
	Name string
	URL  *url.URL
}

// targetList implements flag.Value for -targets. Each Set call appends, so
// both "-targets a,b" and "-targets a -targets b" work.
type targetList []target

// String returns the targets in the same syntax Set accepts.
func (l *targetList) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, len(*l))
	for i, t := range *l {
		if t.Name == t.URL.String() {
			parts[i] = t.Name
		} else {
			parts[i] = t.Name + "=" + t.URL.String()
		}
	}
	return strings.Join(parts, ",")
}

// Set parses a comma-separated list of targets and appends them.
func (l *targetList) Set(s string) error {
	ts, err := parseTargets(s)
	if err != nil {
		return err
	}
	for _, t := range ts {
		for _, have := range *l {
			if have.Name == t.Name {
				return fmt.Errorf("duplicate target name %q", t.Name)
			}
		}
		*l = append(*l, t)
	}
	return nil
}

// parseTargets parses "name=URL,name=URL,URL". An element without a name
// (no "=" before "://") is named by its URL. A URL without a scheme is
// taken as ldap://host:port. Only ldap:// and ldaps:// are accepted.
func parseTargets(s string) ([]target, error) {
	var out []target
	seen := map[string]bool{}
	for _, elem := range strings.Split(s, ",") {
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return nil, fmt.Errorf("empty target in %q", s)
		}
		name, raw := "", elem
		eq, scheme := strings.Index(elem, "="), strings.Index(elem, "://")
		if eq >= 0 && (scheme < 0 || eq < scheme) {
			name, raw = strings.TrimSpace(elem[:eq]), strings.TrimSpace(elem[eq+1:])
			if name == "" {
				return nil, fmt.Errorf("target %q: empty name", elem)
			}
		}
		if raw == "" {
			return nil, fmt.Errorf("target %q: empty URL", elem)
		}
		if !strings.Contains(raw, "://") {
			raw = "ldap://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("target %q: %v", elem, err)
		}
		u.Scheme = strings.ToLower(u.Scheme)
		if u.Scheme != "ldap" && u.Scheme != "ldaps" {
			return nil, fmt.Errorf("target %q: unsupported scheme %q (want ldap or ldaps)", elem, u.Scheme)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("target %q: missing host", elem)
		}
		if name == "" {
			name = u.String()
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate target name %q", name)
		}
		seen[name] = true
		out = append(out, target{Name: name, URL: u})
	}
	return out, nil
}

// pidMap implements flag.Value for -server-pids: NAME=PID[+PID...],...
type pidMap map[string][]int

func (m pidMap) String() string {
	var parts []string
	for name, pids := range m {
		ps := make([]string, len(pids))
		for i, p := range pids {
			ps[i] = strconv.Itoa(p)
		}
		parts = append(parts, name+"="+strings.Join(ps, "+"))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (m pidMap) Set(s string) error {
	for _, elem := range strings.Split(s, ",") {
		name, list, ok := strings.Cut(strings.TrimSpace(elem), "=")
		if !ok || name == "" || list == "" {
			return fmt.Errorf("%q: want NAME=PID[+PID...]", elem)
		}
		if _, dup := m[name]; dup {
			return fmt.Errorf("%q: target %s given twice", elem, name)
		}
		for _, p := range strings.Split(list, "+") {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 0 {
				return fmt.Errorf("%q: %q is not a process ID", elem, p)
			}
			m[name] = append(m[name], pid)
		}
	}
	return nil
}

// config is the fully parsed and validated command line.
type config struct {
	Targets        targetList
	Mode           string
	Client         string
	Users          int
	UserFormat     string
	UserDNFormat   string
	PasswordFormat string
	BindDN         string
	BindPassword   string
	Base           string
	GroupBase      string
	Filter         string
	GroupFilter    string
	Attrs          []string
	ExpectEntries  bool
	Concurrency    int
	Duration       time.Duration
	Warmup         time.Duration
	Rounds         int
	Timeout        time.Duration
	CAFile         string
	Insecure       bool
	JSON           bool
	Seed           uint64
	CPUProfile     string
	ServerPIDs     pidMap // target name → the processes that serve it
}

const usageHeader = `ldapbench - end-to-end LDAP load generator for comparing servers side by side.

Usage:
  ldapbench -targets NAME=URL[,NAME=URL...] [flags]

Every round runs each target in turn for -warmup (not measured) plus -d
(measured), with -c workers each holding one connection. The target order
alternates between rounds (A,B then B,A ...) so that machine noise hits all
targets alike. The summary reports medians over rounds and, with two or more
targets, each target's median ops/s divided by the LAST target's.

ldapbench shares the CPU with the servers it loads, which pulls every ratio
towards 1. Each result gives its own CPU time per operation (client cpu/op)
and, with -server-pids, the servers' (server cpu/op) and each target's
operations per server CPU second divided by the LAST target's: the ratio
with the load generator's share taken out.

Modes:
  bind    each op is a simple bind as a random user
  search  bind once as -bind-dn (anonymous if empty), each op searches -base
          for a random user with -filter
  login   each op is an application login: bind as service, search the user,
          bind as the user's DN, bind back as service, search the user's groups

Examples:
  # proxy vs slapd, application login flow, 3 alternating rounds
  ldapbench -targets proxy=ldap://127.0.0.1:3389,slapd=ldap://127.0.0.1:1389 \
      -mode login -bind-dn cn=service,dc=example,dc=org -bind-password secret

  # plain bind throughput of one server, 8 connections, JSON output
  ldapbench -targets ldap://127.0.0.1:1389 -mode bind -c 8 -d 5s -json

  # search over ldaps with a private CA
  ldapbench -targets proxy=ldaps://127.0.0.1:3636 -ca ca.pem -mode search

  # the servers' CPU per search too: the proxy's process and the slapd it
  # forwards to, against slapd alone
  ldapbench -targets proxy=ldap://127.0.0.1:3389,slapd=ldap://127.0.0.1:1389 \
      -mode search -server-pids proxy=$PROXY_PID+$SLAPD_PID,slapd=$SLAPD_PID

Flags:
`

// errReported is returned by parseFlags for errors already printed.
var errReported = errors.New("invalid command line")

// parseFlags parses and validates the command line. The returned error is
// flag.ErrHelp when -h was given, and errReported for syntax errors, which
// the flag package has already written to errOut with the usage text.
func parseFlags(args []string, errOut io.Writer) (*config, error) {
	cfg := &config{ServerPIDs: pidMap{}}
	fs := flag.NewFlagSet("ldapbench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHeader)
		fs.PrintDefaults()
	}
	var attrs string
	fs.Var(&cfg.Targets, "targets", "comma-separated `list` of targets, each NAME=URL or a bare URL (named by the URL); ldap:// or ldaps://")
	fs.StringVar(&cfg.Mode, "mode", modeBind, "benchmark `mode`: bind, search or login")
	fs.StringVar(&cfg.Client, "client", clientWire, "LDAP client `kind`: wire (a lean client on each worker's goroutine, so that the load\ngenerator takes little of the CPU it shares with the servers) or go-ldap (go-ldap/ldap/v3,\nas applications built on it talk; it takes two to four times the wire client's CPU per operation)")
	fs.IntVar(&cfg.Users, "users", 10000, "number of users; user names are -user-format applied to 1..N")
	fs.StringVar(&cfg.UserFormat, "user-format", "user%04d", "fmt `template` turning a user number into a user name")
	fs.StringVar(&cfg.UserDNFormat, "user-dn-format", "uid=%s,ou=people,dc=example,dc=org", "fmt `template` turning a user name into the user's DN (bind mode; login mode binds as the DN the search returns)")
	fs.StringVar(&cfg.PasswordFormat, "password-format", "pass-%s", "fmt `template` turning a user name into the user's password")
	fs.StringVar(&cfg.BindDN, "bind-dn", "", "service account `DN` for search and login modes (empty: anonymous)")
	fs.StringVar(&cfg.BindPassword, "bind-password", "", "service account `password`")
	fs.StringVar(&cfg.Base, "base", "dc=example,dc=org", "search base `DN` for user searches (subtree)")
	fs.StringVar(&cfg.GroupBase, "group-base", "", "search base `DN` for group searches in login mode (default: -base)")
	fs.StringVar(&cfg.Filter, "filter", "(uid=%s)", "user search filter `template`; %s is the filter-escaped user name")
	fs.StringVar(&cfg.GroupFilter, "group-filter", "(&(objectClass=groupOfNames)(member=%s))", "group search filter `template` in login mode; %s is the filter-escaped user DN")
	fs.StringVar(&attrs, "attrs", "", "comma-separated `attributes` requested by user searches (default: all user attributes)")
	fs.BoolVar(&cfg.ExpectEntries, "expect-entries", true, "search mode: count a search that returns no entry as an error")
	fs.IntVar(&cfg.Concurrency, "c", 16, "concurrency: number of workers, each with its own connection")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "measured `duration` per round and target")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warm-up `duration` before each measurement")
	fs.IntVar(&cfg.Rounds, "rounds", 3, "number of rounds; target order alternates between rounds")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "dial timeout, and an operation running longer than this drops its connection")
	fs.StringVar(&cfg.CAFile, "ca", "", "PEM `file` with CA certificates for ldaps:// targets")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "do not verify ldaps:// server certificates")
	fs.BoolVar(&cfg.JSON, "json", false, "print machine-readable JSON results on stdout (progress goes to stderr)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of ldapbench itself to `file` (to check the load generator is not the bottleneck)")
	fs.Var(cfg.ServerPIDs, "server-pids", "comma-separated `list` of NAME=PID[+PID...]: local processes whose CPU time (Linux's /proc)\nis reported per operation of target NAME, e.g. proxy=$PROXY+$SLAPD,slapd=$SLAPD for a proxy in front of slapd")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed for the user sequence (0: random)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errReported // the flag package already printed it
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.Attrs = splitList(attrs)
	if cfg.GroupBase == "" {
		cfg.GroupBase = cfg.Base
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// splitList splits a comma-separated list, dropping empty elements.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validate checks the flag combination and the templates.
func (c *config) validate() error {
	var errs []error
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("-targets is required"))
	}
	switch c.Mode {
	case modeBind, modeSearch, modeLogin:
	default:
		errs = append(errs, fmt.Errorf("-mode %q: want bind, search or login", c.Mode))
	}
	for name, pids := range c.ServerPIDs {
		if !slices.ContainsFunc(c.Targets, func(t target) bool { return t.Name == name }) {
			errs = append(errs, fmt.Errorf("-server-pids: no target named %q", name))
			continue
		}
		for _, pid := range pids {
			if _, err := serverCPU(pid); err != nil {
				errs = append(errs, fmt.Errorf("-server-pids %s: process %d: %v", name, pid, err))
			}
		}
	}
	if c.Client != clientWire && c.Client != clientGoLDAP {
		errs = append(errs, fmt.Errorf("-client %q: want wire or go-ldap", c.Client))
	}
	if c.Users < 1 {
		errs = append(errs, errors.New("-users must be at least 1"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("-c must be at least 1"))
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("-d must be positive"))
	}
	if c.Warmup < 0 {
		errs = append(errs, errors.New("-warmup must not be negative"))
	}
	if c.Rounds < 1 {
		errs = append(errs, errors.New("-rounds must be at least 1"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("-timeout must be positive"))
	}
	if c.BindDN != "" && c.BindPassword == "" {
		errs = append(errs, errors.New("-bind-dn needs -bind-password (an empty password is an unauthenticated bind)"))
	}
	check := func(flagName, format string, arg any) string {
		s := fmt.Sprintf(format, arg)
		if strings.Contains(s, "%!") {
			errs = append(errs, fmt.Errorf("-%s %q: bad template for %T argument (got %q)", flagName, format, arg, s))
		}
		return s
	}
	name := check("user-format", c.UserFormat, 1)
	check("password-format", c.PasswordFormat, name)
	check("user-dn-format", c.UserDNFormat, name)
	if c.Mode != modeBind {
		if f := check("filter", c.Filter, ldap.EscapeFilter(name)); !strings.Contains(f, "%!") {
			if _, err := ldap.CompileFilter(f); err != nil {
				errs = append(errs, fmt.Errorf("-filter %q: %v", c.Filter, err))
			}
		}
	}
	if c.Mode == modeLogin {
		dn := ldap.EscapeFilter(fmt.Sprintf(c.UserDNFormat, name))
		if f := check("group-filter", c.GroupFilter, dn); !strings.Contains(f, "%!") {
			if _, err := ldap.CompileFilter(f); err != nil {
				errs = append(errs, fmt.Errorf("-group-filter %q: %v", c.GroupFilter, err))
			}
		}
	}
	return errors.Join(errs...)
}
