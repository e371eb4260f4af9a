package mapping

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The helpers below are the functions an expression can call besides expr's
// own builtins (lower, upper, trim, split, join, …). Each accepts a raw
// attribute value as `ldap` hands it over: a list (its first value is used) or
// a single value. The conversions return nil for a missing value, so that a
// mapping such as attributes.object_guid is simply left out when the entry has
// no objectGUID.

// listFlatten is list_flatten: the first element of a list, nil for an empty
// list, any other value unchanged. It is also the rule applied to every
// top-level field's result.
func listFlatten(v any) any {
	switch l := v.(type) {
	case nil:
		return nil
	case string:
		return l
	case []string:
		if len(l) == 0 {
			return nil
		}
		return l[0]
	case []any:
		if len(l) == 0 {
			return nil
		}
		return l[0]
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return v
	}
	if rv.Len() == 0 {
		return nil
	}
	return rv.Index(0).Interface()
}

// single reduces a helper's argument to one raw value: ok is false when there
// is none (nil or an empty list).
func single(name string, v any) (s string, ok bool, err error) {
	switch x := listFlatten(v).(type) {
	case nil:
		return "", false, nil
	case string:
		return x, true, nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), true, nil
	default:
		return "", false, fmt.Errorf("%s: want a string or a list of strings, got %T", name, x)
	}
}

// GUIDString returns the canonical lower-case form
// ("550e8400-e29b-41d4-a716-446655440000") of a 16-byte Active Directory
// objectGUID. AD stores the first three groups little-endian, so the bytes are
// not in the order the string shows them.
func GUIDString(raw string) (string, error) {
	if len(raw) != 16 {
		return "", fmt.Errorf("objectGUID: want 16 bytes, got %d", len(raw))
	}
	// Byte order of the canonical string: the first three groups reversed.
	order := [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}
	const digits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, k := range order {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = digits[raw[k]>>4], digits[raw[k]&0xf]
		j += 2
	}
	return string(out[:]), nil
}

// SIDString returns the "S-1-5-21-…" form of a binary objectSid: a revision
// byte, a sub-authority count, a 48-bit big-endian identifier authority and
// that many 32-bit little-endian sub-authorities.
func SIDString(raw string) (string, error) {
	if len(raw) < 8 {
		return "", fmt.Errorf("objectSid: want at least 8 bytes, got %d", len(raw))
	}
	n := int(raw[1])
	if len(raw) != 8+4*n {
		return "", fmt.Errorf("objectSid: %d sub-authorities need %d bytes, got %d", n, 8+4*n, len(raw))
	}
	var auth uint64
	for i := 2; i < 8; i++ {
		auth = auth<<8 | uint64(raw[i])
	}
	var sb strings.Builder
	sb.Grow(16 + 11*n)
	sb.WriteString("S-")
	sb.WriteString(strconv.Itoa(int(raw[0])))
	sb.WriteByte('-')
	// MS-DTYP 2.4.2.1: an authority that does not fit in 32 bits is written in hex.
	if auth >= 1<<32 {
		fmt.Fprintf(&sb, "0x%012X", auth)
	} else {
		sb.WriteString(strconv.FormatUint(auth, 10))
	}
	for i := range n {
		sb.WriteByte('-')
		o := 8 + 4*i
		sub := uint32(raw[o]) | uint32(raw[o+1])<<8 | uint32(raw[o+2])<<16 | uint32(raw[o+3])<<24
		sb.WriteString(strconv.FormatUint(uint64(sub), 10))
	}
	return sb.String(), nil
}

func guidToString(v any) (any, error) {
	s, ok, err := single("guid_to_string", v)
	if !ok {
		return nil, err
	}
	g, err := GUIDString(s)
	if err != nil {
		return nil, fmt.Errorf("guid_to_string: %w", err)
	}
	return g, nil
}

