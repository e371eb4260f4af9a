// Package check validates the Kubernetes example (examples/kubernetes-sidecar.yaml)
// without a cluster and without schemas from the internet. It does what kubeconform and
// an API server would reject, and what only fails once the pod runs:
//
//   - every document decodes strictly into its typed object (k8s.io/api): an unknown or
//     misspelt field, a duplicate field or a value of the wrong type is an error, as with
//     `kubectl apply --validate=strict`;
//   - the Deployment's pod template passes the "restricted" Pod Security Standard at its
//     latest version, evaluated by k8s.io/pod-security-admission;
//   - names, ports, probes, environment variables, resources, volumes and mounts are
//     consistent (a mount names a volume, no mount sits inside another, a probe's named
//     port exists, requests do not exceed limits);
//   - every ConfigMap or Secret key a volume or variable uses is in this file, or in a
//     `kubectl create configmap|secret generic NAME --from-file=KEY=...` line of its
//     comments that tells the operator to create it;
//   - the proxy container: its --config file comes from a ConfigMap of this file; every
//     *_file of that configuration is a file that a volume provides and that the proxy's
//     user can read; store.path is on a writable volume; http.listen is reachable by the
//     probes; GOMEMLIMIT is below the memory limit; runAsUser is the image's numeric USER.
//
// Whether the proxy itself accepts the configuration is tested by running the proxy
// (check_test.go), and whether the image's build context that .dockerignore leaves holds
// what the build needs by building from it (DockerIgnore reads the file as Docker does). This is a module of its own so that the proxy's module does not
// depend on Kubernetes.
package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

// Manifest is a decoded multi-document YAML file.
type Manifest struct {
	ConfigMaps  map[string]*corev1.ConfigMap
	Secrets     map[string]*corev1.Secret
	Deployments []*appsv1.Deployment
	// Documented holds the ConfigMaps and Secrets that the file's comments tell the
	// operator to create, with their keys.
	Documented map[Ref][]string
}

// Ref names a ConfigMap or Secret.
type Ref struct{ Kind, Name string }

func (r Ref) String() string { return r.Kind + " " + r.Name }

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(appsv1.AddToScheme(s))
	return s
}()

// Parse splits data into its YAML documents and decodes each strictly into its typed
// object. Every document that does not decode cleanly is reported; objects with only
// strict-decoding problems (unknown or duplicate fields) are kept, so that the other
// checks still run on them.
func Parse(data []byte) (*Manifest, error) {
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
	m := &Manifest{
		ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets:    map[string]*corev1.Secret{},
		Documented: documented(data),
	}
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if j, err := yaml.YAMLToJSON(doc); err == nil && string(j) == "null" {
			continue // only comments
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n, err))
			if obj == nil || !runtime.IsStrictDecodingError(err) {
				continue
			}
		}
		var meta *metav1.ObjectMeta
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			meta = &o.ObjectMeta
			if m.ConfigMaps[o.Name] != nil {
				errs = append(errs, fmt.Errorf("document %d: ConfigMap %s is defined twice", n, o.Name))
			}
			m.ConfigMaps[o.Name] = o
		case *corev1.Secret:
			meta = &o.ObjectMeta
			if m.Secrets[o.Name] != nil {
				errs = append(errs, fmt.Errorf("document %d: Secret %s is defined twice", n, o.Name))
			}
			m.Secrets[o.Name] = o
		case *appsv1.Deployment:
			meta = &o.ObjectMeta
			m.Deployments = append(m.Deployments, o)
		default:
			errs = append(errs, fmt.Errorf("document %d: %s: the checks know ConfigMap, Secret and Deployment only", n, gvk))
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
			errs = append(errs, fmt.Errorf("document %d: metadata.name %q: %s", n, meta.Name, msg))
		}
	}
	return m, errors.Join(errs...)
}

