package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

var (
	// ErrUnavailable is wrapped by every error that means no upstream server
	// could be reached, so the frontend can fall back (cached search,
	// offline login) instead of reporting a failure.
	ErrUnavailable = errors.New("no upstream server reachable")

	// ErrConnectionLost is wrapped when a connection bound as a user broke
	// and the session cannot be bound again elsewhere: no credential is kept
	// (Config.RebindOnFailover off), or the server refused it (the password
	// changed). The client has to bind again.
	ErrConnectionLost = errors.New("upstream connection lost; bind again")

	// ErrClosed is returned after Pool.Close or Conn.Close.
	ErrClosed = errors.New("upstream: closed")

	// errBroken marks a request that cannot be repeated (it already
	// delivered results, or may have changed something) whose connection
	// broke under it.
	errBroken = errors.New("connection broke")
)

// IsUnavailable tells the frontend whether err means "the directory could
// not be asked" (as opposed to "the directory answered no"): only then may
// it fall back to the local store or the credential cache.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrConnectionLost) || errors.Is(err, errBroken) {
		return true
	}
	return isNetworkError(err)
}

// isNetworkError tells a broken or timed-out connection from an answer of
// the server. go-ldap reports most transport failures as ErrorNetwork, but
// a connection that died under a request surfaces as a plain error, so
// callers also check the connection's IsClosing.
func isNetworkError(err error) bool {
	if err == nil {
		return false
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode == ldap.ErrorNetwork
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller gave up; context.DeadlineExceeded would otherwise
		// pass for a net.Error timeout.
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// brokenConn reports whether err left lc unusable.
func brokenConn(err error, lc *ldap.Conn) bool {
	if err == nil {
		return false
	}
	if isNetworkError(err) {
		return true
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		return false
	}
	// go-ldap reports a failed write as a plain error, before its reader has noticed the
	// connection is gone and IsClosing turns true.
	return strings.Contains(err.Error(), "unable to send request") || lc != nil && lc.IsClosing()
}

// stageError says which step of a connect failed (resolve, connect, tls,
// starttls) and, for a name with several addresses, on which address.
type stageError struct {
	stage string
	addr  string // empty when the URL's host is the address
	err   error
}

func (e *stageError) Error() string {
	msg := e.err.Error()
	switch e.stage {
	case "connect":
		msg = dialReason(e.err)
	case "tls":
		// crypto/tls starts its own messages with "tls: ": said once is enough.
		msg = strings.TrimPrefix(msg, "tls: ")
	}
	if e.addr != "" {
		return e.stage + " " + e.addr + ": " + msg
	}
	return e.stage + ": " + msg
}

func (e *stageError) Unwrap() error { return e.err }

// dialReason strips the "dial tcp host:port:" prefix that repeats what the
// message already says around it.
func dialReason(err error) string {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Err == nil {
		return err.Error()
	}
	inner := oe.Err
	var se *os.SyscallError
	if errors.As(inner, &se) {
		inner = se.Err
	}
	return inner.Error()
}

// listError joins several failures on one line ("a; b") while keeping each
// reachable for errors.Is/As.
type listError struct {
	errs []error
}

func (e *listError) Error() string {
	parts := make([]string, len(e.errs))
	for i, err := range e.errs {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e *listError) Unwrap() []error { return e.errs }

// serverError names the server a failure happened on.
type serverError struct {
	server string
	err    error
}

func (e *serverError) Error() string { return e.server + ": " + e.err.Error() }
func (e *serverError) Unwrap() error { return e.err }

// unavailable builds the error for "every server failed", wrapping
// ErrUnavailable and each server's own error.
func unavailable(errs []error) error {
	if len(errs) == 0 {
		return ErrUnavailable
	}
	return &unavailableError{list: listError{errs: errs}}
}

type unavailableError struct{ list listError }

func (e *unavailableError) Error() string {
	return ErrUnavailable.Error() + ": " + e.list.Error()
}

func (e *unavailableError) Unwrap() []error {
	return append([]error{ErrUnavailable}, e.list.errs...)
}
