package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/mapping"
)

// Cookie names in the store: one syncrepl search per object kind, each with its own
// position.
const (
	cookieUsers  = "syncrepl-users"
	cookieGroups = "syncrepl-groups"
)

// matchNothing is the filter of the search that only asks the upstream for its current
// position (a cookie), before a full read.
const matchNothing = "(&(objectClass=*)(!(objectClass=*)))"

// Variables for the tests.
var (
	// streamBackoffMin and streamBackoffMax bound the wait before reconnecting a lost
	// stream; it doubles with each failure and starts again once a stream has caught up.
	streamBackoffMin = 500 * time.Millisecond
	streamBackoffMax = 30 * time.Second
	// batchLinger is how long changes are gathered into one batch after the first; a
	// batch holds at most maxBatch changes.
	batchLinger = 20 * time.Millisecond
	maxBatch    = 500
)

// Loop keeps the store in sync until ctx ends, in the configured mode: in full mode a
// complete sync at once and then every Interval (a failed run is logged and retried at
// the next interval; the store keeps the last complete state meanwhile); in syncrepl
// mode a full read when no position is stored, then the changes as the upstream pushes
// them, with a full reconciliation every FullInterval.
func (s *Syncer) Loop(ctx context.Context) {
	mode := s.chooseMode(ctx)
	s.modeInUse.Store(&mode)
	if mode != ModeFull {
		// A stream or poll resumed from a stored position applies changes before any
		// full read (which reads them too): the confidential attributes it must drop
		// are read first.
		s.readConfidential(ctx)
	}
	switch mode {
	case ModeSyncrepl:
		s.streamLoop(ctx)
	case ModeTimestamp, ModeUSN, ModeDirSync:
		s.pollLoop(ctx, mode)
	case ModeFull:
		s.fullLoop(ctx)
	}
}

// mode is the mode in use: full until Loop has chosen.
func (s *Syncer) mode() string {
	if m := s.modeInUse.Load(); m != nil {
		return *m
	}
	return ModeFull
}

func (s *Syncer) fullLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("sync failed; the store keeps the previous state", "err", err, "next_in", s.cfg.Interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// chooseMode resolves auto by asking the upstream's root DSE, retrying with back-off
// while it cannot be read; "" when ctx ends first.
func (s *Syncer) chooseMode(ctx context.Context) string {
	if s.cfg.Mode != ModeAuto {
		s.log.Info("sync mode", "mode", s.cfg.Mode)
		return s.cfg.Mode
	}
	wait := streamBackoffMin
	for {
		ok, err := s.offersSyncrepl(ctx)
		if err == nil {
			switch {
			case ok && s.cfg.UniquenessField == "entryUUID":
				s.log.Info("sync mode", "mode", ModeSyncrepl, "configured", ModeAuto,
					"reason", "the upstream offers Content Synchronization ("+ldap.ControlTypeSyncRequest+")")
				return ModeSyncrepl
			case ok:
				s.log.Info("sync mode", "mode", ModeFull, "configured", ModeAuto,
					"reason", "the upstream offers Content Synchronization, but uniqueness_field is "+s.cfg.UniquenessField+", not entryUUID")
			default:
				s.log.Info("sync mode", "mode", ModeFull, "configured", ModeAuto,
					"reason", "the upstream's root DSE does not list the Content Synchronization control")
			}
			return ModeFull
		}
		s.log.Warn("sync: cannot read the upstream's root DSE to choose the mode; retrying", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return ""
		}
		wait = min(2*wait, streamBackoffMax)
	}
}

// offersSyncrepl reports whether the root DSE lists the Content Synchronization control.
func (s *Syncer) offersSyncrepl(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"supportedControl"}, nil))
		if err != nil {
			return fmt.Errorf("read the root DSE: %w", err)
		}
		for _, e := range res.Entries {
			ok = slices.Contains(e.GetAttributeValues("supportedControl"), ldap.ControlTypeSyncRequest)
		}
		return nil
	})
	return ok, err
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// kinds are the object kinds synced, each with its syncrepl search.
func (s *Syncer) streamKinds() []string {
	var kinds []string
	if s.cfg.Groups || s.cfg.MembershipField != "memberOf" {
		kinds = append(kinds, cache.KindGroups)
	}
	if s.cfg.Users {
		kinds = append(kinds, cache.KindUsers)
	}
	return kinds
}

