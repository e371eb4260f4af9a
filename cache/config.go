package cache

import (
	"errors"
	"fmt"
	"os"
)

// DefaultPath is the store directory used when store.path is empty.
const DefaultPath = "./data"

// InMemory as Config.Path keeps the store in memory only: nothing survives
// Close. For tests.
const InMemory = ":memory:"

// Config is the `store:` section of the configuration file.
//
// Example:
//
//	store:
//	  path: /var/lib/ldapproxy   # a directory of its own, on a writable volume
type Config struct {
	// Path is the directory holding the Badger files and status.json; it
	// is created if missing. Only one process may use it at a time.
	// Default "./data"; ":memory:" keeps everything in memory (tests).
	Path string `yaml:"path"`
}

// Validate fills in the default path and checks that it can be a store
// directory. Errors name the key (`path: ...`).
func (c *Config) Validate() error {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Path == InMemory {
		return nil
	}
	fi, err := os.Stat(c.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil // Open creates it
	case err != nil:
		return fmt.Errorf("path: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("path: %q is not a directory", c.Path)
	}
	return nil
}
