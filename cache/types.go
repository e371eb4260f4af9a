package cache

import "time"

// Object kinds, as passed to BeginSync and found in Status.Kind.
const (
	KindUsers  = "users"
	KindGroups = "groups"
)

// Results of a sync run, as found in Status.Result.
const (
	ResultRunning = "running"
	ResultSuccess = "success"
	ResultFailed  = "failed"
)

// MaxStatusErrors is how many error messages a Status keeps: the first ones,
// which are usually the cause of the rest.
const MaxStatusErrors = 20

// UPNAttribute is the attributes.* field that holds a user's userPrincipalName, or
// whatever user@realm name the directory logs users in with (the presets map AD's
// userPrincipalName and FreeIPA's krbPrincipalName to it). Bind names are looked up by
// it (Snapshot.UserByLoginName); a list of values counts each of them.
const UPNAttribute = "upn"

// Domain names the upstream's Active Directory domain, as a sync read it from the
// domain's crossRef object. The zero Domain: a directory that has none (OpenLDAP,
// FreeIPA), or none read yet.
type Domain struct {
	// NetBIOS is the domain's down-level name (nETBIOSName): EXAMPLE in EXAMPLE\alice.
	NetBIOS string `json:"netbios,omitempty"`
	// DNS is the domain's DNS name (dnsRoot): example.com in alice@example.com, the
	// implicit UPN AD accepts whatever the user's userPrincipalName.
	DNS string `json:"dns,omitempty"`
}

// User is a synced user, as mapped from its upstream entry. Objects returned
// by a Snapshot are shared by every reader and must not be modified.
type User struct {
	// ID is the uniqueness value in canonical string form (GUID or SID
	// string, entryUUID, ...): the identity that survives renames.
	ID string
	// DN is the upstream DN. A move or rename upstream changes it and keeps ID.
	DN string
	// Username is the login name; looked up case-insensitively.
	Username string
	// Name is the display name.
	Name string
	// Email is the mail address.
	Email string
	// IsActive is false for a disabled account.
	IsActive bool
	// Path is the DN under which the user appears in the served tree; empty
	// means the same as DN.
	Path string
	// Attributes are the mapped attributes.* fields. Values are string,
	// []string, bool, int64, float64 or time.Time; see PutUser for the
	// conversions applied on the way in.
	Attributes map[string]any
	// PasswordMarker is the upstream's password-change marker as last seen
	// (pwdLastSet, krbLastPwdChange, pwdChangedTime), so that a change can
	// be noticed by comparing two syncs.
	PasswordMarker string
	// Account is the account state the directory applies at login (locked,
	// expired, ...), for offline logins; see Account.
	Account Account
	// Groups are the IDs of the groups the user is a direct member of,
	// sorted. An ID with no group in the snapshot is to be skipped.
	Groups []string
	// Upstream is the entry's attributes as the upstream returned them: names as it
	// spells them, values byte for byte, in its order. The syncer leaves out secrets
	// and what sync.attributes / exclude_attributes exclude. Empty for users stored by
	// versions that did not keep them, until the next sync.
	Upstream []Attribute
}

// Attribute is one attribute of an upstream entry. Values are bytes in a string: binary
// values (objectGUID, jpegPhoto) are kept exactly.
type Attribute struct {
	Name   string
	Values []string
}

// Group is a synced group.
type Group struct {
	// ID is the uniqueness value in canonical string form.
	ID string
	// DN is the upstream DN.
	DN string
	// Name is the group's name (its cn).
	Name string
	// Attributes are the mapped attributes.* fields, typed as for User.
	Attributes map[string]any
	// Parents are the IDs of the groups this group is a direct member of
	// (nesting, and the sync parent group), sorted.
	Parents []string
	// Upstream is the group entry's attributes as the upstream returned them; see
	// User.Upstream.
	Upstream []Attribute
}

// Status describes one sync run of one object kind.
type Status struct {
	// Kind is KindUsers or KindGroups.
	Kind string `json:"kind"`
	// Started and Ended bound the run; Ended is zero while it runs.
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// Result is ResultRunning, ResultSuccess or ResultFailed.
	Result string `json:"result"`
	// Objects is how many objects the run stored (read and mapped).
	Objects int `json:"objects"`
	// Skipped is how many upstream entries the run left out (no uniqueness
	// value, a mapping error, ...).
	Skipped int `json:"skipped"`
	// Created, Updated and Deleted count the objects the commit wrote; the
	// store fills them in.
	Created int `json:"created"`
	Updated int `json:"updated"`
	Deleted int `json:"deleted"`
	// Mode is how the syncer keeps the store: "full", "syncrepl", "timestamp" or "usn" (see sync.mode);
	// empty in statuses written before it was recorded.
	Mode string `json:"mode,omitempty"`
	// Errors are the first MaxStatusErrors error messages of the run.
	Errors []string `json:"errors,omitempty"`
}
