package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/app"
	"github.com/ldapproxy/ldapproxy/internal/passhash"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndVersion(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, 2, "", "ldapproxy serve"},
		{[]string{"--help"}, 0, "ldapproxy check", ""},
		{[]string{"help", "serve"}, 0, "Usage: ldapproxy serve --config FILE", ""},
		{[]string{"serve", "--help"}, 0, "SIGTERM", ""},
		{[]string{"check", "-h"}, 0, "TCP connect", ""},
		{[]string{"version"}, 0, "ldapproxy ", ""},
		{[]string{"--version"}, 0, "ldapproxy ", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"serve", "--nope"}, 2, "", "flag provided but not defined"},
		{[]string{"serve", "extra"}, 2, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(tt.args...)
		if code != tt.code || !strings.Contains(out, tt.inStdout) || !strings.Contains(errOut, tt.inStderr) ||
			tt.code == 0 && errOut != "" || tt.code == 2 && out != "" {
			t.Errorf("ldapproxy %v: exit %d (want %d)\nstdout: %s\nstderr: %s", tt.args, code, tt.code, out, errOut)
		}
	}
}

// TestHelp: 'help X', 'X --help' and 'X -h' print the same usage of X on stdout and
// exit 0, for every command; 'help help' used to call itself until the stack overflowed,
// 'mapping --help' exited 2 and 'version --help' printed the version.
func TestHelp(t *testing.T) {
	for _, cmd := range [][]string{{"serve"}, {"check"}, {"sync"}, {"status"}, {"mapping"}, {"mapping", "preview"}, {"version"}, {"hash-password"}, {"help"}} {
		code, out, errOut := runCLI(append([]string{"help"}, cmd...)...)
		want := "Usage: ldapproxy " + strings.Join(cmd, " ")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, want) {
			t.Errorf("ldapproxy help %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(cmd, " "), code, out, errOut)
			continue
		}
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string(nil), cmd...), flag)
			if code, got, errOut := runCLI(args...); code != 0 || errOut != "" || got != out {
				t.Errorf("ldapproxy %s: exit %d, not what help %s prints\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, strings.Join(cmd, " "), got, errOut)
			}
		}
	}
	// Usage lines name every required argument.
	_, out, _ := runCLI("help", "mapping", "preview")
	if first, _, _ := strings.Cut(out, "\n"); first != "Usage: ldapproxy mapping preview --config FILE --dn DN" {
		t.Errorf("preview usage line = %q", first)
	}
	_, out, _ = runCLI("help", "mapping")
	if !strings.Contains(out, "--dn DN") || !strings.Contains(out, "preview") {
		t.Errorf("mapping usage lacks its subcommand:\n%s", out)
	}
	// Usage errors: stderr and exit 2.
	for _, args := range [][]string{{"help", "unknown"}, {"help", "mapping", "frob"}, {"help", "serve", "extra"}, {"help", "help", "help"},
		{"mapping"}, {"mapping", "frob"}, {"version", "extra"}} {
		code, out, errOut := runCLI(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "ldapproxy") {
			t.Errorf("ldapproxy %s: exit %d (want 2)\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if _, _, errOut := runCLI("help", "unknown"); !strings.Contains(errOut, `unknown command "unknown"`) {
		t.Errorf("help unknown: %s", errOut)
	}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ldapproxy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeRejectsBadConfig(t *testing.T) {
	path := writeConfig(t, "upstream:\n  urls: ldap://127.0.0.1:1\n  base_dn: dc=x\n  timout: 5s\n")
	code, _, errOut := runCLI("serve", "--config", path)
	if code != 1 || !strings.Contains(errOut, "upstream.timout") || !strings.Contains(errOut, `did you mean "timeout"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI("serve", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Fatalf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestCheck(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 2, Groups: 1, TLS: true})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "ldap://" + dead.Addr().String()
	dead.Close()

	config := func(urls, password string) string {
		return writeConfig(t, fmt.Sprintf(`upstream:
  urls: %q
  ca_file: %q
  bind_dn: %q
  bind_password: %q
  base_dn: %q
  timeout: 2s
log: {level: error}
`, urls, up.PKI.CAFile, up.ServiceDN, password, up.Suffix))
	}

	code, out, errOut := runCLI("check", "--config", config(up.URL+","+up.LDAPSURL, up.ServicePassword))
	if code != 0 {
		t.Fatalf("check of two good servers: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"ok   " + up.URL + ": connect ok", "service bind ok", "base DN readable", "ok   " + up.LDAPSURL, "tls ok (TLS 1.3, verified)"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCLI("check", "--config", config(deadURL+","+up.URL, up.ServicePassword))
	if code != 1 || !strings.Contains(out, "FAIL "+deadURL) || !strings.Contains(out, "connection refused") || !strings.Contains(out, "ok   "+up.URL) {
		t.Fatalf("check with a dead server: exit %d\n%s", code, out)
	}

	code, out, _ = runCLI("check", "--config", config(up.URL, "not-the-password"))
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out, "invalid credentials") || strings.Contains(out, "not-the-password") {
		t.Fatalf("check with a wrong service password: exit %d\n%s", code, out)
	}
}

func TestSyncStatusAndPreview(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 12, Groups: 3})
	store := filepath.Join(t.TempDir(), "store")
	cfg := writeConfig(t, fmt.Sprintf(`upstream:
  urls: %q
  bind_dn: %q
  bind_password: %q
  base_dn: %q
store:
  path: %q
sync:
  mappings:
    users:
      - name: phone
        field: attributes.phone
        expression: ldap.telephoneNumber
log: {level: error}
`, up.URL, up.ServiceDN, up.ServicePassword, up.Suffix, store))

	code, out, _ := runCLI("status", "--config", cfg)
	if code != 1 || !strings.Contains(out, "no sync recorded") {
		t.Fatalf("status before any sync: exit %d\n%s", code, out)
	}
	code, out, errOut := runCLI("sync", "--config", cfg)
	if code != 0 || !strings.Contains(out, "users  success") || !strings.Contains(out, "12 objects") || !strings.Contains(out, "12 created") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI("status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "users  success") || !strings.Contains(out, "groups success") || !strings.Contains(out, "3 objects") {
		t.Fatalf("status after a sync: exit %d\n%s", code, out)
	}
	// Nothing changed upstream: the second sync writes nothing.
	code, out, _ = runCLI("sync", "--config", cfg)
	if code != 0 || !strings.Contains(out, "0 created, 0 updated, 0 deleted") {
		t.Fatalf("second sync: exit %d\n%s", code, out)
	}

	code, out, errOut = runCLI("mapping", "preview", "--config", cfg, "--dn", up.UserDN(4))
	if code != 0 {
		t.Fatalf("preview: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"kind: users", "  uid: user0004", "  mail: user0004@example.org", "entryUUID", "openldap-username",
		`"Username": "user0004"`, `"Email": "user0004@example.org"`, `"IsActive": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("preview lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI("mapping", "preview", "--config", cfg, "--dn", up.GroupDN(2))
	if code != 0 || !strings.Contains(out, "kind: groups") || !strings.Contains(out, `"Name": "group002"`) {
		t.Fatalf("group preview: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI("mapping", "preview", "--config", cfg); code != 2 || !strings.Contains(errOut, "--dn") {
		t.Fatalf("preview without --dn: exit %d %s", code, errOut)
	}
	// A failing sync exits 1 and the status says why; the store keeps its state.
	bad := strings.Replace(mustRead(t, cfg), "sync:\n", "sync:\n  user_dn: ou=missing\n", 1)
	badCfg := writeConfig(t, bad)
	code, out, _ = runCLI("sync", "--config", badCfg)
	if code != 1 || !strings.Contains(out, "users  failed") || !strings.Contains(out, "error:") {
		t.Fatalf("failing sync: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI("status", "--config", badCfg); code != 1 {
		t.Fatal("status after a failed sync should exit 1")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPreview: mapping preview reads the upstream only, so it works while serve holds
// the store (Badger allows one process per store); it refuses a --dn that is not a DN
// before connecting; for a group it shows the group's fields and members, not a user's.
func TestPreview(t *testing.T) {
	up := slapdtest.New(t, slapdtest.Options{Users: 4, Groups: 2})
	cfgPath := writeConfig(t, fmt.Sprintf(`upstream:
  urls: %q
  bind_dn: %q
  bind_password: %q
  base_dn: %q
store:
  path: %q
log: {level: error}
`, up.URL, up.ServiceDN, up.ServicePassword, up.Suffix, filepath.Join(t.TempDir(), "store")))
	cfg, err := app.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Hold the store as serve does.
	store, err := cache.Open(cfg.Store, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if code, _, errOut := runCLI("sync", "--config", cfgPath); code != 1 || !strings.Contains(errOut, "store") {
		t.Fatalf("sync while the store is held: exit %d, stderr %s (the test no longer holds the store)", code, errOut)
	}

	code, out, errOut := runCLI("mapping", "preview", "--config", cfgPath, "--dn", up.UserDN(2))
	if code != 0 || !strings.Contains(out, "kind: users") || !strings.Contains(out, "mapped user:") || !strings.Contains(out, `"Username": "user0002"`) {
		t.Fatalf("preview of a user while the store is held: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCLI("mapping", "preview", "--config", cfgPath, "--dn", up.GroupDN(2))
	if code != 0 {
		t.Fatalf("preview of a group: exit %d\n%s%s", code, out, errOut)
	}
	_, mapped, _ := strings.Cut(out, "mapped group:")
	for _, want := range []string{`"ID": "`, `"DN": "` + up.GroupDN(2) + `"`, `"Name": "group002"`, "members (member): ", up.UserDN(2)} {
		if !strings.Contains(mapped, want) {
			t.Errorf("group preview lacks %q after 'mapped group:':\n%s", want, out)
		}
	}
	for _, unwanted := range []string{`"Username"`, `"Email"`, `"IsActive"`, "mapped user:"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("group preview shows the user field %s:\n%s", unwanted, out)
		}
	}

	for _, dn := range []string{"user0002", "jdoe@example.org", "dc=example,dc=org,", "  "} {
		code, out, errOut := runCLI("mapping", "preview", "--config", cfgPath, "--dn", dn)
		if code != 2 || out != "" || !strings.Contains(errOut, "is not a DN") {
			t.Errorf("preview --dn %q: exit %d (want 2)\nstdout: %s\nstderr: %s", dn, code, out, errOut)
		}
	}
}

func TestHashPassword(t *testing.T) {
	defer func(r io.Reader) { stdin = r }(stdin)
	for _, input := range []string{"s3cret\n", "s3cret", "s3cret\r\nsecond line\n"} {
		stdin = strings.NewReader(input)
		var out, errOut bytes.Buffer
		if code := run([]string{"hash-password"}, &out, &errOut); code != 0 {
			t.Fatalf("%q: exit %d: %s", input, code, errOut.String())
		}
		h, err := passhash.Parse(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("%q: output %q: %v", input, out.String(), err)
		}
		if !h.Verify([]byte("s3cret")) || h.Verify([]byte("s3cret\n")) {
			t.Errorf("%q: the hash does not verify the password alone", input)
		}
		if strings.Contains(out.String()+errOut.String(), "s3cret") {
			t.Errorf("%q: the password is printed", input)
		}
	}
	for _, input := range []string{"", "\n", strings.Repeat("x", 5000)} {
		stdin = strings.NewReader(input)
		var out, errOut bytes.Buffer
		if code := run([]string{"hash-password"}, &out, &errOut); code != 1 || out.Len() != 0 {
			t.Errorf("input of %d bytes: exit %d, output %q", len(input), code, out.String())
		}
	}
}
