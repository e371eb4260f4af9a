package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

func TestParseTargets(t *testing.T) {
	type nameURL struct{ name, url string }
	tests := []struct {
		in      string
		want    []nameURL
		wantErr string
	}{
		{in: "proxy=ldap://127.0.0.1:3389,slapd=ldap://127.0.0.1:1389",
			want: []nameURL{{"proxy", "ldap://127.0.0.1:3389"}, {"slapd", "ldap://127.0.0.1:1389"}}},
		{in: "ldap://127.0.0.1:1389",
			want: []nameURL{{"ldap://127.0.0.1:1389", "ldap://127.0.0.1:1389"}}},
		{in: " a = ldaps://localhost:636 , ldap://[::1]:389 ",
			want: []nameURL{{"a", "ldaps://localhost:636"}, {"ldap://[::1]:389", "ldap://[::1]:389"}}},
		{in: "proxy=127.0.0.1:3389",
			want: []nameURL{{"proxy", "ldap://127.0.0.1:3389"}}},
		{in: "127.0.0.1:3389",
			want: []nameURL{{"ldap://127.0.0.1:3389", "ldap://127.0.0.1:3389"}}},
		{in: "LDAP://host",
			want: []nameURL{{"ldap://host", "ldap://host"}}},
		// "=" after "://" belongs to the URL, not a name.
		{in: "ldap://host/dc=org",
			want: []nameURL{{"ldap://host/dc=org", "ldap://host/dc=org"}}},
		{in: "", wantErr: "empty target"},
		{in: "a=ldap://h,", wantErr: "empty target"},
		{in: "=ldap://h", wantErr: "empty name"},
		{in: "a=", wantErr: "empty URL"},
		{in: "a=http://h", wantErr: "unsupported scheme"},
		{in: "a=ldapi:///var/run/slapd/ldapi", wantErr: "unsupported scheme"},
		{in: "a=ldap://h:x", wantErr: "invalid port"},
		{in: "a=ldap://", wantErr: "missing host"},
		{in: "a=ldap://h1,a=ldap://h2", wantErr: "duplicate target name"},
		{in: "ldap://h,ldap://h", wantErr: "duplicate target name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTargets(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTargets(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTargets(%q): %v", tt.in, err)
			}
			var gotNU []nameURL
			for _, g := range got {
				gotNU = append(gotNU, nameURL{g.Name, g.URL.String()})
			}
			if !slices.Equal(gotNU, tt.want) {
				t.Errorf("parseTargets(%q) = %v, want %v", tt.in, gotNU, tt.want)
			}
		})
	}
}

