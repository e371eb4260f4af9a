package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/directory"
	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	"github.com/ldapproxy/ldapproxy/ldapserver"
	"github.com/ldapproxy/ldapproxy/metrics"
	"github.com/ldapproxy/ldapproxy/upstream"
)

func TestUnicodePwd(t *testing.T) {
	tests := []struct {
		name     string
		password string
		want     []byte
	}{
		{"empty", "", []byte{'"', 0, '"', 0}},
		{"ASCII", "new", []byte{'"', 0, 'n', 0, 'e', 0, 'w', 0, '"', 0}},
		{"quote inside is kept as it is", `a"b`, []byte{'"', 0, 'a', 0, '"', 0, 'b', 0, '"', 0}},
		{"only quotes", `""`, []byte{'"', 0, '"', 0, '"', 0, '"', 0}},
		{"backslash", `a\b`, []byte{'"', 0, 'a', 0, '\\', 0, 'b', 0, '"', 0}},
		{"Latin-1 range", "é", []byte{'"', 0, 0xe9, 0x00, '"', 0}},
		{"two-byte UTF-8 beyond Latin-1", "ł", []byte{'"', 0, 0x42, 0x01, '"', 0}},
		{"three-byte UTF-8 (CJK)", "密", []byte{'"', 0, 0xc6, 0x5b, '"', 0}},
		{"BMP code point that looks like a BOM", "\ufeff", []byte{'"', 0, 0xff, 0xfe, '"', 0}},
		{"replacement character itself", "\ufffd", []byte{'"', 0, 0xfd, 0xff, '"', 0}},
		{"last BMP code point before surrogates", "\ud7ff", []byte{'"', 0, 0xff, 0xd7, '"', 0}},
		{"first code point after surrogates", "\ue000", []byte{'"', 0, 0x00, 0xe0, '"', 0}},
		// U+1F600 is D83D DE00 in UTF-16.
		{"surrogate pair (emoji)", "😀", []byte{'"', 0, 0x3d, 0xd8, 0x00, 0xde, '"', 0}},
		// U+10000 is D800 DC00, U+10FFFF is DBFF DFFF: the ends of the supplementary planes.
		{"first supplementary code point", "\U00010000", []byte{'"', 0, 0x00, 0xd8, 0x00, 0xdc, '"', 0}},
		{"last code point", "\U0010ffff", []byte{'"', 0, 0xff, 0xdb, 0xff, 0xdf, '"', 0}},
		{"mixed", "Ab1é😀\"", []byte{'"', 0, 'A', 0, 'b', 0, '1', 0, 0xe9, 0, 0x3d, 0xd8, 0x00, 0xde, '"', 0, '"', 0}},
		{"NUL inside", "a\x00b", []byte{'"', 0, 'a', 0, 0, 0, 'b', 0, '"', 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unicodePwd([]byte(tt.password))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("unicodePwd(%q) = % x, want % x", tt.password, got, tt.want)
			}
			back, ok := decodeUnicodePwd(got)
			if !ok || string(back) != tt.password {
				t.Fatalf("decodeUnicodePwd(% x) = %q, %v; want %q", got, back, ok, tt.password)
			}
		})
	}

	// Every code point in UTF-8 survives the round trip.
	var all strings.Builder
	for r := rune(1); r <= 0x10ffff; r += 97 {
		if r < 0xd800 || r > 0xdfff {
			all.WriteRune(r)
		}
	}
	enc, err := unicodePwd([]byte(all.String()))
	if err != nil {
		t.Fatal(err)
	}
	if back, ok := decodeUnicodePwd(enc); !ok || string(back) != all.String() {
		t.Fatal("round trip over the code points failed")
	}

	for _, bad := range []string{"\xff", "a\xc3", "\xed\xa0\x80" /* a surrogate in UTF-8 */, "ok\xe2\x82"} {
		if v, err := unicodePwd([]byte(bad)); err == nil {
			t.Errorf("unicodePwd(%q) = % x, want an error: it is not UTF-8", bad, v)
		}
	}
}

func TestDecodeUnicodePwdRefuses(t *testing.T) {
	for name, v := range map[string][]byte{
		"odd length":             {'"', 0, 'a', 0, '"'},
		"too short":              {'"', 0},
		"no leading quote":       {'a', 0, '"', 0},
		"no trailing quote":      {'"', 0, 'a', 0},
		"lone high surrogate":    {'"', 0, 0x3d, 0xd8, '"', 0},
		"lone low surrogate":     {'"', 0, 0x00, 0xde, '"', 0},
		"reversed pair":          {'"', 0, 0x00, 0xde, 0x3d, 0xd8, '"', 0},
		"high then ASCII":        {'"', 0, 0x3d, 0xd8, 'a', 0, '"', 0},
		"UTF-16BE":               {0, '"', 0, 'a', 0, '"'},
		"plain UTF-8 (not AD's)": []byte(`"abc"`),
	} {
		if p, ok := decodeUnicodePwd(v); ok {
			t.Errorf("%s: decodeUnicodePwd(% x) = %q, want a refusal", name, v, p)
		}
	}
}

// passwdValue encodes a PasswdModifyRequestValue from raw elements.
func passwdValue(elems ...[]byte) []byte {
	e := encoder{}
	e.Begin(tagSequence)
	for _, el := range elems {
		e.Raw(el)
	}
	e.End()
	return e.B
}

func elem(tag byte, v string) []byte {
	e := encoder{}
	e.Str(tag, v)
	return e.B
}

