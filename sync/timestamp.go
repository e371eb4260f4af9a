package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
)

// cookieTimestamp names timestamp mode's high-water mark in the store: a time in the
// upstream's clock at or before which every change has been applied (RFC 3339).
const cookieTimestamp = "timestamp"

// stamp notes an entry's modifyTimestamp as an observation of the upstream's clock.
func (r *run) stamp(e *ldap.Entry) {
	if t, ok := parseStamp(e.GetEqualFoldAttributeValue("modifyTimestamp")); ok {
		r.clock.saw(t, time.Now())
	}
}

// upstreamClock follows the upstream's clock through the timestamps it writes, without
// trusting the proxy's clock to agree with it: an entry's modifyTimestamp is at most
// the upstream's time when the entry reached the proxy. floor is the highest such
// timestamp less the proxy's time then; the upstream's time at a proxy time t is at
// least t + floor, as long as the clocks run at the same rate. Each full read starts it
// afresh, so that a step back of the upstream's clock larger than stampOverlap costs
// changes until the next reconciliation at most.
type upstreamClock struct {
	floor time.Duration
	ok    bool
}

// saw notes an entry stamped stamp that reached the proxy at (or before) at. Each such
// observation is a lower bound of the offset between the two clocks; the highest is
// kept.
func (c *upstreamClock) saw(stamp, at time.Time) {
	if d := stamp.Sub(at); !c.ok || d > c.floor {
		c.floor, c.ok = d, true
	}
}

// at returns the upstream's time at the proxy's time t, at least.
func (c *upstreamClock) at(t time.Time) (time.Time, bool) {
	return t.Add(c.floor), c.ok
}

// setMark records timestamp mode's mark on a full read that began at start: the
// upstream's time when the read began, at least, so that every change the read may
// have missed is stamped after it. A read that saw no timestamp keeps the stored mark.
func (r *run) setMark(start time.Time) {
	r.s.clock = r.clock
	m, ok := r.clock.at(start)
	if !ok {
		r.s.log.Warn("sync: the upstream returned no modifyTimestamp; timestamp mode cannot see changes between full reads")
		return
	}
	r.w.SetCookie(cookieTimestamp, formatMark(m))
}

func formatMark(t time.Time) []byte { return []byte(t.UTC().Format(time.RFC3339Nano)) }

// storedMark is the mark the store holds.
func (s *Syncer) storedMark() (time.Time, bool) {
	c := s.store.Cookie(cookieTimestamp)
	if c == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(c))
	return t, err == nil
}

// pollLoop is timestamp, usn and dirsync modes: a full read when no position is stored,
// when the position cannot be used (usn, dirsync: another DC; dirsync: a cookie
// refused) and every FullInterval (deletions show
// there in timestamp mode); in between, every PollInterval, a poll of the users and
// groups changed since the position, applied in batches, the last with the position it
// reached.
func (s *Syncer) pollLoop(ctx context.Context, mode string) {
	st := newStream(s)
	stored := func() bool {
		var ok bool
		switch mode {
		case ModeUSN:
			_, ok = s.storedPosition()
		case ModeDirSync:
			_, ok = s.storedDirSync()
		default:
			_, ok = s.storedMark()
		}
		return ok
	}
	cookie := map[string]string{ModeUSN: cookieUSN, ModeDirSync: cookieDirSync}[mode]
	if cookie == "" {
		cookie = cookieTimestamp
	}
	needFull := !stored()
	lastFull := time.Now()
	if !needFull {
		s.log.Info("sync: resuming the polls from the stored position", "mode", mode, "position", string(s.store.Cookie(cookie)))
	}
	for ctx.Err() == nil {
		wait := s.cfg.PollInterval
		if needFull || time.Since(lastFull) >= s.cfg.FullInterval {
			s.m.reloads.WithLabelValues("full").Inc()
			if err := s.pollFull(ctx, mode); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("sync: full read failed; the store keeps the previous state", "err", err, "retry_in", wait)
			} else {
				lastFull, st = time.Now(), newStream(s)
				s.m.connected.Set(1)
				if stored() {
					needFull = false
				} else {
					wait = s.cfg.Interval // no timestamps: full reads, at full mode's pace
				}
			}
		} else {
			var err error
			switch mode {
			case ModeUSN:
				err = st.pollUSN(ctx)
			case ModeDirSync:
				err = st.pollDirSync(ctx)
			default:
				err = st.poll(ctx)
			}
			switch {
			case err == nil:
				s.m.connected.Set(1)
			case ctx.Err() != nil:
				return
			case errors.Is(err, errOtherDC):
				s.log.Warn("sync: another domain controller, or the same restored from a backup: its USNs are not the stored position's; reading everything again", "err", err)
				s.m.reloads.WithLabelValues("refresh_required").Inc()
				needFull = true
				continue
			case errors.Is(err, errCookieRefused):
				s.log.Warn("sync: the domain controller refuses the stored DirSync cookie; reading everything again", "err", err)
				s.m.reloads.WithLabelValues("refresh_required").Inc()
				needFull = true
				continue
			default:
				s.m.connected.Set(0)
				s.log.Warn("sync: poll failed; retrying at the next one", "err", err, "in", wait)
			}
		}
		if !sleep(ctx, wait) {
			break
		}
	}
	s.m.connected.Set(0)
}

