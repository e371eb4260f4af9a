package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapproxy/ldapproxy/cache"
	"github.com/ldapproxy/ldapproxy/mapping"
	"github.com/ldapproxy/ldapproxy/upstream"
)

// Syncer runs syncs. One run reads the groups first (they are few, and held in memory to
// resolve memberships), then streams the users page by page, writing each to the store
// as it is mapped, so memory does not grow with the number of users.
type Syncer struct {
	cfg    Config
	base   string
	pool   *upstream.Pool
	store  *cache.Store
	users  *mapping.Set
	groups *mapping.Set
	log    *slog.Logger
	m      *metrics
	marker []string
	// keep decides which upstream attributes an object keeps; keepExtra, an entry of
	// an extra set (sync.attributes does not limit those).
	keep, keepExtra keeper
	// confidential are the upstream's confidential attributes, which both keepers drop.
	confidential *confidentialSet
	// modeInUse is the mode Loop chose (sync.mode auto resolved); nil before.
	modeInUse atomic.Pointer[string]
	// clock follows the upstream's clock for timestamp mode (Loop's goroutine only).
	clock upstreamClock
}

// New compiles the mappings and prepares a syncer. A mapping that does not compile is
// an error naming it and the position of the error. store may be nil for a syncer that
// only previews (Preview reads the upstream only): Run then fails.
func New(cfg Config, pool *upstream.Pool, store *cache.Store, log *slog.Logger, reg prometheus.Registerer) (*Syncer, error) {
	users, err := mapping.Compile(cfg.Preset, mapping.Users, cfg.Mappings.Users)
	if err != nil {
		return nil, err
	}
	groups, err := mapping.Compile(cfg.Preset, mapping.Groups, cfg.Mappings.Groups)
	if err != nil {
		return nil, err
	}
	conf := &confidentialSet{}
	keep, keepExtra := newKeeper(&cfg), newKeeper(&Config{ExcludeAttributes: cfg.ExcludeAttributes})
	keep.confidential, keepExtra.confidential = conf, conf
	return &Syncer{
		cfg: cfg, base: pool.BaseDN(), pool: pool, store: store, users: users, groups: groups,
		log: log, m: newMetrics(reg), marker: presets[cfg.Preset].passwordMarker,
		keep: keep, keepExtra: keepExtra, confidential: conf,
	}, nil
}

// group is one upstream group while a run resolves memberships.
type group struct {
	obj     *cache.Group
	members []string // raw membership values: DNs, or user names for memberUid
	// memberOf are the group's own memberOf DNs, which say how groups nest when
	// membership_field is memberOf.
	memberOf []string
	// version is the entry's version as read (entryVersion); "" when it has none.
	version string
}

// run is the state of one sync run.
type run struct {
	s *Syncer
	w *cache.Sync
	// groupsByDN maps normalised group DNs to IDs.
	groupsByDN map[string]string
	groups     []*group
	// memberOf maps a normalised member DN (memberUid: a lowercase user name) to the
	// IDs of the groups that list it.
	memberOf map[string][]string
	// seen are the keys of memberOf that a user read in this run has.
	seen map[string]bool
	// clock follows the upstream's clock through the modifyTimestamps read;
	// groupsStart is when the group read began: the re-read of the groups that changed
	// during the run starts at the upstream's time then.
	clock       upstreamClock
	groupsStart time.Time
	status      map[string]*cache.Status
	// expect is how many entries of each kind the last successful sync read, for
	// progress lines ("users 40,000 of ~100,000").
	expect map[string]int
	// attrs is the map entry converts entries into, reused.
	attrs map[string][]string
}

// A long read logs how far it got every progressEntries entries or progressEvery,
// whichever comes first (variables for the tests).
var (
	progressEvery   = 10 * time.Second
	progressEntries = 10000
)

// progress logs a long read's advance: every progressEntries entries or progressEvery,
// whichever comes first, with the total the last sync found.
type progress struct {
	log    *slog.Logger
	kind   string
	expect int
	start  time.Time
	last   time.Time
	n      int
}

func (r *run) progress(kind string) *progress {
	now := time.Now()
	return &progress{log: r.s.log, kind: kind, expect: r.expect[kind], start: now, last: now}
}

