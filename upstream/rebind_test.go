package upstream

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
)

// boundSession dials a session and binds it as user i of srv, on the first server.
func boundSession(t *testing.T, p *testPool, srv *slapdtest.Server, i int) *Conn {
	t.Helper()
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Bind(t.Context(), srv.UserDN(i), []byte(slapdtest.UserPassword(i))); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUserSessionIsBoundAgainOnTheNextServer(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: 500 * time.Millisecond})

	t.Run("killed", func(t *testing.T) {
		c := boundSession(t, p, a, 1)
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
		if err != nil || len(uids) != 1 {
			t.Fatalf("search after the server was killed = %v, %v; want %s from the second server", uids, err, slapdtest.UserName(2))
		}
		if c.Server() != b.URL {
			t.Errorf("Server() = %q, want %q", c.Server(), b.URL)
		}
		// The same identity, not an anonymous session.
		if got := whoAmI(t, c); got != "dn:"+b.UserDN(1) {
			t.Errorf("WhoAmI after the failover = %q, want dn:%s", got, b.UserDN(1))
		}
		if ok, err := c.Compare(t.Context(), b.UserDN(1), "uid", slapdtest.UserName(1)); err != nil || !ok {
			t.Errorf("compare after the failover = %v, %v", ok, err)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("hung", func(t *testing.T) {
		// Back on the first server: it is up again for the pool once a probe answers.
		waitFor(t, "the first server up again", func() bool { return p.up(t, a.URL) == 1 })
		c := boundSession(t, p, a, 3)
		if c.Server() != a.URL {
			t.Fatalf("session on %q, want %q", c.Server(), a.URL)
		}
		pause(t, a)
		start := time.Now()
		uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(4)+")")
		if err != nil || len(uids) != 1 {
			t.Fatalf("search with the server hung = %v, %v; want %s from the second server", uids, err, slapdtest.UserName(4))
		}
		if took := time.Since(start); took > time.Second+500*time.Millisecond {
			t.Errorf("search took %v: one timeout (500ms) and a quick retry expected", took)
		}
		if got := whoAmI(t, c); got != "dn:"+b.UserDN(3) {
			t.Errorf("WhoAmI after the failover = %q, want dn:%s", got, b.UserDN(3))
		}
	})
}

func TestUserSessionWithChangedPasswordIsLost(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL})
	c := boundSession(t, p, a, 1)

	// The password changes (on the server the session will fail over to) while the
	// session is bound.
	admin := b.Conn(t)
	if err := admin.Bind(b.AdminDN, b.AdminPassword); err != nil {
		t.Fatal(err)
	}
	mod := ldap.NewModifyRequest(b.UserDN(1), nil)
	mod.Replace("userPassword", []string{"a-new-password"})
	if err := admin.Modify(mod); err != nil {
		t.Fatal(err)
	}
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
	if !errors.Is(err, ErrConnectionLost) || !IsUnavailable(err) {
		t.Fatalf("search after a refused bind again = %v, want ErrConnectionLost", err)
	}
	if le := new(ldap.Error); errors.As(err, &le) {
		t.Errorf("the refusal reaches the caller as LDAP code %d: the client would take it for its own bind's answer", le.ResultCode)
	}
	if got := p.requests(t, b.URL, "search"); got != 0 {
		t.Errorf("the search reached the second server (%d requests) without the user's identity", got)
	}
	if _, err := c.Compare(t.Context(), b.UserDN(1), "uid", slapdtest.UserName(1)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("compare after the loss = %v, want ErrConnectionLost", err)
	}
	if err := c.Bind(t.Context(), b.UserDN(1), []byte("a-new-password")); err != nil {
		t.Fatalf("bind with the new password: %v", err)
	}
	if got := whoAmI(t, c); got != "dn:"+b.UserDN(1) {
		t.Errorf("WhoAmI after binding again = %q", got)
	}
}

