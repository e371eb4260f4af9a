package proxy

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// TestPasswordCachesIdentities: a synced user's hash is kept by the user, any other name
// that is a DN by the DN, and a name that is neither not at all; the upstream refusing a
// password, or a change through the proxy, reaches both kinds.
func TestPasswordCachesIdentities(t *testing.T) {
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, nil, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	alice := &cache.User{ID: "id-alice", DN: "uid=alice,ou=people,dc=example,dc=org", Username: "alice", IsActive: true}
	w, err := store.BeginSync(cache.KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PutUser(alice); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	creds, err := cache.NewCredentials(store, cache.CredentialConfig{CachePasswords: true,
		Argon2: cache.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer creds.Close()
	p := &passwordCaches{creds: creds, store: store, log: slog.New(slog.DiscardHandler)}
	flush := func() {
		t.Helper()
		if err := creds.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	verifyDN := func(dn, password string, want error) {
		t.Helper()
		if _, reason := creds.VerifyDN(context.Background(), dn, []byte(password)); !errors.Is(reason, want) {
			t.Fatalf("VerifyDN(%s) = %v, want %v", dn, reason, want)
		}
	}
	const svc = "cn=svc-gitlab,ou=services,dc=example,dc=org"

	p.rememberHash(alice, alice.DN, []byte("alice-1"))
	p.rememberHash(nil, svc, []byte("svc-1"))
	p.rememberHash(nil, `EXAMPLE\nobody`, []byte("x"))
	p.rememberHash(nil, "nobody@example.org", []byte("x"))
	flush()
	if creds.Len() != 2 {
		t.Fatalf("%d hashes, want alice's and the service account's", creds.Len())
	}
	if _, reason := creds.Verify(context.Background(), alice, []byte("alice-1")); reason != nil {
		t.Fatalf("alice: %v", reason)
	}
	verifyDN(alice.DN, "alice-1", cache.ErrOfflineNoHash) // a user's hash is the user's, not its DN's
	verifyDN(svc, "svc-1", nil)

	// Refused upstream, in another spelling: gone.
	p.forget("CN=svc-gitlab,OU=services,dc=example,dc=org", nil)
	verifyDN(svc, "svc-1", cache.ErrOfflineNoHash)
	p.forget(alice.DN, nil)
	if creds.Len() != 0 {
		t.Fatalf("%d hashes after both were refused", creds.Len())
	}

	// Changed through the proxy: the new password replaces the old, for either kind.
	p.rememberHash(nil, svc, []byte("svc-1"))
	flush()
	p.changed(svc, []byte("svc-2"))
	p.changed(alice.DN, []byte("alice-2"))
	flush()
	verifyDN(svc, "svc-1", cache.ErrOfflineWrongPassword)
	verifyDN(svc, "svc-2", nil)
	if _, reason := creds.Verify(context.Background(), alice, []byte("alice-2")); reason != nil {
		t.Fatalf("alice's new password: %v", reason)
	}
	// A change whose new password the proxy cannot tell only forgets.
	p.changed(svc, nil)
	verifyDN(svc, "svc-2", cache.ErrOfflineNoHash)
}