func cookieName(kind string) string {
	if kind == cache.KindUsers {
		return cookieUsers
	}
	return cookieGroups
}

// streamLoop is syncrepl mode: a full read when no cookie is stored, when the upstream
// asks for one (e-syncRefreshRequired) and every FullInterval; in between, one session
// after another of refreshAndPersist searches, reconnecting with back-off.
func (s *Syncer) streamLoop(ctx context.Context) {
	st := newStream(s)
	needFull := false
	for _, kind := range s.streamKinds() {
		if s.store.Cookie(cookieName(kind)) == nil {
			needFull = true
		}
	}
	lastFull := time.Now()
	fresh := false // the cookies come from the full read just done
	if !needFull {
		s.log.Info("sync: resuming the change stream from the stored cookies")
	}
	wait := streamBackoffMin
	for ctx.Err() == nil {
		if needFull || time.Since(lastFull) >= s.cfg.FullInterval {
			if err := s.reload(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("sync: full read failed; the store keeps the previous state", "err", err, "retry_in", wait)
				sleep(ctx, wait)
				wait = min(2*wait, streamBackoffMax)
				continue
			}
			needFull, lastFull, fresh = false, time.Now(), true
			st.reset()
		}
		caughtUp, err := st.session(ctx, lastFull.Add(s.cfg.FullInterval))
		if ctx.Err() != nil {
			return
		}
		if caughtUp {
			wait, fresh = streamBackoffMin, false
		}
		switch {
		case err == nil: // reconciliation due
			continue
		case ldap.IsErrorWithCode(err, ldap.LDAPResultSyncRefreshRequired):
			s.log.Warn("sync: the upstream asks for a full refresh (e-syncRefreshRequired); reading everything again", "err", err)
			s.m.reloads.WithLabelValues("refresh_required").Inc()
			needFull = true
			continue
		case ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) && !fresh:
			// slapd's answer to a cookie it cannot resume from ("consumer state is
			// newer than provider": an upstream restored from a backup, or another
			// one). Right after a full read the cookie is the upstream's own: then
			// the refusal is about something else, and a full read would not help.
			s.log.Warn("sync: the upstream refuses the stored cookie; reading everything again", "err", err)
			s.m.reloads.WithLabelValues("refresh_required").Inc()
			needFull = true
			continue
		}
		s.log.Warn("sync: change stream lost; reconnecting", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, streamBackoffMax)
	}
}

// reload is a full read whose result is committed with the upstream's position taken
// just before it: the stream that resumes from there replays what changed during the
// read, which is harmless (entries come whole, deletes of what is gone change nothing).
func (s *Syncer) reload(ctx context.Context) error {
	cookies := map[string][]byte{}
	for _, kind := range s.streamKinds() {
		c, err := s.position(ctx, kind)
		if err != nil {
			return err
		}
		cookies[cookieName(kind)] = c
	}
	s.m.reloads.WithLabelValues("full").Inc()
	return s.runFull(ctx, cookies, false)
}

// position asks the upstream for its current position for kind's search: a refreshOnly
// search that matches nothing ends with the cookie of "now".
func (s *Syncer) position(ctx context.Context, kind string) ([]byte, error) {
	var cookie []byte
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		base, _, attrs := s.searchOf(kind)
		req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, matchNothing, attrs, nil)
		resp := lc.Syncrepl(ctx, req, 16, ldap.SyncRequestModeRefreshOnly, nil, false)
		for resp.Next() {
			if c := cookieOf(resp.Controls()); c != nil {
				cookie = c
			}
		}
		return resp.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sync: read the upstream's syncrepl position for %s: %w", kind, err)
	}
	if cookie == nil {
		return nil, fmt.Errorf("sync: the upstream gave no syncrepl cookie for %s", kind)
	}
	return cookie, nil
}