func TestSessionBoundAgainWithItsChangedPassword(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL})
	changed := boundSession(t, p, a, 1)
	unknown := boundSession(t, p, a, 2)

	// The users change their passwords (the directory replicates them to b).
	admin := b.Conn(t)
	if err := admin.Bind(b.AdminDN, b.AdminPassword); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		mod := ldap.NewModifyRequest(b.UserDN(i), nil)
		mod.Replace("userPassword", []string{"new-password"})
		if err := admin.Modify(mod); err != nil {
			t.Fatal(err)
		}
	}
	changed.PasswordChanged([]byte("new-password"))
	unknown.PasswordChanged(nil)
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	// A search first: unlike an extended operation (WhoAmI), it is retried when it meets
	// the dead connection.
	if _, err := searchUIDs(t, changed, "(uid=*)"); err != nil {
		t.Fatalf("search after the failover: %v", err)
	}
	if got := whoAmI(t, changed); got != "dn:"+b.UserDN(1) {
		t.Errorf("WhoAmI after the failover = %q, want dn:%s: bound again with the new password", got, b.UserDN(1))
	}
	if _, err := searchUIDs(t, unknown, "(uid=*)"); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("search on a session whose new password is unknown = %v, want ErrConnectionLost", err)
	}
	if got := p.requests(t, b.URL, "bind"); got != 1 {
		t.Errorf("%d binds reached the second server, want 1: a password known to be old is not tried", got)
	}
}

func TestIdleSessionMovesBackToThePreferredServer(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, HealthInterval: healthInterval})
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	user := boundSession(t, p, a, 1)
	anon, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	paged := boundSession(t, p, a, 2)
	for _, c := range []*Conn{user, anon, paged} {
		if c.Server() != b.URL {
			t.Fatalf("session on %q with the first server dead, want %q", c.Server(), b.URL)
		}
	}
	// A paged search started on the second server: its cookie holds the session there.
	cookie, n, err := pagedSearch(t, paged, nil)
	if err != nil || len(cookie) == 0 || n != 3 {
		t.Fatalf("first page = %d entries, cookie %q, %v", n, cookie, err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the preferred server up again", func() bool { return p.up(t, a.URL) == 1 })

	if got := whoAmI(t, user); got != "dn:"+a.UserDN(1) {
		t.Errorf("WhoAmI after moving back = %q, want dn:%s", got, a.UserDN(1))
	}
	if user.Server() != a.URL {
		t.Errorf("idle user session on %q after the preferred server came back, want %q", user.Server(), a.URL)
	}
	if got := whoAmI(t, anon); got != "" || anon.Server() != a.URL {
		t.Errorf("anonymous session = %q on %q, want anonymous on %q", got, anon.Server(), a.URL)
	}

	// The paged search goes on where its cookie is valid, to the end.
	pages := 1
	for len(cookie) > 0 {
		if paged.Server() != b.URL {
			t.Fatalf("session moved to %q in the middle of a paged search", paged.Server())
		}
		cookie, _, err = pagedSearch(t, paged, cookie)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
	}
	if pages < 2 {
		t.Fatalf("the paged search had %d pages", pages)
	}
	if got := whoAmI(t, paged); got != "dn:"+a.UserDN(2) || paged.Server() != a.URL {
		t.Errorf("after the paged search: %q on %q, want dn:%s on %q", got, paged.Server(), a.UserDN(2), a.URL)
	}
}

// TestIdleSessionMovesBackWithoutARequest: sessions that send nothing move back to the
// preferred server as soon as it answers its probe again, bound again with their
// identity there; the session with a paged search outstanding stays.
func TestIdleSessionMovesBackWithoutARequest(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, HealthInterval: healthInterval})
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	user := boundSession(t, p, a, 1)
	anon, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	paged := boundSession(t, p, a, 2)
	if cookie, _, err := pagedSearch(t, paged, nil); err != nil || len(cookie) == 0 {
		t.Fatalf("first page: cookie %q, %v", cookie, err)
	}
	for _, c := range []*Conn{user, anon, paged} {
		if c.Server() != b.URL {
			t.Fatalf("session on %q with the first server dead, want %q", c.Server(), b.URL)
		}
	}
	binds := p.requests(t, a.URL, "bind")

	// No session sends anything from here on.
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle sessions on the preferred server", func() bool {
		return user.Server() == a.URL && anon.Server() == a.URL
	})
	if got := p.requests(t, a.URL, "bind") - binds; got != 1 {
		t.Errorf("%d binds on the preferred server, want 1: the user session's bind again there", got)
	}
	if paged.Server() != b.URL {
		t.Errorf("the session with a paged search outstanding moved to %q", paged.Server())
	}
	if got := whoAmI(t, user); got != "dn:"+a.UserDN(1) || user.Server() != a.URL {
		t.Errorf("user session after moving back: %q on %q, want dn:%s on %q", got, user.Server(), a.UserDN(1), a.URL)
	}
	if got := whoAmI(t, anon); got != "" {
		t.Errorf("anonymous session after moving back: %q", got)
	}
}