func (p *progress) add() {
	p.n++
	if p.n%progressEntries != 0 && (p.n%256 != 0 || time.Since(p.last) < progressEvery) {
		return
	}
	p.last = time.Now()
	msg := fmt.Sprintf("sync: %s %s read", p.kind, thousands(p.n))
	args := []any{"kind", p.kind, "read", p.n, "elapsed", time.Since(p.start).Round(time.Second)}
	if p.expect > 0 {
		msg = fmt.Sprintf("sync: %s %s of ~%s read", p.kind, thousands(p.n), thousands(p.expect))
		args = append(args, "expected", p.expect)
	}
	p.log.Info(msg, args...)
}

// thousands writes n with comma separators: 40,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Variables for the tests.
var (
	// afterGroupsRead, when set, is called by a full read between reading the groups
	// and reading the users.
	afterGroupsRead func()
	// repairByTime turns on the re-read of the groups changed during a full read.
	repairByTime = true
)

// Run performs one complete sync and commits it; on any error nothing is committed.
func (s *Syncer) Run(ctx context.Context) error { return s.runFull(ctx, nil, false) }

// runFull is Run, committing cookies (change-stream positions taken before the read
// began) with the data, and with mark timestamp mode's high-water mark as the read
// leaves it. A read of many objects leaves about as much garbage as it read (the
// entries as the upstream sent them, what was mapped of them), which the collector
// reclaims but the runtime hands back to the system only slowly: under a container's
// memory limit it squeezed out the pages of the files that the proxy serves from. In a
// 224 MiB cgroup at 100,000 users, anonymous memory after a start's sync went from 138
// to 66 MiB with this, and the logins served from 425 to 1,231 a second
// (scripts/bench-sidecar.sh). So it is handed back at once.
func (s *Syncer) runFull(ctx context.Context, cookies map[string][]byte, mark bool) error {
	read, err := s.readFull(ctx, cookies, mark)
	if read >= releaseAfterRead {
		releaseGarbage()
	}
	return err
}

// releaseAfterRead is the number of objects from which a full read hands its garbage
// back (releaseGarbage) when it ends, whether it committed or not.
var releaseAfterRead = 10000

// releaseGarbage collects and returns the freed memory to the system (a variable for
// the tests).
var releaseGarbage = debug.FreeOSMemory

// readFull is runFull but for the garbage; it returns the number of objects read.
func (s *Syncer) readFull(ctx context.Context, cookies map[string][]byte, mark bool) (read int, err error) {
	var kinds []string
	if s.cfg.Groups {
		kinds = append(kinds, cache.KindGroups)
	}
	if s.cfg.Users {
		kinds = append(kinds, cache.KindUsers)
	}
	if len(kinds) == 0 {
		return 0, errors.New("sync: both users and groups are turned off")
	}
	if s.store == nil {
		return 0, errors.New("sync: no store")
	}
	expect := map[string]int{}
	for _, st := range s.store.Status() {
		if st.Result == cache.ResultSuccess {
			expect[st.Kind] = st.Objects + st.Skipped
		}
	}
	w, err := s.store.BeginSync(kinds...)
	if err != nil {
		return 0, fmt.Errorf("sync: %w", err)
	}
	defer w.Abort() // after a successful Commit, Abort does nothing
	r := &run{s: s, w: w, groupsByDN: map[string]string{}, memberOf: map[string][]string{}, seen: map[string]bool{},
		status: map[string]*cache.Status{}, expect: expect}
	defer func() { read = r.objects() }()
	for _, k := range kinds {
		r.status[k] = &cache.Status{Kind: k, Started: time.Now(), Result: cache.ResultRunning}
	}
	start := time.Now()
	s.log.Info("sync started", "users", s.cfg.Users, "groups", s.cfg.Groups)

	if err := r.readDomain(ctx); err != nil {
		return 0, r.fail(kinds[0], err)
	}
	s.readConfidential(ctx)
	if err := r.readSchema(ctx); err != nil {
		return 0, r.fail(kinds[0], err)
	}

	// Groups are read even when only users are synced with member-style membership:
	// the membership lists live on the groups.
	if s.cfg.Groups || s.cfg.MembershipField != "memberOf" {
		if err := r.readGroups(ctx); err != nil {
			return 0, r.fail(cache.KindGroups, err)
		}
	}
	if afterGroupsRead != nil {
		afterGroupsRead()
	}
	if s.cfg.Users {
		if err := r.readUsers(ctx); err != nil {
			return 0, r.fail(cache.KindUsers, err)
		}
		if err := r.repair(ctx); err != nil {
			return 0, r.fail(cache.KindGroups, err)
		}
	}
	if s.cfg.Groups {
		if err := r.putGroups(); err != nil {
			return 0, r.fail(cache.KindGroups, err)
		}
	}
	if err := r.readExtra(ctx); err != nil {
		return 0, r.fail(kinds[0], err)
	}
	for _, st := range r.status {
		st.Ended, st.Result, st.Mode = time.Now(), cache.ResultSuccess, s.mode()
		w.SetStatus(*st)
	}
	for name, c := range cookies {
		w.SetCookie(name, c)
	}
	if mark {
		r.setMark(start)
	}
	if err := ctx.Err(); err != nil { // stopped: what was read may be partial
		return 0, r.fail(kinds[0], err)
	}
	if err := w.Commit(); err != nil {
		r.record(cache.ResultFailed, start)
		return 0, fmt.Errorf("sync: %w", err)
	}
	r.record(cache.ResultSuccess, start)
	for _, st := range s.store.Status() {
		s.log.Info("sync finished", "kind", st.Kind, "objects", st.Objects, "skipped", st.Skipped,
			"created", st.Created, "updated", st.Updated, "deleted", st.Deleted, "duration", time.Since(start).Round(time.Millisecond))
	}
	return 0, nil
}

