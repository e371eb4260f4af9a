// Package errlist handles the lists of errors that configuration validation returns
// (errors.Join), so that each error keeps the path of its key when sections nest.
package errlist

import (
	"errors"
	"fmt"
)

// Flatten splits an errors.Join result, recursively, into its parts.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Prefix puts prefix (a key path such as "sync.") before each error of err.
func Prefix(prefix string, err error) error {
	var out []error
	for _, e := range Flatten(err) {
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return errors.Join(out...)
}