func sidToString(v any) (any, error) {
	s, ok, err := single("sid_to_string", v)
	if !ok {
		return nil, err
	}
	sid, err := SIDString(s)
	if err != nil {
		return nil, fmt.Errorf("sid_to_string: %w", err)
	}
	return sid, nil
}

// fileTimeEpochOffset is the number of 100-ns intervals between 1601-01-01
// (the Windows FILETIME epoch) and 1970-01-01.
const fileTimeEpochOffset = 116444736000000000

// filetimeToTime is filetime_to_time: an AD integer time such as pwdLastSet,
// lastLogonTimestamp or accountExpires. 0 and the largest int64 are AD's ways
// of saying "never", so they give nil rather than a date in 1601 or 30828.
func filetimeToTime(v any) (any, error) {
	s, ok, err := single("filetime_to_time", v)
	if !ok {
		return nil, err
	}
	t, err := ParseFileTime(s)
	if err != nil {
		return nil, fmt.Errorf("filetime_to_time: %w", err)
	}
	if t.IsZero() {
		return nil, nil
	}
	return t, nil
}

// ParseFileTime reads an Active Directory integer time (100-ns intervals since
// 1601-01-01 UTC, as in pwdLastSet or accountExpires), in UTC. 0 and the largest
// int64, AD's ways of saying "never", give the zero time. It is the project's one
// FILETIME parser: filetime_to_time and the sync's account state read with it.
func ParseFileTime(s string) (time.Time, error) {
	ft, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ft < 0 {
		return time.Time{}, fmt.Errorf("%q is not a file time", s)
	}
	if ft == 0 || ft == math.MaxInt64 {
		return time.Time{}, nil
	}
	unix := ft - fileTimeEpochOffset
	return time.Unix(floorDiv(unix, 1e7), floorMod(unix, 1e7)*100).UTC(), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

func generalizedTime(v any) (any, error) {
	s, ok, err := single("generalized_time", v)
	if !ok {
		return nil, err
	}
	t, err := ParseGeneralizedTime(s)
	if err != nil {
		return nil, fmt.Errorf("generalized_time: %q: %w", s, err)
	}
	return t, nil
}

// ParseGeneralizedTime reads the LDAP GeneralizedTime syntax (RFC 4517
// 3.3.13): YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|(+|-)HH[MM]). The fraction
// belongs to the last unit present, so "2024010203.5Z" is 03:30. The result
// is in UTC. It is the project's one GeneralizedTime parser: the
// generalized_time helper converts with it, and the served directory matches
// and orders time values with it.
func ParseGeneralizedTime(s string) (time.Time, error) {
	num := func(p string) (int, bool) {
		n := 0
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return 0, false
			}
			n = n*10 + int(p[i]-'0')
		}
		return n, len(p) > 0
	}
	bad := errors.New("not a GeneralizedTime")
	if len(s) < 11 {
		return time.Time{}, bad
	}
	var f [6]int // year, month, day, hour, minute, second
	widths := [6]int{4, 2, 2, 2, 2, 2}
	pos, units := 0, 0
	for units < 6 && pos+widths[units] <= len(s) {
		n, ok := num(s[pos : pos+widths[units]])
		if !ok {
			break
		}
		f[units] = n
		pos += widths[units]
		units++
	}
	if units < 4 {
		return time.Time{}, bad
	}
	unit := [...]time.Duration{3: time.Hour, 4: time.Minute, 5: time.Second}[units-1]
	var frac time.Duration
	if pos < len(s) && (s[pos] == '.' || s[pos] == ',') {
		end := pos + 1
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
		}
		digits := s[pos+1 : end]
		if digits == "" {
			return time.Time{}, bad
		}
		// Enough digits for nanoseconds of an hour; more are noise.
		if len(digits) > 13 {
			digits = digits[:13]
		}
		n, _ := strconv.ParseInt(digits, 10, 64)
		frac = time.Duration(float64(unit) * float64(n) / math.Pow10(len(digits)))
		pos = end
	}
	var offset int
	switch {
	case pos == len(s):
		return time.Time{}, errors.New("no time zone")
	case s[pos] == 'Z' && pos+1 == len(s):
	case s[pos] == '+' || s[pos] == '-':
		zone := s[pos+1:]
		if len(zone) != 2 && len(zone) != 4 {
			return time.Time{}, bad
		}
		h, ok1 := num(zone[:2])
		m, ok2 := 0, true
		if len(zone) == 4 {
			m, ok2 = num(zone[2:])
		}
		if !ok1 || !ok2 || h > 23 || m > 59 {
			return time.Time{}, bad
		}
		offset = h*3600 + m*60
		if s[pos] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, bad
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[3] > 23 || f[4] > 59 || f[5] > 60 ||
		f[2] > time.Date(f[0], time.Month(f[1])+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return time.Time{}, errors.New("field out of range")
	}
	// A leap second (SS=60, allowed by the syntax) becomes the next minute's
	// first second: time.Date normalises it.
	t := time.Date(f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], 0, time.FixedZone("", offset))
	return t.Add(frac).UTC(), nil
}