// objects is the number of objects the run has read so far, kept or skipped.
func (r *run) objects() int {
	n := 0
	for _, st := range r.status {
		n += st.Objects + st.Skipped
	}
	return n
}

// fail records err on kind's status, or on the run's kinds when kind is not one of
// them (groups read only for the users' memberships), and gives it back; the deferred
// Abort saves it.
func (r *run) fail(kind string, err error) error {
	for k, st := range r.status {
		if k == kind || r.status[kind] == nil {
			st.Ended, st.Result = time.Now(), cache.ResultFailed
			st.Errors = append(st.Errors, err.Error())
			r.w.SetStatus(*st)
		}
	}
	r.record(cache.ResultFailed, time.Time{})
	return fmt.Errorf("sync %s: %w", kind, err)
}

func (r *run) record(result string, start time.Time) {
	for kind, st := range r.status {
		n := st.Objects
		r.s.m.observe(kind, result, start, n)
	}
}

// skip counts an entry left out of the run, logging why.
func (r *run) skip(kind, dn string, err error) {
	st := r.status[kind]
	if st == nil {
		return
	}
	st.Skipped++
	if len(st.Errors) < cache.MaxStatusErrors {
		st.Errors = append(st.Errors, fmt.Sprintf("%s: %v", dn, err))
	}
	r.s.log.Warn("sync: entry skipped", "kind", kind, "dn", dn, "err", err)
}

// mapEntry takes an entry's identity and maps it; an entry without an identity or that
// the mappings fail on is skipped and counted.
func (r *run) mapEntry(kind string, set *mapping.Set, e *ldap.Entry) (string, *mapping.Object, bool) {
	id, err := r.s.identity(e)
	if err == nil {
		var obj *mapping.Object
		if obj, err = set.Map(r.entry(e)); err == nil {
			return id, obj, true
		}
	}
	r.skip(kind, e.DN, err)
	return "", nil, false
}

// entry is entryOf(e) in a map the run reuses from entry to entry (the mappings keep
// no reference to it): mapEntry is called by one goroutine at a time.
func (r *run) entry(e *ldap.Entry) mapping.Entry {
	if r.attrs == nil {
		r.attrs = make(map[string][]string, len(e.Attributes))
	} else {
		clear(r.attrs)
	}
	for _, a := range e.Attributes {
		r.attrs[a.Name] = values(a)
	}
	return mapping.Entry{DN: e.DN, Attributes: r.attrs}
}

