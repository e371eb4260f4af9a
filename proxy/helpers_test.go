package proxy

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// Short names for the server layer's and the wire's types in the tests.
type (
	Result          = ldapserver.Result
	Request         = ldapserver.Request
	ResponseWriter  = ldapserver.ResponseWriter
	ExtendedRequest = ldapserver.ExtendedRequest
	ModifyRequest   = ldapserver.ModifyRequest
	Control         = ldapwire.Control
	Change          = ldapwire.Change
	encoder         = ldapwire.Encoder
)

const (
	modAdd            = ldapwire.ModAdd
	modDelete         = ldapwire.ModDelete
	modReplace        = ldapwire.ModReplace
	tagSequence       = ldapwire.TagSequence
	tagOctetString    = ldapwire.TagOctetString
	tagEnumerated     = ldapwire.TagEnumerated
	tagRespName       = ldapwire.TagRespName
	tagRespValue      = ldapwire.TagRespValue
	appConstructed    = ldapwire.AppConstructed
	OIDPasswordModify = ldapserver.OIDPasswordModify
	OpExtended        = ldapserver.OpExtended
	OpModify          = ldapserver.OpModify
)

func encodeMessage(e *encoder, id int64) {
	e.Begin(ldapwire.TagSequence)
	e.Int(ldapwire.TagInteger, id)
}

func encodeModify(dn string, changes []Change, controls []Control) []byte {
	return ldapwire.ModifyRequest(dn, changes, controls)
}

func encodePasswordModify(user string, req passwdRequest, controls []Control) []byte {
	return ldapwire.PasswordModifyRequest(user, req.oldPassword, req.newPassword, controls)
}

var generatedPassword = ldapwire.GeneratedPassword

// serveHandler runs the proxy handler h on an ldapserver on a loopback listener until the
// test ends and returns its address.
func serveHandler(t *testing.T, h *Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &ldapserver.Server{Handler: h, ConnContext: h.ConnContext, Logger: slog.New(slog.DiscardHandler)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dialLDAP(t *testing.T, addr string) *ldap.Conn {
	t.Helper()
	lc, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	lc.SetTimeout(5 * time.Second)
	t.Cleanup(func() { lc.Close() })
	return lc
}

// keeper records what the writeback tells of password changes.
type keeper struct {
	changedFn func(dn string, newPassword []byte)
	forgetFn  func(dn string)
}

func (k keeper) forget(dn string, _ *cache.User) {
	if k.forgetFn != nil {
		k.forgetFn(dn)
	}
}

func (k keeper) changed(dn string, newPassword []byte) {
	if k.changedFn != nil {
		k.changedFn(dn, newPassword)
	}
}

// keeperOf is the optional keeper of a test helper's arguments; none records nothing.
func keeperOf(keep []passwordKeeper) passwordKeeper {
	if len(keep) == 0 {
		return keeper{}
	}
	return keep[0]
}

// decodeRequest decodes a request message as the server would.
func decodeRequest(t *testing.T, msg []byte) *Request {
	t.Helper()
	r, err := ldapserver.ReadRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
