package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// client is the proxy's state of one client connection, next to the LDAP state the
// server keeps in its ldapserver.Session: the connection's own upstream connection, where
// the client's bind happens (so every later request runs upstream with exactly the
// client's rights, and paged-results cookies, which servers tie to a connection, stay
// valid), and how the client's login was accepted.
type client struct {
	mu   sync.Mutex
	conn *upstream.Conn // opened on first use
	// cachedLogin marks a login the proxy accepted without an upstream bind (offline, or
	// from the cached-authentication cache): the upstream connection does not carry the
	// user's identity, so nothing may be forwarded on it as the user.
	cachedLogin bool
	// account is the `clients:` account the client bound as, or nil: its reads go
	// upstream on a connection bound as the service account.
	account *clientAccount
	// nobody is the last bind name of the connection that resolved to no synced user
	// (binds only, which run one at a time: not under mu).
	nobody nobodyMemo
}

type clientKey struct{}

// withClient gives a new connection its client state, released when it closes.
func withClient(ctx context.Context, s *ldapserver.Session) context.Context {
	c := &client{}
	s.OnClose(c.close)
	return context.WithValue(ctx, clientKey{}, c)
}

// clientOf returns the state of the connection r arrived on.
func clientOf(r *ldapserver.Request) *client {
	c, ok := r.Context().Value(clientKey{}).(*client)
	if !ok {
		panic("proxy: the server's ConnContext is not the proxy Handler's")
	}
	return c
}

// errCachedLogin is returned for a session whose login was accepted without the
// directory; it reads as "upstream connection lost; bind again".
var errCachedLogin = fmt.Errorf("%w (the login was accepted without the directory)", upstream.ErrConnectionLost)

// connected reports whether the client's upstream connection has been opened.
func (c *client) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// upstream returns the client's own upstream connection, dialing it on first use. A
// session logged in from a cache gets errCachedLogin for anything but a bind.
func (c *client) upstream(ctx context.Context, pool *upstream.Pool, forBind bool) (*upstream.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cachedLogin && !forBind {
		return nil, errCachedLogin
	}
	if c.conn == nil {
		dial := pool.Dial
		if c.account != nil {
			if forBind {
				return nil, errAccountBind
			}
			dial = pool.DialService
		}
		conn, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	return c.conn, nil
}

// errAccountBind is a program error: a bind of a `clients:` account never goes upstream.
var errAccountBind = errors.New("proxy: a client account's bind does not go upstream")

// setAccount records that the client bound as one of the `clients:` accounts.
func (c *client) setAccount(a *clientAccount) {
	c.mu.Lock()
	c.account = a
	c.mu.Unlock()
}

// clientAccount returns the `clients:` account the client is bound as, or nil.
func (c *client) clientAccount() *clientAccount {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.account
}

// loggedIn records how the client's login was accepted: by the upstream, or from a cache.
// A login from a cache ends whatever identity the upstream connection had: the
// connection, and the credential kept to bind it again after a failover, go with it.
func (c *client) loggedIn(fromCache bool) {
	c.mu.Lock()
	c.cachedLogin = fromCache
	if fromCache && c.conn != nil {
		c.conn.Unbind()
	}
	c.mu.Unlock()
}

// isCachedLogin reports whether the client's login was accepted without the directory.
func (c *client) isCachedLogin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cachedLogin
}

// forgetIdentity makes the upstream connection anonymous again after the client became
// anonymous, so that nothing is read later with an identity the client gave up.
func (c *client) forgetIdentity() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cachedLogin = false
	if c.account != nil {
		// The connection is bound as the service account: close it, the next user of
		// this session dials afresh.
		c.account = nil
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
		return
	}
	if c.conn != nil {
		c.conn.Unbind()
	}
}

// sessionPasswordChanged tells the upstream session of r's connection that its user
// changed their own password through it (nil: to one the proxy does not know), so that
// binding again after a failover uses the new one. A request that came on no client
// connection (a unit test's) has no session to tell.
func sessionPasswordChanged(r *ldapserver.Request, password []byte) {
	c, ok := r.Context().Value(clientKey{}).(*client)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.PasswordChanged(password)
	}
}

func (c *client) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
