package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/passhash"
)

func TestValidateClients(t *testing.T) {
	h, err := passhash.New([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	err = ValidateClients([]ClientConfig{
		{DN: "cn=a,dc=x", PasswordHash: h},
		{DN: "CN=A, DC=X", Name: "a", PasswordHash: h},        // same DN
		{DN: "not a dn", PasswordFile: "f"},                   // bad DN
		{DN: "cn=b,dc=x", Name: "A", PasswordFile: "f"},       // same name
		{DN: "cn=c,dc=x"},                                     // no password
		{DN: "cn=d,dc=x", PasswordHash: h, PasswordFile: "f"}, // both
		{DN: "cn=e,dc=x", PasswordHash: "{SSHA}xyz"},          // not a hash we read
		{Name: "x=y", PasswordHash: h},                        // no DN, DN as name
	})
	for _, want := range []string{
		"clients[1]: dn: the same as clients[0]'s", "clients[2]: dn: \"not a dn\" is not a DN",
		"clients[3]: name: the same as clients[1]'s", "clients[4]: needs password_hash or password_file",
		"clients[5]: password_hash and password_file: give one", "clients[6]: password_hash: not an argon2id",
		"clients[7]: dn: required", "clients[7]: name: \"x=y\" is a DN",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "clients[0]:") {
		t.Errorf("a valid entry is reported: %v", err)
	}
}

func TestLoadClients(t *testing.T) {
	dir := t.TempDir()
	h, _ := passhash.New([]byte("by-hash"))
	hashFile, clearFile := filepath.Join(dir, "hash"), filepath.Join(dir, "clear")
	os.WriteFile(hashFile, []byte(h+"\n"), 0o600)
	os.WriteFile(clearFile, []byte("from-file\r\n"), 0o600)
	cs, err := LoadClients([]ClientConfig{
		{DN: "cn=one,dc=x", Name: "one", PasswordHash: h},
		{DN: "cn=two,dc=x", PasswordFile: hashFile},
		{DN: "cn=three,dc=x", PasswordFile: clearFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name, password string
		ok             bool
	}{
		{"CN=One,DC=X", "by-hash", true}, {"ONE", "by-hash", true}, {"cn=one,dc=x", "wrong", false},
		{"cn=two,dc=x", "by-hash", true}, {"cn=three,dc=x", "from-file", true}, {"cn=three,dc=x", "from-file\r", false},
	} {
		a := cs.match(c.name)
		if a == nil {
			t.Fatalf("%q: no account", c.name)
		}
		// Twice: the second check of a good password takes the fast path.
		for range 2 {
			if ok, err := cs.verify(ctx, a, []byte(c.password)); ok != c.ok || err != nil {
				t.Errorf("%q / %q: %v %v, want %v", c.name, c.password, ok, err, c.ok)
			}
		}
	}
	for _, name := range []string{"cn=four,dc=x", "two", "uid=one,dc=x"} {
		if cs.match(name) != nil {
			t.Errorf("%q matches an account", name)
		}
	}
	if _, err := LoadClients([]ClientConfig{{DN: "cn=x", PasswordFile: filepath.Join(dir, "missing")}}); err == nil {
		t.Error("a missing password file loads")
	}
}

func TestClientsReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("one\n"), 0o600)
	list := []ClientConfig{{DN: "cn=a,dc=x", PasswordFile: file}}
	cs, err := LoadClients(list)
	if err != nil {
		t.Fatal(err)
	}
	// The same list, the file re-hashed with a new salt: nothing changed.
	if _, changed, err := cs.Reload(list); changed || err != nil {
		t.Fatalf("same list: changed %v, %v", changed, err)
	}
	os.WriteFile(file, []byte("two\n"), 0o600)
	apply, changed, err := cs.Reload(list)
	if !changed || err != nil {
		t.Fatalf("rewritten file: changed %v, %v", changed, err)
	}
	ctx := context.Background()
	if ok, _ := cs.verify(ctx, cs.match("cn=a,dc=x"), []byte("two")); ok {
		t.Fatal("the new password works before apply")
	}
	apply()
	if ok, _ := cs.verify(ctx, cs.match("cn=a,dc=x"), []byte("two")); !ok {
		t.Fatal("the new password does not work after apply")
	}
	if ok, _ := cs.verify(ctx, cs.match("cn=a,dc=x"), []byte("one")); ok {
		t.Fatal("the old password still works")
	}
	if _, _, err := cs.Reload([]ClientConfig{{DN: "cn=a,dc=x"}}); err == nil {
		t.Fatal("an invalid list reloads")
	}
}
