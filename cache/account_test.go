package cache

import (
	"errors"
	"testing"
	"time"
)

func TestAccountRefusal(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		a      Account
		want   error
		result string
	}{
		{"nothing set", Account{}, nil, "success"},
		{"expires later", Account{Expires: now.Add(time.Second), PasswordExpires: now.Add(time.Hour)}, nil, "success"},
		{"disabled", Account{Disabled: true}, ErrOfflineDisabled, "disabled"},
		{"account expired", Account{Expires: now.Add(-time.Second)}, ErrOfflineAccountExpired, "account_expired"},
		{"account expires now", Account{Expires: now}, ErrOfflineAccountExpired, "account_expired"},
		{"locked", Account{Locked: true}, ErrOfflineLocked, "locked"},
		{"password expired flag", Account{PasswordExpired: true}, ErrOfflinePasswordExpired, "password_expired"},
		{"password expiry passed", Account{PasswordExpires: now.Add(-time.Hour)}, ErrOfflinePasswordExpired, "password_expired"},
		{"must change", Account{MustChangePassword: true}, ErrOfflineMustChangePassword, "must_change_password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.Refusal(now)
			if (tc.want == nil) != (err == nil) || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Refusal = %v, want %v", err, tc.want)
			}
			if got := offlineResult(err); got != tc.result {
				t.Fatalf("result label %q, want %q", got, tc.result)
			}
		})
	}
}

func TestEncodingAccount(t *testing.T) {
	// A user as format 1 wrote it, before accounts were kept, still decodes; and a user
	// without account state is still written that way, byte for byte.
	old := "\x01\x05uid=a\x01a\x00\x00\x00\x01m\x01\x00\x00"
	u, err := decodeUser("id", old)
	if err != nil {
		t.Fatal(err)
	}
	if u.DN != "uid=a" || u.Username != "a" || u.PasswordMarker != "m" || !u.IsActive || u.Account != (Account{}) {
		t.Fatalf("format 1 user decoded as %+v", *u)
	}
	if got := string(appendUser(nil, u)); got != old {
		t.Fatalf("a user without account state encodes as %q, want format 1 %q", got, old)
	}

	for _, a := range []Account{
		{Locked: true},
		{Disabled: true, MustChangePassword: true, PasswordExpired: true},
		{Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		{PasswordExpires: time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Locked: true, Expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), PasswordExpires: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		v := testUser(3, 10, "acct")
		v.Account = a
		if err := normalizeAttributes(v.Attributes); err != nil {
			t.Fatal(err)
		}
		val := string(appendUser(nil, v))
		if val[0] != formatV2 {
			t.Fatalf("user with account %+v written as format %d", a, val[0])
		}
		got, err := decodeUser("id", val)
		if err != nil {
			t.Fatal(err)
		}
		if got.Account != a || got.DN != v.DN || len(got.Attributes) != len(v.Attributes) || len(got.Groups) != len(v.Groups) {
			t.Fatalf("decoded %+v, want account %+v", *got, a)
		}
		if _, err := checkUser(val); err != nil {
			t.Fatal(err)
		}
		for n := range len(val) {
			if _, err := decodeUser("id", val[:n]); err == nil {
				t.Fatalf("a value cut to %d of %d bytes decodes", n, len(val))
			}
		}
	}
	if _, err := decodeUser("id", "\x02\x05uid=a\x01a\x00\x00\x00\x01m\x01\x80\x00\x00"); err == nil {
		t.Fatal("unknown account flags decode")
	}
	if _, err := decodeGroup("id", "\x02\x05cn=g\x01g\x00\x00"); err == nil {
		t.Fatal("a group in format 2 decodes")
	}
}

// The account state a sync stores survives a restart, and a sync that changes only it
// is a change.
func TestStoreKeepsAccount(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	u := credUser(1, "m", true)
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	u.Account = Account{Locked: true, Expires: expires}
	syncUsers(t, s, u)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDir(t, dir)
	defer s.Close()
	got, ok := s.Snapshot().UserByID(u.ID)
	if !ok || got.Account != u.Account {
		t.Fatalf("after reopening: %+v", got)
	}
	unlocked := *u
	unlocked.Account.Locked = false
	syncUsers(t, s, &unlocked)
	if st := s.Status(); len(st) == 0 || st[0].Updated != 1 {
		t.Fatalf("unlocking is not an update: %+v", st)
	}
	if got, _ := s.Snapshot().UserByID(u.ID); got.Account != unlocked.Account {
		t.Fatalf("after unlocking: %+v", got.Account)
	}
}

// Offline, the credential cache refuses whom the directory would refuse, each under its
// own result, whether or not a hash is stored; the hash is kept, and logs the user in
// again once a sync shows the account usable.
func TestCredentialsAccountRefusals(t *testing.T) {
	clk := newFakeClock()
	now := clk.now()
	for _, tc := range []struct {
		name    string
		account Account
		want    error
		result  string
	}{
		{"AD account expired, FreeIPA principal expired", Account{Expires: now.Add(-time.Minute)}, ErrOfflineAccountExpired, "account_expired"},
		{"AD lockoutTime, ppolicy pwdAccountLockedTime", Account{Locked: true}, ErrOfflineLocked, "locked"},
		{"AD pwdLastSet 0, ppolicy pwdReset", Account{MustChangePassword: true}, ErrOfflineMustChangePassword, "must_change_password"},
		{"AD PASSWORD_EXPIRED", Account{PasswordExpired: true}, ErrOfflinePasswordExpired, "password_expired"},
		{"FreeIPA krbPasswordExpiration", Account{PasswordExpires: now.Add(-time.Minute)}, ErrOfflinePasswordExpired, "password_expired"},
		{"AD ACCOUNTDISABLE, FreeIPA nsAccountLock", Account{Disabled: true}, ErrOfflineDisabled, "disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openMem(t)
			u := credUser(1, "m", true)
			neverLoggedIn := credUser(2, "m", true)
			syncUsers(t, s, u, neverLoggedIn)
			c, reg := newCreds(t, s, clk, nil)
			remember(t, c, u, testPassword)

			refused, refusedToo := *u, *neverLoggedIn
			refused.Account, refusedToo.Account = tc.account, tc.account
			syncUsers(t, s, &refused, &refusedToo)
			wantVerify(t, c, &refused, testPassword, tc.want)
			wantVerify(t, c, &refusedToo, testPassword, tc.want)
			if got := counterValue(t, reg, "ldapproxy_offline_logins_total", tc.result); got != 2 {
				t.Errorf("result %s counted %v, want 2", tc.result, got)
			}
			if got := counterValue(t, reg, "ldapproxy_offline_logins_total", "success"); got != 0 {
				t.Errorf("successes counted %v", got)
			}
			if c.Len() != 1 {
				t.Fatalf("%d hashes after the sync, want 1: a state that may pass keeps the hash", c.Len())
			}
			syncUsers(t, s, u, neverLoggedIn)
			wantVerify(t, c, u, testPassword, nil)
		})
	}
}