// readDomain records the upstream's domain names, which down-level (EXAMPLE\alice) and
// implicit-UPN (alice@example.com) bind names carry. A failure to read them does not
// fail the run: the store keeps the names it has, and only a cancelled run stops here.
func (r *run) readDomain(ctx context.Context) error {
	d, err := r.s.domain(ctx)
	stored := r.s.store.Snapshot().Domain()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.s.log.Warn("sync: cannot read the upstream's domain names; keeping the last ones read",
			"err", err, "netbios_domain", stored.NetBIOS, "dns_domain", stored.DNS)
		return nil
	}
	if d != stored {
		r.s.log.Info("sync: the upstream's domain names", "netbios_domain", d.NetBIOS, "dns_domain", d.DNS)
	}
	r.w.SetDomain(d)
	return nil
}

// domain reads the upstream's domain names. Active Directory keeps them on the domain's
// crossRef object (nETBIOSName, dnsRoot), in CN=Partitions of the configuration naming
// context that the root DSE names (configurationNamingContext); the domain is the one
// whose naming context (nCName) holds the base DN — the deepest one, for a child domain.
// A directory whose root DSE names no configuration naming context (OpenLDAP, FreeIPA)
// has none: the zero Domain.
func (s *Syncer) domain(ctx context.Context) (cache.Domain, error) {
	var d cache.Domain
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		d = cache.Domain{}
		res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{"configurationNamingContext"}, nil))
		if err != nil {
			return fmt.Errorf("read the root DSE: %w", err)
		}
		var config string
		for _, e := range res.Entries {
			config = e.GetAttributeValue("configurationNamingContext")
		}
		if config == "" {
			return nil
		}
		partitions := "CN=Partitions," + config
		res, err = lc.Search(ldap.NewSearchRequest(partitions, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
			"(&(objectClass=crossRef)(nETBIOSName=*))", []string{"nCName", "nETBIOSName", "dnsRoot"}, nil))
		if err != nil {
			return fmt.Errorf("read the domains in %s: %w", partitions, err)
		}
		base, depth := s.store.NormalizeDN(s.base), -1
		for _, e := range res.Entries {
			nc := s.store.NormalizeDN(e.GetAttributeValue("nCName"))
			if nc == "" || base != nc && !strings.HasSuffix(base, ","+nc) {
				continue
			}
			if n := strings.Count(nc, ","); n > depth {
				d, depth = cache.Domain{NetBIOS: e.GetAttributeValue("nETBIOSName"), DNS: e.GetAttributeValue("dnsRoot")}, n
			}
		}
		return nil
	})
	return d, err
}

// readAll are the attributes every object is read with: all user attributes, and the
// operational ones when every attribute is kept. Active Directory returns its own
// (objectGUID, whenChanged, memberOf, ...) for "*" and does not know "+" (RFC 3673):
// its constructed timestamps are asked for by name.
func (s *Syncer) readAll(k keeper) []string {
	switch {
	case !k.all:
		return []string{"*"}
	case s.cfg.Preset == "active-directory":
		return []string{"*", "createTimestamp", "modifyTimestamp"}
	}
	return []string{"*", "+"}
}

// groupAttributes are the attributes a group is read with (modifyTimestamp and the
// version, for the re-reads by time).
func (s *Syncer) groupAttributes() []string {
	attrs := append(s.readAll(s.keep), s.cfg.UniquenessField, "modifyTimestamp")
	attrs = append(attrs, versionAttributes...)
	attrs = append(attrs, s.groups.Attributes()...)
	if s.cfg.MembershipField == "memberOf" {
		attrs = append(attrs, "memberOf") // operational in OpenLDAP: not part of "*"
	}
	return attrs
}

// userAttributes are the attributes a user is read with.
func (s *Syncer) userAttributes() []string {
	attrs := append(s.readAll(s.keep), s.cfg.UniquenessField, "modifyTimestamp")
	attrs = append(attrs, s.users.Attributes()...)
	attrs = append(attrs, s.marker...)
	attrs = append(attrs, accountAttributes...)
	if s.cfg.MembershipField == "memberOf" {
		attrs = append(attrs, "memberOf")
	}
	return attrs
}

// parentGroup is the group every synced group is a member of (parent_group), or nil.
func (s *Syncer) parentGroup() *cache.Group {
	if s.cfg.ParentGroup == "" {
		return nil
	}
	return &cache.Group{
		ID:   "parent-group:" + strings.ToLower(s.cfg.ParentGroup),
		DN:   "cn=" + ldap.EscapeDN(s.cfg.ParentGroup) + "," + join(s.cfg.GroupDN, s.base),
		Name: s.cfg.ParentGroup,
	}
}

