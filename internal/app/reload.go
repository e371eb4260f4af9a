package app

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
)

// A reload (SIGHUP for `ldapproxy serve`) applies what can change without dropping a
// connection:
//
//   - log.level;
//   - the listeners' TLS identity: listen.tls.cert_file, key_file and client_ca_file are
//     read again, even when their names did not change, so that certificates rotated in
//     place are picked up. New handshakes use them; connections already encrypted keep
//     theirs.
//
//   - the service account's password (upstream.bind_password, bind_password_file or its
//     contents, the environment variable): new service connections bind with it.
//
//   - the `clients:` accounts, their password files' contents included: new binds are
//     checked against the new list; sessions already bound keep their account.
//
// Any other key that differs from the running configuration is not applied: a warning
// names it, and it takes effect at the next restart. A file that does not load or validate is rejected as a
// whole and the running configuration stays.

// reloadState holds what a reload may change while the proxy runs.
type reloadState struct {
	mu sync.Mutex // one reload at a time
	// level is the logger's level; nil when the app was not given it (SetLogLevel), and
	// then log.level needs a restart.
	level *slog.LevelVar
	// tls is the listeners' TLS configuration; the one they were built with looks it up
	// for every handshake. Unset when TLS is off.
	tls atomic.Pointer[tls.Config]
	// secret is a digest of the service password file's contents at start, to notice a
	// changed password that needs a restart.
	secret [sha256.Size]byte
}

// start records the reloadable state of the configuration the app starts with, and
// returns the TLS configuration for the listeners (nil when TLS is off): one that takes
// the current identity at each handshake, so that a reload can change it.
func (s *reloadState) start(cfg *Config, current *tls.Config) *tls.Config {
	s.secret = secretDigest(cfg)
	if current == nil {
		return nil
	}
	s.tls.Store(current)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.tls.Load(), nil
		},
	}
}

// SetLogLevel gives the app the level its logger uses (see NewReloadableLogger), so that
// a reload can change log.level. Call it before Run; without it, a changed log.level
// needs a restart.
func (a *App) SetLogLevel(level *slog.LevelVar) { a.reload.level = level }

// NewReloadableLogger builds the process logger like NewLogger, with its level in a
// slog.LevelVar for SetLogLevel.
func (c *LogConfig) NewReloadableLogger(w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	l, _ := parseLevel(c.Level)
	level.Set(l)
	return c.newLogger(w, level), level
}

// Reload reads the configuration file at path again and applies what can change safely
// (see above). It returns an error, and changes nothing, when the file does not load;
// keys that need a restart are logged, not returned as errors.
func (a *App) Reload(path string) error {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	next, err := Load(path)
	var plan *reloadPlan
	if err == nil {
		plan, err = a.reload.plan(a.cfg, next)
	}
	if err == nil && a.clients != nil {
		var apply func()
		var changed bool
		if apply, changed, err = a.clients.Reload(next.Clients); changed {
			plan.clients = apply
			plan.changed = append(plan.changed, fmt.Sprintf("clients (%d accounts)", len(next.Clients)))
		}
	}
	if err != nil {
		a.log.Error("configuration reload failed; the running configuration stays", "err", err)
		return err
	}
	if len(plan.restart) > 0 {
		a.log.Warn("configuration changes not applied: they need a restart", "keys", plan.restart)
	}
	changed := plan.changed
	if changed == nil {
		changed = []string{}
	}
	// Logged under the more verbose of the old and new levels, so that the line shows
	// when either shows info: before raising the level (to warn), after lowering it.
	if plan.password {
		// Reads the password again (bind_password_file, the environment variable): Load
		// validated the keys only. A file that does not load fails the reload.
		if err := a.pool.UpdateBindPassword(next.Upstream); err != nil {
			err = fmt.Errorf("upstream.%w", err)
			a.log.Error("configuration reload failed; the running configuration stays", "err", err)
			return err
		}
	}
	if plan.clients != nil {
		plan.clients()
		a.cfg.Clients = next.Clients
	}
	if plan.setLevel && plan.level > a.reload.level.Level() {
		a.log.Info("configuration reloaded", "changed", changed)
		a.reload.apply(a.cfg, plan)
		return nil
	}
	a.reload.apply(a.cfg, plan)
	a.log.Info("configuration reloaded", "changed", changed)
	return nil
}

// reloadPlan is what a reload does with a new configuration.
type reloadPlan struct {
	next *Config
	// setLevel is set when log.level changes.
	setLevel bool
	level    slog.Level
	// tls replaces the listeners' TLS configuration when set.
	tls *tls.Config
	// password is set when the service account's password changed (bind_password, or
	// the contents of bind_password_file or the environment variable).
	password bool
	// clients, when set, replaces the `clients:` accounts.
	clients func()
	// changed describes what is applied, restart names the keys that are not.
	changed, restart []string
}

