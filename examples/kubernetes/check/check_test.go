package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	examplePath    = "../../kubernetes-sidecar.yaml"
	dockerfilePath = "../../../Dockerfile"
	repoRoot       = "../../.."
)

func readExample(t *testing.T) (yamlText, dockerfile []byte) {
	t.Helper()
	y, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	return y, d
}

// problems parses and checks a manifest, returning every problem as text.
func problems(yamlText, dockerfile []byte) []string {
	var out []string
	m, err := Parse(yamlText)
	if err != nil {
		out = append(out, strings.Split(err.Error(), "\n")...)
	}
	if m == nil {
		return out
	}
	for _, e := range m.Check(Options{Proxy: "ldapproxy", ImageUser: ImageUser(dockerfile)}) {
		out = append(out, e.Error())
	}
	return out
}

func TestExample(t *testing.T) {
	y, d := readExample(t)
	for _, p := range problems(y, d) {
		t.Error(p)
	}
	m, err := Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Deployments) != 1 || len(m.ConfigMaps) != 1 {
		t.Errorf("want one Deployment and one ConfigMap, got %d and %d", len(m.Deployments), len(m.ConfigMaps))
	}
	if u := ImageUser(d); u != "65532:65532" {
		t.Errorf("Dockerfile USER = %q, want 65532:65532 (distroless nonroot, numeric for runAsNonRoot)", u)
	}
}

// TestCatches breaks the example in one place at a time: each break must be reported.
func TestCatches(t *testing.T) {
	y, d := readExample(t)
	for _, tc := range []struct {
		name     string
		old, new string
		want     string
	}{
		{"no seccomp profile", "        seccompProfile: {type: RuntimeDefault}\n", "", `seccompProfile`},
		{"misspelt field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", `unknown field "spec.template.spec.containers[1].securityContext.readOnlyRootFileSystem"`},
		{"field in the wrong place", "        runAsNonRoot: true\n", "        runAsNonRoot: true\n        readOnlyRootFilesystem: true\n", `unknown field "spec.template.spec.securityContext.readOnlyRootFilesystem"`},
		{"wrong type", "replicas: 2", `replicas: "2"`, `cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`},
		{"bad quantity", "limits: {memory: ", "limits: {memory: x", `quantities must match`},
		{"duplicate field", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `key "replicas" already set in map`},
		{"app keeps capabilities", "            allowPrivilegeEscalation: false\n            capabilities: {drop: [ALL]}\n        - name: ldapproxy", "            allowPrivilegeEscalation: false\n        - name: ldapproxy", `unrestricted capabilities (container "wiki"`},
		{"privilege escalation", "            allowPrivilegeEscalation: false\n            capabilities: {drop: [ALL]}\n          volumeMounts", "            allowPrivilegeEscalation: true\n            capabilities: {drop: [ALL]}\n          volumeMounts", `allowPrivilegeEscalation != false (container "ldapproxy"`},
		{"root", "runAsUser: 65532", "runAsUser: 0", `runAsUser=0`},
		{"runAsNonRoot off", "runAsNonRoot: true", "runAsNonRoot: false", `runAsNonRoot != true`},
		{"CA not provided", "              - configMap:\n                  name: ldapproxy-ca\n                  items: [{key: ca.pem, path: ca.pem}]\n", "", `upstream.ca_file: /etc/ldapproxy/ca.pem: volume config provides no such file`},
		{"CA key not documented", "items: [{key: ca.pem, path: ca.pem}]", "items: [{key: ca.crt, path: ca.pem}]", `ConfigMap ldapproxy-ca has no key "ca.crt"`},
		{"Secret not documented", "secret generic ldapproxy-bind-password", "secret generic other", `Secret ldapproxy-bind-password is neither in this file nor documented`},
		{"password unreadable", "        fsGroup: 65532", "        supplementalGroups: [65532]", `the proxy's user cannot read it`},
		{"nested mount", "            - {name: store, mountPath: /var/lib/ldapproxy}\n", "            - {name: store, mountPath: /var/lib/ldapproxy}\n            - {name: store, mountPath: /etc/ldapproxy/secret}\n", `is inside volumeMount /etc/ldapproxy`},
		{"mount of no volume", "{name: store, mountPath: /var/lib/ldapproxy}", "{name: stor, mountPath: /var/lib/ldapproxy}", `no volume "stor" in the pod`},
		{"store on the root file system", "      path: /var/lib/ldapproxy\n", "      path: /var/lib/ldapproxy-data\n", `store.path: /var/lib/ldapproxy-data: no volume is mounted there`},
		{"metrics on loopback", `listen: "0.0.0.0:9389"`, `listen: "127.0.0.1:9389"`, `not loopback`},
		{"probe port unnamed", "port: metrics}\n          livenessProbe", "port: metric}\n          livenessProbe", `port "metric" is not a named port`},
		{"GOMEMLIMIT above the limit", "{name: GOMEMLIMIT, value: \"", "{name: GOMEMLIMIT, value: \"9", `is not below the memory limit`},
		{"selector misses the pod", "matchLabels: {app: wiki}", "matchLabels: {app: wik}", `does not select the template's labels`},
		{"application on the wrong port", `"ldap://127.0.0.1:3389"`, `"ldap://127.0.0.1:389"`, `the proxy listens on 127.0.0.1:3389`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := bytes.Count(y, []byte(tc.old)); n != 1 {
				t.Fatalf("the example has %q %d times, want once: update this test", tc.old, n)
			}
			broken := bytes.Replace(y, []byte(tc.old), []byte(tc.new), 1)
			got := problems(broken, d)
			for _, p := range got {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got:\n%s", tc.want, strings.Join(got, "\n"))
		})
	}
}