// The userAccountControl bits, from Microsoft's documentation of the
// attribute, in bit order.
var uacFlagNames = []struct {
	bit  uint32
	name string
}{
	{0x1, "SCRIPT"},
	{0x2, "ACCOUNTDISABLE"},
	{0x8, "HOMEDIR_REQUIRED"},
	{0x10, "LOCKOUT"},
	{0x20, "PASSWD_NOTREQD"},
	{0x40, "PASSWD_CANT_CHANGE"},
	{0x80, "ENCRYPTED_TEXT_PWD_ALLOWED"},
	{0x100, "TEMP_DUPLICATE_ACCOUNT"},
	{0x200, "NORMAL_ACCOUNT"},
	{0x800, "INTERDOMAIN_TRUST_ACCOUNT"},
	{0x1000, "WORKSTATION_TRUST_ACCOUNT"},
	{0x2000, "SERVER_TRUST_ACCOUNT"},
	{0x10000, "DONT_EXPIRE_PASSWORD"},
	{0x20000, "MNS_LOGON_ACCOUNT"},
	{0x40000, "SMARTCARD_REQUIRED"},
	{0x80000, "TRUSTED_FOR_DELEGATION"},
	{0x100000, "NOT_DELEGATED"},
	{0x200000, "USE_DES_KEY_ONLY"},
	{0x400000, "DONT_REQ_PREAUTH"},
	{0x800000, "PASSWORD_EXPIRED"},
	{0x1000000, "TRUSTED_TO_AUTH_FOR_DELEGATION"},
	{0x4000000, "PARTIAL_SECRETS_ACCOUNT"},
}

const uacAccountDisable = 0x2

// parseUAC reads a userAccountControl value. AD defines it as a 32-bit
// integer and some tools print it signed, so both readings are accepted.
func parseUAC(name string, v any) (uac uint32, ok bool, err error) {
	s, ok, err := single(name, v)
	if !ok {
		return 0, false, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < math.MinInt32 || n > math.MaxUint32 {
		return 0, false, fmt.Errorf("%s: %q is not a userAccountControl value", name, s)
	}
	return uint32(n), true, nil
}

// uacDisabled is uac_disabled. A missing value is an error, not "enabled":
// when the service account cannot read userAccountControl, every user would
// otherwise silently count as active.
func uacDisabled(v any) (any, error) {
	uac, ok, err := parseUAC("uac_disabled", v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("uac_disabled: no userAccountControl value")
	}
	return uac&uacAccountDisable != 0, nil
}

func uacFlags(v any) (any, error) {
	uac, ok, err := parseUAC("uac_flags", v)
	if !ok {
		return nil, err
	}
	flags := []string{}
	for _, f := range uacFlagNames {
		if uac&f.bit != 0 {
			flags = append(flags, f.name)
		}
	}
	return flags, nil
}
