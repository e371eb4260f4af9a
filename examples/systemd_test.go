package examples

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unitDirectives reads a systemd unit into section.key → values, in order.
func unitDirectives(t *testing.T, text string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", unitFile, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

// TestSystemdUnit checks the example unit as systemd reads it: `systemd-analyze verify`
// accepts it, its sandboxing leaves an exposure level of at most 2.0 ("OK") in
// `systemd-analyze security`, and it keeps the settings the README promises.
func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	d := unitDirectives(t, string(b))
	for key, want := range map[string]string{
		"Service.DynamicUser":            "yes",
		"Service.ProtectSystem":          "strict",
		"Service.StateDirectory":         "ldapproxy",
		"Service.NoNewPrivileges":        "yes",
		"Service.CapabilityBoundingSet":  "",
		"Service.ExecReload":             "/bin/kill -HUP $MAINPID",
		"Service.ConfigurationDirectory": "ldapproxy",
	} {
		if got := d[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s = %q, want %q", unitFile, key, got, want)
		}
	}
	exec := d["Service.ExecStart"]
	m := regexp.MustCompile(`^(/\S+) serve --config (/etc/ldapproxy/\S+)$`).FindStringSubmatch(strings.Join(exec, ""))
	if len(exec) != 1 || m == nil {
		t.Fatalf("%s: ExecStart = %q, want BINARY serve --config /etc/ldapproxy/FILE", unitFile, exec)
	}
	// verify wants the program to exist: check a copy that runs this test's binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "ldapproxy.service")
	text := strings.Replace(string(b), "ExecStart="+m[1]+" ", "ExecStart="+self+" ", 1)
	if err := os.WriteFile(copied, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, analyze, "verify", copied); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	if out, err := run(t, analyze, "security", "--offline=yes", "--threshold=20", copied); err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, lastLines(out, 3))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