func TestParsePasswdModify(t *testing.T) {
	tests := []struct {
		name    string
		req     ExtendedRequest
		want    passwdRequest
		wantErr bool
	}{
		{name: "no value: generate a password for me", req: ExtendedRequest{Name: OIDPasswordModify}},
		{name: "empty sequence", req: ExtendedRequest{HasValue: true, Value: passwdValue()}},
		{name: "all three", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x80, "uid=a,dc=x"), elem(0x81, "old"), elem(0x82, "new"))},
			want: passwdRequest{userIdentity: []byte("uid=a,dc=x"), oldPassword: []byte("old"), newPassword: []byte("new")}},
		{name: "old and new", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x81, "old"), elem(0x82, "new"))},
			want: passwdRequest{oldPassword: []byte("old"), newPassword: []byte("new")}},
		{name: "identity only", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x80, "dn:uid=a,dc=x"))},
			want: passwdRequest{userIdentity: []byte("dn:uid=a,dc=x")}},
		{name: "empty new password is present, not absent", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x82, ""))},
			want: passwdRequest{newPassword: []byte{}}},
		{name: "out of order", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x82, "new"), elem(0x81, "old"))}, wantErr: true},
		{name: "twice", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x82, "a"), elem(0x82, "b"))}, wantErr: true},
		{name: "unknown tag", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x83, "x"))}, wantErr: true},
		{name: "universal OCTET STRING instead of [2]", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x04, "x"))}, wantErr: true},
		{name: "constructed [2]", req: ExtendedRequest{HasValue: true, Value: passwdValue([]byte{0xa2, 0x00})}, wantErr: true},
		{name: "not a sequence", req: ExtendedRequest{HasValue: true, Value: elem(0x04, "x")}, wantErr: true},
		{name: "trailing bytes", req: ExtendedRequest{HasValue: true, Value: append(passwdValue(elem(0x82, "new")), 0)}, wantErr: true},
		{name: "truncated", req: ExtendedRequest{HasValue: true, Value: passwdValue(elem(0x82, "new"))[:5]}, wantErr: true},
		{name: "inner length beyond the sequence", req: ExtendedRequest{HasValue: true, Value: []byte{0x30, 0x03, 0x82, 0x05, 'a'}}, wantErr: true},
		{name: "empty value", req: ExtendedRequest{HasValue: true, Value: []byte{}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePasswdModify(&tt.req)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			for _, f := range []struct {
				name      string
				got, want []byte
			}{{"userIdentity", got.userIdentity, tt.want.userIdentity}, {"oldPasswd", got.oldPassword, tt.want.oldPassword}, {"newPasswd", got.newPassword, tt.want.newPassword}} {
				if (f.got == nil) != (f.want == nil) || !bytes.Equal(f.got, f.want) {
					t.Errorf("%s = %q (nil %v), want %q (nil %v)", f.name, f.got, f.got == nil, f.want, f.want == nil)
				}
			}
		})
	}
}

