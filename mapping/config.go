package mapping

import (
	"errors"
	"fmt"
	"strings"
)

// Validate checks what can be checked without compiling: every mapping has
// a name, unique within its kind, a valid field and an expression. Each
// problem is reported with its key path, e.g.
// `users[2].field: "emial" is not one of username, name, email, is_active,
// path, attributes.<name>`. Expressions are compiled by Compile.
func (c *Config) Validate() error {
	return errors.Join(checkMappings("users", c.Users), checkMappings("groups", c.Groups))
}

// checkMappings validates one kind's configured mappings; key is the
// kind's key ("users" or "groups") that starts each error's path.
func checkMappings(key string, list []Mapping) error {
	var errs []error
	first := map[string]int{}
	for i, m := range list {
		path := fmt.Sprintf("%s[%d]", key, i)
		switch j, dup := first[m.Name]; {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: empty", path))
		case dup:
			errs = append(errs, fmt.Errorf("%s.name: %q is already the name of %s[%d]", path, m.Name, key, j))
		default:
			first[m.Name] = i
		}
		if _, err := parseField(m.Field); err != nil {
			errs = append(errs, fmt.Errorf("%s.field: %q %w", path, m.Field, err))
		}
		if strings.TrimSpace(m.Expression) == "" {
			errs = append(errs, fmt.Errorf("%s.expression: empty", path))
		}
	}
	return errors.Join(errs...)
}