// pagedSearch asks for one page of 3 users on c, the first with a nil cookie, and
// returns the cookie the server sent back with the number of entries.
func pagedSearch(t *testing.T, c *Conn, cookie []byte) ([]byte, int, error) {
	t.Helper()
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "ou=people,"+testBaseDN, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(ldap.ScopeSingleLevel), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, ""))
	filter, err := ldap.CompileFilter("(uid=*)")
	if err != nil {
		t.Fatal(err)
	}
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "1.1", ""))
	op.AppendChild(attrs)
	paging := ldap.NewControlPaging(3)
	paging.SetCookie(cookie)
	controls := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "")
	controls.AppendChild(paging.Encode())
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 1, ""))
	p.AppendChild(op)
	p.AppendChild(controls)

	var next []byte
	var result error
	n := 0
	err = c.Forward(t.Context(), KindSearch, p.Bytes(), func(r ldapwire.Response) error {
		if !r.Final {
			n++
			return nil
		}
		result = r.Err()
		c, ok := ldapwire.PagedCookie(r.Msg)
		if !ok {
			return errors.New("no paged results control in the answer")
		}
		next = append([]byte(nil), c...)
		return nil
	})
	if err == nil {
		err = result
	}
	return next, n, err
}

var netConnType = reflect.TypeOf((*net.Conn)(nil)).Elem()

// findSecret walks everything reachable from v but the pool and its servers (the
// sessions' shared state) and reports where secret appears in a string or a byte slice.
func findSecret(v reflect.Value, secret string, path string, seen map[uintptr]bool) []string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		if v.Type().Implements(netConnType) || v.Kind() == reflect.Interface && v.Elem().Type().Implements(netConnType) {
			return nil // the socket: the kernel's buffers, not the program's
		}
		if v.Kind() == reflect.Pointer {
			if seen[v.Pointer()] {
				return nil
			}
			seen[v.Pointer()] = true
		}
		return findSecret(v.Elem(), secret, path, seen)
	case reflect.Struct:
		var out []string
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.Type == reflect.TypeOf((*Pool)(nil)) || f.Type == reflect.TypeOf((*server)(nil)) {
				continue // the pool's shared state, which its probes write
			}
			out = append(out, findSecret(v.Field(i), secret, path+"."+f.Name, seen)...)
		}
		return out
	case reflect.String:
		if strings.Contains(v.String(), secret) {
			return []string{path}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			var b []byte
			if v.Kind() == reflect.Slice {
				// The whole backing array: what a buffer held before its length was
				// reset is still there.
				if v.Cap() > 0 {
					b = unsafe.Slice((*byte)(v.UnsafePointer()), v.Cap())
				}
			} else {
				for i := range v.Len() {
					b = append(b, byte(v.Index(i).Uint()))
				}
			}
			if strings.Contains(string(b), secret) {
				return []string{path}
			}
			return nil
		}
		var out []string
		for i := range v.Len() {
			out = append(out, findSecret(v.Index(i), secret, fmt.Sprintf("%s[%d]", path, i), seen)...)
		}
		return out
	case reflect.Map:
		var out []string
		it := v.MapRange()
		for it.Next() {
			out = append(out, findSecret(it.Value(), secret, path+"[]", seen)...)
		}
		return out
	}
	return nil
}