var (
	kubectlCreate = regexp.MustCompile(`kubectl\s+create\s+(configmap|secret\s+generic)\s+([a-z0-9][a-z0-9.-]*)((?:\s+--from-(?:file|literal)=\S+)+)`)
	fromFlag      = regexp.MustCompile(`--from-(file|literal)=(\S+)`)
)

// documented finds `kubectl create configmap|secret generic` commands in comment lines.
func documented(data []byte) map[Ref][]string {
	out := map[Ref][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		text, ok := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !ok {
			continue
		}
		for _, c := range kubectlCreate.FindAllStringSubmatch(text, -1) {
			ref := Ref{Kind: "ConfigMap", Name: c[2]}
			if c[1] != "configmap" {
				ref.Kind = "Secret"
			}
			for _, f := range fromFlag.FindAllStringSubmatch(c[3], -1) {
				key, _, hasKey := strings.Cut(f[2], "=")
				if f[1] == "file" && !hasKey {
					key = path.Base(f[2])
				}
				out[ref] = append(out[ref], key)
			}
		}
	}
	return out
}

// keys returns the keys of a ConfigMap or Secret, whether it is in the file (known) or
// documented in its comments (found), and the text of each key when it is in the file.
func (m *Manifest) keys(ref Ref) (keys map[string]*string, found bool) {
	keys = map[string]*string{}
	switch ref.Kind {
	case "ConfigMap":
		if cm := m.ConfigMaps[ref.Name]; cm != nil {
			for k, v := range cm.Data {
				keys[k] = &v
			}
			for k := range cm.BinaryData {
				keys[k] = nil
			}
			return keys, true
		}
	case "Secret":
		if s := m.Secrets[ref.Name]; s != nil {
			for k, v := range s.Data {
				text := string(v)
				keys[k] = &text
			}
			for k, v := range s.StringData {
				keys[k] = &v
			}
			return keys, true
		}
	}
	if ks, ok := m.Documented[ref]; ok {
		for _, k := range ks {
			keys[k] = nil
		}
		return keys, true
	}
	return nil, false
}

// Options describe what the checks cannot read from the manifest.
type Options struct {
	// Proxy is the name of the ldapproxy container; every Deployment must have one.
	Proxy string
	// ImageUser is the USER of the proxy's image, as ImageUser reads it from the
	// Dockerfile. Empty: not checked.
	ImageUser string
}

// Check runs every check on the manifest and returns the problems found.
func (m *Manifest) Check(opts Options) []error {
	var errs []error
	for name, cm := range m.ConfigMaps {
		for k := range cm.Data {
			for _, msg := range validation.IsConfigMapKey(k) {
				errs = append(errs, fmt.Errorf("ConfigMap %s: key %q: %s", name, k, msg))
			}
			if _, dup := cm.BinaryData[k]; dup {
				errs = append(errs, fmt.Errorf("ConfigMap %s: key %q is in data and binaryData", name, k))
			}
		}
	}
	if len(m.Deployments) == 0 {
		errs = append(errs, errors.New("no Deployment in the file"))
	}
	for _, d := range m.Deployments {
		for _, err := range m.checkDeployment(d, opts) {
			errs = append(errs, fmt.Errorf("Deployment %s: %w", d.Name, err))
		}
	}
	return errs
}

// restricted is the Pod Security Standard the pod template must meet.
var restricted = psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}

