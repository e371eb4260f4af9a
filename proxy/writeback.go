package proxy

// Password writeback: a password change sent to the proxy — the Password Modify extended
// operation (RFC 3062) or a modify of userPassword / unicodePwd — is written to the
// upstream. A user's change of their own password runs on the client's own upstream
// connection, as the user, so the upstream applies its own rules (old password, password
// policy) exactly as if the client had asked it directly. A reset of someone else's
// password runs as the service account, and only for identities the configuration names.
// Whatever the upstream answers reaches the client unchanged. WritebackConfig (config.go)
// holds the configuration keys.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// WritebackOptions wires password writeback to the configuration and the rest of the
// program. Its zero value refuses every password change.
type WritebackOptions struct {
	Config WritebackConfig
	// ActiveDirectory says the upstream is Active Directory: passwords are written as
	// unicodePwd, and only over TLS.
	ActiveDirectory bool
	// UpstreamStartTLS says connections to ldap:// upstream URLs use StartTLS
	// (upstream.start_tls); with ldaps:// URLs it tells which session connections are
	// encrypted.
	UpstreamStartTLS bool
	// Metrics counts password changes; nil: not counted.
	Metrics *WritebackMetrics
}

// WritebackMetrics counts password changes sent to the proxy.
type WritebackMetrics struct {
	changes *prometheus.CounterVec
}

// NewWritebackMetrics registers ldapproxy_password_writeback_total on reg.
func NewWritebackMetrics(reg prometheus.Registerer) *WritebackMetrics {
	m := &WritebackMetrics{changes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "password_writeback_total",
		Help: "Password changes sent to the proxy, by result: success; refused (by the proxy, before asking the upstream); " +
			"error (the upstream could not be asked or did not answer); or the name of the result code the upstream refused with.",
	}, []string{"result"})}
	reg.MustRegister(m.changes)
	return m
}

func (m *WritebackMetrics) count(result string) {
	if m != nil {
		m.changes.WithLabelValues(result).Inc()
	}
}

// Attribute types that hold passwords.
const (
	attrUserPassword = "userPassword"
	attrUnicodePwd   = "unicodePwd"
)

// writeback carries out password changes.
type writeback struct {
	opts WritebackOptions
	// requireClientTLS refuses changes sent in clear, like binds (listen.require_tls_for_bind).
	requireClientTLS bool
	pool             *upstream.Pool
	names            *resolver
	passwords        passwordKeeper
	log              *slog.Logger

	extMu        sync.Mutex
	extKnown     bool
	extSupported bool // the upstream lists Password Modify in its root DSE
}

// passwordKeeper is what the writeback tells of password changes: passwordCaches (the
// tests record the calls instead).
type passwordKeeper interface {
	forget(dn string, u *cache.User)
	changed(dn string, newPassword []byte)
}

func newWriteback(o Options, names *resolver, passwords passwordKeeper) *writeback {
	wb := &writeback{
		opts:             o.Writeback,
		requireClientTLS: o.Listen.RequireTLSForBind,
		pool:             o.Upstream,
		names:            names,
		passwords:        passwords,
		log:              o.Logger,
	}
	return wb
}

// disabled is the answer to every password change while writeback is off.
func disabled() *ldapserver.Result {
	return &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "password changes through the proxy are not enabled"}
}

// passwdRequest is a decoded PasswdModifyRequestValue (RFC 3062 §2). A field that is
// absent is nil; present but empty is a non-nil empty slice.
type passwdRequest struct {
	userIdentity []byte
	oldPassword  []byte
	newPassword  []byte
}