// pollFull is a full read committed with the position the polls start from: in usn and
// dirsync modes the DC's, read before the read begins; in timestamp mode the mark the
// read leaves.
func (s *Syncer) pollFull(ctx context.Context, mode string) error {
	var name string
	var c []byte
	var err error
	switch mode {
	case ModeUSN:
		name = cookieUSN
		c, err = s.usnPosition(ctx)
	case ModeDirSync:
		name = cookieDirSync
		c, err = s.dirsyncPositionNow(ctx)
	default:
		return s.runFull(ctx, nil, true)
	}
	if err != nil {
		return err
	}
	return s.runFull(ctx, map[string][]byte{name: c}, false)
}

// poll reads the users and groups changed since the stored mark (less stampOverlap) and
// applies them (applyChanged), the last batch committed with the new mark: the
// upstream's time when the poll began (at least; see upstreamClock), or the old mark
// when that is later. So the mark moves on with time even when nothing changes, and an
// object is read again only while its change is within stampOverlap of the mark.
func (st *stream) poll(ctx context.Context) error {
	s := st.s
	mark, _ := s.storedMark()
	from := mark.Add(-stampOverlap).UTC().Format(stampLayout)
	start := time.Now()
	var ch *changed
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		var err error
		ch, err = st.readChanged(ctx, lc, "(modifyTimestamp>="+from+")", s.base)
		return err
	})
	if err != nil {
		return err
	}
	next := mark
	if m, ok := s.clock.at(start); ok && m.After(next) {
		next = m
	}
	return st.applyChanged(ch, cookieTimestamp, formatMark(next))
}

// changed is what a poll read: the entries of each kind, the IDs of the objects gone
// from a kind (moved out of its base, or no longer matching its filter) and of those
// deleted (tombstones).
type changed struct {
	entries map[string][]*ldap.Entry
	gone    map[string][]string
	deleted []string
}

// readChanged reads, on lc, the users and then the groups that the filter clause
// selects (whole member lists). It searches from root, wider than the kinds' bases
// (user_dn, group_dn), with the kinds' filters and negated: an object changed that is
// now outside its kind's base (moved out) or no longer matches its filter (e.g. one
// that leaves only enabled accounts) is gone from that kind.
func (st *stream) readChanged(ctx context.Context, lc *ldap.Conn, clause, root string) (*changed, error) {
	s := st.s
	ch := &changed{entries: map[string][]*ldap.Entry{}, gone: map[string][]string{}}
	// Users before groups: a group that names a user moved since is then resolved
	// against the user's new DN.
	for _, kind := range []string{cache.KindUsers, cache.KindGroups} {
		if !st.polls(kind) {
			continue
		}
		base, filter, attrs := s.searchOf(kind)
		from := root
		if from == "" || !s.within(base, from) {
			from = base
		}
		gone := func(e *ldap.Entry) {
			if id, err := s.uniqueness(entryOf(e)); err == nil {
				ch.gone[kind] = append(ch.gone[kind], id)
			}
		}
		err := pagedSearch(ctx, lc, s.cfg.PageSize, from, "(&"+filter+clause+")", attrs, func(e *ldap.Entry) error {
			if t, ok := parseStamp(e.GetEqualFoldAttributeValue("modifyTimestamp")); ok {
				s.clock.saw(t, time.Now())
			}
			if !s.within(e.DN, base) {
				gone(e)
				return nil
			}
			if kind == cache.KindGroups && s.cfg.MembershipField != "memberOf" {
				if err := s.wholeMembers(ctx, lc, e); err != nil {
					return err
				}
			}
			ch.entries[kind] = append(ch.entries[kind], e)
			return nil
		})
		if err == nil {
			err = pagedSearch(ctx, lc, s.cfg.PageSize, from, "(&(!"+filter+")"+clause+")", []string{s.cfg.UniquenessField}, func(e *ldap.Entry) error {
				gone(e)
				return nil
			})
		}
		if err != nil {
			return nil, fmt.Errorf("poll %s: %w", kind, err)
		}
	}
	return ch, nil
}

