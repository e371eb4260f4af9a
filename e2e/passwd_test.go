package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// writebackConfig is a proxy in front of up whose service account is slapd's admin
// (slapd lets nobody else write another user's password), with the top-level password
// keys appended.
func writebackConfig(up *slapdtest.Server, keys string) string {
	y := config(up, nil)
	y = strings.Replace(y, fmt.Sprintf("bind_dn: %q", up.ServiceDN), fmt.Sprintf("bind_dn: %q", up.AdminDN), 1)
	y = strings.Replace(y, fmt.Sprintf("bind_password: %q", up.ServicePassword), fmt.Sprintf("bind_password: %q", up.AdminPassword), 1)
	return y + keys
}

// upstreamBind binds to slapd itself and returns the result code.
func upstreamBind(t *testing.T, up *slapdtest.Server, dn, password string) uint16 {
	t.Helper()
	return resultCode(dial(t, up.URL).Bind(dn, password))
}

// ldapmodify runs ldapmodify against url as dn with the LDIF on its standard input.
func ldapmodify(t *testing.T, url, dn, password, ldif string) (string, int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "change.ldif")
	if err := os.WriteFile(f, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-x", "-H", url, "-f", f}
	if dn != "" {
		args = append(args, "-D", dn, "-w", password)
	}
	return tool(t, nil, "ldapmodify", args...)
}

var generated = regexp.MustCompile(`New password: (\S+)`)