// searchOf is kind's search: base, filter and attributes (with entryCSN, the change's
// time, for the lag).
func (s *Syncer) searchOf(kind string) (base, filter string, attrs []string) {
	if kind == cache.KindUsers {
		return join(s.cfg.UserDN, s.base), s.cfg.UserFilter, dedupe(append(s.userAttributes(), "entryCSN"))
	}
	return join(s.cfg.GroupDN, s.base), s.cfg.GroupFilter, dedupe(append(s.groupAttributes(), "entryCSN"))
}

// cookieOf returns the cookie a message's controls carry, if any.
func cookieOf(controls []ldap.Control) []byte {
	var cookie []byte
	for _, c := range controls {
		switch c := c.(type) {
		case *ldap.ControlSyncState:
			cookie = c.Cookie
		case *ldap.ControlSyncDone:
			cookie = c.Cookie
		case *ldap.ControlSyncInfo:
			switch {
			case c.NewCookie != nil:
				cookie = c.NewCookie.Cookie
			case c.RefreshDelete != nil:
				cookie = c.RefreshDelete.Cookie
			case c.RefreshPresent != nil:
				cookie = c.RefreshPresent.Cookie
			case c.SyncIdSet != nil:
				cookie = c.SyncIdSet.Cookie
			}
		}
	}
	if len(cookie) == 0 {
		return nil
	}
	return cookie
}

// event is one message of a syncrepl search, as the applier needs it.
type event struct {
	kind    string
	entry   *ldap.Entry // the entry now (add, modify, rename)
	id      string      // the entry's syncUUID
	deleted []string    // IDs gone
	present []string    // IDs unchanged (present phase)
	// presentEnd ends a present phase: objects of kind not named present are gone.
	presentEnd  bool
	refreshDone bool
	cookie      []byte
	err         error // the search ended
}

// eventsOf turns one message into events.
func eventsOf(kind string, entry *ldap.Entry, controls []ldap.Control) event {
	ev := event{kind: kind, cookie: cookieOf(controls)}
	for _, c := range controls {
		switch c := c.(type) {
		case *ldap.ControlSyncState:
			id := c.EntryUUID.String()
			switch c.State {
			case ldap.SyncStateDelete:
				ev.deleted = append(ev.deleted, id)
			case ldap.SyncStatePresent:
				ev.present = append(ev.present, id)
			default:
				ev.entry, ev.id = entry, id
			}
		case *ldap.ControlSyncInfo:
			switch {
			case c.RefreshPresent != nil:
				ev.presentEnd, ev.refreshDone = true, c.RefreshPresent.RefreshDone
			case c.RefreshDelete != nil:
				ev.refreshDone = c.RefreshDelete.RefreshDone
			case c.SyncIdSet != nil:
				for _, u := range c.SyncIdSet.SyncUUIDs {
					if c.SyncIdSet.RefreshDeletes {
						ev.deleted = append(ev.deleted, u.String())
					} else {
						ev.present = append(ev.present, u.String())
					}
				}
			}
		}
	}
	return ev
}

// stream is syncrepl mode's state across sessions.
type stream struct {
	s *Syncer
	// unresolved maps a membership key (normalised DN, or lower-case user name for
	// memberUid) that a group lists but no object had when the group came, to those
	// groups: the object that takes the key later joins them. Only in memory: the next
	// full read resolves whatever a restart forgot.
	unresolved map[string]map[string]bool
	// present are the IDs named during a kind's refresh: present, or sent whole
	// because they changed. presentPhase marks the kinds whose refresh named any
	// present: a present phase, at whose end the objects not named are gone.
	present      map[string]map[string]bool
	presentPhase map[string]bool
	// live marks the kinds whose refresh is done: their changes are new, and their lag
	// is measured.
	live map[string]bool
}

func newStream(s *Syncer) *stream {
	st := &stream{s: s}
	st.reset()
	return st
}

// reset forgets what a full read made obsolete.
func (st *stream) reset() {
	st.unresolved = map[string]map[string]bool{}
	st.present = map[string]map[string]bool{}
	st.presentPhase = map[string]bool{}
	st.live = map[string]bool{}
}

