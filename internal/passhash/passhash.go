// Package passhash reads and makes password hashes in their standard text forms: argon2id
// in the PHC string format ($argon2id$v=19$m=19456,t=2,p=1$salt$hash, base64 without
// padding) and bcrypt ($2a$, $2b$, $2y$). The proxy authenticates its own client
// accounts with them (the `clients:` configuration section).
package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters Hash uses: the first of OWASP's recommended settings (19 MiB,
// two passes, one lane), a 16-byte salt and a 32-byte key.
const (
	DefaultMemoryKiB = 19 * 1024
	DefaultTime      = 2
	DefaultThreads   = 1
	saltLen          = 16
	keyLen           = 32
)

// Bounds on what a hash from a configuration may ask of the machine at each check.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	maxThreads   = 64
)

var b64 = base64.RawStdEncoding

// Hash is a parsed password hash.
type Hash struct {
	text string // as given
	// argon2id; zero for bcrypt
	memoryKiB, time uint32
	threads         uint8
	salt, key       []byte
}

// ErrUnknownFormat is returned for a string that is neither an argon2id nor a bcrypt
// hash.
var ErrUnknownFormat = errors.New("not an argon2id ($argon2id$...) or bcrypt ($2b$...) hash")

// IsHash reports whether s looks like a hash in one of the forms Parse reads, without
// checking it further.
func IsHash(s string) bool {
	return strings.HasPrefix(s, "$argon2id$") || isBcrypt(s)
}

func isBcrypt(s string) bool {
	return len(s) > 4 && s[0] == '$' && s[1] == '2' && strings.ContainsRune("aby", rune(s[2])) && s[3] == '$'
}

// Parse reads a hash.
func Parse(s string) (*Hash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case isBcrypt(s):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bcrypt hash: %w", err)
		}
		return &Hash{text: s}, nil
	}
	return nil, ErrUnknownFormat
}

// parseArgon2id reads $argon2id$v=19$m=M,t=T,p=P$salt$key.
func parseArgon2id(s string) (*Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return nil, errors.New("argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$hash")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("argon2id hash: version %q, want v=19", parts[2])
	}
	h := &Hash{text: s}
	seen := map[string]bool{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || seen[k] {
			return nil, fmt.Errorf("argon2id hash: bad parameter %q", kv)
		}
		seen[k] = true
		switch k {
		case "m":
			h.memoryKiB = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > maxThreads {
				return nil, fmt.Errorf("argon2id hash: p=%d, at most %d", n, maxThreads)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id hash: unknown parameter %q", k)
		}
	}
	switch {
	case !seen["m"] || !seen["t"] || !seen["p"]:
		return nil, errors.New("argon2id hash: needs m, t and p")
	case h.threads < 1 || h.time < 1 || h.memoryKiB < 8*uint32(h.threads):
		return nil, errors.New("argon2id hash: parameters out of range (t ≥ 1, p ≥ 1, m ≥ 8·p)")
	case h.memoryKiB > maxMemoryKiB || h.time > maxTime:
		return nil, fmt.Errorf("argon2id hash: m=%d,t=%d asks too much of every login (at most m=%d, t=%d)", h.memoryKiB, h.time, maxMemoryKiB, maxTime)
	}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id hash: the salt is not base64 of at least 8 bytes")
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return nil, errors.New("argon2id hash: the hash is not base64 of at least 16 bytes")
	}
	return h, nil
}

// Verify reports whether password matches the hash. It costs what the hash's parameters
// say: milliseconds and, for argon2id, its memory.
func (h *Hash) Verify(password []byte) bool {
	if h.key == nil {
		return bcrypt.CompareHashAndPassword([]byte(h.text), password) == nil
	}
	got := argon2.IDKey(password, h.salt, h.time, h.memoryKiB, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// MemoryKiB is what one Verify holds while it runs, in KiB (bcrypt: 4).
func (h *Hash) MemoryKiB() uint32 {
	if h.key == nil {
		return 4
	}
	return h.memoryKiB
}

// String returns the hash as given.
func (h *Hash) String() string { return h.text }

// New hashes a password with argon2id and the default parameters, in the PHC format.
func New(password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("empty password")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey(password, salt, DefaultTime, DefaultMemoryKiB, DefaultThreads, keyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", DefaultMemoryKiB, DefaultTime, DefaultThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}