func (m *Manifest) checkDeployment(d *appsv1.Deployment, opts Options) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if d.Spec.Replicas != nil && *d.Spec.Replicas < 0 {
		add("spec.replicas: must not be negative")
	}
	tmpl := &d.Spec.Template
	if d.Spec.Selector == nil {
		add("spec.selector: required")
	} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
		add("spec.selector: %v", err)
	} else if sel.Empty() || !sel.Matches(labels.Set(tmpl.Labels)) {
		add("spec.selector: %s does not select the template's labels %v", sel, tmpl.Labels)
	}
	if rp := tmpl.Spec.RestartPolicy; rp != "" && rp != corev1.RestartPolicyAlways {
		add("spec.template.spec.restartPolicy: a Deployment needs Always, not %s", rp)
	}

	// The restricted Pod Security Standard, as the admission plugin evaluates it.
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		add("pod security evaluator: %v", err)
	} else {
		res := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &tmpl.ObjectMeta, &tmpl.Spec))
		if !res.Allowed {
			add("pod template violates PodSecurity %q: %s", restricted.String(), res.ForbiddenDetail())
		}
	}

	spec := &tmpl.Spec
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			add("volume %q: %s", v.Name, msg)
		}
		if volumes[v.Name] != nil {
			add("volume %q: defined twice", v.Name)
		}
		volumes[v.Name] = v
		if n := countSources(v.VolumeSource); n != 1 {
			add("volume %q: needs exactly one source, has %d", v.Name, n)
		}
		if _, _, verrs := m.volumeFiles(v); len(verrs) > 0 {
			for _, e := range verrs {
				add("volume %q: %v", v.Name, e)
			}
		}
	}
	used := map[string]bool{}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	names := map[string]bool{}
	portNames := map[string]bool{}
	var proxy *corev1.Container
	for i := range containers {
		c := &containers[i]
		cerr := func(format string, a ...any) { add("container %s: "+format, append([]any{c.Name}, a...)...) }
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			cerr("name: %s", msg)
		}
		if names[c.Name] {
			cerr("name used twice")
		}
		names[c.Name] = true
		if c.Image == "" {
			cerr("image: required")
		}
		for _, p := range c.Ports {
			for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
				cerr("port %d: %s", p.ContainerPort, msg)
			}
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					cerr("port name %q: %s", p.Name, msg)
				}
				if portNames[p.Name] {
					cerr("port name %q used twice in the pod", p.Name)
				}
				portNames[p.Name] = true
			}
		}
		for kind, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
			if pr == nil {
				continue
			}
			if _, err := probePort(c, pr); err != nil {
				cerr("%s: %v", kind, err)
			}
		}
		envs := map[string]bool{}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				cerr("env %q: %s", e.Name, msg)
			}
			if envs[e.Name] {
				cerr("env %q: set twice", e.Name)
			}
			envs[e.Name] = true
			if vf := e.ValueFrom; vf != nil {
				if r := vf.ConfigMapKeyRef; r != nil {
					if err := m.keyExists(Ref{"ConfigMap", r.Name}, r.Key, r.Optional); err != nil {
						cerr("env %q: %v", e.Name, err)
					}
				}
				if r := vf.SecretKeyRef; r != nil {
					if err := m.keyExists(Ref{"Secret", r.Name}, r.Key, r.Optional); err != nil {
						cerr("env %q: %v", e.Name, err)
					}
				}
			}
		}
		for name, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				cerr("resources: the %s request %s is above the limit %s", name, req.String(), lim.String())
			}
		}
		mounts := map[string]bool{}
		for _, vm := range c.VolumeMounts {
			used[vm.Name] = true
			if volumes[vm.Name] == nil {
				cerr("volumeMount %s: no volume %q in the pod", vm.MountPath, vm.Name)
			}
			if !path.IsAbs(vm.MountPath) || path.Clean(vm.MountPath) != vm.MountPath {
				cerr("volumeMount %q: mountPath must be an absolute, clean path", vm.MountPath)
			}
			if mounts[vm.MountPath] {
				cerr("volumeMount %s: mounted twice", vm.MountPath)
			}
			mounts[vm.MountPath] = true
		}
		// A mount inside another one needs the runtime to create its mount point in the
		// outer volume; sandboxed runtimes fail on read-only ConfigMap and Secret volumes,
		// and the outer volume's file of that name is hidden. A projected volume does it
		// with one mount.
		for _, a := range c.VolumeMounts {
			for _, b := range c.VolumeMounts {
				if a.MountPath != b.MountPath && strings.HasPrefix(b.MountPath, strings.TrimSuffix(a.MountPath, "/")+"/") {
					cerr("volumeMount %s (%s) is inside volumeMount %s (%s): combine them in a projected volume", b.MountPath, b.Name, a.MountPath, a.Name)
				}
			}
		}
	}
	for name := range volumes {
		if !used[name] {
			add("volume %q: mounted by no container", name)
		}
	}
	if opts.Proxy != "" {
		for i := range spec.Containers {
			if spec.Containers[i].Name == opts.Proxy {
				proxy = &spec.Containers[i]
			}
		}
		for i := range spec.InitContainers {
			if spec.InitContainers[i].Name == opts.Proxy {
				proxy = &spec.InitContainers[i]
			}
		}
		if proxy == nil {
			add("no container named %s", opts.Proxy)
		} else {
			for _, err := range m.checkProxy(spec, proxy, opts) {
				add("container %s: %v", proxy.Name, err)
			}
		}
	}
	return errs
}