// session runs one refreshAndPersist search per kind on one connection, applying what
// arrives in batches, until a search fails (its error), ctx ends, or due (nil). caughtUp
// reports whether every search finished its refresh.
func (st *stream) session(ctx context.Context, due time.Time) (caughtUp bool, err error) {
	s := st.s
	clear(st.live)
	clear(st.present)
	clear(st.presentPhase)
	err = s.pool.WithServiceStream(ctx, "syncrepl", func(lc *ldap.Conn) error {
		lc.SetTimeout(0) // a persistent search outlives any request timeout
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		events := make(chan event, 4*maxBatch)
		for _, kind := range s.streamKinds() {
			go st.read(sctx, lc, kind, s.store.Cookie(cookieName(kind)), events)
		}
		s.m.connected.Set(1)
		defer s.m.connected.Set(0)
		timer := time.NewTimer(time.Until(due))
		defer timer.Stop()
		for {
			var evs []event
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				s.log.Info("sync: full reconciliation due", "full_interval", s.cfg.FullInterval)
				return nil
			case ev := <-events:
				evs = append(evs, ev)
			}
			linger := time.NewTimer(batchLinger)
		gather:
			for len(evs) < maxBatch && evs[len(evs)-1].err == nil {
				select {
				case ev := <-events:
					evs = append(evs, ev)
				case <-linger.C:
					break gather
				}
			}
			linger.Stop()
			if err := st.apply(evs); err != nil {
				return err
			}
			caughtUp = len(st.live) == len(s.streamKinds())
		}
	})
	return caughtUp, err
}

