// Package app reads the configuration file and wires the proxy's parts together. It is
// shared by the ldapproxy command, the demo and the end-to-end tests, so that all three
// run the same program.
package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/errlist"
	"github.com/ldapproxy/ldapproxy/metrics"
	"github.com/ldapproxy/ldapproxy/proxy"
	dirsync "github.com/ldapproxy/ldapproxy/sync"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// Config is the whole configuration file. Each section belongs to the package it
// configures; examples/ldapproxy.yaml documents every key.
type Config struct {
	Listen   proxy.ListenConfig `yaml:"listen"`
	HTTP     metrics.Config     `yaml:"http"`
	Upstream upstream.Config    `yaml:"upstream"`
	Search   proxy.SearchConfig `yaml:"search"`
	Store    cache.Config       `yaml:"store"`
	Sync     dirsync.Config     `yaml:"sync"`
	Bind     BindConfig         `yaml:"bind"`
	Log      LogConfig          `yaml:"log"`
	// Clients are the accounts the proxy authenticates by itself, never upstream.
	Clients []proxy.ClientConfig `yaml:"clients"`
	// Writeback holds the top-level password_writeback and password_reset_identities keys.
	Writeback proxy.WritebackConfig `yaml:",inline"`
}

// BindConfig is the `bind:` section: the credential cache's settings (package cache),
// how bind names resolve (package proxy) and cached authentication.
type BindConfig struct {
	cache.CredentialConfig `yaml:",inline"`
	proxy.NamesConfig      `yaml:",inline"`
	// CachedAuthTTL accepts a bind whose DN and password succeeded upstream within this
	// time without asking the upstream again (cached search mode only), like SSSD's
	// cached_auth_timeout. Kept in memory only, keyed by an HMAC. Default 0s: off.
	CachedAuthTTL time.Duration `yaml:"cached_auth_ttl"`
}

// Validate checks the bind section.
func (c *BindConfig) Validate() error {
	err := errors.Join(c.CredentialConfig.Validate(), c.NamesConfig.Validate())
	if c.CachedAuthTTL < 0 {
		err = errors.Join(err, errors.New("cached_auth_ttl: must not be negative"))
	}
	return err
}

// LogConfig is the `log:` section.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info. Debug logs one line per request.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// Default returns the configuration used for keys the file leaves out. Addresses are
// filled in here rather than by Validate, so that an explicit empty string can turn a
// listener off.
func Default() Config {
	return Config{
		Listen: proxy.ListenConfig{LDAP: proxy.DefaultListenLDAP},
		HTTP:   metrics.Config{Listen: metrics.DefaultListen},
		Sync:   dirsync.Default(),
		Log:    LogConfig{Level: "info", Format: "json"},
	}
}

// Load reads, decodes and validates a configuration file. Unknown keys and bad values are
// errors that name the key's path (`upstream.timeout: ...`).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates configuration text.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) > 0 {
		if errs := decodeStrict(doc.Content[0], reflect.ValueOf(&cfg).Elem(), ""); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks every section, prefixing each error with its section's name.
func (c *Config) Validate() error {
	var errs []error
	add := func(section string, err error) {
		errs = append(errs, errlist.Flatten(errlist.Prefix(section+".", err))...)
	}
	add("listen", c.Listen.Validate())
	add("http", c.HTTP.Validate())
	add("upstream", c.Upstream.Validate())
	add("search", c.Search.Validate())
	add("store", c.Store.Validate())
	add("sync", c.Sync.Validate())
	add("bind", c.Bind.Validate())
	if c.Search.Mode == proxy.ModeCached && !c.Sync.Enabled {
		if c.Store.Path == cache.InMemory {
			errs = append(errs, errors.New("search.mode: cached needs sync.enabled or a store on disk to answer from"))
		}
	}
	add("log", c.Log.Validate())
	errs = append(errs, errlist.Flatten(c.Writeback.Validate())...)
	errs = append(errs, errlist.Flatten(proxy.ValidateClients(c.Clients))...)
	return errors.Join(errs...)
}

