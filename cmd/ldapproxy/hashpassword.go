package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ldapproxy/ldapproxy/internal/passhash"
)

// stdin is where hash-password reads the password; tests replace it.
var stdin io.Reader = os.Stdin

// maxPasswordLen bounds what hash-password reads.
const maxPasswordLen = 4096

func hashPassword(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("hash-password < FILE", `Reads a password from standard input (its first line, without the line end) and
prints its argon2id hash in the standard $argon2id$v=19$... form, for the
password_hash of a clients: account. The password is never printed or stored.
For example:
  printf '%s' "$APP_PASSWORD" | ldapproxy hash-password`, stderr)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ldapproxy hash-password: takes no arguments (the password comes on standard input)\n")
		return 2
	}
	pw, err := readPassword(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy hash-password: %v\n", err)
		return 1
	}
	h, err := passhash.New(pw)
	if err != nil {
		fmt.Fprintf(stderr, "ldapproxy hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

// readPassword reads the first line of r, without its line end.
func readPassword(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxPasswordLen+2), maxPasswordLen+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return nil, errors.New("no password on standard input")
	case len(line) > maxPasswordLen:
		return nil, fmt.Errorf("password longer than %d bytes", maxPasswordLen)
	}
	return []byte(line), nil
}