// parsePasswdModify decodes a Password Modify request value. An absent value asks the
// server to generate a new password for the bound user. It walks the encoding without
// a general BER decoder: the value is an OCTET STRING the message's nesting check did not
// look into.
func parsePasswdModify(e *ldapserver.ExtendedRequest) (passwdRequest, error) {
	var req passwdRequest
	if !e.HasValue {
		return req, nil
	}
	b := e.Value
	tag, start, end, err := ldapwire.Header(b, 0)
	if err != nil {
		return req, err
	}
	if tag != ldapwire.TagSequence || end != len(b) {
		return req, errors.New("value is not one SEQUENCE")
	}
	last := -1
	for pos := start; pos < end; {
		tag, s, e, err := ldapwire.Header(b[:end], pos)
		if err != nil {
			return req, err
		}
		n := int(tag) - 0x80 // [0] userIdentity, [1] oldPasswd, [2] newPasswd: context, primitive
		if n < 0 || n > 2 || n <= last {
			return req, fmt.Errorf("unexpected element %#x", tag)
		}
		last = n
		v := b[s:e:e] // never nil: present but empty stays told apart from absent
		switch n {
		case 0:
			req.userIdentity = v
		case 1:
			req.oldPassword = v
		case 2:
			req.newPassword = v
		}
		pos = e
	}
	return req, nil
}

// pwTarget is whose password a change sets.
type pwTarget struct {
	// dn is the DN the upstream knows the user by.
	dn string
	// reset: someone else's password, set with the service account.
	reset bool
}

// changer is the client that asks for a password change, as decide sees it.
type changer struct {
	authenticated bool
	dn            string // the DN it is bound as
	tls           bool   // its connection to the proxy is encrypted
	// cachedLogin: its login was accepted without the directory.
	cachedLogin bool
	// account: it is bound as one of the `clients:` accounts, which the directory does
	// not know.
	account bool
}

func changerOf(r *ldapserver.Request) changer {
	s, c := r.Session, clientOf(r)
	return changer{authenticated: s.Authenticated(), dn: s.BoundDN(), tls: s.TLS() != nil,
		cachedLogin: c.isCachedLogin(), account: c.clientAccount() != nil}
}

// decide says whose password a change sets and whether the client may set it; the result
// is the refusal to send when it may not. named is the user the client named, empty for
// itself. upstreamTLS is asked only for a change of one's own password in Active
// Directory, which must travel encrypted.
func (wb *writeback) decide(c changer, named string, upstreamTLS func() (bool, error)) (pwTarget, *ldapserver.Result) {
	if !c.authenticated {
		// What slapd answers: a password belongs to someone, and an anonymous client is nobody.
		return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultStrongAuthRequired, Diagnostic: "only authenticated users may change passwords"}
	}
	if wb.requireClientTLS && !c.tls {
		return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultConfidentialityRequired, Diagnostic: "password changes need TLS: use LDAPS or StartTLS"}
	}
	self := wb.names.upstreamDN(c.dn)
	if named != "" {
		if dn := wb.names.upstreamDN(named); directory.NormalizeDN(dn) != directory.NormalizeDN(self) {
			if c.cachedLogin {
				// A login the proxy accepted without the directory (offline, or from the
				// cached-authentication cache) may rest on a password the directory no
				// longer takes: it is not enough to act with the service account's rights.
				return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultStrongAuthRequired,
					Diagnostic: "bind again while the directory is reachable to reset passwords"}
			}
			if !wb.mayReset(c.dn) {
				return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultInsufficientAccessRights,
					Diagnostic: "you may change only your own password: password_reset_identities does not list you"}
			}
			return pwTarget{dn: dn, reset: true}, nil
		}
	}
	if c.account {
		return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform,
			Diagnostic: "this account's password is set in the proxy's configuration (clients:), not in the directory"}
	}
	if wb.opts.ActiveDirectory {
		encrypted, err := upstreamTLS()
		if err != nil {
			return pwTarget{}, errorResult(err)
		}
		if !encrypted {
			return pwTarget{}, &ldapserver.Result{Code: ldap.LDAPResultConfidentialityRequired,
				Diagnostic: diagADNeedsTLS}
		}
	}
	return pwTarget{dn: self}, nil
}

// mayReset says whether the client bound as bound may set other users' passwords: the
// configuration may name it in any form a bind name takes (its upstream or served DN in
// any spelling, user name, UPN, mail, DOMAIN\user). The entries are resolved at each
// change, against the store as it is then: a user renamed upstream keeps the right under
// the names it still has.
func (wb *writeback) mayReset(bound string) bool {
	self := wb.names.identityDN(bound)
	for _, name := range wb.opts.Config.ResetIdentities {
		if wb.names.identityDN(name) == self {
			return true
		}
	}
	return false
}

