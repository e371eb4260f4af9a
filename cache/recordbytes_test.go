package cache

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// tallyRecord adds the bytes of one user's or group's record to t by what they hold;
// file is the checkpoint's bytes before it.
func tallyRecord(t map[string]int, val, file string, user bool) {
	d := decoder{s: val, file: file}
	mark := 0
	add := func(what string) { t[what] += d.i - mark; mark = d.i }
	format := d.version(formatV8)
	add("format byte")
	heads := []string{"DN", "user name", "name", "mail", "path", "password marker"}
	if !user {
		heads = heads[:2]
	}
	for _, h := range heads {
		at := d.i
		d.head(format)
		if format >= formatV5 && d.s[at]&1 == 1 {
			add("head " + h + " (placed)")
		} else {
			add("head " + h)
		}
	}
	if user {
		d.readByte()
		if format >= formatV2 {
			d.account()
		}
		add("active, account")
	}
	d.skipIDs(format)
	add("group IDs")
	d.attributes(false, format)
	add("mapped attributes")
	if format < formatV3 {
		return
	}
	base := d.i
	n := d.count()
	for range n {
		single := false
		var name string
		switch x := d.uvarint(); {
		case format >= formatV7:
			single = x&1 == 1
			name = d.attrNumbered(x >> 1)
		case format >= formatV4:
			name = d.attrNumbered(x)
		default:
			name = d.take(x)
		}
		// The DN-valued attributes that name other objects apart.
		values := "upstream: values"
		switch n := strings.ToLower(name); n {
		case "member", "uniquemember", "memberof":
			values = "upstream: values of " + n
		}
		vals := uint64(1)
		if !single {
			vals = d.count()
		}
		add("upstream: names and counts")
		for range vals {
			at := d.i
			x := d.uvarint()
			d.i = at
			switch {
			case format >= formatV8:
				d.sharedRef(base)
			case format >= formatV6:
				d.shared(base)
			default:
				d.str()
			}
			switch {
			case format >= formatV8 && x&3 == refInFile:
				add("upstream: values referred to in the checkpoint")
			case format >= formatV8 && x&3 == refPlaced, format >= formatV6 && format < formatV8 && x&1 == 1:
				add("upstream: values placed")
			default:
				t["upstream: value lengths"] += uvarintLen(x)
				mark += uvarintLen(x)
				add(values)
			}
		}
	}
	if d.err != nil {
		panic(fmt.Sprintf("%v at %d of %d: %q", d.err, d.i, len(val), val))
	}
}

// TestRecordBytes prints where the bytes of the user and group records of the
// checkpoint $LDAPPROXY_CKPT go (skipped without it): what the record format costs for
// a real directory's objects.
func TestRecordBytes(t *testing.T) {
	path := os.Getenv("LDAPPROXY_CKPT")
	if path == "" {
		t.Skip("LDAPPROXY_CKPT names no checkpoint")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const head = len(checkpointMagic) + 8 + 16 + 3*8
	r := ckptReader{s: string(data[:len(data)-4]), i: head, genU64: string(data[:len(checkpointMagic)]) == checkpointMagicV2}
	p := data[len(checkpointMagic):]
	for kind, count := range []uint64{leUint64(p[24:]), leUint64(p[32:])} {
		tally := map[string]int{}
		total := 0
		if kind == 1 && string(data[:len(checkpointMagic)]) == checkpointMagic {
			start := r.i
			r.str()
			tally["checkpoint: DNs no user holds"] += r.i - start
			total += r.i - start
		}
		for range count {
			start := r.i
			_, _, val := r.record()
			tally["checkpoint: generation, length, ID"] += r.i - start - len(val)
			tallyRecord(tally, val, r.s[:r.valAt], kind == 0)
			total += r.i - start
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("%s: %d records, %d bytes, %.1f a record", []string{"users", "groups"}[kind], count, total, float64(total)/float64(count))
		for _, what := range slices.SortedFunc(maps.Keys(tally), func(a, b string) int { return cmp.Compare(tally[b], tally[a]) }) {
			t.Logf("   %-40s %10d %8.1f", what, tally[what], float64(tally[what])/float64(count))
		}
	}
}

func leUint64(b []byte) uint64 {
	var x uint64
	for i := 7; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}
