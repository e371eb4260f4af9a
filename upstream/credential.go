package upstream

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync/atomic"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// sessionSealer seals the credentials that sessions keep to bind again after a
// failover (Config.RebindOnFailover). Its AES-256 key is made from crypto/rand when the
// process starts and exists nowhere else: no file, no log, no other process can open a
// sealed credential, and a memory dump shows the key and the sealed bytes side by side
// rather than passwords to grep for.
var sessionSealer = newSealer()

// sealCount numbers the seals made with sessionSealer: each seal's nonce is its number
// (NIST SP 800-38D §8.2.1, the deterministic construction). AES-GCM asks only that a
// nonce never repeat under one key; the key lives and dies with the process, and this
// counter, which starts with it and only goes up, does not wrap in 2^64 seals. Random
// 96-bit nonces would be as safe for the number of binds a process sees, but each cost a
// read of the system's random source on every bind.
var sealCount atomic.Uint64

func newSealer() cipher.AEAD {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand), or the program crashes
	block, err := aes.NewCipher(key)
	clear(key) // the cipher keeps its own expanded copy
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// sealedCredential is a session's bind DN and password, sealed with the process key
// (AES-GCM: nonce, then ciphertext and tag). Only open turns it back into a bind request,
// for the moment that request is sent.
type sealedCredential struct {
	box []byte
}

// sealCredential seals the DN and password of a simple bind request, or returns nil when
// msg is not one with a password.
func sealCredential(msg []byte) *sealedCredential {
	dn, password, ok := ldapwire.SimpleBindBytes(msg)
	if !ok || len(password) == 0 {
		return nil
	}
	// Sealed in place: the plain text is written where the ciphertext goes, after the
	// nonce, and nothing else ever holds it.
	n := sessionSealer.NonceSize()
	box := make([]byte, n, n+binary.MaxVarintLen64+len(dn)+len(password)+sessionSealer.Overhead())
	binary.BigEndian.PutUint64(box[n-8:], sealCount.Add(1)) // the nonce's first 4 bytes stay 0
	plain := binary.AppendUvarint(box[n:n], uint64(len(dn)))
	plain = append(plain, dn...)
	plain = append(plain, password...)
	return &sealedCredential{box: sessionSealer.Seal(box[:n], box[:n], plain, nil)}
}

// bindRequest opens the credential into a simple bind request. The caller clears the
// request once it is sent.
func (s *sealedCredential) bindRequest() ([]byte, error) {
	n := sessionSealer.NonceSize()
	if s == nil || len(s.box) < n {
		return nil, errors.New("no session credential")
	}
	plain, err := sessionSealer.Open(nil, s.box[:n], s.box[n:], nil)
	if err != nil {
		return nil, errors.New("session credential does not open")
	}
	defer clear(plain)
	l, k := binary.Uvarint(plain)
	if k <= 0 || l > uint64(len(plain)-k) {
		return nil, errors.New("session credential is malformed")
	}
	dn, password := string(plain[k:k+int(l)]), plain[k+int(l):]
	return ldapwire.BindRequest(dn, password), nil
}

// wipe overwrites the sealed bytes: a credential dropped (Unbind, Close, a new bind)
// leaves nothing behind for the garbage collector to hand out.
func (s *sealedCredential) wipe() {
	if s != nil {
		clear(s.box)
		s.box = nil
	}
}

// String keeps fmt from printing the sealed bytes, which mean nothing anyway.
func (s *sealedCredential) String() string { return "[sealed credential]" }