// testWriteback builds a writeback over a store that knows alice (served under another
// DN than upstream), bob and the helpdesk account (with a UPN and a mail address), in the
// NetBIOS domain EXAMPLE.
func testWriteback(t *testing.T, o WritebackOptions, keep ...passwordKeeper) *writeback {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	store, err := cache.Open(cache.Config{Path: cache.InMemory}, log, directory.NormalizeDN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s, err := store.BeginSync(cache.KindUsers)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []*cache.User{
		{ID: "1", DN: "uid=alice,ou=people,dc=up", Path: "uid=alice,ou=users,dc=served", Username: "alice", IsActive: true},
		{ID: "2", DN: "uid=bob,ou=people,dc=up", Username: "bob", IsActive: true},
		{ID: "3", DN: "uid=helpdesk,ou=people,dc=up", Path: "uid=helpdesk,ou=users,dc=served", Username: "helpdesk", IsActive: true,
			Email: "help@example.org", Attributes: map[string]any{cache.UPNAttribute: "Help.Desk@corp.example.com"}},
	} {
		if err := s.PutUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	opts := Options{Logger: log, Writeback: o}
	return newWriteback(opts, &resolver{store: store, netbios: "EXAMPLE"}, keeperOf(keep))
}

func TestDecide(t *testing.T) {
	const (
		alice    = "uid=alice,ou=people,dc=up"
		bob      = "uid=bob,ou=people,dc=up"
		helpdesk = "uid=helpdesk,ou=people,dc=up"
	)
	encrypted := func() (bool, error) { return true, nil }
	clear := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, upstream.ErrUnavailable }
	tests := []struct {
		name       string
		ad         bool
		resetters  []string
		clientTLS  bool
		requireTLS bool
		account    bool   // bound as a clients: account
		bound      string // "" anonymous
		named      string
		tls        func() (bool, error)
		want       pwTarget
		code       uint16 // the refusal's result code; 0 none
	}{
		{name: "anonymous", named: "", code: ldap.LDAPResultStrongAuthRequired},
		{name: "anonymous naming a user", named: alice, code: ldap.LDAPResultStrongAuthRequired},
		{name: "own password, no name", bound: alice, want: pwTarget{dn: alice}},
		{name: "own password, upstream DN", bound: alice, named: alice, want: pwTarget{dn: alice}},
		{name: "own password, upstream DN in other case and spacing", bound: alice, named: "UID=Alice, OU=People, DC=up", want: pwTarget{dn: alice}},
		{name: "own password, served DN", bound: alice, named: "uid=alice,ou=users,dc=served", want: pwTarget{dn: alice}},
		{name: "own password, dn: authzId", bound: alice, named: "dn:" + alice, want: pwTarget{dn: alice}},
		{name: "own password, user name", bound: alice, named: "alice", want: pwTarget{dn: alice}},
		{name: "bound by served DN, no name", bound: "uid=alice,ou=users,dc=served", want: pwTarget{dn: alice}},
		{name: "user unknown to the store changes own", bound: "uid=carol,ou=people,dc=up", named: "uid=carol,ou=people,dc=up", want: pwTarget{dn: "uid=carol,ou=people,dc=up"}},
		{name: "another user's password", bound: alice, named: bob, code: ldap.LDAPResultInsufficientAccessRights},
		{name: "another user's password by served DN", bound: bob, named: "uid=alice,ou=users,dc=served", code: ldap.LDAPResultInsufficientAccessRights},
		{name: "a listed identity resets another's", bound: helpdesk, named: bob, resetters: []string{helpdesk}, want: pwTarget{dn: bob, reset: true}},
		{name: "a listed identity resets by served DN", bound: helpdesk, named: "uid=alice,ou=users,dc=served", resetters: []string{helpdesk}, want: pwTarget{dn: alice, reset: true}},
		{name: "listed in other case and spacing", bound: helpdesk, named: bob, resetters: []string{"UID=HelpDesk, OU=People, DC=UP"}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by served DN, bound by upstream DN", bound: helpdesk, named: bob, resetters: []string{"uid=helpdesk,ou=users,dc=served"}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by upstream DN, bound by served DN", bound: "uid=helpdesk,ou=users,dc=served", named: bob, resetters: []string{helpdesk}, want: pwTarget{dn: bob, reset: true}},
		{name: "someone else listed", bound: alice, named: bob, resetters: []string{helpdesk}, code: ldap.LDAPResultInsufficientAccessRights},
		// password_reset_identities takes every form of bind name.
		{name: "listed by user name", bound: helpdesk, named: bob, resetters: []string{"HelpDesk"}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by UPN", bound: helpdesk, named: bob, resetters: []string{"help.desk@corp.example.com"}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by mail", bound: helpdesk, named: bob, resetters: []string{"help@example.org"}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by down-level name", bound: "uid=helpdesk,ou=users,dc=served", named: bob, resetters: []string{`example\helpdesk`}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed by dn: authzId", bound: helpdesk, named: bob, resetters: []string{"dn:" + helpdesk}, want: pwTarget{dn: bob, reset: true}},
		{name: "listed in another NetBIOS domain", bound: helpdesk, named: bob, resetters: []string{`OTHER\helpdesk`}, code: ldap.LDAPResultInsufficientAccessRights},
		{name: "listed by the DNS domain form", bound: helpdesk, named: bob, resetters: []string{`corp.example.com\helpdesk`}, code: ldap.LDAPResultInsufficientAccessRights},
		{name: "a user name listed, another user bound", bound: alice, named: bob, resetters: []string{"helpdesk"}, code: ldap.LDAPResultInsufficientAccessRights},
		{name: "reset named by down-level name", bound: helpdesk, named: `EXAMPLE\bob`, resetters: []string{helpdesk}, want: pwTarget{dn: bob, reset: true}},
		{name: "own password named by UPN", bound: helpdesk, named: "HELP.DESK@corp.example.com", want: pwTarget{dn: helpdesk}},
		{name: "a listed identity changes its own", bound: helpdesk, resetters: []string{helpdesk}, want: pwTarget{dn: helpdesk}},
		{name: "reset of a user the store does not know", bound: helpdesk, named: "uid=dave,ou=people,dc=up", resetters: []string{helpdesk}, want: pwTarget{dn: "uid=dave,ou=people,dc=up", reset: true}},
		{name: "AD: own password over TLS", ad: true, bound: alice, tls: encrypted, want: pwTarget{dn: alice}},
		{name: "AD: own password in clear", ad: true, bound: alice, tls: clear, code: ldap.LDAPResultConfidentialityRequired},
		{name: "AD: own password, upstream unreachable", ad: true, bound: alice, tls: broken, code: ldap.LDAPResultUnavailable},
		{name: "AD: reset is checked on the service connection", ad: true, bound: helpdesk, named: bob, resetters: []string{helpdesk}, tls: clear, want: pwTarget{dn: bob, reset: true}},
		{name: "AD: refused reset stays refused in clear", ad: true, bound: alice, named: bob, tls: clear, code: ldap.LDAPResultInsufficientAccessRights},
		{name: "AD: anonymous", ad: true, tls: clear, code: ldap.LDAPResultStrongAuthRequired},
		{name: "client TLS required, client in clear", requireTLS: true, bound: alice, code: ldap.LDAPResultConfidentialityRequired},
		{name: "client TLS required, client on TLS", requireTLS: true, clientTLS: true, bound: alice, want: pwTarget{dn: alice}},
		{name: "a clients: account's own password", account: true, bound: "cn=gitlab,ou=apps,dc=up", code: ldap.LDAPResultUnwillingToPerform},
		{name: "a clients: account resets when listed", account: true, bound: "cn=gitlab,ou=apps,dc=up", named: bob, resetters: []string{"cn=gitlab,ou=apps,dc=up"}, want: pwTarget{dn: bob, reset: true}},
		{name: "a clients: account not listed", account: true, bound: "cn=gitlab,ou=apps,dc=up", named: bob, code: ldap.LDAPResultInsufficientAccessRights},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wb := testWriteback(t, WritebackOptions{
				Config:          WritebackConfig{Enabled: true, ResetIdentities: tt.resetters},
				ActiveDirectory: tt.ad,
			})
			wb.requireClientTLS = tt.requireTLS
			c := changer{authenticated: tt.bound != "", dn: tt.bound, tls: tt.clientTLS, account: tt.account}
			asked := false
			upstreamTLS := func() (bool, error) {
				asked = true
				if tt.tls == nil {
					t.Fatal("upstream TLS asked for outside Active Directory")
				}
				return tt.tls()
			}
			got, res := wb.decide(c, tt.named, upstreamTLS)
			var code uint16
			if res != nil {
				code = res.Code
				if res.Diagnostic == "" {
					t.Error("refusal without a diagnostic")
				}
			}
			if code != tt.code {
				t.Fatalf("result %d (%+v), want %d", code, res, tt.code)
			}
			if res == nil && got != tt.want {
				t.Fatalf("target %+v, want %+v", got, tt.want)
			}
			if asked && (got.reset || !tt.ad) {
				t.Error("the session's upstream connection was consulted for a reset")
			}
		})
	}
}

