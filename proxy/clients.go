package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/passhash"
)

// ClientConfig is one entry of the top-level `clients:` list: an identity the proxy
// authenticates by itself and never sends upstream, such as an application's service
// account. Its binds work while every upstream is down.
type ClientConfig struct {
	// DN is the bind DN the application uses.
	DN string `yaml:"dn"`
	// Name is an optional second bind name (a plain user name), matched case-insensitively.
	Name string `yaml:"name"`
	// PasswordHash is the password's hash: argon2id ($argon2id$v=19$...) or bcrypt
	// ($2b$...). `ldapproxy hash-password` makes one.
	PasswordHash string `yaml:"password_hash"`
	// PasswordFile names a file holding the hash, or the password itself (a trailing
	// newline is dropped); a password read from it is hashed in memory at start. For a
	// secret mounted into the container.
	PasswordFile string `yaml:"password_file"`
}

// ValidateClients checks the `clients:` list without reading any file: each entry has a
// valid DN, exactly one of password_hash and password_file, a hash that parses, and no
// DN or name is given twice.
func ValidateClients(list []ClientConfig) error {
	var errs []error
	seen := map[string]int{}
	for i, c := range list {
		at := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("clients[%d]: "+format, append([]any{i}, args...)...))
		}
		if c.DN == "" {
			at("dn: required")
		} else if _, err := ldap.ParseDN(c.DN); err != nil {
			at("dn: %q is not a DN: %v", c.DN, err)
		} else if j, dup := seen["dn:"+directory.NormalizeDN(c.DN)]; dup {
			at("dn: the same as clients[%d]'s", j)
		} else {
			seen["dn:"+directory.NormalizeDN(c.DN)] = i
		}
		if c.Name != "" {
			if strings.ContainsAny(c.Name, "=,") {
				at("name: %q is a DN; give a plain name", c.Name)
			} else if j, dup := seen["name:"+strings.ToLower(c.Name)]; dup {
				at("name: the same as clients[%d]'s", j)
			} else {
				seen["name:"+strings.ToLower(c.Name)] = i
			}
		}
		switch {
		case c.PasswordHash == "" && c.PasswordFile == "":
			at("needs password_hash or password_file")
		case c.PasswordHash != "" && c.PasswordFile != "":
			at("password_hash and password_file: give one")
		case c.PasswordHash != "":
			if _, err := passhash.Parse(c.PasswordHash); err != nil {
				at("password_hash: %v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// Clients are the `clients:` accounts, ready to authenticate binds. A reload replaces
// the accounts (Reload); sessions already bound keep their account.
type Clients struct {
	set atomic.Pointer[accountSet]
	// slots bounds the hash checks running at once: each holds the hash's memory
	// (19 MiB for the default argon2id) for tens of milliseconds.
	slots chan struct{}
	key   [32]byte // keys the fingerprints of passwords that verified; memory only
}

// accountSet is one loaded `clients:` list.
type accountSet struct {
	byDN   map[string]*clientAccount // by directory.NormalizeDN
	byName map[string]*clientAccount // by lower-cased name
	// digest identifies what the list was loaded from (DNs, names, hashes, the password
	// files' contents), so that a reload tells whether anything changed.
	digest [sha256.Size]byte
}

// clientAccount is one loaded account.
type clientAccount struct {
	dn   string
	hash *passhash.Hash
	mu   sync.Mutex
	// good is the fingerprint (HMAC under Clients.key) of the last password that
	// verified, so that an application binding again and again costs one hash check,
	// not one per bind. A wrong password is always checked in full.
	good [sha256.Size]byte
	has  bool
}

// maxConcurrentChecks is how many client password checks run at once.
const maxConcurrentChecks = 2

// LoadClients reads the accounts' password files and parses their hashes; a password
// file that holds a password rather than a hash is hashed here, in memory.
func LoadClients(list []ClientConfig) (*Clients, error) {
	if err := ValidateClients(list); err != nil {
		return nil, err
	}
	cs := &Clients{slots: make(chan struct{}, maxConcurrentChecks)}
	if _, err := rand.Read(cs.key[:]); err != nil {
		return nil, err
	}
	set, err := loadAccounts(list)
	if err != nil {
		return nil, err
	}
	cs.set.Store(set)
	return cs, nil
}

// Reload reads list again (its password files included) and reports whether it differs
// from the accounts in use, without changing them: apply makes it the list new binds are
// checked against. Sessions already bound keep their account.
func (cs *Clients) Reload(list []ClientConfig) (apply func(), changed bool, err error) {
	if err := ValidateClients(list); err != nil {
		return nil, false, err
	}
	next, err := loadAccounts(list)
	if err != nil {
		return nil, false, err
	}
	return func() { cs.set.Store(next) }, next.digest != cs.set.Load().digest, nil
}

// loadAccounts reads the password files and parses the hashes of list.
func loadAccounts(list []ClientConfig) (*accountSet, error) {
	set := &accountSet{byDN: map[string]*clientAccount{}, byName: map[string]*clientAccount{}}
	digest := sha256.New()
	for i, c := range list {
		text := c.PasswordHash
		if c.PasswordFile != "" {
			b, err := os.ReadFile(c.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("clients[%d]: password_file: %w", i, err)
			}
			text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			sum := sha256.Sum256([]byte(text))
			fmt.Fprintf(digest, "%q %q file %x\n", c.DN, c.Name, sum)
			if text == "" {
				return nil, fmt.Errorf("clients[%d]: password_file %s is empty", i, c.PasswordFile)
			}
			if !passhash.IsHash(text) {
				if text, err = passhash.New([]byte(text)); err != nil {
					return nil, fmt.Errorf("clients[%d]: %w", i, err)
				}
			}
		}
		if c.PasswordFile == "" {
			fmt.Fprintf(digest, "%q %q hash %q\n", c.DN, c.Name, text)
		}
		h, err := passhash.Parse(text)
		if err != nil {
			return nil, fmt.Errorf("clients[%d]: password_file %s: %w", i, c.PasswordFile, err)
		}
		a := &clientAccount{dn: c.DN, hash: h}
		set.byDN[directory.NormalizeDN(c.DN)] = a
		if c.Name != "" {
			set.byName[strings.ToLower(c.Name)] = a
		}
	}
	digest.Sum(set.digest[:0])
	return set, nil
}

// Len is the number of accounts.
func (cs *Clients) Len() int {
	if cs == nil {
		return 0
	}
	return len(cs.set.Load().byDN)
}

// match returns the account a bind name names: its DN in any spelling, or its name.
func (cs *Clients) match(name string) *clientAccount {
	if cs == nil {
		return nil
	}
	set := cs.set.Load()
	if len(set.byDN) == 0 {
		return nil
	}
	if strings.Contains(name, "=") {
		return set.byDN[directory.NormalizeDN(name)]
	}
	return set.byName[strings.ToLower(name)]
}

// verify checks a password against the account's hash; an error only when ctx ends
// while the check waits for its turn.
func (cs *Clients) verify(ctx context.Context, a *clientAccount, password []byte) (bool, error) {
	mac := hmac.New(sha256.New, cs.key[:])
	mac.Write([]byte(a.dn))
	mac.Write([]byte{0})
	mac.Write(password)
	var fp [sha256.Size]byte
	mac.Sum(fp[:0])
	a.mu.Lock()
	known := a.has && hmac.Equal(a.good[:], fp[:])
	a.mu.Unlock()
	if known {
		return true, nil
	}
	select {
	case cs.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	ok := a.hash.Verify(password)
	<-cs.slots
	if ok {
		a.mu.Lock()
		a.good, a.has = fp, true
		a.mu.Unlock()
	}
	return ok, nil
}
