package mapping

import (
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// env is what an expression sees. One is built per entry and shared by all
// of the entry's mappings.
type env struct {
	// LDAP is the entry's attributes as the upstream sent them. Expressions
	// never index it directly: ldapPatcher turns every access into a call of
	// ldapGetName, which matches names case-insensitively.
	LDAP map[string][]string `expr:"ldap"`
	// DN is the entry's DN.
	DN string `expr:"dn"`
}

// ldapGetName is the internal function every attribute access is rewritten
// to. The dot keeps it out of the expression language: no one can type it.
const ldapGetName = "ldap.get"

// ldapGet looks an attribute up by name, ignoring case as LDAP does. The
// exact spelling is tried first because it is the usual case and costs one
// map look-up; a missing attribute is a nil list, which expressions see as
// nil (`ldap.mail == nil`, `ldap.mail ?? "none"`).
func ldapGet(attrs map[string][]string, name string) []string {
	if v, ok := attrs[name]; ok {
		return v
	}
	for k, v := range attrs {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// options are the expr options every mapping is compiled with: the
// environment's types (unknown names are compile errors), the helpers, and
// the rewriting of `ldap` accesses.
func options(p *ldapPatcher) []expr.Option {
	return []expr.Option{
		expr.Env(env{}),
		expr.Function(ldapGetName, func(args ...any) (any, error) {
			attrs, _ := args[0].(map[string][]string)
			name, _ := args[1].(string)
			return ldapGet(attrs, name), nil
		}, new(func(map[string][]string, string) []string)),
		expr.Function("list_flatten", func(args ...any) (any, error) {
			return listFlatten(args[0]), nil
		}, new(func(any) any)),
		expr.Function("guid_to_string", one(guidToString), new(func(any) any)),
		expr.Function("sid_to_string", one(sidToString), new(func(any) any)),
		expr.Function("filetime_to_time", one(filetimeToTime), new(func(any) any)),
		expr.Function("generalized_time", one(generalizedTime), new(func(any) any)),
		expr.Function("uac_disabled", one(uacDisabled), new(func(any) bool)),
		expr.Function("uac_flags", one(uacFlags), new(func(any) []string)),
		expr.Patch(p),
	}
}

// one adapts a one-argument helper to expr's calling convention; the
// declared types make expr check the argument count at compile time.
func one(f func(any) (any, error)) func(args ...any) (any, error) {
	return func(args ...any) (any, error) { return f(args[0]) }
}

// ldapPatcher rewrites the ways an expression can read an attribute into
// calls of ldapGetName, so that names are matched case-insensitively:
//
//	ldap.mail, ldap["mail"], ldap?.mail  →  ldap.get(ldap, "mail")
//	ldap.get("mail"), get(ldap, "mail")  →  ldap.get(ldap, "mail")
//	"mail" in ldap                       →  ldap.get(ldap, "mail") != nil
//
// It also records the attribute names read by a constant name.
type ldapPatcher struct {
	names []string
}

func (p *ldapPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		// ldap.get(…) is a method-style member; the CallNode above it is
		// rewritten instead (the walk visits children first).
		if isLDAP(n.Node) && !n.Method {
			p.replace(node, n.Property)
		}
	case *ast.CallNode:
		if m, ok := n.Callee.(*ast.MemberNode); ok && isLDAP(m.Node) && len(n.Arguments) == 1 {
			if prop, ok := m.Property.(*ast.StringNode); ok && prop.Value == "get" {
				p.replace(node, n.Arguments[0])
			}
		}
	case *ast.BuiltinNode:
		if n.Name == "get" && len(n.Arguments) == 2 && isLDAP(n.Arguments[0]) {
			p.replace(node, n.Arguments[1])
		}
	case *ast.BinaryNode:
		if n.Operator == "in" && isLDAP(n.Right) {
			call := p.call(n.Left, n)
			nilNode := &ast.NilNode{}
			nilNode.SetLocation(n.Location())
			ast.Patch(node, &ast.BinaryNode{Operator: "!=", Left: call, Right: nilNode})
		}
	}
}

// replace puts a look-up of the attribute named by key in place of *node.
func (p *ldapPatcher) replace(node *ast.Node, key ast.Node) {
	ast.Patch(node, p.call(key, *node))
}

func (p *ldapPatcher) call(key, at ast.Node) ast.Node {
	if s, ok := key.(*ast.StringNode); ok {
		p.names = append(p.names, s.Value)
	}
	// New nodes get the location of the code they stand for, so that
	// errors point at the user's text.
	fn := &ast.IdentifierNode{Value: ldapGetName}
	fn.SetLocation(at.Location())
	attrs := &ast.IdentifierNode{Value: "ldap"}
	attrs.SetLocation(at.Location())
	call := &ast.CallNode{Callee: fn, Arguments: []ast.Node{attrs, key}}
	call.SetLocation(at.Location())
	return call
}

func isLDAP(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "ldap"
}