func TestEncodeModifyRoundTrip(t *testing.T) {
	changes := []Change{
		{Operation: modDelete, Type: "unicodePwd", Values: [][]byte{{'"', 0, 'o', 0, '"', 0}}},
		{Operation: modAdd, Type: "unicodePwd", Values: [][]byte{bytes.Repeat([]byte{'x', 0}, 200)}},
		{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("a"), []byte("b")}},
		{Operation: modDelete, Type: "userPassword"},
	}
	controls := []Control{{Type: "1.3.6.1.4.1.42.2.27.8.5.1", Critical: true}, {Type: "1.2.3", Value: []byte("v"), HasValue: true}}
	msg := encodeModify("uid=alice,ou=people,dc=up", changes, controls)
	r := decodeRequest(t, msg)
	if r.Op != OpModify || r.Modify.DN != "uid=alice,ou=people,dc=up" || len(r.Modify.Changes) != len(changes) {
		t.Fatalf("decoded %+v", r.Modify)
	}
	for i, c := range r.Modify.Changes {
		w := changes[i]
		if c.Operation != w.Operation || c.Type != w.Type || len(c.Values) != len(w.Values) {
			t.Fatalf("change %d = %+v, want %+v", i, c, w)
		}
		for j := range c.Values {
			if !bytes.Equal(c.Values[j], w.Values[j]) {
				t.Fatalf("change %d value %d differs", i, j)
			}
		}
	}
	if len(r.Controls) != 2 || r.Controls[0].Type != controls[0].Type || !r.Controls[0].Critical ||
		r.Controls[1].Type != "1.2.3" || string(r.Controls[1].Value) != "v" {
		t.Fatalf("controls %+v", r.Controls)
	}
}

func TestEncodePasswordModifyRoundTrip(t *testing.T) {
	for _, req := range []passwdRequest{
		{},
		{oldPassword: []byte("old"), newPassword: []byte("new")},
		{newPassword: []byte("new")},
		{oldPassword: []byte("old")},
	} {
		msg := encodePasswordModify("uid=alice,ou=people,dc=up", req, []Control{{Type: "1.3.6.1.4.1.42.2.27.8.5.1"}})
		r := decodeRequest(t, msg)
		if r.Op != OpExtended || r.Extended.Name != OIDPasswordModify || len(r.Controls) != 1 {
			t.Fatalf("decoded %+v", r)
		}
		got, err := parsePasswdModify(r.Extended)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.userIdentity) != "uid=alice,ou=people,dc=up" || !bytes.Equal(got.oldPassword, req.oldPassword) ||
			!bytes.Equal(got.newPassword, req.newPassword) || (got.newPassword == nil) != (req.newPassword == nil) ||
			(got.oldPassword == nil) != (req.oldPassword == nil) {
			t.Fatalf("round trip of %+v gave %+v", req, got)
		}
	}
}

// extendedResponse encodes an ExtendedResponse message the way an upstream sends it.
func extendedResponse(code uint16, value []byte, withName bool) []byte {
	e := encoder{}
	encodeMessage(&e, 7)
	e.Begin(appConstructed | ldap.ApplicationExtendedResponse)
	e.Int(tagEnumerated, int64(code))
	e.Str(tagOctetString, "")
	e.Str(tagOctetString, "")
	if withName {
		e.Str(tagRespName, OIDPasswordModify)
	}
	if value != nil {
		e.Bytes(tagRespValue, value)
	}
	e.End()
	e.End()
	return e.B
}

func TestGeneratedPassword(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want []byte
	}{
		{"generated", extendedResponse(0, ldapwire.PasswordModifyResponseValue([]byte("pFfvTMig")), false), []byte("pFfvTMig")},
		{"generated, with a response name", extendedResponse(0, ldapwire.PasswordModifyResponseValue([]byte("x y")), true), []byte("x y")},
		{"no value", extendedResponse(0, nil, false), nil},
		{"empty sequence", extendedResponse(0, []byte{0x30, 0x00}, false), nil},
		{"value not a sequence", extendedResponse(0, []byte{0x04, 0x01, 'a'}, false), nil},
		{"a modify response", ldapwire.AppendResult(nil, 3, ldap.ApplicationModifyResponse, &Result{}), nil},
		{"garbage", []byte{0x30, 0x05, 0x02}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := generatedPassword(tt.msg); !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Fatalf("generatedPassword = %q, want %q", got, tt.want)
			}
		})
	}
	// What go-ldap's client reads from the proxy's own encoding of a reset's answer.
	res := ldapwire.AppendResult(nil, 1, ldap.ApplicationExtendedResponse, &Result{ResponseValue: ldapwire.PasswordModifyResponseValue([]byte("gen")), HasValue: true})
	if got := generatedPassword(res); string(got) != "gen" {
		t.Fatalf("generatedPassword of the proxy's own answer = %q", got)
	}
}

func TestPasswordChanges(t *testing.T) {
	q := func(s string) []byte { v, _ := unicodePwd([]byte(s)); return v }
	tests := []struct {
		name     string
		attr     string
		old, new string
		hasOld   bool
		reset    bool
		want     []Change
		code     uint16
	}{
		{name: "userPassword, no old: replace", attr: attrUserPassword, new: "n",
			want: []Change{{Operation: modReplace, Type: attrUserPassword, Values: [][]byte{[]byte("n")}}}},
		{name: "userPassword, old: delete and add", attr: attrUserPassword, old: "o", hasOld: true, new: "n",
			want: []Change{{Operation: modDelete, Type: attrUserPassword, Values: [][]byte{[]byte("o")}}, {Operation: modAdd, Type: attrUserPassword, Values: [][]byte{[]byte("n")}}}},
		{name: "AD self change: delete old, add new, both quoted UTF-16LE", attr: attrUnicodePwd, old: "o", hasOld: true, new: "ñ",
			want: []Change{{Operation: modDelete, Type: attrUnicodePwd, Values: [][]byte{q("o")}}, {Operation: modAdd, Type: attrUnicodePwd, Values: [][]byte{q("ñ")}}}},
		{name: "AD reset: replace, even with the old password", attr: attrUnicodePwd, old: "o", hasOld: true, new: "n", reset: true,
			want: []Change{{Operation: modReplace, Type: attrUnicodePwd, Values: [][]byte{q("n")}}}},
		{name: "AD: new password not UTF-8", attr: attrUnicodePwd, new: "\xff", code: ldap.LDAPResultUnwillingToPerform},
		{name: "AD: old password not UTF-8", attr: attrUnicodePwd, old: "\xff", hasOld: true, new: "n", code: ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old []byte
			if tt.hasOld {
				old = []byte(tt.old)
			}
			got, res := passwordChanges(tt.attr, old, []byte(tt.new), tt.reset)
			if tt.code != 0 {
				if res == nil || res.Code != tt.code {
					t.Fatalf("result %+v, want code %d", res, tt.code)
				}
				return
			}
			if res != nil {
				t.Fatalf("refused: %+v", res)
			}
			if !sameChanges(got, tt.want) {
				t.Fatalf("changes %+v, want %+v", got, tt.want)
			}
		})
	}
}