// sessionTLS says whether a session's upstream connection is encrypted.
func (wb *writeback) sessionTLS(c *upstream.Conn) bool {
	return wb.opts.UpstreamStartTLS || strings.HasPrefix(strings.ToLower(c.Server()), "ldaps://")
}

// upstreamTLS returns decide's question for the session r arrived on.
func (wb *writeback) upstreamTLS(r *ldapserver.Request) func() (bool, error) {
	return func() (bool, error) {
		c, err := clientOf(r).upstream(r.Context(), wb.pool, false)
		if err != nil {
			return false, err
		}
		return wb.sessionTLS(c), nil
	}
}

// pwOutcome is how a password change ended.
type pwOutcome struct {
	// refused: the proxy refused the change without asking the upstream.
	refused bool
	// sent: the request may have reached the upstream.
	sent bool
	// answered: the upstream answered with code.
	answered bool
	code     uint16
	// newPassword is the password now in force, when known.
	newPassword []byte
}

// forgetCached drops what the proxy remembers of the target's password before the change
// is sent: once the client can see the change succeed, the old password must not log in
// from a cache, not even on a connection racing this one. A change that then fails only
// costs the user a fresh upstream login.
func (wb *writeback) forgetCached(t pwTarget) {
	if t.dn != "" {
		wb.passwords.forget(t.dn, nil)
	}
}

// finish logs and counts a change and updates the password caches: a change the
// upstream accepted replaces the cached password with the new one when it is known; a
// change whose fate is unknown (sent, but no answer came) forgets the old one.
func (wb *writeback) finish(r *ldapserver.Request, t pwTarget, named string, out pwOutcome) {
	result := "refused"
	switch {
	case out.answered:
		result = ResultName(out.code)
	case !out.refused:
		result = "error"
	}
	wb.opts.Metrics.count(result)
	// The DN the change was for, as the upstream knows it once that is decided.
	attrs := append(r.Session.LogArgs(), "by", r.Session.BoundDN())
	switch {
	case t.reset:
		attrs = append(attrs, "dn", t.dn, "kind", "reset")
	case t.dn != "":
		attrs = append(attrs, "dn", t.dn, "kind", "self")
	default:
		attrs = append(attrs, "dn", named)
	}
	attrs = append(attrs, "result", result)
	wb.log.Info("password change", attrs...)
	switch {
	case out.answered && out.code == ldap.LDAPResultSuccess:
		wb.passwords.changed(t.dn, out.newPassword)
		if !t.reset {
			sessionPasswordChanged(r, out.newPassword)
		}
	case out.sent && !out.answered:
		wb.passwords.changed(t.dn, nil)
		if !t.reset {
			sessionPasswordChanged(r, nil)
		}
	}
}

// refuse answers a change the proxy does not pass on.
func (wb *writeback) refuse(w ldapserver.ResponseWriter, r *ldapserver.Request, t pwTarget, named string, res *ldapserver.Result) {
	w.WriteResult(res)
	wb.finish(r, t, named, pwOutcome{refused: true})
}

// passwordModify carries out a Password Modify extended operation.
func (wb *writeback) passwordModify(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	if !wb.opts.Config.Enabled {
		wb.refuse(w, r, pwTarget{}, "", disabled())
		return
	}
	req, err := parsePasswdModify(r.Extended)
	if err != nil {
		wb.refuse(w, r, pwTarget{}, "", &ldapserver.Result{Code: ldap.LDAPResultProtocolError, Diagnostic: "malformed Password Modify request: " + err.Error()})
		return
	}
	named := string(req.userIdentity)
	t, refusal := wb.decide(changerOf(r), named, wb.upstreamTLS(r))
	if refusal != nil {
		wb.refuse(w, r, t, named, refusal)
		return
	}
	if req.newPassword != nil && len(req.newPassword) == 0 {
		// Like an unauthenticated bind, an empty password must never become a login.
		wb.refuse(w, r, t, named, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the new password is empty"})
		return
	}
	if req.newPassword == nil && wb.opts.ActiveDirectory {
		wb.refuse(w, r, t, named, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "Active Directory does not generate passwords: give the new password"})
		return
	}
	wb.forgetCached(t)
	var out pwOutcome
	if t.reset {
		out = wb.resetPasswordModify(w, r, t, req)
	} else {
		out = wb.selfPasswordModify(w, r, t, req)
	}
	wb.finish(r, t, named, out)
}