// readGroups reads every group into memory and indexes the membership values.
func (r *run) readGroups(ctx context.Context) error {
	s := r.s
	prog := r.progress(cache.KindGroups)
	r.groupsStart = time.Now()
	// Most users are some group's members: the last run's count sizes the index.
	r.memberOf = make(map[string][]string, r.expect[cache.KindUsers])
	defer func() { r.seen = make(map[string]bool, len(r.memberOf)) }()
	return s.search(ctx, "groups", join(s.cfg.GroupDN, s.base), s.cfg.GroupFilter, s.groupAttributes(), func(e *ldap.Entry) error {
		prog.add()
		g, err := r.readGroup(ctx, nil, e)
		if g == nil || err != nil {
			return err
		}
		r.groups = append(r.groups, g)
		r.groupsByDN[r.s.store.NormalizeDN(e.DN)] = g.obj.ID
		for _, m := range g.members {
			key := r.s.memberKey(m)
			r.memberOf[key] = append(r.memberOf[key], g.obj.ID)
		}
		return nil
	})
}

// readGroup maps a group entry and reads its membership values; nil for an entry
// skipped. It notes the entry's modifyTimestamp.
func (r *run) readGroup(ctx context.Context, lc *ldap.Conn, e *ldap.Entry) (*group, error) {
	s := r.s
	r.stamp(e)
	id, obj, ok := r.mapEntry(cache.KindGroups, s.groups, e)
	if !ok {
		return nil, nil
	}
	var err error
	g := &group{obj: s.newGroup(e, id, obj), version: entryVersion(e)}
	if s.cfg.MembershipField != "memberOf" {
		if g.members, err = s.membershipValues(ctx, nil, e); err != nil {
			return nil, err
		}
	} else {
		g.memberOf = e.GetAttributeValues("memberOf")
	}
	return g, nil
}

// memberKey turns a membership value into the key of memberOf: a normalised DN, or a
// lowercase user name for memberUid. uniqueMember values may carry an optional
// "#'0101'B" unique identifier, which is not part of the DN.
func (s *Syncer) memberKey(v string) string {
	switch s.cfg.MembershipField {
	case "memberUid":
		return strings.ToLower(v)
	case "uniqueMember":
		if i := strings.LastIndex(v, "#'"); i > 0 && strings.HasSuffix(v, "'B") {
			v = v[:i]
		}
	}
	return s.store.NormalizeDN(v)
}

// putGroups resolves each group's parents and writes the groups.
func (r *run) putGroups() error {
	s := r.s
	parent := s.parentGroup()
	if parent != nil {
		if _, clash := r.groupsByDN[r.s.store.NormalizeDN(parent.DN)]; clash {
			return fmt.Errorf("parent_group %q: an upstream group already has the DN %s; choose another name", s.cfg.ParentGroup, parent.DN)
		}
	}
	for _, g := range r.groups {
		parents := r.memberOf[r.s.store.NormalizeDN(g.obj.DN)]
		switch s.cfg.MembershipField {
		case "memberUid":
			parents = nil // memberUid lists user names: groups cannot nest that way
		case "memberOf":
			for _, dn := range g.memberOf {
				if id, ok := r.groupsByDN[r.s.store.NormalizeDN(dn)]; ok {
					parents = append(parents, id)
				}
			}
		}
		g.obj.Parents = append([]string(nil), parents...)
		if parent != nil {
			g.obj.Parents = append(g.obj.Parents, parent.ID)
		}
		if err := r.w.PutGroup(g.obj); err != nil {
			return err
		}
		r.status[cache.KindGroups].Objects++
	}
	if parent != nil {
		if err := r.w.PutGroup(parent); err != nil {
			return err
		}
		r.status[cache.KindGroups].Objects++
	}
	return nil
}