func sameChanges(a, b []Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Operation != b[i].Operation || a[i].Type != b[i].Type || len(a[i].Values) != len(b[i].Values) {
			return false
		}
		for j := range a[i].Values {
			if !bytes.Equal(a[i].Values[j], b[i].Values[j]) {
				return false
			}
		}
	}
	return true
}

func TestUpstreamChanges(t *testing.T) {
	q := func(s string) []byte { v, _ := unicodePwd([]byte(s)); return v }
	client := []Change{
		{Operation: modDelete, Type: "userpassword", Values: [][]byte{[]byte("old")}},
		{Operation: modAdd, Type: "userPassword", Values: [][]byte{[]byte("new")}},
		{Operation: modReplace, Type: "unicodePwd", Values: [][]byte{q("as sent")}},
	}
	plain := &writeback{opts: WritebackOptions{}}
	if got, res := plain.upstreamChanges(client); res != nil || !sameChanges(got, client) {
		t.Fatalf("not AD: changes must pass unchanged, got %+v %+v", got, res)
	}
	ad := &writeback{opts: WritebackOptions{ActiveDirectory: true}}
	got, res := ad.upstreamChanges(client)
	want := []Change{
		{Operation: modDelete, Type: attrUnicodePwd, Values: [][]byte{q("old")}},
		{Operation: modAdd, Type: attrUnicodePwd, Values: [][]byte{q("new")}},
		{Operation: modReplace, Type: "unicodePwd", Values: [][]byte{q("as sent")}},
	}
	if res != nil || !sameChanges(got, want) {
		t.Fatalf("AD: changes %+v (%+v), want %+v", got, res, want)
	}
	if string(client[0].Values[0]) != "old" {
		t.Fatal("the client's request was changed in place")
	}
	if _, res := ad.upstreamChanges([]Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("\xfe")}}}); res == nil || res.Code != ldap.LDAPResultUnwillingToPerform {
		t.Fatalf("AD: a password that is not UTF-8: %+v, want unwillingToPerform", res)
	}
}

