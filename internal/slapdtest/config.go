package slapdtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// installation is where the local OpenLDAP keeps its programs, schemas and
// modules. Debian's paths come first; the others let the package work with
// the usual builds elsewhere.
type installation struct {
	slapd, slapadd string
	schemaDir      string
	moduleDir      string // empty when the backends and overlays are built in
}

func findInstallation() (installation, error) {
	var inst installation
	var err error
	if inst.slapd, err = findProgram("slapd"); err != nil {
		return inst, err
	}
	if inst.slapadd, err = findProgram("slapadd"); err != nil {
		return inst, err
	}
	inst.schemaDir = firstExisting("core.schema", "/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema")
	if inst.schemaDir == "" {
		return inst, errors.New("slapdtest: OpenLDAP schema directory (core.schema) not found")
	}
	inst.moduleDir = firstExisting("back_mdb.so", "/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap", "/usr/local/libexec/openldap")
	return inst, nil
}

// findProgram looks in PATH and then in the sbin directories, which are
// often missing from a non-root PATH.
func findProgram(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/libexec"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("slapdtest: %s not found (install Debian's slapd package)", name)
}

func firstExisting(file string, dirs ...string) string {
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, file)); err == nil {
			return dir
		}
	}
	return ""
}

// writeConfig writes the slapd.conf that both slapadd and slapd read.
func (s *Server) writeConfig(opts Options) error {
	inst := s.inst
	var b strings.Builder
	b.WriteString("# Written by ldapproxy's internal/slapdtest.\n")
	for _, schema := range append([]string{"core", "cosine", "inetorgperson", "nis"}, opts.Schemas...) {
		if schema == "" || strings.ContainsRune(schema, filepath.Separator) {
			return fmt.Errorf("schema %q: want a file name without .schema", schema)
		}
		file := filepath.Join(inst.schemaDir, schema+".schema")
		if _, err := os.Stat(file); err != nil {
			return fmt.Errorf("schema %q: %w", schema, err)
		}
		fmt.Fprintf(&b, "include %s\n", quote(file))
	}
	if opts.ExtraSchema != "" {
		file := filepath.Join(s.Dir, "extra.schema")
		if err := os.WriteFile(file, []byte(opts.ExtraSchema), 0o600); err != nil {
			return fmt.Errorf("extra schema: %w", err)
		}
		fmt.Fprintf(&b, "include %s\n", quote(file))
	}
	modules := []string{"back_mdb"}
	if opts.MemberOf {
		modules = append(modules, "memberof")
	}
	if opts.PasswordPolicy {
		modules = append(modules, "ppolicy")
	}
	if opts.Syncprov {
		modules = append(modules, "syncprov")
	}
	if opts.RefInt {
		modules = append(modules, "refint")
	}
	if inst.moduleDir != "" {
		fmt.Fprintf(&b, "modulepath %s\n", quote(inst.moduleDir))
		for _, m := range modules {
			fmt.Fprintf(&b, "moduleload %s\n", m)
		}
	}
	fmt.Fprintf(&b, "pidfile %s\nargsfile %s\n", quote(s.pidFile()), quote(filepath.Join(s.Dir, "slapd.args")))
	// By default, paged and unpaged searches over every user must work,
	// whatever the data size.
	sizeLimit := opts.SizeLimit
	if sizeLimit == "" {
		sizeLimit = "unlimited"
	}
	fmt.Fprintf(&b, "sizelimit %s\ntimelimit unlimited\n", sizeLimit)
	if opts.IdleTimeout > 0 {
		fmt.Fprintf(&b, "idletimeout %d\n", int64((opts.IdleTimeout+time.Second-1)/time.Second))
	}
	// Without sorted values, each modify of a group with thousands of
	// members compares every value with every other.
	b.WriteString("sortvals member\n")
	if s.PKI != nil {
		fmt.Fprintf(&b, "TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			quote(s.PKI.CAFile), quote(s.PKI.CertFile), quote(s.PKI.KeyFile))
		verify := "never"
		if opts.VerifyClients {
			verify = "demand"
		}
		fmt.Fprintf(&b, "TLSVerifyClient %s\n", verify)
	}

	b.WriteString("\ndatabase mdb\nmaxsize 1073741824\n")
	// The data is thrown away after the test; a killed slapd loses nothing
	// without fsync because the pages are already in the kernel.
	b.WriteString("dbnosync\n")
	fmt.Fprintf(&b, "suffix %s\nrootdn %s\nrootpw %s\ndirectory %s\n",
		quote(s.Suffix), quote(s.AdminDN), quote(s.AdminPassword), quote(filepath.Join(s.Dir, "db")))
	indexed := "objectClass,uid,cn,mail,member,entryUUID"
	if opts.MemberOf {
		indexed += ",memberOf"
	}
	if opts.Syncprov {
		indexed += ",entryCSN"
	}
	fmt.Fprintf(&b, "index %s eq\n", indexed)
	b.WriteString("access to attrs=userPassword by self write by anonymous auth by * none\n")
	for _, a := range opts.Access {
		b.WriteString(strings.NewReplacer("SUFFIX", s.Suffix, "SERVICE", s.ServiceDN).Replace(a) + "\n")
	}
	b.WriteString("access to * by * read\n")
	if opts.MemberOf {
		b.WriteString("overlay memberof\n")
		if opts.RefInt {
			b.WriteString("memberof-refint TRUE\n")
		}
	}
	if opts.RefInt {
		b.WriteString("overlay refint\nrefint_attributes member\n")
	}
	if opts.Syncprov {
		b.WriteString("overlay syncprov\nsyncprov-checkpoint 100 1\n")
		if !opts.SyncprovNoSessionLog {
			b.WriteString("syncprov-sessionlog 10000\n")
		}
	}
	if opts.PasswordPolicy {
		fmt.Fprintf(&b, "overlay ppolicy\nppolicy_default %s\n", quote(s.policyDN()))
	}
	return os.WriteFile(s.confFile(), []byte(b.String()), 0o600)
}

// quote makes v one slapd.conf argument, whatever spaces it holds.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