// readUsers streams the users into the store.
func (r *run) readUsers(ctx context.Context) error {
	s := r.s
	prog := r.progress(cache.KindUsers)
	return s.search(ctx, "users", join(s.cfg.UserDN, s.base), s.cfg.UserFilter, s.userAttributes(), func(e *ldap.Entry) error {
		prog.add()
		r.stamp(e)
		id, obj, ok := r.mapEntry(cache.KindUsers, s.users, e)
		if !ok {
			return nil
		}
		key := s.store.NormalizeDN(e.DN) // e.DN is a string of its own
		if s.cfg.MembershipField == "memberUid" {
			key = strings.ToLower(obj.Username)
		}
		if _, listed := r.memberOf[key]; listed {
			if s.cfg.MembershipField == "memberUid" {
				key = strings.Clone(key) // not a slice of the entry's memory
			}
			r.seen[key] = true
		}
		u := s.newUser(e, id, obj, r.userGroups(e, obj.Username))
		if err := r.w.PutUser(u); err != nil {
			return err
		}
		r.status[cache.KindUsers].Objects++
		return nil
	})
}

// newUser makes the stored user of the upstream entry e, whose identity is id, as the
// mappings made obj, directly in the groups groups.
func (s *Syncer) newUser(e *ldap.Entry, id string, obj *mapping.Object, groups []string) *cache.User {
	u := &cache.User{
		ID: id, DN: e.DN, Username: obj.Username, Name: obj.Name, Email: obj.Email,
		IsActive: obj.IsActive, Attributes: obj.Attributes, Groups: groups, Upstream: s.keep.upstream(e),
	}
	if s.cfg.UserPath != "" {
		u.Path = strings.NewReplacer("{username}", ldap.EscapeDN(obj.Username), "{base_dn}", s.base).Replace(s.cfg.UserPath)
	}
	for _, a := range s.marker {
		if v := e.GetAttributeValue(a); v != "" {
			u.PasswordMarker = a + ":" + v
			break
		}
	}
	var err error
	if u.Account, err = accountState(e); err != nil {
		s.log.Warn("sync: a user's account state cannot be read; its offline logins are refused", "dn", e.DN, "err", err)
	}
	return u
}

// newGroup makes the stored group of the upstream entry e, whose identity is id, as the
// mappings made obj; its parents are the caller's to resolve.
func (s *Syncer) newGroup(e *ldap.Entry, id string, obj *mapping.Object) *cache.Group {
	return &cache.Group{ID: id, DN: e.DN, Name: obj.Name, Attributes: obj.Attributes, Upstream: s.keep.upstream(e)}
}