func TestImageUserNotNumeric(t *testing.T) {
	y, _ := readExample(t)
	got := problems(y, []byte("FROM a AS build\nUSER 1000\nFROM b\nUSER nonroot:nonroot\n"))
	if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), `the image's USER "nonroot:nonroot" is not numeric`) {
		t.Errorf("a non-numeric USER is not reported: %v", got)
	}
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
	buildOut  []byte
)

// proxyBinary builds cmd/ldapproxy of the enclosing repository once.
func proxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ldapproxy-check-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "ldapproxy")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/ldapproxy")
		cmd.Dir = repoRoot
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build ldapproxy: %v\n%s", buildErr, buildOut)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

// loadConfig runs `ldapproxy status --config FILE`: it loads and validates the
// configuration file with the proxy's own loader, then reads the sync status file in
// store.path, without contacting the upstream (ldapproxy has no command that only
// validates). It returns whether the configuration was accepted and the output.
func loadConfig(t *testing.T, text string) (bool, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ldapproxy.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(proxyBinary(t), "status", "--config", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String() + stderr.String()
	switch {
	case err == nil, // a status was recorded in store.path
		strings.Contains(stdout.String(), "no sync recorded yet in"),
		strings.HasPrefix(stderr.String(), "ldapproxy: read sync status"):
		return true, out
	case strings.HasPrefix(stderr.String(), "ldapproxy: config "), strings.HasPrefix(stderr.String(), "ldapproxy: read config"):
		return false, out
	}
	t.Fatalf("ldapproxy status: unexpected outcome %v:\n%s", err, out)
	return false, out
}

// TestProxyAcceptsConfig loads the ConfigMap's ldapproxy.yaml with the proxy itself.
func TestProxyAcceptsConfig(t *testing.T) {
	y, _ := readExample(t)
	m, err := Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	cm := m.ConfigMaps["ldapproxy"]
	if cm == nil || cm.Data["ldapproxy.yaml"] == "" {
		t.Fatal("no ConfigMap ldapproxy with ldapproxy.yaml")
	}
	text := cm.Data["ldapproxy.yaml"]
	if ok, out := loadConfig(t, text); !ok {
		t.Errorf("ldapproxy rejects the example's configuration:\n%s", out)
	}
	// The same command must reject a broken configuration, or the test above proves nothing.
	broken := strings.Replace(text, "ca_file:", "ca_fil:", 1)
	if broken == text {
		t.Fatal("no ca_file key to break")
	}
	if ok, out := loadConfig(t, broken); ok || !strings.Contains(out, "upstream.ca_fil") {
		t.Errorf("ldapproxy accepts a configuration with an unknown key:\n%s", out)
	}
}

func TestDockerIgnore(t *testing.T) {
	ignored, err := DockerIgnore([]byte("# comment\n.git\n/ldapproxy\n*.test\n**/testdata\nexamples/\n!examples/keep.md\n*~\n"))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		".git": true, ".git/config": true, ".gitignore": false,
		"ldapproxy": true, "cmd/ldapproxy": false, "cmd/ldapproxy/main.go": false,
		"x.test": true, "cmd/x.test": false,
		"testdata": true, "ldapserver/testdata/fuzz/a": true, "ldapserver/testdata.go": false,
		"examples": true, "examples/ldapproxy.yaml": true, "examples/keep.md": false,
		"README.md~": true, "README.md": false,
	} {
		if got := ignored(p); got != want {
			t.Errorf("%s: ignored %v, want %v", p, got, want)
		}
	}
}

// TestDockerBuildContext builds the binary the way the Dockerfile does, from the files
// .dockerignore leaves in the build context only (and the module cache, as after `go mod
// download`): the context must hold every file the build needs, and not the rest.
func TestDockerBuildContext(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored, err := DockerIgnore(rules)
	if err != nil {
		t.Fatal(err)
	}
	context := t.TempDir()
	var files, size int64
	var left []string
	err = filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(rel) {
			left = append(left, rel)
			if d.IsDir() {
				return filepath.SkipDir // .dockerignore has no exception inside these
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(context, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		size += int64(len(b))
		return os.WriteFile(filepath.Join(context, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build context: %d files, %d KiB", files, size>>10)
	for _, want := range []string{".git", "examples", "scripts", "ldapserver/testdata"} {
		if _, err := os.Stat(filepath.Join(repoRoot, want)); err == nil && !slices.Contains(left, want) {
			t.Errorf("%s is in the build context", want)
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(t.TempDir(), "ldapproxy"), "./cmd/ldapproxy")
	cmd.Dir = context
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/ldapproxy in the build context .dockerignore leaves: %v\n%s", err, out)
	}
}
