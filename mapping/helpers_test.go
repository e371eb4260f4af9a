package mapping

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"
)

func unhex(t testing.TB, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// helperCase is one call of a helper: want is the result, or wantErr a
// substring of the error.
type helperCase struct {
	in      any
	want    any
	wantErr string
}

func runHelper(t *testing.T, name string, f func(any) (any, error), cases []helperCase) {
	t.Helper()
	for _, c := range cases {
		got, err := f(c.in)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s(%#v) = %#v, %v; want error containing %q", name, c.in, got, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s(%#v): %v", name, c.in, err)
		case !reflect.DeepEqual(got, c.want):
			t.Errorf("%s(%#v) = %#v; want %#v", name, c.in, got, c.want)
		}
	}
}

func TestListFlatten(t *testing.T) {
	runHelper(t, "list_flatten", func(v any) (any, error) { return listFlatten(v), nil }, []helperCase{
		{in: []string{"a", "b"}, want: "a"},
		{in: []string{}, want: nil},
		{in: []string(nil), want: nil},
		{in: []any{int64(1), "x"}, want: int64(1)},
		{in: []any{}, want: nil},
		{in: []int{7, 8}, want: 7},
		{in: nil, want: nil},
		{in: "plain", want: "plain"},
		{in: 5, want: 5},
		{in: true, want: true},
	})
}

func TestGUIDToString(t *testing.T) {
	// 550e8400-e29b-41d4-a716-446655440000 as AD stores it: the first three
	// groups little-endian.
	raw := unhex(t, "00840e559be2d441a716446655440000")
	runHelper(t, "guid_to_string", guidToString, []helperCase{
		{in: raw, want: "550e8400-e29b-41d4-a716-446655440000"},
		{in: []string{raw}, want: "550e8400-e29b-41d4-a716-446655440000"},
		{in: []string{unhex(t, "ffeeddccbbaa99887766554433221100")}, want: "ccddeeff-aabb-8899-7766-554433221100"},
		{in: nil, want: nil},
		{in: []string{}, want: nil},
		{in: raw[:15], wantErr: "want 16 bytes, got 15"},
		{in: true, wantErr: "want a string"},
	})
}

func TestSIDToString(t *testing.T) {
	raw := unhex(t, "010500000000000515000000dcf4dc3b833d2b46828ba62800020000")
	runHelper(t, "sid_to_string", sidToString, []helperCase{
		{in: raw, want: "S-1-5-21-1004336348-1177238915-682003330-512"},
		{in: []string{raw}, want: "S-1-5-21-1004336348-1177238915-682003330-512"},
		// BUILTIN\Administrators: two sub-authorities.
		{in: unhex(t, "01020000000000052000000020020000"), want: "S-1-5-32-544"},
		// Everyone: S-1-1-0.
		{in: unhex(t, "010100000000000100000000"), want: "S-1-1-0"},
		// An authority beyond 32 bits is written in hex (MS-DTYP 2.4.2.1).
		{in: unhex(t, "010101000000000001000000"), want: "S-1-0x010000000000-1"},
		{in: nil, want: nil},
		{in: raw[:len(raw)-1], wantErr: "5 sub-authorities need 28 bytes, got 27"},
		{in: "\x01\x00", wantErr: "want at least 8 bytes"},
	})
}

func TestFiletimeToTime(t *testing.T) {
	runHelper(t, "filetime_to_time", filetimeToTime, []helperCase{
		{in: "133486382450000000", want: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{in: []string{"133486382451234567"}, want: time.Date(2024, 1, 2, 3, 4, 5, 123456700, time.UTC)},
		{in: "116444736000000000", want: time.Unix(0, 0).UTC()},
		{in: "1", want: time.Date(1601, 1, 1, 0, 0, 0, 100, time.UTC)},
		// accountExpires: 0 and the largest int64 both mean "never".
		{in: "0", want: nil},
		{in: []string{"9223372036854775807"}, want: nil},
		{in: nil, want: nil},
		{in: "-5", wantErr: "is not a file time"},
		{in: "yesterday", wantErr: "is not a file time"},
	})
}

func TestGeneralizedTime(t *testing.T) {
	day := func(h, m, s, ns int) time.Time { return time.Date(2024, 1, 2, h, m, s, ns, time.UTC) }
	runHelper(t, "generalized_time", generalizedTime, []helperCase{
		{in: "20240102030405Z", want: day(3, 4, 5, 0)},
		{in: []string{"20240102030405Z"}, want: day(3, 4, 5, 0)},
		{in: "20240102030405.0Z", want: day(3, 4, 5, 0)}, // AD's whenCreated
		{in: "20240102030405.5Z", want: day(3, 4, 5, 500000000)},
		{in: "20240102030405,25Z", want: day(3, 4, 5, 250000000)},
		{in: "20240102030405.123456789Z", want: day(3, 4, 5, 123456789)},
		{in: "20240102030405+0200", want: day(1, 4, 5, 0)},
		{in: "20240102030405-0130", want: day(4, 34, 5, 0)},
		{in: "20240102030405+02", want: day(1, 4, 5, 0)},
		{in: "202401020304Z", want: day(3, 4, 0, 0)},
		{in: "2024010203Z", want: day(3, 0, 0, 0)},
		{in: "2024010203.5Z", want: day(3, 30, 0, 0)}, // a fraction of the hour
		{in: "202401020304.5Z", want: day(3, 4, 30, 0)},
		{in: "20161231235960Z", want: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)}, // leap second
		{in: "20240229000000Z", want: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{in: nil, want: nil},
		{in: "20240102030405", wantErr: "no time zone"},
		{in: "20230229000000Z", wantErr: "out of range"},
		{in: "20241302030405Z", wantErr: "out of range"},
		{in: "20240102250405Z", wantErr: "out of range"},
		{in: "20240102030405.Z", wantErr: "not a GeneralizedTime"},
		{in: "20240102030405+2", wantErr: "not a GeneralizedTime"},
		{in: "20240102030405z", wantErr: "not a GeneralizedTime"},
		{in: "2024-01-02T03:04:05Z", wantErr: "not a GeneralizedTime"},
		{in: "202401Z", wantErr: "not a GeneralizedTime"},
	})
}

func TestUAC(t *testing.T) {
	runHelper(t, "uac_disabled", uacDisabled, []helperCase{
		{in: "512", want: false}, // NORMAL_ACCOUNT
		{in: []string{"514"}, want: true},
		{in: "66050", want: true}, // NORMAL_ACCOUNT|ACCOUNTDISABLE|DONT_EXPIRE_PASSWORD
		{in: "66048", want: false},
		{in: "-2147483646", want: true}, // 0x80000002 printed signed
		{in: nil, wantErr: "no userAccountControl value"},
		{in: []string{}, wantErr: "no userAccountControl value"},
		{in: "disabled", wantErr: "is not a userAccountControl value"},
		{in: "4294967296", wantErr: "is not a userAccountControl value"},
	})
	runHelper(t, "uac_flags", uacFlags, []helperCase{
		{in: "512", want: []string{"NORMAL_ACCOUNT"}},
		{in: []string{"66050"}, want: []string{"ACCOUNTDISABLE", "NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"}},
		{in: "8389136", want: []string{"LOCKOUT", "NORMAL_ACCOUNT", "PASSWORD_EXPIRED"}},
		{in: "0", want: []string{}},
		{in: nil, want: nil},
		{in: "x", wantErr: "is not a userAccountControl value"},
	})
}
