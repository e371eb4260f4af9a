package directory

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestNormDirectoryString(t *testing.T) {
	for _, c := range []struct {
		in   string
		pos  normPos
		fold bool
		want string
		ok   bool
	}{
		{"User 0001", posValue, true, "user 0001", true},
		{"  User   0001  ", posValue, true, "user 0001", true},
		{"  User   0001  ", posValue, false, "User 0001", true},
		{"ZÜRICH", posValue, true, "zürich", true},
		{"Straße", posValue, true, "straße", true},
		{"User ", posInitial, true, "user ", true}, // (cn=User *) does not match "Username"
		{" User", posInitial, true, "user", true},
		{" 0001", posFinal, true, " 0001", true},
		{"0001 ", posFinal, true, "0001", true},
		{"  r  0 ", posAny, true, " r 0 ", true},
		{" ", posFinal, true, "", true},
		{" ", posInitial, true, " ", true},
		{"  ", posAny, true, " ", true},
		{"", posValue, true, "", false},
		{"\xff", posValue, true, "", false},
	} {
		got, ok := normDirectoryString([]byte(c.in), c.pos, c.fold)
		if got != c.want || ok != c.ok {
			t.Errorf("%q at %d (fold %v): %q %v, want %q %v", c.in, c.pos, c.fold, got, ok, c.want, c.ok)
		}
	}
}

func TestNormOtherSyntaxes(t *testing.T) {
	s := newSchema()
	for _, c := range []struct {
		kind normKind
		in   string
		want string
		ok   bool
	}{
		{normCaseIgnoreIA5, "  John.Smith@Example.ORG ", "john.smith@example.org", true},
		{normCaseIgnoreIA5, "a  b", "a b", true},
		{normCaseIgnoreIA5, "müller@x", "", false},
		{normCaseExactIA5, "/HOME/x", "/HOME/x", true},
		{normTelephone, "+1 (555) 01-99", "+1(555)0199", true},
		{normTelephone, " - ", "", true},
		{normTelephone, "a@b", "", false},
		{normInteger, "-42", "-42", true},
		{normInteger, "0", "0", true},
		{normInteger, "007", "", false},
		{normInteger, "-0", "", false},
		{normInteger, "+5", "", false},
		{normInteger, " 5", "", false},
		{normTime, "20200101120000Z", "20200101120000Z", true},
		{normTime, "20200101130000+0100", "20200101120000Z", true},
		{normTime, "2020010112Z", "20200101120000Z", true},
		{normTime, "202001011230.5Z", "20200101123030Z", true},
		{normTime, "20200101120000,25Z", "20200101120000Z25", true},
		{normTime, "20200101120000.0Z", "20200101120000Z", true},
		{normTime, "20200101120000.000000001Z", "20200101120000Z000000001", true},
		{normTime, "20200101120000.1-0130", "20200101133000Z1", true},
		// An offset that takes the instant out of the years 0000-9999 makes no
		// GeneralizedTime (slapd refuses it): no four-digit year to order by.
		{normTime, "99991231233000-0100", "", false},
		{normTime, "00000101003000+0100", "", false},
		{normTime, "99991231225959-0100", "99991231235959Z", true},
		{normTime, "00000101010000+0100", "00000101000000Z", true},
		// A leap second is an instant of its own between :59 and the next minute, as
		// slapd has it, in UTC as written; its fraction follows.
		{normTime, "19991231235960Z", "19991231235960Z", true},
		{normTime, "19991231235960.5Z", "19991231235960Z5", true},
		{normTime, "20000101005960+0100", "19991231235960Z", true},
		{normTime, "20000101000060,250-0130", "20000101013060Z25", true},
		{normTime, "19991231235961Z", "", false},
		// A fraction of a second is its digits as written, past nanoseconds too (as
		// slapd has them): .0000000001 is after the whole second, .1234567891 is not
		// .123456789.
		{normTime, "20200101120000.1234567891Z", "20200101120000Z1234567891", true},
		{normTime, "20200101120000,12345678910Z", "20200101120000Z1234567891", true},
		{normTime, "20200101130000.0000000001+0100", "20200101120000Z0000000001", true},
		{normTime, "19991231235960.0000000001Z", "19991231235960Z0000000001", true},
		{normTime, "20200101120000.0000000000Z", "20200101120000Z", true},
		{normTime, "20200101", "", false},
		{normTime, "20201301000000Z", "", false},
		{normTime, "20200230000000Z", "", false},
		{normBoolean, "TRUE", "TRUE", true},
		{normBoolean, "true", "", false},
		{normUUID, "0B5A7E4E-0000-4000-8000-000000000001", "0b5a7e4e-0000-4000-8000-000000000001", true},
		{normUUID, "0b5a7e4e000040008000000000000001", "", false},
		{normObjectClass, "InetOrgPerson", "inetorgperson", true},
		{normObjectClass, "2.5.6.6", "person", true},
		{normObjectClass, "fooClass", "", false},
		{normOID, "1.2.840.113556.1.4.319", "1.2.840.113556.1.4.319", true},
		{normOID, "10000", "10000", true},
		{normOID, "1.02", "", false},
		{normOID, "person", "", false},
		{normNameUID, "UID=x,DC=org#'0101'B", "uid=x,dc=org#'0101'B", true},
		{normNameUID, "uid=x,dc=org", "uid=x,dc=org", true},
	} {
		got, ok := s.normalize(c.kind, []byte(c.in), posValue)
		if got != c.want || ok != c.ok {
			t.Errorf("kind %d %q: %q %v, want %q %v", c.kind, c.in, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"-5", "3", -1}, {"10", "9", 1}, {"-10", "-9", -1}, {"123456789012345678901234567890", "9", 1}, {"7", "7", 0}} {
		if got := compareIntegers(c.a, c.b); got != c.want {
			t.Errorf("compareIntegers(%s, %s) = %d", c.a, c.b, got)
		}
	}
}

// TestNormTimeOrder checks that normalised GeneralizedTimes compare as their instants
// do, whole seconds and fractions of every length mixed, written in zones other than
// UTC too: generalizedTimeOrderingMatch compares them as strings.
func TestNormTimeOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	zones := []*time.Location{time.UTC, time.FixedZone("", 90*60), time.FixedZone("", -5*3600)}
	var when []time.Time
	for range 2000 {
		at := base.Add(time.Duration(rnd.IntN(6)) * time.Second)
		switch rnd.IntN(4) {
		case 1:
			at = at.Add(time.Duration(rnd.IntN(10)) * 100 * time.Millisecond)
		case 2:
			at = at.Add(time.Duration(rnd.IntN(1000)) * time.Millisecond)
		case 3:
			at = at.Add(time.Duration(rnd.IntN(1e9)))
		}
		when = append(when, at.In(zones[rnd.IntN(len(zones))]))
	}
	norm := func(at time.Time) string {
		v := at.Format("20060102150405.999999999-0700")
		if at.Location() == time.UTC {
			v = at.Format("20060102150405.999999999Z")
		}
		n, ok := normGeneralizedTime(v)
		if !ok {
			t.Fatalf("%q: not a GeneralizedTime", v)
		}
		return n
	}
	for i := 1; i < len(when); i++ {
		a, b := when[i-1], when[i]
		if got, want := strings.Compare(norm(a), norm(b)), a.Compare(b); got != want {
			t.Fatalf("%v (%q) against %v (%q): strings compare %d, instants %d", a, norm(a), b, norm(b), got, want)
		}
	}
}

