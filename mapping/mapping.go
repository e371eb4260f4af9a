// Package mapping turns raw upstream entries into the proxy's users and
// groups with property mappings: small expr-lang expressions, each setting
// one field of the mapped object.
//
// A kind's mappings are a preset's (active-directory, openldap, freeipa)
// followed by the configured ones; a configured mapping with a preset
// mapping's name replaces it in place. Example configuration (the
// `sync.mappings` section):
//
//	mappings:
//	  users:
//	    - name: openldap-email            # replaces the preset's email mapping
//	      field: email
//	      expression: 'ldap.mail ?? (list_flatten(ldap.uid) + "@example.org")'
//	    - name: phone                     # added
//	      field: attributes.phone
//	      expression: 'ldap.telephoneNumber'  # stays a list: attributes.* are not flattened
//
// Expressions are compiled once, by Compile; a Set then maps any number of
// entries, concurrently if the caller likes.
package mapping

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Mapping is one property mapping as configured (sync.mappings.users[] and
// sync.mappings.groups[]).
type Mapping struct {
	// Name identifies the mapping in errors and logs; unique per kind. A
	// configured mapping with a preset mapping's name replaces it.
	Name string `yaml:"name"`
	// Field is the object field set: username, name, email, is_active,
	// path, or attributes.<name>.
	Field string `yaml:"field"`
	// Expression is the expr-lang expression computing the value; see the
	// package README for its environment.
	Expression string `yaml:"expression"`
}

// Config is the `sync.mappings` section: mappings added to (or replacing
// those of) the preset, per kind.
type Config struct {
	// Users are the user mappings.
	Users []Mapping `yaml:"users"`
	// Groups are the group mappings.
	Groups []Mapping `yaml:"groups"`
}

// Fields returns the attributes.* fields (without the prefix) that the mappings in list
// set, in order, each once: what a configured list adds on top of a preset's.
func Fields(list []Mapping) []string {
	var out []string
	for _, m := range list {
		if name, ok := strings.CutPrefix(m.Field, "attributes."); ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Kind says whether mappings make users or groups.
type Kind int

// The kinds of mapped objects.
const (
	Users Kind = iota
	Groups
)

// String returns "users" or "groups", the kind's configuration key.
func (k Kind) String() string {
	switch k {
	case Users:
		return "users"
	case Groups:
		return "groups"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is a raw upstream entry. Values are the raw bytes as strings, binary
// ones (objectGUID, objectSid) included; attribute names as the upstream
// spelled them.
type Entry struct {
	// DN is the entry's distinguished name.
	DN string
	// Attributes maps attribute names to their values.
	Attributes map[string][]string
}

// Object is a mapped user or group.
type Object struct {
	// Username is the user's login name; required for users.
	Username string
	// Name is the display name (users) or the group's name (required for
	// groups).
	Name string
	// Email is the user's mail address.
	Email string
	// IsActive is false for a disabled user; true when no mapping sets it.
	IsActive bool
	// Path is where the object is placed, as the mappings compute it.
	Path string
	// Attributes are the attributes.<x> fields, keyed by <x>. Values are
	// string, []string, bool, int64, float64 or time.Time; a nil or empty
	// result leaves the key out.
	Attributes map[string]any
}

// Set is the compiled mappings of one kind. It is safe for concurrent use.
type Set struct {
	kind     Kind
	mappings []Mapping
	programs []program
	attrs    []string
	// required is the field every object must get a non-empty value for:
	// a user's username, a group's name.
	required field
}

// program is one compiled mapping.
type program struct {
	name  string
	field field
	prog  *vm.Program
}

// fieldKind is which Object field a mapping sets.
type fieldKind int

const (
	fieldUsername fieldKind = iota
	fieldName
	fieldEmail
	fieldIsActive
	fieldPath
	fieldAttribute
)

// field is a parsed Mapping.Field.
type field struct {
	kind fieldKind
	attr string // the <x> of attributes.<x>
}

var topLevelFields = map[string]fieldKind{
	"username":  fieldUsername,
	"name":      fieldName,
	"email":     fieldEmail,
	"is_active": fieldIsActive,
	"path":      fieldPath,
}

const attributesPrefix = "attributes."

var errBadField = errors.New("is not one of username, name, email, is_active, path, attributes.<name>")

// parseField parses a Mapping.Field. An attribute name starts with a letter
// and continues with letters, digits, '-' and '_': it becomes an attribute
// name in served entries.
func parseField(s string) (field, error) {
	if k, ok := topLevelFields[s]; ok {
		return field{kind: k}, nil
	}
	attr, ok := strings.CutPrefix(s, attributesPrefix)
	if !ok {
		return field{}, errBadField
	}
	if attr == "" {
		return field{}, errors.New("names no attribute after attributes.")
	}
	for i, c := range attr {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_')) {
			return field{}, errors.New("is not an attribute name (a letter, then letters, digits, '-' or '_')")
		}
	}
	return field{kind: fieldAttribute, attr: attr}, nil
}

// Compile builds the mappings of one kind: the preset's ("" for none)
// followed by custom, where a custom mapping with a preset mapping's name
// replaces it in place. Every expression is compiled here, once; an error
// names the mapping and, for an expression error, the line and column.
func Compile(preset string, kind Kind, custom []Mapping) (*Set, error) {
	if kind != Users && kind != Groups {
		return nil, fmt.Errorf("mapping: unknown kind %d", int(kind))
	}
	var list []Mapping
	if preset != "" {
		var err error
		if list, err = PresetMappings(preset, kind); err != nil {
			return nil, err
		}
	}
	if err := checkMappings(kind.String(), custom); err != nil {
		return nil, err
	}
	for _, m := range custom {
		i := indexOf(list, m.Name)
		if i < 0 {
			list = append(list, m)
		} else {
			list[i] = m
		}
	}

	s := &Set{kind: kind, mappings: list, required: field{kind: fieldUsername}}
	if kind == Groups {
		s.required = field{kind: fieldName}
	}
	seen := map[string]bool{}
	hasRequired := false
	for _, m := range list {
		f, _ := parseField(m.Field) // checked by checkMappings or the preset tests
		p := &ldapPatcher{}
		prog, err := expr.Compile(m.Expression, options(p)...)
		if err != nil {
			return nil, s.errorf(m.Name, err)
		}
		if err := checkType(f, prog.Node().Type()); err != nil {
			return nil, s.errorf(m.Name, err)
		}
		s.programs = append(s.programs, program{name: m.Name, field: f, prog: prog})
		hasRequired = hasRequired || f == s.required
		for _, n := range p.names {
			if !seen[strings.ToLower(n)] {
				seen[strings.ToLower(n)] = true
				s.attrs = append(s.attrs, n)
			}
		}
	}
	if !hasRequired {
		return nil, fmt.Errorf("%s mappings: none sets %s, which %s need", kind, s.required, kind)
	}
	sort.Slice(s.attrs, func(i, j int) bool { return strings.ToLower(s.attrs[i]) < strings.ToLower(s.attrs[j]) })
	return s, nil
}

func indexOf(list []Mapping, name string) int {
	for i, m := range list {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// checkType refuses, at compile time, an expression whose static type can
// never suit its field. Expressions typed `any` (most helpers, list_flatten)
// are left to the checks in Map.
func checkType(f field, t reflect.Type) error {
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	k := t.Kind()
	isList := k == reflect.Slice || k == reflect.Array
	ok := false
	switch f.kind {
	case fieldIsActive:
		ok = k == reflect.Bool || k == reflect.String || isList
	case fieldAttribute:
		ok = k != reflect.Map && k != reflect.Func && k != reflect.Chan &&
			(k != reflect.Struct || t == timeType)
	default:
		ok = k == reflect.String || isList || isNumber(k)
	}
	if !ok {
		return fmt.Errorf("%s: the expression gives %s, %s", f, t, fieldWants(f))
	}
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

func isNumber(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64
}

// String returns the field as configured.
func (f field) String() string {
	if f.kind == fieldAttribute {
		return attributesPrefix + f.attr
	}
	for name, k := range topLevelFields {
		if k == f.kind {
			return name
		}
	}
	return "?"
}

func fieldWants(f field) string {
	switch f.kind {
	case fieldIsActive:
		return `want a bool or an LDAP boolean ("TRUE"/"FALSE")`
	case fieldAttribute:
		return "want a string, a list of strings, a bool, a number or a time"
	}
	return "want a string"
}

// errorf names the mapping in err, and the position for expr's errors.
func (s *Set) errorf(name string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("mapping %q (%s): line %d, column %d: %s", name, s.kind, fe.Line, fe.Column+1, strings.TrimSpace(fe.Message))
	}
	return fmt.Errorf("mapping %q (%s): %w", name, s.kind, err)
}

// Mappings returns the effective mappings, in the order they are applied:
// the preset's, with replacements in place, then the added ones.
func (s *Set) Mappings() []Mapping {
	return append([]Mapping(nil), s.mappings...)
}

// Attributes returns the attribute names the expressions read by a constant
// name (ldap.mail, ldap["mail"], "mail" in ldap), as first spelled, one per
// name ignoring case, sorted. The syncer asks for these besides "*", so that
// operational attributes a mapping reads (pwdAccountLockedTime,
// nsAccountLock) reach it.
func (s *Set) Attributes() []string {
	return append([]string(nil), s.attrs...)
}

// vms are reused between runs: a VM keeps its stack between programs.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

// Map applies the mappings, in order, to e. A failing mapping (a runtime
// error in its expression, a result that does not suit its field) or a user
// without a username (a group without a name) is an error naming the
// mapping; the caller skips that object.
func (s *Set) Map(e Entry) (*Object, error) {
	machine := vms.Get().(*vm.VM)
	defer vms.Put(machine)
	en := &env{LDAP: e.Attributes, DN: e.DN}
	obj := &Object{IsActive: true}
	var requiredBy string // the last mapping that set the required field
	for _, p := range s.programs {
		out, err := machine.Run(p.prog, en)
		if err != nil {
			return nil, s.errorf(p.name, err)
		}
		if err := obj.set(p.field, out); err != nil {
			return nil, s.errorf(p.name, err)
		}
		if p.field == s.required {
			requiredBy = p.name
		}
	}
	if s.kind == Users && obj.Username == "" || s.kind == Groups && obj.Name == "" {
		return nil, s.errorf(requiredBy, fmt.Errorf("%s is empty", s.required))
	}
	return obj, nil
}

// set stores a mapping's result in its field. Top-level fields take the
// first element of a list (the seed's rule); attributes.* keep lists.
func (o *Object) set(f field, v any) error {
	switch f.kind {
	case fieldAttribute:
		a, err := attributeValue(v)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if a == nil {
			delete(o.Attributes, f.attr)
			return nil
		}
		if o.Attributes == nil {
			o.Attributes = make(map[string]any, 4)
		}
		o.Attributes[f.attr] = a
		return nil
	case fieldIsActive:
		b, err := boolValue(listFlatten(v))
		if err != nil {
			return fmt.Errorf("is_active: %w", err)
		}
		o.IsActive = b
		return nil
	}
	str, err := stringValue(listFlatten(v))
	if err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	switch f.kind {
	case fieldUsername:
		o.Username = str
	case fieldName:
		o.Name = str
	case fieldEmail:
		o.Email = str
	case fieldPath:
		o.Path = str
	}
	return nil
}

func stringValue(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.CanInt():
		return strconv.FormatInt(rv.Int(), 10), nil
	case rv.CanUint():
		return strconv.FormatUint(rv.Uint(), 10), nil
	case rv.CanFloat():
		return strconv.FormatFloat(rv.Float(), 'f', -1, 64), nil
	}
	return "", fmt.Errorf("got %T, want a string", v)
}

// boolValue accepts a bool or an LDAP Boolean ("TRUE"/"FALSE", RFC 4517
// 3.3.3; any case). nil is an error rather than a default: an attribute
// missing from some entries should be decided in the expression (`?? true`),
// not silently turn into an active or an inactive user.
func boolValue(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch {
		case strings.EqualFold(x, "TRUE"):
			return true, nil
		case strings.EqualFold(x, "FALSE"):
			return false, nil
		}
		return false, fmt.Errorf(`got %q, want a bool or "TRUE"/"FALSE"`, x)
	case nil:
		return false, errors.New(`got nil, want a bool (use ?? to choose a default)`)
	}
	return false, fmt.Errorf(`got %T, want a bool or "TRUE"/"FALSE"`, v)
}

// attributeValue normalises an attributes.* result: integers become int64,
// floats float64, a list of strings []string; nil and empty lists become
// nil (an LDAP attribute cannot have no values).
func attributeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string, bool, int64, float64, time.Time:
		return x, nil
	case int:
		return int64(x), nil
	case []string:
		if len(x) == 0 {
			return nil, nil
		}
		return x, nil
	case []any:
		if len(x) == 0 {
			return nil, nil
		}
		out := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("list element %d is %T, want a list of strings", i, e)
			}
			out[i] = s
		}
		return out, nil
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.CanInt():
		return rv.Int(), nil
	case rv.CanUint() && rv.Uint() <= 1<<63-1:
		return int64(rv.Uint()), nil
	case rv.CanFloat():
		return rv.Float(), nil
	}
	return nil, fmt.Errorf("got %T, want a string, a list of strings, a bool, a number or a time", v)
}