func TestSessionCredentialIsSealed(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL})
	password := slapdtest.UserPassword(1)
	c := boundSession(t, p, a, 1)
	check := func(when string) {
		t.Helper()
		for _, s := range []string{fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
			if strings.Contains(s, password) {
				t.Errorf("%s: fmt shows the password: %s", when, s)
			}
		}
		// Walked with the session's and its connection's locks held, as their own
		// goroutines write them.
		c.mu.Lock()
		wc := c.wc
		if wc != nil {
			wc.wmu.Lock()
			wc.mu.Lock()
		}
		where := findSecret(reflect.ValueOf(c), password, "Conn", map[uintptr]bool{})
		if wc != nil {
			wc.mu.Unlock()
			wc.wmu.Unlock()
		}
		c.mu.Unlock()
		if len(where) > 0 {
			t.Errorf("%s: the password is in clear at %v", when, where)
		}
	}
	c.mu.Lock()
	kept := c.cred != nil
	c.mu.Unlock()
	if !kept {
		t.Fatal("no credential kept after a successful bind: the test would prove nothing")
	}
	check("after the bind")

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := searchUIDs(t, c, "(uid=*)"); err != nil {
		t.Fatalf("search after the failover: %v", err)
	}
	if got := whoAmI(t, c); got != "dn:"+b.UserDN(1) {
		t.Fatalf("WhoAmI after the failover = %q", got)
	}
	check("after binding again on the second server")

	c.Unbind()
	c.mu.Lock()
	kept = c.cred != nil
	c.mu.Unlock()
	if kept {
		t.Error("Unbind kept the credential")
	}
	if got := whoAmI(t, c); got != "" {
		t.Errorf("WhoAmI after Unbind = %q, want anonymous", got)
	}

	// A failed bind drops the credential of the bind before it.
	c = boundSession(t, p, b, 1)
	if err := c.Bind(t.Context(), b.UserDN(2), []byte("wrong")); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with a wrong password = %v", err)
	}
	c.mu.Lock()
	kept = c.cred != nil
	c.mu.Unlock()
	if kept {
		t.Error("a failed bind left the previous bind's credential")
	}
}

func TestSealedCredentialOpensOnlyToItsBind(t *testing.T) {
	msg := ldapwire.BindRequest("uid=x,dc=example,dc=org", []byte("s3cret-pw"))
	s := sealCredential(msg)
	if s == nil || strings.Contains(string(s.box), "s3cret-pw") {
		t.Fatal("not sealed")
	}
	if s2 := sealCredential(msg); string(s2.box) == string(s.box) {
		t.Error("two seals of one credential are equal: the nonce is not fresh")
	}
	got, err := s.bindRequest()
	if err != nil || string(got) != string(msg) {
		t.Fatalf("opened = %x, %v; want %x", got, err, msg)
	}
	s.box[len(s.box)-1] ^= 1
	if _, err := s.bindRequest(); err == nil {
		t.Error("a tampered credential opened")
	}
	s.wipe()
	if _, err := s.bindRequest(); err == nil {
		t.Error("a wiped credential opened")
	}
	if sealCredential(ldapwire.BindRequest("uid=x", nil)) != nil {
		t.Error("an unauthenticated bind was kept")
	}
	if fmt.Sprint(s) != "[sealed credential]" {
		t.Errorf("fmt shows %q", fmt.Sprint(s))
	}
}