// countSources counts the sources set in a volume (API validation wants exactly one).
func countSources(vs corev1.VolumeSource) int {
	n := 0
	v := reflect.ValueOf(vs)
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

// probePort returns the container port a probe connects to.
func probePort(c *corev1.Container, pr *corev1.Probe) (int32, error) {
	var port *intOrName
	switch {
	case pr.HTTPGet != nil:
		port = &intOrName{pr.HTTPGet.Port.IntVal, pr.HTTPGet.Port.StrVal}
	case pr.TCPSocket != nil:
		port = &intOrName{pr.TCPSocket.Port.IntVal, pr.TCPSocket.Port.StrVal}
	case pr.GRPC != nil:
		return pr.GRPC.Port, nil
	case pr.Exec != nil:
		return 0, nil
	default:
		return 0, errors.New("no handler (httpGet, tcpSocket, grpc or exec)")
	}
	if port.name == "" {
		if msgs := validation.IsValidPortNum(int(port.num)); len(msgs) > 0 {
			return 0, fmt.Errorf("port %d: %s", port.num, msgs[0])
		}
		return port.num, nil
	}
	for _, p := range c.Ports {
		if p.Name == port.name {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %q is not a named port of the container", port.name)
}

type intOrName struct {
	num  int32
	name string
}

// keyExists checks that a ConfigMap or Secret referenced by a variable or a volume item
// holds the key.
func (m *Manifest) keyExists(ref Ref, key string, optional *bool) error {
	if optional != nil && *optional {
		return nil
	}
	keys, found := m.keys(ref)
	if !found {
		return fmt.Errorf("%s is neither in this file nor documented in its comments (kubectl create ... %s --from-file=KEY=...)", ref, ref.Name)
	}
	if _, ok := keys[key]; !ok {
		return fmt.Errorf("%s has no key %q (it has %s)", ref, key, strings.Join(sortedKeys(keys), ", "))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// file is a file that a ConfigMap, Secret or projected volume provides.
type file struct {
	from string  // "ConfigMap ldapproxy key ldapproxy.yaml"
	text *string // its content, when the object is in the file
	mode int32   // permission bits
}

// volumeFiles lists the files a volume provides, by path inside the volume. dir is true
// for a volume that starts empty and can be written (emptyDir, a claim).
func (m *Manifest) volumeFiles(v *corev1.Volume) (files map[string]file, dir bool, errs []error) {
	files = map[string]file{}
	project := func(ref Ref, items []corev1.KeyToPath, optional *bool, defaultMode *int32) {
		keys, found := m.keys(ref)
		if !found {
			if optional == nil || !*optional {
				errs = append(errs, fmt.Errorf("%s is neither in this file nor documented in its comments (kubectl create ... %s --from-file=KEY=...)", ref, ref.Name))
			}
			return
		}
		mode := int32(0o644)
		if defaultMode != nil {
			mode = *defaultMode
		}
		put := func(p, key string, itemMode *int32) {
			if p == "" || path.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") {
				errs = append(errs, fmt.Errorf("%s key %s: path %q must be relative, without '..'", ref, key, p))
			}
			if _, dup := files[p]; dup {
				errs = append(errs, fmt.Errorf("%s key %s: path %q is provided twice", ref, key, p))
			}
			fm := mode
			if itemMode != nil {
				fm = *itemMode
			}
			if fm < 0 || fm > 0o777 {
				errs = append(errs, fmt.Errorf("%s key %s: mode %#o is not between 0 and 0777", ref, key, fm))
			}
			files[p] = file{from: fmt.Sprintf("%s key %s", ref, key), text: keys[key], mode: fm}
		}
		if len(items) == 0 {
			for _, k := range sortedKeys(keys) {
				put(k, k, nil)
			}
			return
		}
		for _, it := range items {
			if _, ok := keys[it.Key]; !ok {
				if optional == nil || !*optional {
					errs = append(errs, fmt.Errorf("%s has no key %q (it has %s)", ref, it.Key, strings.Join(sortedKeys(keys), ", ")))
				}
				continue
			}
			put(it.Path, it.Key, it.Mode)
		}
	}
	switch vs := v.VolumeSource; {
	case vs.ConfigMap != nil:
		project(Ref{"ConfigMap", vs.ConfigMap.Name}, vs.ConfigMap.Items, vs.ConfigMap.Optional, vs.ConfigMap.DefaultMode)
	case vs.Secret != nil:
		project(Ref{"Secret", vs.Secret.SecretName}, vs.Secret.Items, vs.Secret.Optional, vs.Secret.DefaultMode)
	case vs.Projected != nil:
		for _, s := range vs.Projected.Sources {
			switch {
			case s.ConfigMap != nil:
				project(Ref{"ConfigMap", s.ConfigMap.Name}, s.ConfigMap.Items, s.ConfigMap.Optional, vs.Projected.DefaultMode)
			case s.Secret != nil:
				project(Ref{"Secret", s.Secret.Name}, s.Secret.Items, s.Secret.Optional, vs.Projected.DefaultMode)
			case s.ServiceAccountToken != nil:
				files[s.ServiceAccountToken.Path] = file{from: "service account token", mode: 0o600}
			case s.DownwardAPI != nil:
				for _, it := range s.DownwardAPI.Items {
					files[it.Path] = file{from: "downward API", mode: 0o644}
				}
			}
		}
	case vs.DownwardAPI != nil:
		for _, it := range vs.DownwardAPI.Items {
			files[it.Path] = file{from: "downward API", mode: 0o644}
		}
	case vs.EmptyDir != nil, vs.PersistentVolumeClaim != nil, vs.Ephemeral != nil:
		dir = true
	}
	return files, dir, errs
}

// resolved is what a container sees at a path.
type resolved struct {
	mount  *corev1.VolumeMount
	volume *corev1.Volume
	file   *file // the file there, if a ConfigMap, Secret or projected volume provides it
	dir    bool  // a writable volume (emptyDir, claim) holds the path
}

// resolve finds what the container sees at an absolute path.
func (m *Manifest) resolve(spec *corev1.PodSpec, c *corev1.Container, p string) (*resolved, error) {
	if !path.IsAbs(p) {
		return nil, fmt.Errorf("%s: use an absolute path (the image has no working directory to be relative to)", p)
	}
	p = path.Clean(p)
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		if (p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")) &&
			(best == nil || len(vm.MountPath) > len(best.MountPath)) {
			best = vm
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%s: no volume is mounted there; it would have to be in the image", p)
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == best.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil {
		return nil, fmt.Errorf("%s: volumeMount %s names no volume", p, best.MountPath)
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/")
	rel = path.Join(best.SubPath, rel)
	files, dir, _ := m.volumeFiles(vol)
	r := &resolved{mount: best, volume: vol, dir: dir}
	if f, ok := files[rel]; ok {
		r.file = &f
	}
	return r, nil
}

// checkProxy checks the proxy container against the configuration it reads.
func (m *Manifest) checkProxy(spec *corev1.PodSpec, c *corev1.Container, opts Options) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	// Who the proxy runs as.
	sc := c.SecurityContext
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if opts.ImageUser != "" {
		imageUID, _, _ := strings.Cut(opts.ImageUser, ":")
		n, err := strconv.ParseInt(imageUID, 10, 64)
		switch {
		case err != nil:
			add("the image's USER %q is not numeric: the kubelet cannot verify runAsNonRoot with a user name", opts.ImageUser)
		case n == 0:
			add("the image's USER is root")
		case uid != nil && *uid != n:
			add("runAsUser %d is not the image's USER %d", *uid, n)
		}
	}
	if uid == nil {
		add("securityContext.runAsUser: set it to the image's numeric user")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		add("securityContext.readOnlyRootFilesystem: the proxy writes only its store; make the root file system read-only")
	}

	// The configuration file.
	cfgPath := configArg(c.Args)
	if cfgPath == "" {
		add("args: name the configuration with --config FILE")
		return errs
	}
	r, err := m.resolve(spec, c, cfgPath)
	if err != nil {
		add("--config %v", err)
		return errs
	}
	if r.file == nil || r.file.text == nil {
		add("--config %s: no ConfigMap of this file provides it", cfgPath)
		return errs
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(*r.file.text), &cfg); err != nil {
		add("%s: %v", cfgPath, err)
		return errs
	}
	readable := func(f *file) bool {
		if f.mode&0o004 != 0 {
			return true
		}
		return f.mode&0o040 != 0 && psc.FSGroup != nil // the kubelet gives the files to fsGroup
	}

	// Every file the configuration names must be there, readable by the proxy's user.
	walk(cfg, "", func(key string, value any) {
		s, ok := value.(string)
		if !ok || s == "" || !strings.HasSuffix(key, "_file") {
			return
		}
		r, err := m.resolve(spec, c, s)
		switch {
		case err != nil:
			add("%s: %v", key, err)
		case r.file == nil && r.dir:
			add("%s: %s is on volume %s, which starts empty", key, s, r.volume.Name)
		case r.file == nil:
			add("%s: %s: volume %s provides no such file", key, s, r.volume.Name)
		case !readable(r.file):
			add("%s: %s (%s) has mode %#o: the proxy's user cannot read it (set fsGroup or a mode with o+r)", key, s, r.file.from, r.file.mode)
		}
	})

	// The store must be on a writable volume: the root file system is read-only.
	store := "./data"
	if s, ok := lookup(cfg, "store", "path").(string); ok {
		store = s
	}
	if store != ":memory:" {
		r, err := m.resolve(spec, c, store)
		switch {
		case err != nil:
			add("store.path: %v", err)
		case !r.dir:
			add("store.path: %s is on volume %s, which cannot be written: use an emptyDir or a volume claim", store, r.volume.Name)
		case r.mount.ReadOnly:
			add("store.path: %s is mounted read-only", store)
		}
	}

	// The probes reach http.listen on the pod's address.
	httpListen := "127.0.0.1:9389"
	if s, ok := lookup(cfg, "http", "listen").(string); ok {
		httpListen = s
	}
	for kind, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if pr == nil || pr.HTTPGet == nil {
			continue
		}
		port, err := probePort(c, pr)
		if err != nil {
			continue // reported with the container's checks
		}
		if err := reachable(httpListen, port); err != nil {
			add("%s: http.listen %q: %v", kind, httpListen, err)
		}
	}

	// The application reaches listen.ldap on loopback.
	ldapListen := "127.0.0.1:3389"
	if s, ok := lookup(cfg, "listen", "ldap").(string); ok {
		ldapListen = s
	}
	_, ldapPort, _ := net.SplitHostPort(ldapListen)
	for _, other := range spec.Containers {
		for _, e := range other.Env {
			for _, prefix := range []string{"ldap://127.0.0.1:", "ldap://localhost:"} {
				if p, ok := strings.CutPrefix(e.Value, prefix); ok && strings.TrimRight(p, "/") != ldapPort {
					add("container %s env %s=%s: the proxy listens on %s", other.Name, e.Name, e.Value, ldapListen)
				}
			}
		}
	}

	// Memory: a limit, and GOMEMLIMIT below it.
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		add("resources.limits.memory: required")
	}
	var goLimit string
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			goLimit = e.Value
		}
	}
	if goLimit == "" {
		add("env GOMEMLIMIT: set it to about 80%% of the memory limit, so that the Go heap stays under it")
	} else if n, err := parseGoMemLimit(goLimit); err != nil {
		add("env GOMEMLIMIT: %v", err)
	} else if ok && n >= limit.Value() {
		add("env GOMEMLIMIT %s is not below the memory limit %s", goLimit, limit.String())
	}
	return errs
}

// configArg returns the value of --config in a container's args.
func configArg(args []string) string {
	for i, a := range args {
		for _, flag := range []string{"--config", "-config"} {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
	}
	return ""
}

// reachable checks that a listener address accepts connections to the pod's address on
// port.
func reachable(listen string, port int32) error {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	if p != strconv.Itoa(int(port)) {
		return fmt.Errorf("the probe connects to port %d", port)
	}
	if host == "localhost" {
		return errors.New("the kubelet connects to the pod's address, not loopback")
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return errors.New("the kubelet connects to the pod's address, not loopback")
	}
	return nil
}

// walk calls fn for every scalar of a decoded YAML document with its dotted key.
func walk(v any, key string, fn func(string, any)) {
	switch t := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(t) {
			next := k
			if key != "" {
				next = key + "." + k
			}
			walk(t[k], next, fn)
		}
	case []any:
		for i, e := range t {
			walk(e, fmt.Sprintf("%s[%d]", key, i), fn)
		}
	default:
		fn(key, v)
	}
}

func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does: bytes with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size such as 200MiB", s)
	}
	return n * mult, nil
}

