package sync_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ldapproxy/ldapproxy/internal/slapdtest"
	ldapsync "github.com/ldapproxy/ldapproxy/sync"
)

// TestSyncLogsProgressWithTotals: a long read logs how far it got and, from the second
// sync on, out of how many the last one found.
func TestSyncLogsProgressWithTotals(t *testing.T) {
	defer ldapsync.SetProgressEntries(10)()
	e := newEnv(t, slapdtest.Options{Users: 25, Groups: 2})
	run := func() string {
		var buf bytes.Buffer
		s, err := ldapsync.New(config(t, nil), e.pool, e.store, slog.New(slog.NewJSONHandler(&buf, nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := runErr(s); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	first := run()
	if !strings.Contains(first, `"msg":"sync: users 20 read","kind":"users","read":20,`) {
		t.Fatalf("first sync: no progress line for 20 users:\n%s", first)
	}
	second := run()
	if !strings.Contains(second, `"msg":"sync: users 20 of ~25 read","kind":"users","read":20,`) || !strings.Contains(second, `"expected":25`) {
		t.Fatalf("second sync: no progress line with the total:\n%s", second)
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 40000: "40,000", 1234567: "1,234,567"} {
		if got := ldapsync.Thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
