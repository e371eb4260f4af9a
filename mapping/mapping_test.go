package mapping

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// usernameMapping makes a user Set valid so a test can look at one other
// mapping.
var usernameMapping = Mapping{Name: "u", Field: "username", Expression: `"someone"`}

// mapOne compiles one mapping (plus usernameMapping) for users and maps e.
func mapOne(t *testing.T, field, expression string, e Entry) (*Object, error) {
	t.Helper()
	s, err := Compile("", Users, []Mapping{usernameMapping, {Name: "m", Field: field, Expression: expression}})
	if err != nil {
		t.Fatalf("Compile(%s = %s): %v", field, expression, err)
	}
	return s.Map(e)
}

var person = Entry{
	DN: "uid=jdoe,ou=people,dc=example,dc=org",
	Attributes: map[string][]string{
		"uid":         {"jdoe"},
		"mail":        {"jdoe@example.org", "john.doe@example.org"},
		"displayName": {"John Doe"},
		"memberOf":    {"cn=a,dc=example,dc=org", "cn=b,dc=example,dc=org"},
		"uidNumber":   {"1001"},
		"empty":       {},
	},
}

func TestEnvironment(t *testing.T) {
	cases := []struct {
		expression string
		want       any // the attributes.v value; nil: left out
	}{
		{`ldap.mail`, []string{"jdoe@example.org", "john.doe@example.org"}},
		// Attribute names ignore case, however they are written.
		{`list_flatten(ldap.MAIL)`, "jdoe@example.org"},
		{`list_flatten(ldap["Mail"])`, "jdoe@example.org"},
		{`list_flatten(ldap.displayname)`, "John Doe"},
		{`list_flatten(ldap.get("DISPLAYNAME"))`, "John Doe"},
		{`list_flatten(get(ldap, "DisplayName"))`, "John Doe"},
		{`list_flatten(ldap?.UID)`, "jdoe"},
		{`list_flatten(ldap[lower("UID")])`, "jdoe"},
		{`"MAIL" in ldap`, true},
		{`"pager" not in ldap`, true},
		// A missing attribute is nil, not an error.
		{`ldap.pager`, nil},
		{`ldap.pager == nil`, true},
		{`ldap.pager ?? "none"`, "none"},
		{`len(ldap.pager)`, int64(0)},
		{`list_flatten(ldap.empty)`, nil},
		{`dn`, "uid=jdoe,ou=people,dc=example,dc=org"},
		{`map(ldap.memberOf, upper(split(#, ",")[0]))`, []string{"CN=A", "CN=B"}},
		{`int(list_flatten(ldap.uidNumber)) + 1`, int64(1002)},
		{`len(ldap.mail) > 1`, true},
		{`1.5`, 1.5},
		{`generalized_time("20240102030405Z")`, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{`uac_flags("514")`, []string{"ACCOUNTDISABLE", "NORMAL_ACCOUNT"}},
	}
	for _, c := range cases {
		obj, err := mapOne(t, "attributes.v", c.expression, person)
		if err != nil {
			t.Errorf("%s: %v", c.expression, err)
			continue
		}
		got, ok := obj.Attributes["v"]
		if c.want == nil {
			if ok {
				t.Errorf("%s: attributes.v = %#v; want it left out", c.expression, got)
			}
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: attributes.v = %#v; want %#v", c.expression, got, c.want)
		}
	}
}

func TestFlattening(t *testing.T) {
	cases := []struct {
		field, expression string
		want              func(*Object) any
		value             any
	}{
		// Top-level fields take the first value of a list…
		{"email", `ldap.mail`, func(o *Object) any { return o.Email }, "jdoe@example.org"},
		{"name", `ldap.displayName`, func(o *Object) any { return o.Name }, "John Doe"},
		{"path", `["a", "b"]`, func(o *Object) any { return o.Path }, "a"},
		{"email", `ldap.pager`, func(o *Object) any { return o.Email }, ""},
		{"email", `ldap.empty`, func(o *Object) any { return o.Email }, ""},
		{"name", `ldap.uidNumber`, func(o *Object) any { return o.Name }, "1001"},
		{"name", `42`, func(o *Object) any { return o.Name }, "42"},
		{"name", `1.25`, func(o *Object) any { return o.Name }, "1.25"},
		{"is_active", `["FALSE"]`, func(o *Object) any { return o.IsActive }, false},
		{"is_active", `"true"`, func(o *Object) any { return o.IsActive }, true},
		{"is_active", `false`, func(o *Object) any { return o.IsActive }, false},
		// …attributes.* keep lists as they are.
		{"attributes.mail", `ldap.mail`, func(o *Object) any { return o.Attributes["mail"] },
			[]string{"jdoe@example.org", "john.doe@example.org"}},
		{"attributes.mail", `list_flatten(ldap.mail)`, func(o *Object) any { return o.Attributes["mail"] }, "jdoe@example.org"},
		{"attributes.one", `ldap.uid`, func(o *Object) any { return o.Attributes["one"] }, []string{"jdoe"}},
		{"attributes.n", `list_flatten(ldap.uidNumber)`, func(o *Object) any { return o.Attributes["n"] }, "1001"},
	}
	for _, c := range cases {
		obj, err := mapOne(t, c.field, c.expression, person)
		if err != nil {
			t.Errorf("%s = %s: %v", c.field, c.expression, err)
			continue
		}
		if got := c.want(obj); !reflect.DeepEqual(got, c.value) {
			t.Errorf("%s = %s: got %#v; want %#v", c.field, c.expression, got, c.value)
		}
	}
}

func TestIsActiveDefault(t *testing.T) {
	obj, err := mapOne(t, "email", `ldap.mail`, person)
	if err != nil {
		t.Fatal(err)
	}
	if !obj.IsActive {
		t.Error("IsActive = false with no is_active mapping; want true")
	}
	if obj.Attributes != nil {
		t.Errorf("Attributes = %v with no attributes.* mapping; want nil", obj.Attributes)
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		field, expression string
		want              string
	}{
		{"email", `lower(lsit_flatten(ldap.mail))`,
			`mapping "m" (users): line 1, column 7: unknown name lsit_flatten`},
		{"email", "list_flatten(\n  ldap.uid))", `mapping "m" (users): line 2, column 12: unexpected token Bracket(")")`},
		{"email", `ldap.mail # 1`, `mapping "m" (users): line 1, column 11: unexpected token`},
		{"email", "lower(\n  ldap.mail, 1)", `mapping "m" (users): line 1, column 1: too many arguments to call lower`},
		{"email", `guid_to_string()`, `mapping "m" (users): line 1, column 1: not enough arguments to call guid_to_string`},
		{"email", `ldap[1]`, `mapping "m" (users): line 1, column 6: cannot use int as argument (type string)`},
		{"email", `unknown_var`, `mapping "m" (users): line 1, column 1: unknown name unknown_var`},
		// Types that can never suit the field are caught here, not per entry.
		{"is_active", `1 + 1`, `mapping "m" (users): is_active: the expression gives int, want a bool`},
		{"email", `now()`, `mapping "m" (users): email: the expression gives time.Time, want a string`},
		{"email", `ldap.mail == nil`, `mapping "m" (users): email: the expression gives bool, want a string`},
		{"attributes.x", `{"a": 1}`, `mapping "m" (users): attributes.x: the expression gives map[string]interface {}`},
	}
	for _, c := range cases {
		_, err := Compile("", Users, []Mapping{usernameMapping, {Name: "m", Field: c.field, Expression: c.expression}})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Compile(%s = %q) error = %v; want it to start with %q", c.field, c.expression, err, c.want)
		}
	}
}