// ImageUser returns the USER of the final stage of a Dockerfile.
func ImageUser(dockerfile []byte) string {
	user := ""
	for _, line := range strings.Split(string(dockerfile), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			user = "" // a new stage
		case "USER":
			if len(fields) > 1 {
				user = fields[1]
			}
		}
	}
	return user
}

// DockerIgnore reads a .dockerignore file and returns whether it leaves the file or
// directory at a path (slash-separated, relative to the build context) out of the
// context, as Docker reads it: comments and blank lines are skipped, a leading "/" means
// the context's root as no slash does, a pattern matches the path or a directory above
// it, "*" and "?" stand within one path element and "**" for any number of them, a line
// starting with "!" makes an exception, and the last line that matches decides.
func DockerIgnore(dockerignore []byte) (func(path string) bool, error) {
	type rule struct {
		re     *regexp.Regexp
		except bool
	}
	var rules []rule
	for _, line := range strings.Split(string(dockerignore), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		except := strings.HasPrefix(line, "!")
		pattern := path.Clean(strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pattern); i++ {
			switch {
			case strings.HasPrefix(pattern[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pattern[i:], "**"):
				re.WriteString(".*")
				i++
			case pattern[i] == '*':
				re.WriteString("[^/]*")
			case pattern[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$") // the path itself, or anything inside it
		compiled, err := regexp.Compile(re.String())
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %q: %w", line, err)
		}
		rules = append(rules, rule{compiled, except})
	}
	return func(p string) bool {
		ignored := false
		for _, r := range rules {
			if r.re.MatchString(p) {
				ignored = !r.except
			}
		}
		return ignored
	}, nil
}