// read runs kind's search and sends its messages to out, then its end as an error.
func (st *stream) read(ctx context.Context, lc *ldap.Conn, kind string, cookie []byte, out chan<- event) {
	base, filter, attrs := st.s.searchOf(kind)
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	resp := lc.Syncrepl(ctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, cookie, false)
	send := func(ev event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for resp.Next() {
		if !send(eventsOf(kind, resp.Entry(), resp.Controls())) {
			return
		}
	}
	err := resp.Err()
	if err == nil {
		err = errors.New("the upstream ended the persistent search")
	}
	send(event{kind: kind, err: fmt.Errorf("syncrepl %s: %w", kind, err)})
}

// change is one applied change, counted once its batch is committed.
type change struct {
	kind, op string
	at       time.Time // the upstream's time of the change (entryCSN); zero: unknown
}

// apply writes evs as one batch, with the cookies they carry, and returns the error an
// event ended the search with (after committing the events before it).
func (st *stream) apply(evs []event) error {
	s := st.s
	b, err := s.store.BeginBatch()
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer b.Abort()
	a := &applier{stream: st, b: b, dnUsers: map[string]string{}, nameUsers: map[string]string{}, dnGroups: map[string]string{}}
	var streamErr error
	for _, ev := range evs {
		if ev.err != nil {
			streamErr = ev.err
			break
		}
		a.event(ev)
		if ev.cookie != nil {
			b.SetCookie(cookieName(ev.kind), ev.cookie)
		}
	}
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
	return streamErr
}

// applier turns the events of one batch into the batch's puts and deletes, resolving
// memberships through the objects' identities: the batch as it stands (b.User, b.Group),
// never DNs remembered from earlier.
type applier struct {
	*stream
	b *cache.Batch
	// dnUsers, nameUsers and dnGroups index the objects put in this batch by their
	// membership keys; the base snapshot indexes the others.
	dnUsers, nameUsers, dnGroups map[string]string
	changes                      []change
	// onlyChanged counts only the objects that differ from the stored ones: timestamp
	// mode reads some objects again.
	onlyChanged bool
}

func (a *applier) event(ev event) {
	for _, id := range ev.present {
		a.markPresent(ev.kind, id)
		a.presentPhase[ev.kind] = true
	}
	for _, id := range ev.deleted {
		a.remove(ev.kind, id)
	}
	if ev.entry != nil {
		if !a.live[ev.kind] {
			a.markPresent(ev.kind, ev.id)
		}
		if ev.kind == cache.KindUsers {
			a.putUser(ev.entry)
		} else {
			a.putGroup(ev.entry)
		}
	}
	if ev.presentEnd {
		a.endPresent(ev.kind)
	}
	if ev.refreshDone && !a.live[ev.kind] {
		a.live[ev.kind] = true
		a.s.log.Info("sync: change stream caught up; changes now arrive as they happen", "kind", ev.kind)
	}
}

func (a *applier) markPresent(kind, id string) {
	if a.present[kind] == nil {
		a.present[kind] = map[string]bool{}
	}
	a.present[kind][id] = true
}

// endPresent deletes the objects of kind that the present phase did not name. A
// refresh that named nothing present is taken for no present phase: deleting
// everything on a misreading would be worse than keeping a deleted object until the
// next full read.
func (a *applier) endPresent(kind string) {
	present := a.present[kind]
	phase := a.presentPhase[kind]
	delete(a.present, kind)
	delete(a.presentPhase, kind)
	if !phase {
		return
	}
	var gone []string
	if kind == cache.KindUsers {
		for u := range a.b.Base().Users {
			if !present[u.ID] {
				gone = append(gone, u.ID)
			}
		}
	} else {
		parent := a.s.parentGroup()
		for g := range a.b.Base().Groups {
			if !present[g.ID] && (parent == nil || g.ID != parent.ID) {
				gone = append(gone, g.ID)
			}
		}
	}
	for _, id := range gone {
		a.remove(kind, id)
	}
}

// op names a change to an object that existed (or not) with the DN old.
func (a *applier) op(existed bool, old, dn string) string {
	switch {
	case !existed:
		return "add"
	case a.s.store.NormalizeDN(old) != a.s.store.NormalizeDN(dn):
		return "rename"
	}
	return "modify"
}

func (a *applier) record(kind, op string, e *ldap.Entry) {
	c := change{kind: kind, op: op}
	if e != nil && a.live[kind] {
		var ok bool
		if c.at, ok = csnTime(e.GetAttributeValue("entryCSN")); !ok {
			c.at, _ = parseStamp(e.GetEqualFoldAttributeValue("modifyTimestamp"))
		}
	}
	a.changes = append(a.changes, c)
}

// csnTime reads the time of an entryCSN (20261206031842.123456Z#000000#000#000000).
func csnTime(csn string) (time.Time, bool) {
	ts, _, ok := strings.Cut(csn, "#")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405.999999Z", ts)
	return t, err == nil
}

// mapped maps a streamed entry; one the mappings refuse is skipped, and deleted if the
// store holds it (a full read would leave it out too).
func (a *applier) mapped(kind string, e *ldap.Entry) (string, *mapping.Object, bool) {
	s := a.s
	set := s.groups
	if kind == cache.KindUsers {
		set = s.users
	}
	raw := entryOf(e)
	id, err := s.uniqueness(raw)
	if err != nil {
		s.log.Warn("sync: streamed entry skipped", "kind", kind, "dn", e.DN, "err", err)
		return "", nil, false
	}
	obj, err := set.Map(raw)
	if err != nil {
		s.log.Warn("sync: streamed entry skipped", "kind", kind, "dn", e.DN, "err", err)
		a.remove(kind, id)
		return "", nil, false
	}
	return id, obj, true
}

func (a *applier) putUser(e *ldap.Entry) {
	s := a.s
	id, obj, ok := a.mapped(cache.KindUsers, e)
	if !ok {
		return
	}
	cur, existed := a.b.User(id)
	var groups []string
	key := s.store.NormalizeDN(e.DN)
	if s.cfg.MembershipField == "memberUid" {
		key = strings.ToLower(obj.Username)
	}
	switch s.cfg.MembershipField {
	case "memberOf":
		for _, dn := range e.GetEqualFoldAttributeValues("memberOf") {
			if gid, ok := a.groupByKey(s.store.NormalizeDN(dn)); ok {
				groups = append(groups, gid)
			}
		}
	default:
		// Memberships live on the groups, which name the user by a DN (or name) that a
		// rename changes: the user keeps the groups it was resolved into, by ID, and
		// joins those that named its new key before it had it.
		if existed {
			groups = slices.Clone(cur.Groups)
		}
		groups = append(groups, a.takeUnresolved(key)...)
	}
	var old string
	if existed {
		old = cur.DN
	}
	u := s.newUser(e, id, obj, groups)
	if err := a.b.PutUser(u); err != nil {
		s.log.Warn("sync: streamed user skipped", "dn", e.DN, "err", err)
		return
	}
	a.dnUsers[s.store.NormalizeDN(u.DN)] = id
	a.nameUsers[strings.ToLower(u.Username)] = id
	if a.onlyChanged && !a.b.UserDiffers(id) {
		return
	}
	a.record(cache.KindUsers, a.op(existed, old, e.DN), e)
}

func (a *applier) putGroup(e *ldap.Entry) {
	s := a.s
	id, obj, ok := a.mapped(cache.KindGroups, e)
	if !ok {
		return
	}
	cur, existed := a.b.Group(id)
	key := s.store.NormalizeDN(e.DN)
	g := s.newGroup(e, id, obj)
	parent := s.parentGroup()
	switch s.cfg.MembershipField {
	case "memberUid":
	case "memberOf":
		for _, dn := range e.GetEqualFoldAttributeValues("memberOf") {
			if gid, ok := a.groupByKey(s.store.NormalizeDN(dn)); ok {
				g.Parents = append(g.Parents, gid)
			}
		}
	default:
		if existed {
			g.Parents = slices.Clone(cur.Parents)
		}
		g.Parents = append(g.Parents, a.takeUnresolved(key)...)
	}
	if parent != nil && !slices.Contains(g.Parents, parent.ID) {
		g.Parents = append(g.Parents, parent.ID)
	}
	var old string
	if existed {
		old = cur.DN
	}
	if err := a.b.PutGroup(g); err != nil {
		s.log.Warn("sync: streamed group skipped", "dn", e.DN, "err", err)
		return
	}
	a.dnGroups[key] = id
	moved := 0 // members that joined or left
	if s.cfg.MembershipField != "memberOf" {
		a.forgetUnresolved(id)
		users, groups := map[string]bool{}, map[string]bool{}
		for _, v := range e.GetEqualFoldAttributeValues(s.cfg.MembershipField) {
			k := s.memberKey(v)
			if uid, ok := a.userByKey(k); ok {
				users[uid] = true
			} else if gid, ok := a.groupByKey(k); ok && s.cfg.MembershipField != "memberUid" && gid != id {
				groups[gid] = true
			} else {
				a.addUnresolved(k, id)
			}
		}
		moved = a.setMembers(id, users, groups)
	}
	if a.onlyChanged && moved == 0 && !a.b.GroupDiffers(id) {
		return
	}
	a.record(cache.KindGroups, a.op(existed, old, e.DN), e)
}

// remove deletes object id of kind, taking a group out of its members' lists.
//
// The groups it was in may still list its DN (or name): they are remembered as naming
// it, so that an object that takes that DN again (the same one back in scope, or a
// new one) joins them, as it would at a full read; a group's own change replaces what
// is remembered of it.
func (a *applier) remove(kind, id string) {
	s := a.s
	if kind == cache.KindUsers {
		if u, ok := a.b.User(id); ok {
			if s.cfg.MembershipField != "memberOf" {
				key := s.store.NormalizeDN(u.DN)
				if s.cfg.MembershipField == "memberUid" {
					key = strings.ToLower(u.Username)
				}
				for _, gid := range u.Groups {
					a.addUnresolved(key, gid)
				}
			}
			a.b.DeleteUser(id)
			a.record(kind, "delete", nil)
		}
		return
	}
	g, ok := a.b.Group(id)
	if !ok {
		return
	}
	if s.cfg.MembershipField != "memberOf" && s.cfg.MembershipField != "memberUid" {
		for _, pid := range g.Parents {
			if parent := s.parentGroup(); parent == nil || pid != parent.ID {
				a.addUnresolved(s.store.NormalizeDN(g.DN), pid)
			}
		}
	}
	a.setMembers(id, nil, nil)
	a.forgetUnresolved(id)
	a.b.DeleteGroup(id)
	a.record(kind, "delete", nil)
}

// setMembers makes users and groups the direct members of group gid, by changing the
// Groups of the users and the Parents of the groups that join or leave it, and returns
// how many joined or left.
func (a *applier) setMembers(gid string, users, groups map[string]bool) int {
	n := 0
	baseUsers, baseGroups := a.b.Base().Members(gid)
	curUsers, curGroups := setOf(baseUsers), setOf(baseGroups)
	a.b.PendingUsers(func(id string, u *cache.User) {
		curUsers[id] = u != nil && slices.Contains(u.Groups, gid)
	})
	a.b.PendingGroups(func(id string, g *cache.Group) {
		curGroups[id] = g != nil && slices.Contains(g.Parents, gid)
	})
	eachChange(curUsers, users, func(id string, in bool) {
		if u, ok := a.b.User(id); ok {
			u.Groups = toggle(u.Groups, gid, in)
			_ = a.b.PutUser(u) // a user read from the store or the batch is valid
			n++
		}
	})
	eachChange(curGroups, groups, func(id string, in bool) {
		if g, ok := a.b.Group(id); ok {
			g.Parents = toggle(g.Parents, gid, in)
			_ = a.b.PutGroup(g)
			n++
		}
	})
	return n
}

// eachChange calls fn with each ID whose membership differs between cur and want, and
// the membership it is to have.
func eachChange(cur, want map[string]bool, fn func(id string, in bool)) {
	for id, in := range cur {
		if in != want[id] {
			fn(id, want[id])
		}
	}
	for id, in := range want {
		if _, seen := cur[id]; !seen && in {
			fn(id, true)
		}
	}
}

func setOf(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// toggle adds id to list or takes it out.
func toggle(list []string, id string, in bool) []string {
	list = slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == id })
	if in {
		list = append(list, id)
	}
	return list
}