// ldappasswd runs ldappasswd and returns its output and the LDAP result code it printed:
// ldappasswd exits with 1 on any refusal, unlike ldapmodify.
func ldappasswd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, exit := tool(t, nil, "ldappasswd", append([]string{"-x"}, args...)...)
	if exit == 0 {
		return out, 0
	}
	m := regexp.MustCompile(`Result: .*\((\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ldappasswd: result %d without a result\n%s", exit, out)
	}
	code, _ := strconv.Atoi(m[1])
	return out, code
}

func TestPasswordWriteback(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 12, Groups: -1, PasswordPolicy: true})
	helpdesk := up.UserDN(12)
	p := startProxy(t, writebackConfig(up, fmt.Sprintf("password_writeback: true\npassword_reset_identities:\n  - %q\n", helpdesk)))
	var passwords []string // every password set here: none may appear in the logs

	// changed checks that slapd itself now takes the new password and refuses the old.
	changed := func(t *testing.T, i int, newPassword string) {
		t.Helper()
		if code := upstreamBind(t, up, up.UserDN(i), newPassword); code != 0 {
			t.Fatalf("slapd refuses the new password of %s: %d", up.UserDN(i), code)
		}
		if code := upstreamBind(t, up, up.UserDN(i), slapdtest.UserPassword(i)); code != ldap.LDAPResultInvalidCredentials {
			t.Fatalf("slapd still takes the old password of %s: %d", up.UserDN(i), code)
		}
	}
	unchanged := func(t *testing.T, i int) {
		t.Helper()
		if code := upstreamBind(t, up, up.UserDN(i), slapdtest.UserPassword(i)); code != 0 {
			t.Fatalf("the password of %s changed: the old one gives %d", up.UserDN(i), code)
		}
	}

	t.Run("ldappasswd with the old and the new password", func(t *testing.T) {
		passwords = append(passwords, "new-secret-0001")
		out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(1), "-w", slapdtest.UserPassword(1),
			"-a", slapdtest.UserPassword(1), "-s", "new-secret-0001")
		if code != 0 {
			t.Fatalf("ldappasswd: result %d\n%s", code, out)
		}
		changed(t, 1, "new-secret-0001")
		// And through the proxy too.
		if err := dial(t, p.URL).Bind(up.UserDN(1), "new-secret-0001"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ldappasswd without a new password gets a generated one", func(t *testing.T) {
		out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(2), "-w", slapdtest.UserPassword(2))
		m := generated.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("ldappasswd: result %d, no generated password\n%s", code, out)
		}
		passwords = append(passwords, m[1])
		changed(t, 2, m[1])
	})

	t.Run("a password-policy violation reaches the client", func(t *testing.T) {
		out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(3), "-w", slapdtest.UserPassword(3),
			"-a", slapdtest.UserPassword(3), "-s", "short")
		if code != ldap.LDAPResultConstraintViolation || !strings.Contains(out, "Password fails quality checking policy") {
			t.Fatalf("ldappasswd: result %d, want 19 with slapd's message\n%s", code, out)
		}
		unchanged(t, 3)
	})

	t.Run("a wrong old password is slapd's to refuse", func(t *testing.T) {
		out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(3), "-w", slapdtest.UserPassword(3),
			"-a", "not-the-old-one", "-s", "new-secret-0003")
		if code != ldap.LDAPResultUnwillingToPerform || !strings.Contains(out, "old password") {
			t.Fatalf("ldappasswd: result %d, want slapd's 53\n%s", code, out)
		}
		unchanged(t, 3)
	})

	t.Run("ldapmodify of userPassword", func(t *testing.T) {
		passwords = append(passwords, "new-secret-0004")
		out, code := ldapmodify(t, p.URL, up.UserDN(4), slapdtest.UserPassword(4),
			"dn: "+up.UserDN(4)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0004\n")
		if code != 0 {
			t.Fatalf("ldapmodify: exit %d\n%s", code, out)
		}
		changed(t, 4, "new-secret-0004")
	})

	t.Run("ldapmodify deleting the old and adding the new password", func(t *testing.T) {
		passwords = append(passwords, "new-secret-0005")
		out, code := ldapmodify(t, p.URL, up.UserDN(5), slapdtest.UserPassword(5),
			"dn: "+up.UserDN(5)+"\nchangetype: modify\ndelete: userPassword\nuserPassword: "+slapdtest.UserPassword(5)+
				"\n-\nadd: userPassword\nuserPassword: new-secret-0005\n")
		if code != 0 {
			t.Fatalf("ldapmodify: exit %d\n%s", code, out)
		}
		changed(t, 5, "new-secret-0005")
	})

	t.Run("ldapmodify with a too short password", func(t *testing.T) {
		out, code := ldapmodify(t, p.URL, up.UserDN(6), slapdtest.UserPassword(6),
			"dn: "+up.UserDN(6)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: short\n")
		if code != ldap.LDAPResultConstraintViolation {
			t.Fatalf("ldapmodify: exit %d, want 19\n%s", code, out)
		}
		unchanged(t, 6)
	})

	t.Run("a modify of anything but a password is refused", func(t *testing.T) {
		out, code := ldapmodify(t, p.URL, up.UserDN(6), slapdtest.UserPassword(6),
			"dn: "+up.UserDN(6)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0006\n-\nreplace: mail\nmail: x@example.org\n")
		if code != ldap.LDAPResultUnwillingToPerform {
			t.Fatalf("ldapmodify: exit %d, want 53\n%s", code, out)
		}
		unchanged(t, 6)
	})

	t.Run("another user's password, by an identity not listed", func(t *testing.T) {
		out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(6), "-w", slapdtest.UserPassword(6),
			"-s", "new-secret-0007", up.UserDN(7))
		if code != ldap.LDAPResultInsufficientAccessRights {
			t.Fatalf("ldappasswd: result %d, want 50\n%s", code, out)
		}
		out, code = ldapmodify(t, p.URL, up.UserDN(6), slapdtest.UserPassword(6),
			"dn: "+up.UserDN(7)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0007\n")
		if code != ldap.LDAPResultInsufficientAccessRights {
			t.Fatalf("ldapmodify: exit %d, want 50\n%s", code, out)
		}
		unchanged(t, 7)
	})

	t.Run("another user's password, by a listed identity", func(t *testing.T) {
		passwords = append(passwords, "new-secret-0008", "new-secret-0009")
		out, code := ldappasswd(t, "-H", p.URL, "-D", helpdesk, "-w", slapdtest.UserPassword(12),
			"-s", "new-secret-0008", up.UserDN(8))
		if code != 0 {
			t.Fatalf("ldappasswd: result %d\n%s", code, out)
		}
		changed(t, 8, "new-secret-0008")
		out, code = ldapmodify(t, p.URL, helpdesk, slapdtest.UserPassword(12),
			"dn: "+up.UserDN(9)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0009\n")
		if code != 0 {
			t.Fatalf("ldapmodify: exit %d\n%s", code, out)
		}
		changed(t, 9, "new-secret-0009")
		out, code = ldappasswd(t, "-H", p.URL, "-D", helpdesk, "-w", slapdtest.UserPassword(12), up.UserDN(10))
		m := generated.FindStringSubmatch(out)
		if code != 0 || m == nil {
			t.Fatalf("ldappasswd: result %d, no generated password\n%s", code, out)
		}
		passwords = append(passwords, m[1])
		changed(t, 10, m[1])
	})

	t.Run("anonymous clients are refused", func(t *testing.T) {
		out, code := ldappasswd(t, "-H", p.URL, "-s", "new-secret-0011", up.UserDN(11))
		if code != ldap.LDAPResultStrongAuthRequired {
			t.Fatalf("ldappasswd: result %d, want 8 as slapd answers\n%s", code, out)
		}
		out, code = ldapmodify(t, p.URL, "", "",
			"dn: "+up.UserDN(11)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0011\n")
		if code != ldap.LDAPResultStrongAuthRequired {
			t.Fatalf("ldapmodify: exit %d, want 8\n%s", code, out)
		}
		unchanged(t, 11)
	})

	t.Run("counted, logged without passwords", func(t *testing.T) {
		var text string
		eventually(t, settleWithin, "the last refusal to be counted", func() bool {
			text = p.scrape(t)
			return strings.Contains(text, `ldapproxy_password_writeback_total{result="refused"} 5`)
		})
		for _, want := range []string{
			`ldapproxy_password_writeback_total{result="success"} 7`,
			`ldapproxy_password_writeback_total{result="constraintViolation"} 2`,
			`ldapproxy_password_writeback_total{result="unwillingToPerform"} 1`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		logs := p.logs.String()
		if !strings.Contains(logs, `"msg":"password change"`) || !strings.Contains(logs, `"dn":"`+up.UserDN(8)+`","kind":"reset","result":"success"`) {
			t.Errorf("no log line for the reset of %s", up.UserDN(8))
		}
		for _, pw := range append(passwords, "short", "not-the-old-one") {
			if strings.Contains(logs, pw) {
				t.Errorf("the logs hold the password %q", pw)
			}
		}
	})
}

func TestPasswordWritebackOff(t *testing.T) {
	up := withSlapd(t, slapdtest.Options{Users: 2, Groups: -1})
	p := startProxy(t, writebackConfig(up, ""))
	out, code := ldappasswd(t, "-H", p.URL, "-D", up.UserDN(1), "-w", slapdtest.UserPassword(1),
		"-a", slapdtest.UserPassword(1), "-s", "new-secret-0001")
	if code != ldap.LDAPResultUnwillingToPerform {
		t.Fatalf("ldappasswd: result %d, want 53\n%s", code, out)
	}
	out, code = ldapmodify(t, p.URL, up.UserDN(1), slapdtest.UserPassword(1),
		"dn: "+up.UserDN(1)+"\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret-0001\n")
	if code != ldap.LDAPResultUnwillingToPerform {
		t.Fatalf("ldapmodify: exit %d, want 53\n%s", code, out)
	}
	if code := upstreamBind(t, up, up.UserDN(1), slapdtest.UserPassword(1)); code != 0 {
		t.Fatalf("the password changed with writeback off: %d", code)
	}
}