// supportsPasswordModify says whether the upstream offers the Password Modify extended
// operation, reading its root DSE once with a service connection. A failed read is not
// remembered.
func (wb *writeback) supportsPasswordModify(ctx context.Context) (bool, error) {
	wb.extMu.Lock()
	defer wb.extMu.Unlock()
	if wb.extKnown {
		return wb.extSupported, nil
	}
	var supported bool
	err := wb.pool.WithService(ctx, "rootdse", func(lc *ldap.Conn) error {
		res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"supportedExtension"}, nil))
		if err != nil {
			return err
		}
		for _, e := range res.Entries {
			for _, oid := range e.GetAttributeValues("supportedExtension") {
				supported = supported || oid == ldapserver.OIDPasswordModify
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("read the upstream's root DSE: %w", err)
	}
	wb.extKnown, wb.extSupported = true, supported
	if !supported {
		wb.log.Info("the upstream does not offer Password Modify: password changes are written as userPassword modifies")
	}
	return supported, nil
}

// selfPasswordModify changes the bound user's own password on the client's upstream
// connection.
func (wb *writeback) selfPasswordModify(w ldapserver.ResponseWriter, r *ldapserver.Request, t pwTarget, req passwdRequest) pwOutcome {
	if wb.opts.ActiveDirectory {
		return wb.selfAsModify(w, r, t, req, attrUnicodePwd)
	}
	supported, err := wb.supportsPasswordModify(r.Context())
	if err != nil {
		w.WriteResult(errorResult(err))
		return pwOutcome{}
	}
	if !supported {
		return wb.selfAsModify(w, r, t, req, attrUserPassword)
	}
	msg := r.Raw()
	if req.userIdentity != nil && string(req.userIdentity) != t.dn {
		// The client named itself as the upstream does not know it (a served DN, "dn:",
		// a user name): ask for the same change by the upstream DN.
		msg = ldapwire.PasswordModifyRequest(t.dn, req.oldPassword, req.newPassword, r.Controls)
	}
	return wb.relay(w, r, msg, func(m []byte) []byte {
		if req.newPassword != nil {
			return req.newPassword
		}
		return ldapwire.GeneratedPassword(m)
	})
}

// relay sends msg on the client's upstream connection and the upstream's answer back
// to the client as it came. newPassword tells the password in force from a successful
// answer.
func (wb *writeback) relay(w ldapserver.ResponseWriter, r *ldapserver.Request, msg []byte, newPassword func(answer []byte) []byte) pwOutcome {
	var out pwOutcome
	c, err := clientOf(r).upstream(r.Context(), wb.pool, false)
	if err == nil {
		out.sent = true
		err = c.Forward(r.Context(), upstream.KindExtended, msg, func(resp ldapwire.Response) error {
			if resp.Final {
				out.answered, out.code = true, resp.Code
				if resp.Code == ldap.LDAPResultSuccess {
					out.newPassword = newPassword(resp.Msg)
				}
			}
			return relay(w, resp)
		})
	}
	if err != nil && !out.answered && r.Context().Err() == nil {
		logSession(wb.log, slog.LevelWarn, r.Session, "password change failed: upstream", "err", err)
		w.WriteResult(errorResult(err))
	}
	return out
}