func TestNewPasswordOf(t *testing.T) {
	q := func(s string) []byte { v, _ := unicodePwd([]byte(s)); return v }
	tests := []struct {
		name    string
		changes []Change
		want    []byte
	}{
		{"replace", []Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("new")}}}, []byte("new")},
		{"delete old, add new", []Change{{Operation: modDelete, Type: "userPassword", Values: [][]byte{[]byte("old")}}, {Operation: modAdd, Type: "userPassword", Values: [][]byte{[]byte("new")}}}, []byte("new")},
		{"unicodePwd is decoded", []Change{{Operation: modReplace, Type: "unicodePwd", Values: [][]byte{q("nów😀")}}}, []byte("nów😀")},
		{"unicodePwd not in AD's form", []Change{{Operation: modReplace, Type: "unicodePwd", Values: [][]byte{[]byte("raw")}}}, nil},
		{"hashed value is not a password", []Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("{SSHA}abcdef")}}}, nil},
		{"hashed value, lower-case scheme with digits", []Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("{sha512-crypt}x")}}}, nil},
		{"a brace that is no scheme", []Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("{a b}c")}}}, []byte("{a b}c")},
		{"two values: which one is in force is unclear", []Change{{Operation: modReplace, Type: "userPassword", Values: [][]byte{[]byte("a"), []byte("b")}}}, nil},
		{"password deleted", []Change{{Operation: modDelete, Type: "userPassword"}}, nil},
		{"replace with nothing", []Change{{Operation: modReplace, Type: "userPassword"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newPasswordOf(tt.changes); !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Fatalf("newPasswordOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWritebackConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  WritebackConfig
		want string // substring of the error; "" none
	}{
		{WritebackConfig{}, ""},
		{WritebackConfig{Enabled: true, ResetIdentities: []string{"cn=helpdesk,dc=example,dc=org", "UID=x, DC=y"}}, ""},
		{WritebackConfig{Enabled: true, ResetIdentities: []string{"cn=ok,dc=x", " "}}, "password_reset_identities[1]: empty name"},
		{WritebackConfig{Enabled: true, ResetIdentities: []string{"helpdesk", `EXAMPLE\helpdesk`, "help.desk@corp.example.com", "dn:cn=helpdesk,dc=x"}}, ""},
		{WritebackConfig{Enabled: true, ResetIdentities: []string{"cn=helpdesk,example"}}, `password_reset_identities[0]: "cn=helpdesk,example" is not a DN`},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: error %v, want one containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestFinish checks what each outcome tells the credential cache and the metric: the
// old password must never stay cached after a change that may have happened.
func TestFinish(t *testing.T) {
	type call struct {
		dn  string
		pw  []byte
		nil bool
	}
	tests := []struct {
		name   string
		out    pwOutcome
		result string
		calls  []call
	}{
		{"success", pwOutcome{sent: true, answered: true, newPassword: []byte("new")}, "success", []call{{dn: "uid=a", pw: []byte("new")}}},
		{"success, password unknown", pwOutcome{sent: true, answered: true}, "success", []call{{dn: "uid=a", nil: true}}},
		{"refused by the upstream", pwOutcome{sent: true, answered: true, code: ldap.LDAPResultConstraintViolation}, "constraintViolation", nil},
		{"refused by the proxy", pwOutcome{refused: true}, "refused", nil},
		{"not sent", pwOutcome{}, "error", nil},
		{"sent, no answer", pwOutcome{sent: true}, "error", []call{{dn: "uid=a", nil: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			var calls []call
			wb := testWriteback(t, WritebackOptions{Metrics: NewWritebackMetrics(metrics.Registerer(reg))}, keeper{
				changedFn: func(dn string, pw []byte) {
					calls = append(calls, call{dn: dn, pw: bytes.Clone(pw), nil: pw == nil})
				},
			})
			r := &Request{Session: &ldapserver.Session{}}
			wb.finish(r, pwTarget{dn: "uid=a"}, "", tt.out)
			if len(calls) != len(tt.calls) {
				t.Fatalf("password changes reported %+v, want %+v", calls, tt.calls)
			}
			for i := range calls {
				if calls[i].dn != tt.calls[i].dn || calls[i].nil != tt.calls[i].nil || !bytes.Equal(calls[i].pw, tt.calls[i].pw) {
					t.Fatalf("password changes reported %+v, want %+v", calls, tt.calls)
				}
			}
			if got := counted(t, reg); got != tt.result+" 1" {
				t.Fatalf("ldapproxy_password_writeback_total: %s, want %s 1", got, tt.result)
			}
		})
	}
}

// counted renders what ldapproxy_password_writeback_total holds as "result value" pairs.
func counted(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "ldapproxy_password_writeback_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				out = append(out, fmt.Sprintf("%s %v", l.GetValue(), m.GetCounter().GetValue()))
			}
		}
	}
	return strings.Join(out, ", ")
}

// writebackFront serves the handler chain in front of the slapd at url, with the service
// account as given, and returns the listening address and the writeback.
func writebackFront(t *testing.T, srv *slapdtest.Server, url, serviceDN, servicePassword string, o WritebackOptions, keep ...passwordKeeper) (string, *writeback) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	cfg := upstream.Config{URLs: url, BindDN: serviceDN, BindPassword: servicePassword, BaseDN: srv.Suffix, Timeout: 5 * time.Second}
	if srv.PKI != nil {
		cfg.CAFile = srv.PKI.CAFile
	}
	pool, err := upstream.New(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	opts := Options{Upstream: pool, Logger: log, Writeback: o}
	h, wb := newHandler(opts, keeperOf(keep))
	return serveHandler(t, h), wb
}

// upstreamBind binds to slapd directly and returns the result code.
func upstreamBind(t *testing.T, srv *slapdtest.Server, dn, password string) uint16 {
	t.Helper()
	c := dialLDAP(t, strings.TrimPrefix(srv.URL, "ldap://"))
	return ldapCode(c.Bind(dn, password))
}

func ldapCode(err error) uint16 {
	if err == nil {
		return 0
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode
	}
	return 0xffff
}

// TestWritebackAsModify exercises the way for upstreams without Password Modify: the
// extended operation becomes a userPassword modify, as the user or as the service account.
func TestWritebackAsModify(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 5, Groups: -1, PasswordPolicy: true})
	addr, wb := writebackFront(t, srv, srv.URL, srv.AdminDN, srv.AdminPassword, WritebackOptions{
		Config: WritebackConfig{Enabled: true, ResetIdentities: []string{srv.UserDN(5)}},
	})
	if ok, err := wb.supportsPasswordModify(t.Context()); err != nil || !ok {
		t.Fatalf("slapd's root DSE: Password Modify supported = %v, %v; want true", ok, err)
	}
	wb.extSupported = false // as if the upstream did not offer it

	change := func(bindAs int, user, old, new string) (*ldap.PasswordModifyResult, uint16) {
		c := dialLDAP(t, addr)
		if err := c.Bind(srv.UserDN(bindAs), slapdtest.UserPassword(bindAs)); err != nil {
			t.Fatal(err)
		}
		res, err := c.PasswordModify(ldap.NewPasswordModifyRequest(user, old, new))
		return res, ldapCode(err)
	}
	if _, code := change(1, "", slapdtest.UserPassword(1), "new-password-1"); code != 0 {
		t.Fatalf("own change with the old password: %d", code)
	}
	if upstreamBind(t, srv, srv.UserDN(1), "new-password-1") != 0 || upstreamBind(t, srv, srv.UserDN(1), slapdtest.UserPassword(1)) != ldap.LDAPResultInvalidCredentials {
		t.Fatal("after the change, slapd does not take the new password alone")
	}
	if _, code := change(2, srv.UserDN(2), "", "new-password-2"); code != 0 {
		t.Fatalf("own change by DN, without the old password: %d", code)
	}
	if upstreamBind(t, srv, srv.UserDN(2), "new-password-2") != 0 {
		t.Fatal("slapd does not take the new password")
	}
	if _, code := change(3, "", "wrong", "new-password-3"); code != ldap.LDAPResultUnwillingToPerform {
		t.Fatalf("wrong old password: %d, want ppolicy's unwillingToPerform (\"Must supply correct old password\")", code)
	}
	if _, code := change(3, "", "", "short"); code != ldap.LDAPResultConstraintViolation {
		t.Fatalf("too short: %d, want slapd's constraintViolation", code)
	}
	if _, code := change(3, "", slapdtest.UserPassword(3), ""); code != ldap.LDAPResultUnwillingToPerform {
		t.Fatalf("no new password and nothing to generate it: %d, want unwillingToPerform", code)
	}
	if _, code := change(3, srv.UserDN(4), "", "new-password-4"); code != ldap.LDAPResultInsufficientAccessRights {
		t.Fatalf("another user's password: %d, want insufficientAccessRights", code)
	}
	if _, code := change(5, srv.UserDN(4), "", "new-password-4"); code != 0 {
		t.Fatalf("reset by a listed identity: %d", code)
	}
	if upstreamBind(t, srv, srv.UserDN(4), "new-password-4") != 0 {
		t.Fatal("slapd does not take the reset password")
	}
}

const adUserLDIF = `dn: cn=AD User,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: extensibleObject
cn: AD User
sn: User
sAMAccountName: aduser
userPassword: ad-secret-1
`

