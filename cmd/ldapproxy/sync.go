package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/gcpolicy"
	dirsync "github.com/ldapproxy/ldapproxy/sync"
)

func syncOnce(args []string, stdout, stderr io.Writer) int {
	fs, config := commandFlags("sync --config FILE", `Runs one sync of users and groups from the upstream into the store and exits:
0 when it completed and was committed, 1 otherwise (the store then keeps its
previous state). It needs the store for itself: run it while no serve process
uses the same store.path.`, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := cfg.Log.NewLogger(os.Stderr)
	gcpolicy.Start(log)
	status, err := app.SyncOnce(ctx, cfg, log)
	printStatus(stdout, status)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy: %v\n", err)
		return 1
	}
	return 0
}

func status(args []string, stdout, stderr io.Writer) int {
	fs, config := commandFlags("status --config FILE", `Shows the last sync of each object kind recorded in the store: when it started
and ended, its result, the objects stored and skipped, what it created, updated
and deleted, and its first errors. Works while serve is running. Exits 1 when
the last sync of a kind failed or none was recorded.`, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	list, err := cache.ReadStatus(cfg.Store)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy: %v\n", err)
		return 1
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no sync recorded yet in", cfg.Store.Path)
		return 1
	}
	printStatus(stdout, list)
	for _, st := range list {
		if st.Result != cache.ResultSuccess {
			return 1
		}
	}
	return 0
}

func printStatus(w io.Writer, list []cache.Status) {
	for _, st := range list {
		ended := "-"
		if !st.Ended.IsZero() {
			ended = st.Ended.Local().Format(time.RFC3339) + " (" + st.Ended.Sub(st.Started).Round(time.Millisecond).String() + ")"
		}
		fmt.Fprintf(w, "%-6s %-7s started %s ended %s: %d objects, %d skipped, %d created, %d updated, %d deleted\n",
			st.Kind, st.Result, st.Started.Local().Format(time.RFC3339), ended, st.Objects, st.Skipped, st.Created, st.Updated, st.Deleted)
		if st.Mode != "" {
			fmt.Fprintf(w, "       mode: %s\n", st.Mode)
		}
		for _, e := range st.Errors {
			fmt.Fprintf(w, "       error: %s\n", e)
		}
	}
}

func preview(args []string, stdout, stderr io.Writer) int {
	fs, config := commandFlags("mapping preview --config FILE --dn DN", `Reads one entry from the upstream (as the service account) and prints it, then
what the property mappings make of it, as the next sync would: the identity
from uniqueness_field and every mapped field; for a group, the group as the
sync stores it and its members. Use it to see whether a value is a list
before choosing list_flatten. It reads the upstream only, never the store, so
it works while serve is running.`, stderr)
	dn := fs.String("dn", "", "the upstream `DN` of the entry to preview (required), e.g. uid=jdoe,ou=people,dc=example,dc=org")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *dn == "" {
		fmt.Fprintln(stderr, "ldapproxy: mapping preview needs --dn")
		fs.Usage()
		return 2
	}
	if parsed, err := ldap.ParseDN(*dn); err != nil || len(parsed.RDNs) == 0 {
		why := "it is empty"
		if err != nil {
			why = err.Error()
		}
		fmt.Fprintf(stderr, "ldapproxy: mapping preview: --dn %q is not a DN (%s): give the entry's full DN, such as uid=jdoe,ou=people,dc=example,dc=org\n", *dn, why)
		return 2
	}
	cfg, ok := loadConfig(*config, stderr)
	if !ok {
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := app.Preview(ctx, cfg, cfg.Log.NewLogger(os.Stderr), *dn)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy: %v\n", err)
		return 1
	}
	kind := p.Kind
	if kind == "" {
		kind = "neither (matches no object filter; mapped as a user)"
	}
	fmt.Fprintf(stdout, "dn: %s\nkind: %s\n\nupstream entry:\n", p.Entry.DN, kind)
	names := make([]string, 0, len(p.Entry.Attributes))
	for n := range p.Entry.Attributes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return strings.ToLower(names[i]) < strings.ToLower(names[j]) })
	for _, n := range names {
		for _, v := range p.Entry.Attributes[n] {
			if utf8.ValidString(v) && !strings.ContainsAny(v, "\x00\r\n") {
				fmt.Fprintf(stdout, "  %s: %s\n", n, v)
			} else {
				fmt.Fprintf(stdout, "  %s:: %s\n", n, base64.StdEncoding.EncodeToString([]byte(v)))
			}
		}
	}
	fmt.Fprintln(stdout, "\nidentity:")
	if p.IDErr != nil {
		fmt.Fprintf(stdout, "  error: %v\n", p.IDErr)
	} else {
		fmt.Fprintf(stdout, "  %s\n", p.ID)
	}
	fmt.Fprintln(stdout, "\nmappings applied:")
	for _, m := range p.Mappings {
		fmt.Fprintf(stdout, "  %-24s %-22s %s\n", m.Name, m.Field, m.Expression)
	}
	if p.Kind == cache.KindGroups {
		return printGroupPreview(stdout, p)
	}
	fmt.Fprintln(stdout, "\nmapped user:")
	if p.MapErr != nil {
		fmt.Fprintf(stdout, "  error: %v (a sync skips this object)\n", p.MapErr)
		return 1
	}
	out, _ := json.MarshalIndent(p.Object, "  ", "  ")
	fmt.Fprintf(stdout, "  %s\n", out)
	return 0
}

// maxPreviewMembers is how many of a group's members the preview lists.
const maxPreviewMembers = 20

// printGroupPreview prints a group's fields as the sync stores them, and its members.
func printGroupPreview(stdout io.Writer, p *dirsync.Preview) int {
	fmt.Fprintln(stdout, "\nmapped group:")
	if p.MapErr != nil {
		fmt.Fprintf(stdout, "  error: %v (a sync skips this object)\n", p.MapErr)
		return 1
	}
	// The group's fields; its parents come from the other groups, which a preview
	// does not read.
	out, _ := json.MarshalIndent(struct {
		ID, DN, Name string
		Attributes   map[string]any
	}{p.Group.ID, p.Group.DN, p.Group.Name, p.Group.Attributes}, "  ", "  ")
	fmt.Fprintf(stdout, "  %s\n", out)
	what := "members (" + p.MembershipField + ")"
	if p.MembershipField == "memberOf" {
		what = "member of (memberOf: membership_field reads memberships from the members)"
	}
	fmt.Fprintf(stdout, "\n%s: %d\n", what, len(p.Members))
	for i, m := range p.Members {
		if i == maxPreviewMembers {
			fmt.Fprintf(stdout, "  … and %d more\n", len(p.Members)-maxPreviewMembers)
			break
		}
		fmt.Fprintf(stdout, "  %s\n", m)
	}
	return 0
}