func TestCompileChecks(t *testing.T) {
	cases := []struct {
		preset string
		kind   Kind
		custom []Mapping
		want   string
	}{
		{"", Users, nil, "users mappings: none sets username, which users need"},
		{"", Groups, []Mapping{{"d", "attributes.d", `"x"`}}, "groups mappings: none sets name, which groups need"},
		{"ad", Users, nil, `preset "ad" is not one of active-directory, openldap, freeipa`},
		{"openldap", Users, []Mapping{{"x", "emial", `"x"`}}, `users[0].field: "emial" is not one of`},
		{"openldap", Kind(7), nil, "unknown kind 7"},
	}
	for _, c := range cases {
		_, err := Compile(c.preset, c.kind, c.custom)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Compile(%q, %v, %v) error = %v; want it to contain %q", c.preset, c.kind, c.custom, err, c.want)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	cases := []struct {
		field, expression string
		want              string
	}{
		{"is_active", `list_flatten(ldap.mail)`, `mapping "m" (users): is_active: got "jdoe@example.org", want a bool or "TRUE"/"FALSE"`},
		{"is_active", `ldap.pager`, `mapping "m" (users): is_active: got nil, want a bool`},
		{"is_active", `list_flatten([1])`, `mapping "m" (users): is_active: got int, want a bool`},
		{"name", `list_flatten([true])`, `mapping "m" (users): name: got bool, want a string`},
		{"attributes.x", `[1, "a"]`, `mapping "m" (users): attributes.x: list element 0 is int`},
		{"attributes.x", `list_flatten([{"a": 1}])`, `mapping "m" (users): attributes.x: got map[string]interface {}`},
		{"email", `ldap.mail[5]`, `mapping "m" (users): line 1, column 10: index out of range`},
		{"email", `guid_to_string(ldap.uid)`, `mapping "m" (users): line 1, column 1: guid_to_string: objectGUID: want 16 bytes, got 4`},
		{"attributes.d", `uac_disabled(ldap.userAccountControl)`, `mapping "m" (users): line 1, column 1: uac_disabled: no userAccountControl value`},
	}
	for _, c := range cases {
		obj, err := mapOne(t, c.field, c.expression, person)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s = %s: Map = %+v, %v; want an error starting with %q", c.field, c.expression, obj, err, c.want)
		}
	}
}

