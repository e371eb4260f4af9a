package proxy

import (
	"log/slog"
	"testing"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
)

// namesStore is a store of synced users whose last sync read the domain names d.
func namesStore(t *testing.T, d cache.Domain, users ...*cache.User) *cache.Store {
	t.Helper()
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, slog.New(slog.DiscardHandler), directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w, err := store.BeginSync(cache.KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, u := range users {
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	w.SetDomain(d)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return store
}

func TestResolverForms(t *testing.T) {
	const (
		jsmith = "CN=John Smith,OU=Staff,DC=corp,DC=example,DC=com"
		alice  = "CN=Alice,OU=Staff,DC=corp,DC=example,DC=com"
	)
	upn := func(v any) map[string]any { return map[string]any{cache.UPNAttribute: v} }
	store := namesStore(t, cache.Domain{NetBIOS: "CORP", DNS: "corp.example.com"},
		&cache.User{ID: "1", DN: jsmith, Username: "jsmith", Email: "john.smith@example.com",
			Attributes: upn("john.smith@corp.example.com"), IsActive: true},
		&cache.User{ID: "2", DN: alice, Path: "uid=alice,ou=users,o=served", Username: "alice", Email: "alice@example.com",
			Attributes: upn("alice@corp.example.com"), IsActive: true},
		// Two users share a mail address: it names neither.
		&cache.User{ID: "3", DN: "CN=Bob,OU=Staff,DC=corp,DC=example,DC=com", Username: "bob", Email: "team@example.com", IsActive: true},
		&cache.User{ID: "4", DN: "CN=Carol,OU=Staff,DC=corp,DC=example,DC=com", Username: "carol", Email: "team@example.com", IsActive: true},
		// One user's UPN is another's mail: it names neither.
		&cache.User{ID: "5", DN: "CN=Dave,OU=Staff,DC=corp,DC=example,DC=com", Username: "dave", Email: "dave@example.com",
			Attributes: upn("erin@example.com"), IsActive: true},
		&cache.User{ID: "6", DN: "CN=Erin,OU=Staff,DC=corp,DC=example,DC=com", Username: "erin", Email: "erin@example.com", IsActive: true},
	)
	tests := []struct {
		name, bind string
		want       string // upstream DN; "" nobody
	}{
		{"DN", jsmith, jsmith},
		{"DN in another spelling", "cn=john smith, ou=staff, dc=CORP, dc=example, dc=com", jsmith},
		{"served DN", "UID=Alice,OU=Users,O=Served", alice},
		{"user name", "JSmith", jsmith},
		{"UPN whose local part is not the user name", "John.Smith@Corp.Example.com", jsmith},
		{"mail", "john.smith@example.com", jsmith},
		{"down-level name", `CORP\jsmith`, jsmith},
		{"down-level name in other case", `corp\JSMITH`, jsmith},
		{"down-level name of another domain", `OTHER\jsmith`, ""},
		{"DNS domain instead of the NetBIOS one", `corp.example.com\jsmith`, ""},
		{"down-level name with the UPN", `CORP\john.smith@corp.example.com`, ""},
		{"down-level name without a user", `CORP\`, ""},
		{"implicit UPN (user name at the DNS domain)", "JSmith@corp.example.com", jsmith},
		{"user name at another domain", "jsmith@example.com", ""},
		{"mail two users share", "team@example.com", ""},
		{"one user's UPN, another's mail", "erin@example.com", ""},
		{"the others' own names still resolve", "bob", "CN=Bob,OU=Staff,DC=corp,DC=example,DC=com"},
		{"unknown", "nobody", ""},
		{"empty", "", ""},
	}
	n := &resolver{store: store}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if u := n.user(tt.bind); u != nil {
				got = u.DN
			}
			if got != tt.want {
				t.Fatalf("user(%q) = %q, want %q", tt.bind, got, tt.want)
			}
			// upstreamDN and identityDN say the same, and a name that resolves to
			// nobody stays itself.
			wantDN := tt.want
			if wantDN == "" {
				wantDN = tt.bind
			}
			if dn := n.upstreamDN(tt.bind); dn != wantDN {
				t.Errorf("upstreamDN(%q) = %q, want %q", tt.bind, dn, wantDN)
			}
			if id := n.identityDN(tt.bind); id != directory.NormalizeDN(wantDN) {
				t.Errorf("identityDN(%q) = %q, want %q", tt.bind, id, directory.NormalizeDN(wantDN))
			}
		})
	}
	for _, authz := range []string{"dn:" + jsmith, "u:jsmith", `U:CORP\jsmith`} {
		if dn := n.upstreamDN(authz); dn != jsmith {
			t.Errorf("upstreamDN(%q) = %q, want %q", authz, dn, jsmith)
		}
	}
	if dn := n.upstreamDN("u:nobody"); dn != "u:nobody" {
		t.Errorf("an unknown u: authzId became %q; it goes upstream as it came", dn)
	}
}

// The configured NetBIOS domain wins over the one the sync read, and stands in for a
// directory that has none.
func TestResolverNetBIOSDomain(t *testing.T) {
	const dn = "uid=jsmith,ou=people,dc=example,dc=org"
	u := &cache.User{ID: "1", DN: dn, Username: "jsmith", IsActive: true}
	tests := []struct {
		name            string
		synced, config  string
		resolves, fails []string
	}{
		{"read from the upstream", "CORP", "", []string{`CORP\jsmith`, `Corp\jsmith`}, []string{`EXAMPLE\jsmith`}},
		{"configured, the upstream has none", "", "EXAMPLE", []string{`EXAMPLE\jsmith`, `example\JSmith`}, []string{`CORP\jsmith`}},
		{"configured wins", "CORP", "EXAMPLE", []string{`EXAMPLE\jsmith`}, []string{`CORP\jsmith`}},
		{"neither", "", "", nil, []string{`\jsmith`, `EXAMPLE\jsmith`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newResolver(Options{Store: namesStore(t, cache.Domain{NetBIOS: tt.synced}, u), Names: NamesConfig{NetBIOSDomain: tt.config}})
			for _, name := range tt.resolves {
				if got := n.user(name); got == nil || got.DN != dn {
					t.Errorf("%q resolves to %+v, want %s", name, got, dn)
				}
			}
			for _, name := range tt.fails {
				if got := n.user(name); got != nil {
					t.Errorf("%q resolves to %s, want nobody", name, got.DN)
				}
			}
		})
	}
}

func TestNamesConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		domain string
		ok     bool
	}{
		{"", true},
		{"EXAMPLE", true},
		{"corp-01", true},
		{"ABCDEFGHIJKLMNO", true},
		{"ABCDEFGHIJKLMNOP", false},
		{"example.com", false},
		{`EXAMPLE\`, false},
		{" EXAMPLE", false},
		{"EX:AMPLE", false},
	} {
		c := NamesConfig{NetBIOSDomain: tt.domain}
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("netbios_domain %q: %v, want ok %v", tt.domain, err, tt.ok)
		}
	}
}

// TestBindNameMemo: a bind name that resolved to nobody is not looked up again on the
// same connection while the store is unchanged, and is as soon as a sync commits.
func TestBindNameMemo(t *testing.T) {
	const svc = "cn=svc,ou=services,dc=example,dc=com"
	alice := &cache.User{ID: "1", DN: "uid=alice,dc=example,dc=com", Username: "alice", IsActive: true}
	store := namesStore(t, cache.Domain{}, alice)
	n := &resolver{store: store}
	var m nobodyMemo
	if u := n.bindUser(&m, svc); u != nil {
		t.Fatalf("%s resolved to %s", svc, u.DN)
	}
	if !m.set || m.name != svc || m.gen != store.Snapshot().Generation() {
		t.Fatalf("memo after a name that resolves to nobody: %+v", m)
	}
	if u := n.bindUser(&m, svc); u != nil {
		t.Fatalf("%s resolved to %s the second time", svc, u.DN)
	}
	if u := n.bindUser(&m, "UID=Alice,DC=example,DC=com"); u == nil || u.ID != "1" {
		t.Fatalf("alice's DN resolved to %v after the memo", u)
	}
	if m.name != svc {
		t.Errorf("a name that resolved to a user replaced the memo: %+v", m)
	}

	// A sync makes the name a user's: the next bind finds the user.
	w, err := store.BeginSync(cache.KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, u := range []*cache.User{alice, {ID: "2", DN: svc, Username: "svc", IsActive: true}} {
		if err := w.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if u := n.bindUser(&m, svc); u == nil || u.ID != "2" {
		t.Fatalf("%s after the sync that made it a user's: %v", svc, u)
	}
}

// BenchmarkBindUser is what finding the user a bind names costs, among 10,000 users: by
// the DN the upstream knows (as an application binds with the DN its search found), and
// by user name.
func BenchmarkBindUser(b *testing.B) {
	const users = 10000
	s := newBenchStore(b, users, 10)
	n := &resolver{store: s.store}
	for _, c := range []struct {
		name string
		bind func(i int) string
	}{
		{"dn", func(i int) string { return s.user(i, 0).DN }},
		{"username", func(i int) string { return s.user(i, 0).Username }},
	} {
		b.Run(c.name, func(b *testing.B) {
			names := make([]string, 1000)
			for i := range names {
				names[i] = c.bind(i * 7)
			}
			var m nobodyMemo
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if n.bindUser(&m, names[i%len(names)]) == nil {
					b.Fatalf("%s resolved to nobody", names[i%len(names)])
				}
			}
		})
	}
}
