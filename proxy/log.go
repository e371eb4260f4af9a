package proxy

import (
	"context"
	"log/slog"

	"github.com/ldapproxy/ldapproxy/ldapserver"
)

// logSession logs msg with the fields that name the client's connection first (conn,
// remote and, behind a load balancer, proxy), as the server's own connection-level
// lines do. The fields are only assembled when the level is enabled. A nil session
// (a throttle used outside a connection, in tests) adds nothing.
func logSession(l *slog.Logger, level slog.Level, s *ldapserver.Session, msg string, args ...any) {
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	if s != nil {
		args = append(s.LogArgs(), args...)
	}
	l.Log(ctx, level, msg, args...)
}
