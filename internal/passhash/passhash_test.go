package passhash

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestNewVerifies(t *testing.T) {
	s, err := New([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", s)
	}
	h, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Verify([]byte("correct horse")) {
		t.Error("the right password does not verify")
	}
	for _, wrong := range []string{"", "correct hors", "correct horse ", "Correct horse"} {
		if h.Verify([]byte(wrong)) {
			t.Errorf("%q verifies", wrong)
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("an empty password is hashed")
	}
}

// A hash made by the reference implementation's command-line tool
// (echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32 -e).
func TestReferenceArgon2id(t *testing.T) {
	h, err := Parse("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc")
	if err != nil {
		t.Fatal(err)
	}
	if !h.Verify([]byte("password")) || h.Verify([]byte("passwore")) {
		t.Error("the reference vector does not verify as it should")
	}
}

func TestBcrypt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		s := prefix + string(b[4:])
		h, err := Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		if !h.Verify([]byte("s3cret")) || h.Verify([]byte("s3cret!")) {
			t.Errorf("%s: verify wrong", prefix)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{
		"", "password", "{SSHA}abc", "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=2,p=1,p=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=0,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=2,p=1$!!$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$short",
		"$2b$04$tooshort",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