// selfAsModify writes the bound user's own password as a modify of attr, for upstreams
// without Password Modify and for Active Directory, and answers the client's extended
// operation with the modify's result.
func (wb *writeback) selfAsModify(w ldapserver.ResponseWriter, r *ldapserver.Request, t pwTarget, req passwdRequest, attr string) pwOutcome {
	if req.newPassword == nil {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the upstream does not generate passwords: give the new password"})
		return pwOutcome{refused: true}
	}
	if _, err := ldap.ParseDN(t.dn); err != nil {
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: fmt.Sprintf("the proxy cannot tell the DN of %q: bind with your DN to change your password", t.dn)})
		return pwOutcome{refused: true}
	}
	changes, res := passwordChanges(attr, req.oldPassword, req.newPassword, false)
	if res != nil {
		w.WriteResult(res)
		return pwOutcome{refused: true}
	}
	var out pwOutcome
	var result error
	c, err := clientOf(r).upstream(r.Context(), wb.pool, false)
	if err == nil {
		out.sent = true
		err = c.Forward(r.Context(), upstream.KindExtended, ldapwire.ModifyRequest(t.dn, changes, nil), func(resp ldapwire.Response) error {
			if resp.Final {
				out.answered, out.code = true, resp.Code
				result = resp.Err()
			}
			return nil
		})
	}
	switch {
	case out.answered && result == nil:
		out.newPassword = req.newPassword
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultSuccess})
	case out.answered:
		w.WriteResult(errorResult(result))
	case r.Context().Err() == nil:
		logSession(wb.log, slog.LevelWarn, r.Session, "password change failed: upstream", "err", err)
		w.WriteResult(errorResult(err))
	}
	return out
}

// passwordChanges are the modifications that set a password in attr: delete the old and
// add the new one when the old one is known (what Active Directory requires of a user
// changing their own), else replace. forReset replaces whatever was given: an
// administrator's reset in Active Directory.
func passwordChanges(attr string, oldPassword, newPassword []byte, forReset bool) ([]ldapwire.Change, *ldapserver.Result) {
	enc := func(p []byte) ([]byte, *ldapserver.Result) { return p, nil }
	if attr == attrUnicodePwd {
		enc = func(p []byte) ([]byte, *ldapserver.Result) {
			v, err := unicodePwd(p)
			if err != nil {
				return nil, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: err.Error()}
			}
			return v, nil
		}
	}
	newV, res := enc(newPassword)
	if res != nil {
		return nil, res
	}
	if oldPassword == nil || forReset {
		return []ldapwire.Change{{Operation: ldapwire.ModReplace, Type: attr, Values: [][]byte{newV}}}, nil
	}
	oldV, res := enc(oldPassword)
	if res != nil {
		return nil, res
	}
	return []ldapwire.Change{
		{Operation: ldapwire.ModDelete, Type: attr, Values: [][]byte{oldV}},
		{Operation: ldapwire.ModAdd, Type: attr, Values: [][]byte{newV}},
	}, nil
}

const diagADNeedsTLS = "Active Directory takes passwords only over TLS: the proxy's upstream connection is not encrypted (use ldaps:// or start_tls)"

// errUpstreamClear stops a reset in Active Directory on a service connection that is
// not encrypted.
var errUpstreamClear = errors.New("the service connection to Active Directory is not encrypted")

// resetPasswordModify sets another user's password with the service account.
func (wb *writeback) resetPasswordModify(w ldapserver.ResponseWriter, r *ldapserver.Request, t pwTarget, req passwdRequest) pwOutcome {
	var changes []ldapwire.Change
	passwordModify := false
	switch {
	case wb.opts.ActiveDirectory:
		var res *ldapserver.Result
		if changes, res = passwordChanges(attrUnicodePwd, req.oldPassword, req.newPassword, true); res != nil {
			w.WriteResult(res)
			return pwOutcome{refused: true}
		}
	default:
		supported, err := wb.supportsPasswordModify(r.Context())
		if err != nil {
			w.WriteResult(errorResult(err))
			return pwOutcome{}
		}
		if !supported && req.newPassword == nil {
			w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: "the upstream does not generate passwords: give the new password"})
			return pwOutcome{refused: true}
		}
		passwordModify = supported
		if !supported {
			changes, _ = passwordChanges(attrUserPassword, req.oldPassword, req.newPassword, false)
		}
	}
	var generated []byte
	out := wb.serviceChange(w, r, func(lc *ldap.Conn) error {
		if !passwordModify {
			return lc.Modify(&ldap.ModifyRequest{DN: t.dn, Changes: toLDAPChanges(changes)})
		}
		res, err := lc.PasswordModify(ldap.NewPasswordModifyRequest(t.dn, string(req.oldPassword), string(req.newPassword)))
		if err == nil && res.GeneratedPassword != "" {
			generated = []byte(res.GeneratedPassword)
		}
		return err
	}, func() *ldapserver.Result {
		if generated == nil {
			return &ldapserver.Result{Code: ldap.LDAPResultSuccess}
		}
		return &ldapserver.Result{Code: ldap.LDAPResultSuccess, ResponseValue: ldapwire.PasswordModifyResponseValue(generated), HasValue: true}
	})
	out.newPassword = req.newPassword
	if generated != nil {
		out.newPassword = generated
	}
	return out
}