func TestSessionStaysWhenThePreferredServerHangs(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	// Probes of up servers far apart: only the session's own attempt can notice.
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, Timeout: timeout, HealthInterval: time.Hour})
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	c := boundSession(t, p, a, 1)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the preferred server up again", func() bool { return p.up(t, a.URL) == 1 })
	pause(t, a)

	for i := range 3 {
		start := time.Now()
		if uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")"); err != nil || len(uids) != 1 {
			t.Fatalf("search %d = %v, %v", i, uids, err)
		}
		took := time.Since(start)
		if i > 0 && took > timeout/2 {
			t.Errorf("search %d took %v: the hung preferred server was tried again", i, took)
		}
	}
	if c.Server() != b.URL {
		t.Errorf("session on %q, want %q", c.Server(), b.URL)
	}
	if p.up(t, a.URL) != 0 {
		t.Error("the preferred server that did not answer the bind is still up")
	}
}

func TestConcurrentRequestsOfOneSessionFailOverTogether(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL})
	c := boundSession(t, p, a, 1)
	const workers = 8
	var wg sync.WaitGroup
	var searches, failures, cut atomic.Int64
	stop := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				searches.Add(1)
				uids, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(2)+")")
				switch {
				case err != nil && len(uids) > 0 && errors.Is(err, errBroken):
					// Its entry was relayed before the kill cut the result off: it
					// cannot be repeated. At most once per request in flight.
					cut.Add(1)
				case err != nil || len(uids) != 1:
					failures.Add(1)
					t.Logf("search: %v, %v", uids, err)
				}
			}
		})
	}
	waitFor(t, "searches going", func() bool { return searches.Load() > 100 })
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 || cut.Load() > workers {
		t.Errorf("%d of %d concurrent searches failed across the failover, %d cut after their entry", failures.Load(), searches.Load(), cut.Load())
	}
	if got := whoAmI(t, c); got != "dn:"+b.UserDN(1) || c.Server() != b.URL {
		t.Errorf("after the failover: %q on %q", got, c.Server())
	}
	// One bind again for the whole session, not one per request that met the dead
	// connection.
	if got := p.requests(t, b.URL, "bind"); got != 1 {
		t.Errorf("%d binds on the second server, want 1", got)
	}
}

func TestSessionsStayWithoutRebind(t *testing.T) {
	a, b := slapdtest.New(t, slapdtest.Options{}), slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: a.URL + "," + b.URL, HealthInterval: healthInterval, RebindOnFailover: rebindOff()})
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	user := boundSession(t, p, a, 1)
	user.mu.Lock()
	kept := user.cred != nil
	user.mu.Unlock()
	if kept {
		t.Error("a credential was kept with rebind_on_failover off")
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the preferred server up again", func() bool { return p.up(t, a.URL) == 1 })
	if got := whoAmI(t, user); got != "dn:"+b.UserDN(1) || user.Server() != b.URL {
		t.Errorf("session = %q on %q, want it where it was, on %q", got, user.Server(), b.URL)
	}
}

// BenchmarkSealCredential is what keeping a bind's credential for a failover costs each
// bind (go test -run - -bench SealCredential -benchmem ./upstream/).
func BenchmarkSealCredential(b *testing.B) {
	msg := ldapwire.BindRequest("uid=user0001,ou=people,dc=example,dc=org", []byte("pass-user0001"))
	b.ReportAllocs()
	for b.Loop() {
		if sealCredential(msg) == nil {
			b.Fatal("not sealed")
		}
	}
}

