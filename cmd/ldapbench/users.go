package main

import (
	"fmt"

	"github.com/go-ldap/ldap/v3"
)

// user holds everything an operation needs about one test user, formatted
// ahead of time so the hot loop does not allocate.
type user struct {
	Name        string
	DN          string // from -user-dn-format
	Password    string
	Filter      string // user search filter
	GroupFilter string // group search filter for DN
	// The filters BER-encoded, as the wire client sends them.
	FilterBER, GroupFilterBER []byte
}

// maxCachedUsers bounds the precomputed user table (about 200 bytes each);
// larger user sets are formatted on the fly.
const maxCachedUsers = 1 << 20

// userSet maps user numbers 1..n to users.
type userSet struct {
	n     int
	cfg   *config
	cache []user // cache[i-1] is user i; nil when n > maxCachedUsers
}

// newUserSet builds the user set described by cfg.
func newUserSet(cfg *config) *userSet {
	s := &userSet{n: cfg.Users, cfg: cfg}
	if s.n <= maxCachedUsers {
		s.cache = make([]user, s.n)
		for i := range s.cache {
			s.cache[i] = s.format(i + 1)
		}
	}
	return s
}

// format computes user i from the templates.
func (s *userSet) format(i int) user {
	name := fmt.Sprintf(s.cfg.UserFormat, i)
	dn := fmt.Sprintf(s.cfg.UserDNFormat, name)
	u := user{
		Name:        name,
		DN:          dn,
		Password:    fmt.Sprintf(s.cfg.PasswordFormat, name),
		Filter:      fmt.Sprintf(s.cfg.Filter, ldap.EscapeFilter(name)),
		GroupFilter: s.groupFilter(dn),
	}
	if s.cfg.Mode != modeBind {
		u.FilterBER = encodeFilter(u.Filter)
	}
	if s.cfg.Mode == modeLogin {
		u.GroupFilterBER = encodeFilter(u.GroupFilter)
	}
	return u
}

// encodeFilter BER-encodes a filter that config.validate has checked compiles.
func encodeFilter(f string) []byte {
	p, err := ldap.CompileFilter(f)
	if err != nil {
		return nil // the wire client refuses it, as go-ldap refuses the filter
	}
	return p.Bytes()
}

// groupFilter returns the group search filter for a user DN.
func (s *userSet) groupFilter(dn string) string {
	return fmt.Sprintf(s.cfg.GroupFilter, ldap.EscapeFilter(dn))
}

// get returns user i (1 <= i <= n).
func (s *userSet) get(i int) user {
	if s.cache != nil {
		return s.cache[i-1]
	}
	return s.format(i)
}