func TestRequiredFieldEmpty(t *testing.T) {
	users, err := Compile("openldap", Users, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = users.Map(Entry{DN: "cn=nouid,dc=example,dc=org", Attributes: map[string][]string{"cn": {"No Uid"}}})
	if want := `mapping "openldap-username" (users): username is empty`; err == nil || err.Error() != want {
		t.Errorf("user without uid: %v; want %q", err, want)
	}
	groups, err := Compile("openldap", Groups, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = groups.Map(Entry{DN: "ou=x,dc=example,dc=org", Attributes: map[string][]string{"ou": {"x"}}})
	if want := `mapping "openldap-name" (groups): name is empty`; err == nil || err.Error() != want {
		t.Errorf("group without cn: %v; want %q", err, want)
	}
}

func TestReplaceByName(t *testing.T) {
	s, err := Compile("openldap", Users, []Mapping{
		{"phone", "attributes.phone", `ldap.telephoneNumber`},
		{"openldap-email", "email", `lower(list_flatten(ldap.uid)) + "@corp.example"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range s.Mappings() {
		names = append(names, m.Name)
	}
	want := []string{"openldap-username", "openldap-name", "openldap-email", "openldap-is-active",
		"openldap-given-name", "openldap-surname", "phone"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Mappings() names = %v; want %v (replacement in place, addition at the end)", names, want)
	}
	if got := s.Mappings()[2].Expression; !strings.Contains(got, "corp.example") {
		t.Errorf("openldap-email expression = %q; want the custom one", got)
	}
	obj, err := s.Map(Entry{DN: "uid=JDoe", Attributes: map[string][]string{
		"uid": {"JDoe"}, "mail": {"old@example.org"}, "telephoneNumber": {"+1 555", "+1 556"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Email != "jdoe@corp.example" {
		t.Errorf("Email = %q; want the replacement's jdoe@corp.example", obj.Email)
	}
	if got := obj.Attributes["phone"]; !reflect.DeepEqual(got, []string{"+1 555", "+1 556"}) {
		t.Errorf("attributes.phone = %#v", got)
	}
	// Mappings returns a copy.
	s.Mappings()[0].Expression = "changed"
	if s.Mappings()[0].Expression == "changed" {
		t.Error("Mappings() exposes the Set's own slice")
	}
}

// TestDocExample runs the example of the package comment and the README.
func TestDocExample(t *testing.T) {
	s, err := Compile("openldap", Users, []Mapping{
		{"openldap-email", "email", `ldap.mail ?? (list_flatten(ldap.uid) + "@example.org")`},
		{"phone", "attributes.phone", `ldap.telephoneNumber`},
	})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Map(Entry{DN: "uid=jdoe", Attributes: map[string][]string{"uid": {"jdoe"}, "telephoneNumber": {"1", "2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Email != "jdoe@example.org" || !reflect.DeepEqual(obj.Attributes["phone"], []string{"1", "2"}) {
		t.Errorf("got email %q, phone %#v", obj.Email, obj.Attributes["phone"])
	}
}

func TestLaterMappingWins(t *testing.T) {
	s, err := Compile("", Users, []Mapping{
		usernameMapping,
		{"a", "attributes.x", `"first"`},
		{"b", "attributes.x", `nil`},
		{"c", "email", `"one"`},
		{"d", "email", `"two"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Map(person)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.Attributes["x"]; ok || obj.Email != "two" {
		t.Errorf("got attributes.x %v, email %q; want x left out by the later nil and email two", obj.Attributes, obj.Email)
	}
}

func TestAttributes(t *testing.T) {
	s, err := Compile("openldap", Users, []Mapping{{"x", "attributes.x", `ldap.MAIL ?? ldap["Pager"] ?? ldap[dn]`}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cn", "displayName", "givenName", "mail", "Pager", "pwdAccountLockedTime", "sn", "uid"}
	if got := s.Attributes(); !reflect.DeepEqual(got, want) {
		t.Errorf("Attributes() = %v; want %v", got, want)
	}
}

// Real-looking entries for each preset.
func adUser(uac string) Entry {
	return Entry{
		DN: "CN=John Doe,OU=Staff,DC=corp,DC=example,DC=com",
		Attributes: map[string][]string{
			"objectClass":        {"top", "person", "organizationalPerson", "user"},
			"cn":                 {"John Doe"},
			"sn":                 {"Doe"},
			"givenName":          {"John"},
			"name":               {"John Doe"},
			"displayName":        {"Doe, John"},
			"sAMAccountName":     {"jdoe"},
			"userPrincipalName":  {"jdoe@corp.example.com"},
			"mail":               {"John.Doe@example.com"},
			"userAccountControl": {uac},
			"objectGUID":         {"\x00\x84\x0e\x55\x9b\xe2\xd4\x41\xa7\x16\x44\x66\x55\x44\x00\x00"},
			"objectSid":          {"\x01\x05\x00\x00\x00\x00\x00\x05\x15\x00\x00\x00\xdc\xf4\xdc\x3b\x83\x3d\x2b\x46\x82\x8b\xa6\x28\x00\x02\x00\x00"},
			"memberOf":           {"CN=Staff,OU=Groups,DC=corp,DC=example,DC=com", "CN=VPN,OU=Groups,DC=corp,DC=example,DC=com"},
			"pwdLastSet":         {"133486382450000000"},
			"accountExpires":     {"9223372036854775807"},
			"whenCreated":        {"20240102030405.0Z"},
			"whenChanged":        {"20240301120000.0Z"},
			"lastLogonTimestamp": {"133500000000000000"},
			"primaryGroupID":     {"513"},
			"sAMAccountType":     {"805306368"},
			"uSNCreated":         {"12345"},
			"uSNChanged":         {"67890"},
			"instanceType":       {"4"},
			"objectCategory":     {"CN=Person,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=com"},
		},
	}
}

func TestPresets(t *testing.T) {
	without := func(e Entry, names ...string) Entry {
		attrs := map[string][]string{}
		for k, v := range e.Attributes {
			attrs[k] = v
		}
		for _, n := range names {
			delete(attrs, n)
		}
		return Entry{DN: e.DN, Attributes: attrs}
	}
	adActive := &Object{Username: "jdoe", Name: "Doe, John", Email: "John.Doe@example.com", IsActive: true,
		Attributes: map[string]any{"upn": "jdoe@corp.example.com", "given_name": "John", "surname": "Doe",
			"object_guid": "550e8400-e29b-41d4-a716-446655440000"}}
	adDisabled := *adActive
	adDisabled.IsActive = false
	adNoDisplay := *adActive
	adNoDisplay.Name = "John Doe"
	adNoGUID := *adActive
	adNoGUID.Attributes = map[string]any{"upn": "jdoe@corp.example.com", "given_name": "John", "surname": "Doe"}

	ol := Entry{DN: "uid=asmith,ou=people,dc=example,dc=org", Attributes: map[string][]string{
		"objectClass": {"inetOrgPerson", "posixAccount"}, "uid": {"asmith"}, "cn": {"Alice Smith"},
		"sn": {"Smith"}, "givenName": {"Alice"}, "mail": {"alice@example.org"}, "uidNumber": {"1001"},
		"entryUUID": {"0e0b4f8e-6b7c-103e-8a2f-4b1d3c9e7f10"},
	}}
	olLocked := without(ol)
	olLocked.Attributes["pwdAccountLockedTime"] = []string{"000001010000Z"}
	olWithDisplay := without(ol)
	olWithDisplay.Attributes["displayName"] = []string{"Alice S."}
	olUser := &Object{Username: "asmith", Name: "Alice Smith", Email: "alice@example.org", IsActive: true,
		Attributes: map[string]any{"given_name": "Alice", "surname": "Smith"}}
	olLockedUser := *olUser
	olLockedUser.IsActive = false
	olDisplayUser := *olUser
	olDisplayUser.Name = "Alice S."

	ipa := Entry{DN: "uid=bob,cn=users,cn=accounts,dc=ipa,dc=example", Attributes: map[string][]string{
		"uid": {"bob"}, "cn": {"Bob Builder"}, "displayName": {"Bob B."}, "givenName": {"Bob"},
		"sn": {"Builder"}, "mail": {"bob@ipa.example"}, "ipaUniqueID": {"5b0f3c1e-1111-11ef-9a6b-525400a1b2c3"},
		"krbPrincipalName": {"bob@IPA.EXAMPLE", "builder@IPA.EXAMPLE"},
	}}
	ipaLock := func(v string) Entry {
		e := without(ipa)
		e.Attributes["nsAccountLock"] = []string{v}
		return e
	}
	ipaUser := &Object{Username: "bob", Name: "Bob B.", Email: "bob@ipa.example", IsActive: true,
		Attributes: map[string]any{"given_name": "Bob", "surname": "Builder", "upn": []string{"bob@IPA.EXAMPLE", "builder@IPA.EXAMPLE"}}}
	ipaLocked := *ipaUser
	ipaLocked.IsActive = false

	group := Entry{DN: "cn=Staff,ou=groups,dc=example,dc=org", Attributes: map[string][]string{
		"cn": {"Staff"}, "description": {"Everyone on staff"}, "member": {"uid=a", "uid=b"},
	}}
	staff := &Object{Name: "Staff", IsActive: true, Attributes: map[string]any{"description": "Everyone on staff"}}

	cases := []struct {
		preset string
		kind   Kind
		entry  Entry
		want   *Object
	}{
		{"active-directory", Users, adUser("512"), adActive},
		{"active-directory", Users, adUser("66048"), adActive},
		{"active-directory", Users, adUser("514"), &adDisabled},
		{"active-directory", Users, adUser("66050"), &adDisabled},
		{"active-directory", Users, without(adUser("512"), "displayName"), &adNoDisplay},
		{"active-directory", Users, without(adUser("512"), "objectGUID"), &adNoGUID},
		{"active-directory", Groups, group, staff},
		{"openldap", Users, ol, olUser},
		{"openldap", Users, olLocked, &olLockedUser},
		{"openldap", Users, olWithDisplay, &olDisplayUser},
		{"openldap", Groups, group, staff},
		{"freeipa", Users, ipa, ipaUser},
		{"freeipa", Users, ipaLock("TRUE"), &ipaLocked},
		{"freeipa", Users, ipaLock("true"), &ipaLocked},
		{"freeipa", Users, ipaLock("FALSE"), ipaUser},
		{"freeipa", Groups, group, staff},
	}
	for i, c := range cases {
		s, err := Compile(c.preset, c.kind, nil)
		if err != nil {
			t.Fatalf("Compile(%s, %v): %v", c.preset, c.kind, err)
		}
		got, err := s.Map(c.entry)
		if err != nil {
			t.Errorf("case %d (%s %v): %v", i, c.preset, c.kind, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("case %d (%s %v):\n got %+v\nwant %+v", i, c.preset, c.kind, got, c.want)
		}
	}
}

func TestPresetList(t *testing.T) {
	if len(Presets()) != len(presets) {
		t.Errorf("Presets() = %v, but %d presets are defined", Presets(), len(presets))
	}
	for _, p := range Presets() {
		for _, kind := range []Kind{Users, Groups} {
			list, err := PresetMappings(p, kind)
			if err != nil {
				t.Fatal(err)
			}
			// Every preset is valid configuration as it stands.
			if err := checkMappings(kind.String(), list); err != nil {
				t.Errorf("%s %v: %v", p, kind, err)
			}
			list[0].Expression = "changed"
			if again, _ := PresetMappings(p, kind); again[0].Expression == "changed" {
				t.Errorf("PresetMappings(%s, %v) returns the preset's own slice", p, kind)
			}
		}
	}
}

// TestREADMEListsPresets keeps the README's preset table in step with the
// code: each preset mapping must appear as a row.
func TestREADMEListsPresets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Presets() {
		for _, kind := range []Kind{Users, Groups} {
			list, _ := PresetMappings(p, kind)
			for _, m := range list {
				row := fmt.Sprintf("| %s | %s | `%s` | `%s` | `%s` |", p, kind, m.Name, m.Field, m.Expression)
				if !strings.Contains(string(readme), row) {
					t.Errorf("README.md has no row %s", row)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		config Config
		want   []string // one line per error; none: valid
	}{
		{Config{}, nil},
		{Config{
			Users:  []Mapping{{"a", "username", "ldap.uid"}, {"b", "attributes.phone_2", "ldap.x"}},
			Groups: []Mapping{{"a", "name", "ldap.cn"}}, // names are per kind
		}, nil},
		{Config{Users: []Mapping{{"a", "username", "x"}, {"b", "name", "x"}, {"c", "emial", "x"}}},
			[]string{`users[2].field: "emial" is not one of username, name, email, is_active, path, attributes.<name>`}},
		{Config{Groups: []Mapping{{"g", "name", "x"}, {"g", "email", "x"}}},
			[]string{`groups[1].name: "g" is already the name of groups[0]`}},
		{Config{Users: []Mapping{{"", "Username", " "}}}, []string{
			`users[0].name: empty`,
			`users[0].field: "Username" is not one of username, name, email, is_active, path, attributes.<name>`,
			`users[0].expression: empty`}},
		{Config{Users: []Mapping{{"a", "attributes.", "x"}, {"b", "attributes.2x", "x"}, {"c", "attributes.a b", "x"}}}, []string{
			`users[0].field: "attributes." names no attribute after attributes.`,
			`users[1].field: "attributes.2x" is not an attribute name`,
			`users[2].field: "attributes.a b" is not an attribute name`}},
	}
	for i, c := range cases {
		err := c.config.Validate()
		if c.want == nil {
			if err != nil {
				t.Errorf("case %d: %v; want no error", i, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("case %d: no error; want %q", i, c.want)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(c.want) {
			t.Errorf("case %d: %q; want %d errors", i, err, len(c.want))
			continue
		}
		for j, w := range c.want {
			if !strings.HasPrefix(lines[j], w) {
				t.Errorf("case %d: error %q; want %q", i, lines[j], w)
			}
		}
	}
}

func TestKindString(t *testing.T) {
	if Users.String() != "users" || Groups.String() != "groups" {
		t.Errorf("kinds are %q and %q; want the configuration keys users and groups", Users, Groups)
	}
}

// TestConcurrentMap runs one Set from several goroutines, as a parallel
// syncer would; with -race it guards the shared VM pool.
func TestConcurrentMap(t *testing.T) {
	s, err := Compile("active-directory", Users, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				uac := "512"
				if (g+i)%2 == 1 {
					uac = "514"
				}
				obj, err := s.Map(adUser(uac))
				if err != nil {
					t.Error(err)
					return
				}
				if obj.IsActive != (uac == "512") {
					t.Errorf("uac %s: IsActive = %v", uac, obj.IsActive)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkMapUser(b *testing.B) {
	for _, preset := range Presets() {
		b.Run(preset, func(b *testing.B) {
			s, err := Compile(preset, Users, nil)
			if err != nil {
				b.Fatal(err)
			}
			e := adUser("512")
			e.Attributes["uid"] = []string{"jdoe"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Map(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