// TestWritebackActiveDirectory writes unicodePwd to a slapd with Active Directory's
// schema: it cannot check passwords in unicodePwd, but it stores what it receives, so
// the values on the wire can be read back.
func TestWritebackActiveDirectory(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 3, Groups: -1, TLS: true, Schemas: []string{"msuser"}, ExtraLDIF: adUserLDIF})
	const adUser = "cn=AD User,ou=people,dc=example,dc=org"
	opts := WritebackOptions{ActiveDirectory: true, Config: WritebackConfig{Enabled: true, ResetIdentities: []string{srv.UserDN(3)}}}
	overTLS, _ := writebackFront(t, srv, srv.LDAPSURL, srv.AdminDN, srv.AdminPassword, opts)
	inClear, _ := writebackFront(t, srv, srv.URL, srv.AdminDN, srv.AdminPassword, opts)

	stored := func() []byte {
		c := dialLDAP(t, strings.TrimPrefix(srv.URL, "ldap://"))
		if err := c.Bind(srv.AdminDN, srv.AdminPassword); err != nil {
			t.Fatal(err)
		}
		res, err := c.Search(ldap.NewSearchRequest(adUser, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"unicodePwd"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return res.Entries[0].GetRawAttributeValue("unicodePwd")
	}
	client := func(addr string, i int) *ldap.Conn {
		c := dialLDAP(t, addr)
		if err := c.Bind(srv.UserDN(i), slapdtest.UserPassword(i)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	want := func(p string) []byte { v, _ := unicodePwd([]byte(p)); return v }

	t.Run("reset with Password Modify", func(t *testing.T) {
		_, err := client(overTLS, 3).PasswordModify(ldap.NewPasswordModifyRequest(adUser, "", `Nëw "pass" 😀`))
		if err != nil {
			t.Fatal(err)
		}
		if got := stored(); !bytes.Equal(got, want(`Nëw "pass" 😀`)) {
			t.Fatalf("unicodePwd = % x", got)
		}
	})
	t.Run("reset with a userPassword modify", func(t *testing.T) {
		m := ldap.NewModifyRequest(adUser, nil)
		m.Replace("userPassword", []string{"second-Pässword"})
		if err := client(overTLS, 3).Modify(m); err != nil {
			t.Fatal(err)
		}
		if got := stored(); !bytes.Equal(got, want("second-Pässword")) {
			t.Fatalf("unicodePwd = % x", got)
		}
	})
	t.Run("a client's unicodePwd passes as it is", func(t *testing.T) {
		m := ldap.NewModifyRequest(adUser, nil)
		m.Replace("unicodePwd", []string{string(want("third"))})
		if err := client(overTLS, 3).Modify(m); err != nil {
			t.Fatal(err)
		}
		if got := stored(); !bytes.Equal(got, want("third")) {
			t.Fatalf("unicodePwd = % x", got)
		}
	})
	t.Run("own change goes as the user", func(t *testing.T) {
		// slapd's ACL lets nobody but the admin write unicodePwd: its refusal, with the
		// message slapd gives, shows the change was asked for as the user.
		_, err := client(overTLS, 1).PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), "Fourth-1"))
		var le *ldap.Error
		if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInsufficientAccessRights || strings.Contains(le.Err.Error(), "password_reset_identities") {
			t.Fatalf("own change: %v, want slapd's insufficientAccessRights", err)
		}
	})
	t.Run("no new password", func(t *testing.T) {
		_, err := client(overTLS, 1).PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), ""))
		if ldapCode(err) != ldap.LDAPResultUnwillingToPerform {
			t.Fatalf("%v, want unwillingToPerform: AD generates no passwords", err)
		}
	})
	t.Run("never in clear", func(t *testing.T) {
		before := stored()
		if _, err := client(inClear, 1).PasswordModify(ldap.NewPasswordModifyRequest("", slapdtest.UserPassword(1), "Fifth-1")); ldapCode(err) != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("own change in clear: %v, want confidentialityRequired", err)
		}
		if _, err := client(inClear, 3).PasswordModify(ldap.NewPasswordModifyRequest(adUser, "", "Fifth-1")); ldapCode(err) != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("reset in clear: %v, want confidentialityRequired", err)
		}
		m := ldap.NewModifyRequest(adUser, nil)
		m.Replace("userPassword", []string{"Fifth-1"})
		if err := client(inClear, 3).Modify(m); ldapCode(err) != ldap.LDAPResultConfidentialityRequired {
			t.Fatalf("reset by modify in clear: %v, want confidentialityRequired", err)
		}
		if !bytes.Equal(stored(), before) {
			t.Fatal("a change in clear reached the upstream")
		}
	})
}

// TestPasswordChangesReported checks what the password caches hear after changes relayed to
// a slapd that offers Password Modify.
func TestPasswordChangesReported(t *testing.T) {
	srv := slapdtest.New(t, slapdtest.Options{Users: 6, Groups: -1, PasswordPolicy: true})
	type change struct{ dn, password string }
	heard := make(chan change, 10)
	addr, _ := writebackFront(t, srv, srv.URL, srv.AdminDN, srv.AdminPassword, WritebackOptions{
		Config: WritebackConfig{Enabled: true, ResetIdentities: []string{srv.UserDN(6)}},
	}, keeper{changedFn: func(dn string, pw []byte) { heard <- change{dn, string(pw)} }})
	next := func() change {
		t.Helper()
		select {
		case c := <-heard:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("the change was not reported to the password caches")
			return change{}
		}
	}
	client := func(i int) *ldap.Conn {
		c := dialLDAP(t, addr)
		if err := c.Bind(srv.UserDN(i), slapdtest.UserPassword(i)); err != nil {
			t.Fatal(err)
		}
		return c
	}

	if _, err := client(1).PasswordModify(ldap.NewPasswordModifyRequest("dn:"+srv.UserDN(1), slapdtest.UserPassword(1), "new-password-1")); err != nil {
		t.Fatalf("own change naming oneself by authzId: %v", err)
	}
	if got := next(); got != (change{srv.UserDN(1), "new-password-1"}) {
		t.Fatalf("heard %+v", got)
	}

	res, err := client(2).PasswordModify(ldap.NewPasswordModifyRequest("", "", ""))
	if err != nil || res.GeneratedPassword == "" {
		t.Fatalf("generated: %+v, %v", res, err)
	}
	if got := next(); got != (change{srv.UserDN(2), res.GeneratedPassword}) {
		t.Fatalf("heard %+v, want the generated password", got)
	}
	if upstreamBind(t, srv, srv.UserDN(2), res.GeneratedPassword) != 0 {
		t.Fatal("slapd does not take the generated password")
	}

	m := ldap.NewModifyRequest(srv.UserDN(3), nil)
	m.Replace("userPassword", []string{"new-password-3"})
	if err := client(3).Modify(m); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != (change{srv.UserDN(3), "new-password-3"}) {
		t.Fatalf("heard %+v", got)
	}

	// A refusal changes nothing and is not heard: the next call is the reset below.
	if _, err := client(4).PasswordModify(ldap.NewPasswordModifyRequest("", "", "short")); ldapCode(err) != ldap.LDAPResultConstraintViolation {
		t.Fatalf("too short: %v", err)
	}
	res, err = client(6).PasswordModify(ldap.NewPasswordModifyRequest(srv.UserDN(5), "", ""))
	if err != nil || res.GeneratedPassword == "" {
		t.Fatalf("reset with a generated password: %+v, %v", res, err)
	}
	if got := next(); got != (change{srv.UserDN(5), res.GeneratedPassword}) {
		t.Fatalf("heard %+v, want the reset's generated password", got)
	}
	if upstreamBind(t, srv, srv.UserDN(5), res.GeneratedPassword) != 0 {
		t.Fatal("slapd does not take the reset's generated password")
	}
}