func TestTargetsFlagRepeats(t *testing.T) {
	cfg, err := parseFlags([]string{"-targets", "a=ldap://h1", "-targets", "b=ldap://h2,ldap://h3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Targets.String(), "a=ldap://h1,b=ldap://h2,ldap://h3"; got != want {
		t.Errorf("targets = %q, want %q", got, want)
	}
	_, err = parseFlags([]string{"-targets", "a=ldap://h1", "-targets", "a=ldap://h2"}, io.Discard)
	if !errors.Is(err, errReported) {
		t.Errorf("duplicate name across -targets flags: err = %v, want errReported", err)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	cfg, err := parseFlags([]string{"-targets", "ldap://127.0.0.1:1389", "-base", "o=x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != modeBind || cfg.Users != 10000 || cfg.Concurrency != 16 || cfg.Rounds != 3 ||
		cfg.Duration != 10*time.Second || cfg.Warmup != 2*time.Second || !cfg.ExpectEntries ||
		cfg.GroupBase != "o=x" || cfg.Attrs != nil {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"-targets", "h:1", "-attrs", "cn, mail,,uid", "-group-base", "ou=g"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Attrs, []string{"cn", "mail", "uid"}) || cfg.GroupBase != "ou=g" {
		t.Errorf("attrs = %q, group base = %q", cfg.Attrs, cfg.GroupBase)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{}, "-targets is required"},
		{[]string{"-targets", "h:1", "-mode", "modify"}, "-mode"},
		{[]string{"-targets", "h:1", "-c", "0"}, "-c must be"},
		{[]string{"-targets", "h:1", "-rounds", "0"}, "-rounds must be"},
		{[]string{"-targets", "h:1", "-d", "0s"}, "-d must be"},
		{[]string{"-targets", "h:1", "-users", "0"}, "-users must be"},
		{[]string{"-targets", "h:1", "-bind-dn", "cn=svc"}, "-bind-password"},
		{[]string{"-targets", "h:1", "-user-format", "user%s"}, "-user-format"},
		{[]string{"-targets", "h:1", "-password-format", "pw-%d"}, "-password-format"},
		{[]string{"-targets", "h:1", "-mode", "search", "-filter", "(uid=%s"}, "-filter"},
		{[]string{"-targets", "h:1", "-mode", "login", "-group-filter", "member=%s"}, "-group-filter"},
		{[]string{"-targets", "h:1", "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if _, err := parseFlags([]string{"-nosuch"}, io.Discard); !errors.Is(err, errReported) {
		t.Errorf("-nosuch: err = %v, want errReported", err)
	}
}

func TestUserSet(t *testing.T) {
	cfg, err := parseFlags([]string{"-targets", "h:1", "-users", "12", "-mode", "login"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := newUserSet(cfg)
	want := user{
		Name:        "user0012",
		DN:          "uid=user0012,ou=people,dc=example,dc=org",
		Password:    "pass-user0012",
		Filter:      "(uid=user0012)",
		GroupFilter: "(&(objectClass=groupOfNames)(member=uid=user0012,ou=people,dc=example,dc=org))",
		// equalityMatch [3] { "uid", "user0012" }
		FilterBER: []byte("\xa3\x0f\x04\x03uid\x04\x08user0012"),
	}
	if got := s.get(12); got.GroupFilterBER == nil {
		t.Errorf("get(12): no encoded group filter in login mode")
	} else if f, err := ldap.DecompileFilter(ber.DecodePacket(got.GroupFilterBER)); err != nil || f != want.GroupFilter {
		t.Errorf("get(12): encoded group filter decodes to %q, %v; want %q", f, err, want.GroupFilter)
	}
	for name, got := range map[string]user{"get(12)": s.get(12), "format(12)": s.format(12)} {
		got.GroupFilterBER = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	// Filter values are escaped.
	cfg.UserFormat = "a*(%d)"
	if got, want := newUserSet(cfg).get(1).Filter, `(uid=a\2a\281\29)`; got != want {
		t.Errorf("escaped filter = %q, want %q", got, want)
	}
}

func TestServerPIDsFlag(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	cfg, err := parseFlags([]string{"-targets", "proxy=h:1,slapd=h:2", "-server-pids", "proxy=" + self + "+" + self + ",slapd=" + self}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.ServerPIDs.String(), "proxy="+self+"+"+self+",slapd="+self; got != want {
		t.Errorf("-server-pids = %q, want %q", got, want)
	}
	for _, bad := range []string{"proxy", "proxy=", "=1", "proxy=x", "proxy=0", "proxy=1+-2", "proxy=1,proxy=2"} {
		if _, err := parseFlags([]string{"-targets", "proxy=h:1", "-server-pids", bad}, io.Discard); err == nil {
			t.Errorf("-server-pids %q accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"-targets", "proxy=h:1", "-server-pids", "other=" + self}, io.Discard); err == nil || !strings.Contains(err.Error(), `no target named "other"`) {
		t.Errorf("unknown target: %v", err)
	}
	if runtime.GOOS == "linux" {
		// A process ID that cannot be read (above the kernel's pid_max).
		if _, err := parseFlags([]string{"-targets", "proxy=h:1", "-server-pids", "proxy=2147483647"}, io.Discard); err == nil {
			t.Error("-server-pids with no such process accepted")
		}
	}
}

func TestServerCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, err := serverCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until getrusage has counted 200 ms more (a busy machine gives
	// this process less than the wall clock's time).
	c0, _ := processCPU()
	c1 := c0
	for deadline := time.Now().Add(20 * time.Second); c1-c0 < 200*time.Millisecond && time.Now().Before(deadline); {
		c1, _ = processCPU()
	}
	after, err := serverCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in 10 ms ticks; getrusage is finer. Both saw the loop.
	if d, want := after-before, c1-c0; d < want-50*time.Millisecond || d > want+50*time.Millisecond {
		t.Errorf("serverCPU moved by %v over a busy loop; getrusage by %v", d, want)
	}
}

// TestGroupFilterOfReturnedDN checks the group filter login mode sends for a
// DN a server returned with escapes, parentheses, an asterisk and non-ASCII
// letters: the member assertion holds the DN's bytes as returned.
func TestGroupFilterOfReturnedDN(t *testing.T) {
	cfg := mustConfig(t, "-targets", "h:1", "-mode", "login")
	dn := `uid=J\C3\BCrgen\2C (Jr.)*,ou=people,dc=example,dc=org`
	for _, d := range []string{dn, "uid=jürgen,ou=people,dc=example,dc=org"} {
		p := ber.DecodePacket(encodeFilter(newUserSet(cfg).groupFilter(d)))
		// (&(objectClass=groupOfNames)(member=DN))
		if len(p.Children) != 2 || len(p.Children[1].Children) != 2 {
			t.Fatalf("group filter for %q: %v", d, p)
		}
		if got := p.Children[1].Children[1].Data.String(); got != d {
			t.Errorf("member assertion %q, want the DN %q", got, d)
		}
	}
}