// userByKey finds the user a membership key names as the batch stands.
func (a *applier) userByKey(key string) (string, bool) {
	s := a.s
	if s.cfg.MembershipField == "memberUid" {
		id, ok := a.nameUsers[key]
		if !ok {
			u, found := a.b.Base().UserByUsername(key)
			if !found {
				return "", false
			}
			id = u.ID
		}
		cur, ok := a.b.User(id)
		return id, ok && strings.ToLower(cur.Username) == key
	}
	id, ok := a.dnUsers[key]
	if !ok {
		u, found := a.b.Base().UserByDN(key)
		if !found {
			return "", false
		}
		id = u.ID
	}
	cur, ok := a.b.User(id) // renamed or deleted in this batch?
	return id, ok && s.store.NormalizeDN(cur.DN) == key
}

// groupByKey finds the group a normalised DN names as the batch stands.
func (a *applier) groupByKey(key string) (string, bool) {
	id, ok := a.dnGroups[key]
	if !ok {
		g, found := a.b.Base().GroupByDN(key)
		if !found {
			return "", false
		}
		id = g.ID
	}
	cur, ok := a.b.Group(id)
	return id, ok && a.s.store.NormalizeDN(cur.DN) == key
}

func (a *applier) addUnresolved(key, gid string) {
	if a.unresolved[key] == nil {
		a.unresolved[key] = map[string]bool{}
	}
	a.unresolved[key][gid] = true
}

// takeUnresolved returns the groups that listed key before an object had it, which it
// has now, and forgets them.
func (a *applier) takeUnresolved(key string) []string {
	var ids []string
	for gid := range a.unresolved[key] {
		if _, ok := a.b.Group(gid); ok {
			ids = append(ids, gid)
		}
	}
	delete(a.unresolved, key)
	return ids
}

// forgetUnresolved drops what group gid listed unresolved: its new member list (or its
// deletion) replaces it.
func (a *applier) forgetUnresolved(gid string) {
	for key, groups := range a.unresolved {
		delete(groups, gid)
		if len(groups) == 0 {
			delete(a.unresolved, key)
		}
	}
}