func TestNormDN(t *testing.T) {
	s := newSchema()
	same := [][]string{
		{"uid=user0001,ou=people,dc=example,dc=org", "UID=User0001, OU=People , DC=Example,dc=ORG",
			"userid=user0001;ou=people;dc=example;dc=org", "0.9.2342.19200300.100.1.1=user0001,ou=people,dc=example,dc=org",
			"uid=user\\30001,ou=people,dc=example,dc=org", "  uid  =  user0001 ,ou=people,dc=example,dc=org"},
		{"cn=Smith\\, John,dc=org", "cn=smith\\2c  john,dc=org", "commonName=SMITH\\, JOHN,dc=org"},
		{"cn=Ann+uid=ann,dc=org", "uid=ANN+cn=ann,dc=org"},
	}
	for _, group := range same {
		want, ok := s.normDN(group[0])
		if !ok {
			t.Fatalf("%q: invalid", group[0])
		}
		for _, dn := range group[1:] {
			if got, ok := s.normDN(dn); got != want || !ok {
				t.Errorf("%q: %q %v, want %q (as %q)", dn, got, ok, want, group[0])
			}
		}
	}
	for _, dn := range []string{" ", "not a dn", "foo=bar,dc=org", "uid=x,", "uid=#04087573657230303031,dc=org", "uidNumber=abc,dc=org", "cn=a\"b,dc=org"} {
		if got, ok := s.normDN(dn); ok {
			t.Errorf("%q: accepted as %q", dn, got)
		}
	}
	if n, _ := s.normDN("cn=a\\2Bb\\3Dc,dc=org"); n != "cn=a\\2bb\\3dc,dc=org" {
		t.Errorf("special characters in values: %q", n)
	}
}

func TestSchemaResolves(t *testing.T) {
	s := newSchema()
	for name, want := range map[string]string{"CN": "cn", "commonName": "cn", "2.5.4.3": "cn", "MAIL": "mail",
		"memberof": "memberOf", "sAMAccountName": "sAMAccountName", "entryuuid": "entryUUID"} {
		if at := s.attr(name); at == nil || at.name != want {
			t.Errorf("%s: %v", name, at)
		}
	}
	if s.attr("favouriteColour") != nil {
		t.Error("an attribute no table lists and no entry uses is known")
	}
	if at := s.addAttr("favouriteColour"); at.eq != mrCaseIgnore || at.sub != mrCaseIgnoreSubstr || s.attr("FAVOURITECOLOUR") != at {
		t.Error("an attribute the entries use is not a caseIgnoreMatch string")
	}
	if !s.attr("cn").isA(s.attr("name")) || s.attr("name").isA(s.attr("cn")) || !s.attr("name").hasSubtypes {
		t.Error("cn is not a subtype of name")
	}
	if !s.attr("memberOf").operational || s.attr("cn").operational {
		t.Error("memberOf should be operational (as with slapd's memberof overlay), cn not")
	}
}

// TestNormTimeLeapSecondOrder checks that a leap second sorts after the minute's :59 and
// before the next minute, with its fractions, written in UTC or with an offset.
func TestNormTimeLeapSecondOrder(t *testing.T) {
	ordered := []string{"19991231235959Z", "19991231235959.9Z", "20000101005960+0100", "19991231235960.5Z",
		"19991231235960.75Z", "20000101000000Z", "20000101000000.1Z"}
	var prev string
	for i, v := range ordered {
		n, ok := normGeneralizedTime(v)
		if !ok {
			t.Fatalf("%q: not a GeneralizedTime", v)
		}
		if i > 0 && strings.Compare(prev, n) >= 0 {
			t.Errorf("%q (%q) does not sort after %q (%q)", v, n, ordered[i-1], prev)
		}
		prev = n
	}
}