// within reports whether dn is base or below it.
func (s *Syncer) within(dn, base string) bool {
	d, b := s.store.NormalizeDN(dn), s.store.NormalizeDN(base)
	return b == "" || d == b || strings.HasSuffix(d, ","+b)
}

// applyChanged applies what a poll read through the applier syncrepl uses
// (memberships resolved through identities; objects read again unchanged are not
// counted), in batches of at most maxBatch objects, each atomic; the last is committed
// with the poll's position (cookie name: position). A kill between two resumes from the
// previous position and applies them again, which changes nothing more.
func (st *stream) applyChanged(ch *changed, name string, position []byte) error {
	s := st.s
	for _, kind := range s.streamKinds() {
		st.live[kind] = true // changes are new: their lag is measured
	}
	type item struct {
		kind string
		e    *ldap.Entry // nil: the deletion of id
		id   string
	}
	var items []item
	for _, id := range ch.deleted {
		items = append(items, item{id: id})
	}
	for kind, ids := range ch.gone {
		for _, id := range ids {
			items = append(items, item{kind: kind, id: id})
		}
	}
	// Users before groups: a group that names a user moved since is then resolved
	// against the user's new DN.
	for _, kind := range []string{cache.KindUsers, cache.KindGroups} {
		for _, e := range ch.entries[kind] {
			items = append(items, item{kind: kind, e: e})
		}
	}
	for first := true; first || len(items) > 0; first = false {
		n := min(len(items), maxBatch)
		if err := st.applyBatch(func(a *applier) {
			for _, it := range items[:n] {
				switch {
				case it.e == nil && it.kind != "":
					a.remove(it.kind, it.id)
				case it.e == nil:
					a.remove(cache.KindUsers, it.id)
					a.remove(cache.KindGroups, it.id)
				case it.kind == cache.KindUsers:
					a.putUser(it.e)
				default:
					a.putGroup(it.e)
				}
			}
			if n == len(items) {
				a.b.SetCookie(name, position)
			}
		}); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// applyBatch runs fill on the applier of a new batch, commits it and counts its changes.
func (st *stream) applyBatch(fill func(*applier)) error {
	s := st.s
	b, err := s.store.BeginBatch()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer b.Abort()
	a := &applier{stream: st, b: b, dnUsers: map[string]string{}, nameUsers: map[string]string{}, dnGroups: map[string]string{}, onlyChanged: true}
	fill(a)
	if _, err := b.Commit(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	now := time.Now()
	for _, c := range a.changes {
		s.m.changes.WithLabelValues(c.kind, c.op).Inc()
		if !c.at.IsZero() {
			s.m.lag.Observe(max(0, now.Sub(c.at).Seconds()))
		}
	}
	if len(a.changes) > 0 {
		s.log.Debug("sync: poll applied", "changes", len(a.changes))
	}
	return nil
}

// polls reports whether kind is polled.
func (st *stream) polls(kind string) bool {
	for _, k := range st.s.streamKinds() {
		if k == kind {
			return true
		}
	}
	return false
}

// wholeMembers replaces a group entry's membership values by all of them, following
// Active Directory's range retrieval (member;range=0-1499, …).
func (s *Syncer) wholeMembers(ctx context.Context, lc *ldap.Conn, e *ldap.Entry) error {
	vals, err := s.membershipValues(ctx, lc, e)
	if err != nil {
		return err
	}
	// The values take the place of the first membership attribute, so that the entry
	// keeps the order of its attributes as a full read sees them.
	field := s.cfg.MembershipField
	kept := e.Attributes[:0]
	placed := false
	for _, a := range e.Attributes {
		name, _, _ := strings.Cut(a.Name, ";")
		switch {
		case !strings.EqualFold(name, field):
			kept = append(kept, a)
		case !placed:
			kept = append(kept, ldap.NewEntryAttribute(name, vals))
			placed = true
		}
	}
	e.Attributes = kept
	return nil
}