// A password change goes upstream as an extended operation (Password Modify) or a
// modify of the password attribute, with the old and the new password in clear: like a
// bind, it leaves no copy behind in the session's connection (its write buffer, the
// request buffer its spare call keeps for the next request).
func TestPasswordChangeLeavesNoCopy(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c := boundSession(t, p, srv, 1)
	oldPassword, newPassword := slapdtest.UserPassword(1), "changed-Pw-4711"
	for _, change := range []struct {
		name string
		msg  []byte
	}{
		{"password modify", ldapwire.PasswordModifyRequest(srv.UserDN(1), []byte(oldPassword), []byte(newPassword), nil)},
		{"modify", ldapwire.ModifyRequest(srv.UserDN(1), []ldapwire.Change{
			{Operation: ldapwire.ModReplace, Type: "userPassword", Values: [][]byte{[]byte(newPassword + "-again")}},
		}, nil)},
	} {
		var result error
		err := c.Forward(t.Context(), KindExtended, change.msg, func(r ldapwire.Response) error {
			if r.Final {
				result = r.Err()
			}
			return nil
		})
		if err != nil || result != nil {
			t.Fatalf("%s: %v, %v", change.name, err, result)
		}
		check := func(when string) {
			t.Helper()
			c.mu.Lock()
			defer c.mu.Unlock()
			wc := c.wc
			wc.wmu.Lock()
			defer wc.wmu.Unlock()
			wc.mu.Lock()
			defer wc.mu.Unlock()
			for _, secret := range []string{oldPassword, newPassword, newPassword + "-again"} {
				where := findSecret(reflect.ValueOf(c), secret, "Conn", map[uintptr]bool{})
				// The spare call, behind an atomic pointer the walk does not follow.
				where = append(where, findSecret(reflect.ValueOf(wc.spare.Load()), secret, "Conn.wc.spare", map[uintptr]bool{})...)
				if len(where) > 0 {
					t.Errorf("%s: a password is in clear at %v", when, where)
				}
			}
		}
		check("after a " + change.name)
		// The client's next request reuses the buffers, and leaves what the change
		// wrote past its own end.
		if _, err := searchUIDs(t, c, "(uid="+slapdtest.UserName(1)+")"); err != nil {
			t.Fatal(err)
		}
		check("after a " + change.name + " and a search")
	}
}

// A compare of a password attribute carries a password in clear, as a bind does, and
// leaves no copy of it behind in the session's connection either.
func TestPasswordCompareLeavesNoCopy(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{})
	p := newTestPool(t, Config{URLs: srv.URL})
	c := boundSession(t, p, srv, 1)
	password := slapdtest.UserPassword(1)
	for _, attr := range []string{"userPassword", "USERPASSWORD", "2.5.4.35"} {
		// slapd compares the stored value as it is (a hash); other servers check the
		// password. Either way the request carried it.
		if _, err := c.Compare(t.Context(), srv.UserDN(1), attr, password); err != nil {
			t.Fatalf("compare of %s: %v", attr, err)
		}
		c.mu.Lock()
		wc := c.wc
		wc.wmu.Lock()
		wc.mu.Lock()
		where := findSecret(reflect.ValueOf(c), password, "Conn", map[uintptr]bool{})
		where = append(where, findSecret(reflect.ValueOf(wc.spare.Load()), password, "Conn.wc.spare", map[uintptr]bool{})...)
		wc.mu.Unlock()
		wc.wmu.Unlock()
		c.mu.Unlock()
		if len(where) > 0 {
			t.Errorf("after a compare of %s: the password is in clear at %v", attr, where)
		}
	}
	// Any other compare is an ordinary request.
	uid := slapdtest.UserName(1)
	if same, err := c.Compare(t.Context(), srv.UserDN(1), "uid", uid); err != nil || !same {
		t.Fatalf("compare of uid = %v, %v; want true", same, err)
	}
	c.mu.Lock()
	spare := c.wc.spare.Load()
	c.mu.Unlock()
	if spare == nil || !strings.Contains(string(spare.out), uid) {
		t.Error("a compare of uid did not go out through the connection's request buffer")
	}
}