// userGroups returns the IDs of the groups a user is directly in.
func (r *run) userGroups(e *ldap.Entry, username string) []string {
	var ids []string
	switch r.s.cfg.MembershipField {
	case "memberOf":
		for _, dn := range e.GetAttributeValues("memberOf") {
			if id, ok := r.groupsByDN[r.s.store.NormalizeDN(dn)]; ok {
				ids = append(ids, id)
			}
		}
	case "memberUid":
		ids = r.memberOf[strings.ToLower(username)]
	default:
		ids = r.memberOf[r.s.store.NormalizeDN(e.DN)]
	}
	if len(ids) == 0 {
		return nil
	}
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

// uniqueness returns the object's identity in canonical string form.
func (s *Syncer) uniqueness(e mapping.Entry) (string, error) {
	field := s.cfg.UniquenessField
	var raw string
	for name, vals := range e.Attributes {
		if strings.EqualFold(name, field) && len(vals) > 0 {
			raw = vals[0]
			break
		}
	}
	return s.canonicalID(raw)
}

// identity is uniqueness of the entry itself, without converting it for the mappings.
func (s *Syncer) identity(e *ldap.Entry) (string, error) {
	field := s.cfg.UniquenessField
	var raw string
	for _, a := range e.Attributes {
		if !strings.EqualFold(a.Name, field) {
			continue
		}
		if vals := values(a); len(vals) > 0 {
			raw = vals[0]
			break
		}
	}
	return s.canonicalID(raw)
}

// canonicalID turns the first value of the uniqueness field (empty: none) into the
// object's identity.
func (s *Syncer) canonicalID(raw string) (string, error) {
	field := s.cfg.UniquenessField
	if raw == "" {
		return "", fmt.Errorf("no %s: the object has no identity and is left out", field)
	}
	switch field {
	case "objectGUID":
		return mapping.GUIDString(raw)
	case "objectSid":
		return mapping.SIDString(raw)
	}
	// The value may share the memory of the whole entry it came in: the store keeps a
	// copy of the ID, and a run keeps the IDs of groups only, whose entries it keeps.
	return strings.ToLower(raw), nil
}

// entryOf converts a go-ldap entry for the mappings, keeping binary values intact. The
// values are the entry's own strings (go-ldap's and decodeEntry's Values hold the bytes
// of ByteValues), not copies.
func entryOf(e *ldap.Entry) mapping.Entry {
	out := mapping.Entry{DN: e.DN, Attributes: make(map[string][]string, len(e.Attributes))}
	for _, a := range e.Attributes {
		out.Attributes[a.Name] = values(a)
	}
	return out
}

// values are the values of a as strings, byte for byte: a.Values, which go-ldap fills
// from the same bytes as a.ByteValues and decodeEntry alone, unless a holds only
// ByteValues.
func values(a *ldap.EntryAttribute) []string {
	if len(a.Values) == len(a.ByteValues) || len(a.ByteValues) == 0 {
		return a.Values
	}
	vals := make([]string, len(a.ByteValues))
	for i, v := range a.ByteValues {
		vals[i] = string(v)
	}
	return vals
}

// search runs a paged subtree search as the service account and calls fn for each entry,
// page by page (pagedSearch). Search result references (AD's referrals to other domains)
// are skipped. A search that breaks after the first entry fails: entries passed to fn
// cannot be taken back.
func (s *Syncer) search(ctx context.Context, what, base, filter string, attrs []string, fn func(*ldap.Entry) error) error {
	return s.pagedSearch(ctx, what, base, ldap.ScopeWholeSubtree, filter, dedupe(attrs), fn)
}

// membershipValues returns a group's membership values, following Active Directory's
// range retrieval: a group of more than 1500 members (by default) comes back with
// member;range=0-1499 and the rest must be asked for, range by range, on lc or, when it
// is nil, on a service connection of the pool.
func (s *Syncer) membershipValues(ctx context.Context, lc *ldap.Conn, e *ldap.Entry) ([]string, error) {
	field := s.cfg.MembershipField
	var vals []string
	next := -1
	for _, a := range e.Attributes {
		name, opts, _ := strings.Cut(a.Name, ";")
		if !strings.EqualFold(name, field) {
			continue
		}
		vals = append(vals, a.Values...)
		if hi, ok := rangeEnd(opts); ok {
			next = hi + 1
		}
	}
	for next > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		attr := fmt.Sprintf("%s;range=%d-*", field, next)
		req := ldap.NewSearchRequest(e.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
			"(objectClass=*)", []string{attr}, nil)
		var res *ldap.SearchResult
		var err error
		if lc != nil {
			res, err = lc.Search(req)
		} else { // a full read's entries come over a raw connection: another one asks
			err = s.pool.WithService(ctx, "sync member range", func(c *ldap.Conn) error {
				res, err = c.Search(req)
				return err
			})
		}
		if err != nil {
			return nil, fmt.Errorf("range retrieval of %s on %s: %w", attr, e.DN, err)
		}
		asked := next
		next = -1
		for _, re := range res.Entries {
			for _, a := range re.Attributes {
				name, opts, _ := strings.Cut(a.Name, ";")
				if !strings.EqualFold(name, field) {
					continue
				}
				vals = append(vals, a.Values...)
				if hi, ok := rangeEnd(opts); ok {
					next = hi + 1
				}
			}
		}
		if next > 0 && next <= asked {
			// A server that answers a range below the one asked for would keep us here.
			return nil, fmt.Errorf("range retrieval on %s: asked for values from %d, got a range ending at %d", e.DN, asked, next-1)
		}
	}
	return vals, nil
}

// rangeEnd reads "range=1500-2999" and reports the upper bound; "range=3000-*" (the last
// range) and no range report false.
func rangeEnd(opts string) (int, bool) {
	for _, o := range strings.Split(opts, ";") {
		r, ok := strings.CutPrefix(strings.ToLower(o), "range=")
		if !ok {
			continue
		}
		_, hi, ok := strings.Cut(r, "-")
		if !ok || hi == "*" {
			return 0, false
		}
		n, err := strconv.Atoi(hi)
		return n, err == nil
	}
	return 0, false
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0:0]
	for _, a := range list {
		k := strings.ToLower(a)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}