// serviceChange makes a reset with the service account and answers the client: with
// success() when the upstream accepted it, else with the upstream's answer as it came.
// Active Directory gets passwords only on an encrypted connection.
func (wb *writeback) serviceChange(w ldapserver.ResponseWriter, r *ldapserver.Request, change func(*ldap.Conn) error, success func() *ldapserver.Result) pwOutcome {
	err := wb.pool.WithService(r.Context(), "password", func(lc *ldap.Conn) error {
		if wb.opts.ActiveDirectory {
			if _, ok := lc.TLSConnectionState(); !ok {
				return errUpstreamClear
			}
		}
		return change(lc)
	})
	out := serviceOutcome(err)
	switch {
	case err == nil:
		w.WriteResult(success())
	case errors.Is(err, errUpstreamClear):
		w.WriteResult(&ldapserver.Result{Code: ldap.LDAPResultConfidentialityRequired, Diagnostic: diagADNeedsTLS})
		return pwOutcome{refused: true}
	default:
		if !out.answered {
			logSession(wb.log, slog.LevelWarn, r.Session, "password reset failed: upstream", "err", err)
		}
		w.WriteResult(errorResult(err))
	}
	return out
}

// serviceOutcome reads the outcome of a change made with the service account from the
// error go-ldap returned.
func serviceOutcome(err error) pwOutcome {
	if err == nil {
		return pwOutcome{sent: true, answered: true, code: ldap.LDAPResultSuccess}
	}
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < 200 { // go-ldap uses 200+ for client-side errors
		return pwOutcome{sent: true, answered: true, code: le.ResultCode}
	}
	return pwOutcome{sent: true}
}

// modify carries out a modify request that changes a password.
func (wb *writeback) modify(w ldapserver.ResponseWriter, r *ldapserver.Request) {
	m := r.Modify
	if !wb.opts.Config.Enabled {
		wb.refuse(w, r, pwTarget{}, m.DN, disabled())
		return
	}
	for _, c := range m.Changes {
		if !isPasswordAttr(c.Type) {
			wb.refuse(w, r, pwTarget{}, m.DN, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform,
				Diagnostic: "the proxy is read-only: a modify may change only userPassword or unicodePwd"})
			return
		}
	}
	t, refusal := wb.decide(changerOf(r), m.DN, wb.upstreamTLS(r))
	if refusal != nil {
		wb.refuse(w, r, t, m.DN, refusal)
		return
	}
	changes, refusal := wb.upstreamChanges(m.Changes)
	if refusal != nil {
		wb.refuse(w, r, t, m.DN, refusal)
		return
	}
	newPassword := newPasswordOf(changes)
	wb.forgetCached(t)
	var out pwOutcome
	if t.reset {
		out = wb.serviceChange(w, r, func(lc *ldap.Conn) error {
			return lc.Modify(&ldap.ModifyRequest{DN: t.dn, Changes: toLDAPChanges(changes)})
		}, func() *ldapserver.Result { return &ldapserver.Result{Code: ldap.LDAPResultSuccess} })
		out.newPassword = newPassword
	} else {
		out = wb.relay(w, r, ldapwire.ModifyRequest(t.dn, changes, r.Controls), func([]byte) []byte { return newPassword })
	}
	wb.finish(r, t, m.DN, out)
}