// plan compares the running configuration with next and loads what a reload applies,
// so that any error comes before anything changes.
func (s *reloadState) plan(running, next *Config) (*reloadPlan, error) {
	p := &reloadPlan{next: next}
	tlsWasOn, tlsIsOn := running.Listen.TLS.CertFile != "", next.Listen.TLS.CertFile != ""
	for _, key := range changedKeys(running, next) {
		switch {
		case key == "log.level" && s.level != nil:
			p.level, _ = parseLevel(next.Log.Level)
			p.setLevel = true
			p.changed = append(p.changed, fmt.Sprintf("log.level (%s → %s)", running.Log.Level, next.Log.Level))
		case strings.HasPrefix(key, "listen.tls.") && tlsWasOn && tlsIsOn:
			// Read below, changed or not.
		case key == "upstream.bind_password" || key == "upstream.bind_password_file":
			// A rotated secret: applied below.
		case key == "clients" || strings.HasPrefix(key, "clients["):
			// Loaded again below, changed or not (a password file may have changed).
		default:
			p.restart = append(p.restart, key)
		}
	}
	if secretDigest(next) != s.secret || running.Upstream.BindPassword != next.Upstream.BindPassword ||
		running.Upstream.BindPasswordFile != next.Upstream.BindPasswordFile {
		p.password = true
		p.changed = append(p.changed, "upstream service password")
	}
	if tlsWasOn && tlsIsOn {
		conf, err := next.Listen.ServerTLS()
		if err != nil {
			return nil, fmt.Errorf("listen.%w", err)
		}
		old := s.tls.Load()
		if !sameCertificate(old, conf) {
			leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("listen.tls.cert_file: %w", err)
			}
			p.changed = append(p.changed, fmt.Sprintf("listen.tls certificate (subject %q, serial %x, valid until %s)",
				leaf.Subject.String(), leaf.SerialNumber, leaf.NotAfter.UTC().Format("2006-01-02")))
			p.tls = conf
		}
		if !sameClientCAs(old, conf) {
			p.changed = append(p.changed, "listen.tls.client_ca_file")
			p.tls = conf
		}
	}
	return p, nil
}

// apply makes a plan take effect and records the applied values in the running
// configuration, which later reloads compare with.
func (s *reloadState) apply(running *Config, p *reloadPlan) {
	if p.setLevel {
		s.level.Set(p.level)
		running.Log.Level = p.next.Log.Level
	}
	if p.tls != nil {
		s.tls.Store(p.tls)
	}
	if p.password {
		s.secret = secretDigest(p.next)
		running.Upstream.BindPassword = p.next.Upstream.BindPassword
		running.Upstream.BindPasswordFile = p.next.Upstream.BindPasswordFile
	}
	if running.Listen.TLS.CertFile != "" && p.next.Listen.TLS.CertFile != "" {
		running.Listen.TLS = p.next.Listen.TLS
	}
}

// sameCertificate reports whether two TLS configurations present the same chain.
func sameCertificate(a, b *tls.Config) bool {
	if len(a.Certificates) != 1 || len(b.Certificates) != 1 {
		return false
	}
	ca, cb := a.Certificates[0].Certificate, b.Certificates[0].Certificate
	if len(ca) != len(cb) {
		return false
	}
	for i := range ca {
		if !bytes.Equal(ca[i], cb[i]) {
			return false
		}
	}
	return true
}

// sameClientCAs reports whether two TLS configurations verify clients alike.
func sameClientCAs(a, b *tls.Config) bool {
	if a.ClientAuth != b.ClientAuth || (a.ClientCAs == nil) != (b.ClientCAs == nil) {
		return false
	}
	return a.ClientCAs == nil || a.ClientCAs.Equal(b.ClientCAs)
}

// secretDigest is a digest of the service password file's contents ("" when there is
// none or it cannot be read: upstream.New, or UpdateBindPassword on reload, reports
// that). Only the digest is kept.
func secretDigest(cfg *Config) [sha256.Size]byte {
	var data []byte
	if f := cfg.Upstream.BindPasswordFile; f != "" {
		data, _ = os.ReadFile(f)
	}
	return sha256.Sum256(data)
}

// changedKeys lists the configuration keys, as paths of the file ("upstream.urls"),
// whose values differ between a and b, in the order of the Config struct.
func changedKeys(a, b *Config) []string {
	var out []string
	diffValues("", reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), &out)
	return out
}

func diffValues(path string, a, b reflect.Value, out *[]string) {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() { // derived state, not a key of the file
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			switch {
			case name == "-":
				continue
			case opts == "inline":
				diffValues(path, a.Field(i), b.Field(i), out)
			default:
				diffValues(join(path, name), a.Field(i), b.Field(i), out)
			}
		}
		return
	}
	if a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0 {
		return // a missing list and an empty one are the same setting
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}