// Validate checks the log section.
func (c *LogConfig) Validate() error {
	var errs []error
	if _, err := parseLevel(c.Level); err != nil {
		errs = append(errs, err)
	}
	if c.Format != "json" && c.Format != "text" {
		errs = append(errs, fmt.Errorf("format: %q is not json or text", c.Format))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger builds the process logger from the log section.
func (c *LogConfig) NewLogger(w *os.File) *slog.Logger {
	level, _ := parseLevel(c.Level)
	return c.newLogger(w, level)
}

func (c *LogConfig) newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readableDurations writes durations as Go writes them ("1.5s", "250ms"), not as the
// nanoseconds slog's JSON handler writes: "retry_in":"1s", not "retry_in":1000000000.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

var durationType = reflect.TypeOf(time.Duration(0))

// decodeStrict decodes node into v, walking structs field by field so that an unknown
// key or a value of the wrong type is reported with its full path and line.
func decodeStrict(node *yaml.Node, v reflect.Value, path string) []error {
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if v.Kind() == reflect.Struct && v.Type() != durationType {
		if node.Kind == yaml.ScalarNode && node.Tag == "!!null" {
			return nil
		}
		if node.Kind != yaml.MappingNode {
			return []error{fmt.Errorf("%s: line %d: expected a mapping of keys", orTop(path), node.Line)}
		}
		fields := yamlFields(v.Type())
		var errs []error
		seen := make(map[string]int, len(node.Content)/2) // key → its line
		for i := 0; i+1 < len(node.Content); i += 2 {
			key := node.Content[i].Value
			if line, dup := seen[key]; dup {
				// yaml.v3 refuses this in maps; a struct walk must too, or the second block
				// would silently merge into the first.
				errs = append(errs, fmt.Errorf("%s: line %d: key already given at line %d", join(path, key), node.Content[i].Line, line))
				continue
			}
			seen[key] = node.Content[i].Line
			idx, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: line %d: unknown key%s", join(path, key), node.Content[i].Line, suggest(key, fields)))
				continue
			}
			errs = append(errs, decodeStrict(node.Content[i+1], v.FieldByIndex(idx), join(path, key))...)
		}
		return errs
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		if node.Kind != yaml.SequenceNode {
			return []error{fmt.Errorf("%s: line %d: expected a list", path, node.Line)}
		}
		v.Set(reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content)))
		var errs []error
		for i, n := range node.Content {
			errs = append(errs, decodeStrict(n, v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	}
	if commaLists[path] && node.Kind == yaml.SequenceNode {
		return decodeCommaList(node, v, path)
	}
	if err := node.Decode(v.Addr().Interface()); err != nil {
		want := v.Type().String()
		switch {
		case v.Type() == durationType:
			want = "a duration such as 30s, 5m or 1h"
		case v.Kind() == reflect.Bool:
			want = "true or false"
		case v.Kind() == reflect.Int, v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Int:
			want = "an integer"
		case v.Kind() == reflect.String:
			want = "a string"
		}
		return []error{fmt.Errorf("%s: line %d: %q is not %s", path, node.Line, node.Value, want)}
	}
	return nil
}

// commaLists are the keys whose value is a comma-separated string that the file may
// also give as a YAML list.
var commaLists = map[string]bool{"upstream.urls": true}

// decodeCommaList joins a YAML list of strings into the comma-separated string v.
func decodeCommaList(node *yaml.Node, v reflect.Value, path string) []error {
	parts := make([]string, 0, len(node.Content))
	var errs []error
	for i, item := range node.Content {
		switch {
		case item.Kind != yaml.ScalarNode || item.Tag == "!!null":
			errs = append(errs, fmt.Errorf("%s[%d]: line %d: expected a string", path, i, item.Line))
		case strings.Contains(item.Value, ","):
			errs = append(errs, fmt.Errorf("%s[%d]: line %d: %q: one entry per list item", path, i, item.Line, item.Value))
		default:
			parts = append(parts, item.Value)
		}
	}
	v.SetString(strings.Join(parts, ","))
	return errs
}

// yamlFields maps the YAML keys of a struct to its fields, following embedded structs
// tagged `yaml:",inline"` (a section that two packages share, such as bind:).
func yamlFields(t reflect.Type) map[string][]int {
	out := make(map[string][]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range yamlFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name != "" && name != "-" {
			out[name] = []int{i}
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

// suggest names the closest known key, for typos such as `timout`.
func suggest(key string, fields map[string][]int) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