// upstreamChanges turns a client's password modifications into what the upstream takes:
// for Active Directory, userPassword values become unicodePwd; a client's own unicodePwd
// values pass as they are.
func (wb *writeback) upstreamChanges(in []ldapwire.Change) ([]ldapwire.Change, *ldapserver.Result) {
	if !wb.opts.ActiveDirectory {
		return in, nil
	}
	out := make([]ldapwire.Change, len(in))
	for i, c := range in {
		out[i] = c
		if !strings.EqualFold(c.Type, attrUserPassword) {
			continue
		}
		out[i].Type = attrUnicodePwd
		out[i].Values = make([][]byte, len(c.Values))
		for j, v := range c.Values {
			enc, err := unicodePwd(v)
			if err != nil {
				return nil, &ldapserver.Result{Code: ldap.LDAPResultUnwillingToPerform, Diagnostic: err.Error()}
			}
			out[i].Values[j] = enc
		}
	}
	return out, nil
}

// newPasswordOf is the password a successful modify leaves in force, when that is
// certain: exactly one value added or replaced, in clear. A value in a storage scheme
// ("{SSHA}...") is not the password, and must never be taken for one.
func newPasswordOf(changes []ldapwire.Change) []byte {
	var found []byte
	n := 0
	for _, c := range changes {
		if c.Operation != ldapwire.ModAdd && c.Operation != ldapwire.ModReplace {
			continue
		}
		for _, v := range c.Values {
			n++
			found = v
			if strings.EqualFold(c.Type, attrUnicodePwd) {
				p, ok := decodeUnicodePwd(v)
				if !ok {
					return nil
				}
				found = p
			}
		}
	}
	if n != 1 || hasStorageScheme(found) {
		return nil
	}
	return found
}

// hasStorageScheme reports whether a userPassword value starts with a storage scheme
// such as {SSHA} or {CRYPT} (RFC 3112).
func hasStorageScheme(v []byte) bool {
	if len(v) < 3 || v[0] != '{' {
		return false
	}
	for i, c := range v[1:] {
		switch {
		case c == '}':
			return i > 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return false
}

func toLDAPChanges(cs []ldapwire.Change) []ldap.Change {
	out := make([]ldap.Change, len(cs))
	for i, c := range cs {
		vals := make([]string, len(c.Values))
		for j, v := range c.Values {
			vals[j] = string(v)
		}
		out[i] = ldap.Change{Operation: uint(c.Operation), Modification: ldap.PartialAttribute{Type: c.Type, Vals: vals}}
	}
	return out
}

// unicodePwd encodes a password as Active Directory's unicodePwd takes it: the password
// in double quotes, in UTF-16LE, without a byte order mark or terminator. Quotes inside
// the password are not escaped: the server takes everything between the first and the
// last quote. A password that is not UTF-8 has no UTF-16 form.
func unicodePwd(password []byte) ([]byte, error) {
	if !utf8.Valid(password) {
		return nil, errors.New("the password is not valid UTF-8: Active Directory needs it in UTF-16")
	}
	units := make([]uint16, 0, len(password)+2)
	units = append(units, '"')
	for _, r := range string(password) {
		units = utf16.AppendRune(units, r)
	}
	units = append(units, '"')
	out := make([]byte, 0, 2*len(units))
	for _, u := range units {
		out = binary.LittleEndian.AppendUint16(out, u)
	}
	return out, nil
}

// decodeUnicodePwd is the inverse of unicodePwd, for a value a client sent as it is.
func decodeUnicodePwd(v []byte) ([]byte, bool) {
	if len(v)%2 != 0 || len(v) < 4 {
		return nil, false
	}
	units := make([]uint16, len(v)/2)
	for i := range units {
		units[i] = binary.LittleEndian.Uint16(v[2*i:])
	}
	if units[0] != '"' || units[len(units)-1] != '"' {
		return nil, false
	}
	var out []byte
	inner := units[1 : len(units)-1]
	for i := 0; i < len(inner); i++ {
		r := rune(inner[i])
		if utf16.IsSurrogate(r) {
			if i+1 >= len(inner) {
				return nil, false
			}
			r = utf16.DecodeRune(r, rune(inner[i+1]))
			if r == utf8.RuneError {
				return nil, false
			}
			i++
		}
		out = utf8.AppendRune(out, r)
	}
	if out == nil {
		out = []byte{}
	}
	return out, true
}