// resultWriter records the result a handler wrote.
type resultWriter struct {
	ResponseWriter
	res *Result
}

func (w *resultWriter) WriteResult(res *Result) error { w.res = res; return nil }

// TestRefusedBeforeTheUpstream covers the answers the proxy gives without asking the
// upstream (the writeback here has none to ask).
func TestRefusedBeforeTheUpstream(t *testing.T) {
	ext := func(value []byte) *Request {
		return &Request{Op: OpExtended, Extended: &ExtendedRequest{Name: OIDPasswordModify, Value: value, HasValue: value != nil}}
	}
	mod := func(dn string, types ...string) *Request {
		m := &ModifyRequest{DN: dn}
		for _, typ := range types {
			m.Changes = append(m.Changes, Change{Operation: modReplace, Type: typ, Values: [][]byte{[]byte("new-password")}})
		}
		return &Request{Op: OpModify, Modify: m}
	}
	const alice, bob = "uid=alice,ou=people,dc=up", "uid=bob,ou=people,dc=up"
	tests := []struct {
		name  string
		off   bool
		bound string
		req   *Request
		code  uint16
	}{
		{"Password Modify, writeback off", true, alice, ext(nil), ldap.LDAPResultUnwillingToPerform},
		{"userPassword modify, writeback off", true, alice, mod(alice, "userPassword"), ldap.LDAPResultUnwillingToPerform},
		{"unicodePwd modify, writeback off", true, alice, mod(alice, "unicodePwd"), ldap.LDAPResultUnwillingToPerform},
		{"malformed Password Modify value", false, alice, ext([]byte{0x04, 0x00}), ldap.LDAPResultProtocolError},
		{"empty new password", false, alice, ext(passwdValue(elem(0x82, ""))), ldap.LDAPResultUnwillingToPerform},
		{"Password Modify, anonymous", false, "", ext(passwdValue(elem(0x82, "new-password"))), ldap.LDAPResultStrongAuthRequired},
		{"modify, anonymous", false, "", mod(alice, "userPassword"), ldap.LDAPResultStrongAuthRequired},
		{"modify of another attribute too", false, alice, mod(alice, "userPassword", "mail"), ldap.LDAPResultUnwillingToPerform},
		{"modify of another user's password", false, alice, mod(bob, "userPassword"), ldap.LDAPResultInsufficientAccessRights},
		{"Password Modify of another user's password", false, alice, ext(passwdValue(elem(0x80, bob), elem(0x82, "x"))), ldap.LDAPResultInsufficientAccessRights},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			wb := testWriteback(t, WritebackOptions{Config: WritebackConfig{Enabled: !tt.off}, Metrics: NewWritebackMetrics(metrics.Registerer(reg))},
				keeper{changedFn: func(string, []byte) { t.Error("a refused change was reported as a change") }})
			tt.req.Session = &ldapserver.Session{}
			if tt.bound != "" {
				tt.req.Session.SetBound(tt.bound)
			}
			tt.req = tt.req.WithContext(withClient(t.Context(), tt.req.Session))
			w := &resultWriter{}
			if tt.req.Op == OpExtended {
				wb.passwordModify(w, tt.req)
			} else {
				wb.modify(w, tt.req)
			}
			if w.res == nil || w.res.Code != tt.code {
				t.Fatalf("result %+v, want code %d", w.res, tt.code)
			}
			if got := counted(t, reg); got != "refused 1" {
				t.Fatalf("counted %q, want refused 1", got)
			}
		})
	}
}

// TestNoResetFromCachedLogin: a login the proxy accepted without the directory may rest
// on a password the directory no longer takes; it must not reset other users' passwords.
func TestNoResetFromCachedLogin(t *testing.T) {
	const helpdesk, bob = "uid=alice,ou=people,dc=up", "uid=bob,ou=people,dc=up"
	wb := testWriteback(t, WritebackOptions{Config: WritebackConfig{Enabled: true, ResetIdentities: []string{helpdesk}}},
		keeper{forgetFn: func(string) { t.Error("a refused change reached the caches") }})
	for _, cached := range []bool{true, false} {
		c := changer{authenticated: true, dn: helpdesk, cachedLogin: cached}
		_, refusal := wb.decide(c, bob, func() (bool, error) { return true, nil })
		switch {
		case cached && (refusal == nil || refusal.Code != ldap.LDAPResultStrongAuthRequired):
			t.Errorf("reset from a cached login: %+v, want strongerAuthRequired", refusal)
		case !cached && refusal != nil:
			t.Errorf("reset from a real login by a listed identity refused: %+v", refusal)
		}
	}
}
