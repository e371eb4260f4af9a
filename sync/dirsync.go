package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// cookieDirSync names dirsync mode's position in the store (JSON of dirsyncPosition).
const cookieDirSync = "dirsync"

// dirsyncGUIDsPerSearch is how many objectGUIDs one search of the changed objects names.
const dirsyncGUIDsPerSearch = 100

// dirsyncPosition is how far dirsync mode has applied a domain controller's changes: the
// DirSync cookie it returned, with the DC that returned it.
type dirsyncPosition struct {
	DC           string `json:"dc"`
	InvocationID string `json:"invocation_id"`
	Cookie       []byte `json:"cookie"`
}

// errCookieRefused is a poll's answer when the DC refuses the stored DirSync cookie:
// only a full read can start from there.
var errCookieRefused = errors.New("the domain controller refuses the stored DirSync cookie")

// storedDirSync is the position the store holds.
func (s *Syncer) storedDirSync() (dirsyncPosition, bool) {
	var p dirsyncPosition
	c := s.store.Cookie(cookieDirSync)
	if c == nil || json.Unmarshal(c, &p) != nil || p.DC == "" || len(p.Cookie) == 0 {
		return dirsyncPosition{}, false
	}
	return p, true
}

// dirsync runs one DirSync search (1.2.840.113556.1.4.841) of the naming context nc
// from cookie, page after page while the DC has more, and returns the objects changed
// (only their changed attributes, objectGUID and, deleted, isDeleted) and the cookie
// reached.
func dirsync(ctx context.Context, lc *ldap.Conn, nc, filter string, attrs []string, cookie []byte) ([]*ldap.Entry, []byte, error) {
	var entries []*ldap.Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		req := ldap.NewSearchRequest(nc, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
		res, err := lc.DirSync(req, 0, 0, cookie)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, res.Entries...)
		ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypeDirSync).(*ldap.ControlDirSync)
		if ctl == nil || len(ctl.Cookie) == 0 {
			return nil, nil, errors.New("the DirSync answer carries no cookie")
		}
		cookie = ctl.Cookie
		if ctl.Flags == 0 { // no more
			return entries, cookie, nil
		}
	}
}

// dirsyncPositionNow reads the DC's current position for a full read, committed with
// it: a DirSync search from no cookie whose filter matches nothing, which returns the
// cookie of the DC's present state and no object.
func (s *Syncer) dirsyncPositionNow(ctx context.Context) ([]byte, error) {
	var p dirsyncPosition
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		u, err := readPosition(lc)
		if err != nil {
			return err
		}
		p.DC, p.InvocationID = u.DC, u.InvocationID
		_, p.Cookie, err = dirsync(ctx, lc, u.nc, "(objectGUID=\\00)", []string{"objectGUID"}, nil)
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			return fmt.Errorf("DirSync (the service account needs the Replicating Directory Changes right on %s): %w", u.nc, err)
		}
		if err != nil {
			return fmt.Errorf("DirSync: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return json.Marshal(p)
}

// pollDirSync asks the DC of the stored position, with one DirSync search of the
// naming context from the stored cookie, which objects changed; it reads those that are
// not deleted again whole (readChanged, by objectGUID: users and groups in scope are
// applied, those out of it removed) and removes the deleted ones, the last batch
// committed with the cookie reached (an answer naming no object writes nothing). Another DC or invocationId → errOtherDC; a cookie
// the DC refuses → errCookieRefused.
func (st *stream) pollDirSync(ctx context.Context) error {
	s := st.s
	stored, _ := s.storedDirSync()
	next := stored
	none := false
	ch := &changed{entries: map[string][]*ldap.Entry{}, gone: map[string][]string{}}
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		pos, err := readPosition(lc)
		if err != nil {
			return err
		}
		if pos.DC != stored.DC || pos.InvocationID != stored.InvocationID {
			return fmt.Errorf("%w: %s (invocationId %s), stored %s (invocationId %s)", errOtherDC, pos.DC, pos.InvocationID, stored.DC, stored.InvocationID)
		}
		entries, cookie, err := dirsync(ctx, lc, pos.nc, "(objectClass=*)", nil, stored.Cookie)
		if err != nil {
			var le *ldap.Error
			if ctx.Err() == nil && errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
				return fmt.Errorf("%w: %v", errCookieRefused, err)
			}
			return fmt.Errorf("DirSync: %w", err)
		}
		// An answer that names no object leaves the stored cookie: it reads the same
		// changes from there (the DC's cookie differs only by the time it was made), and
		// an idle poll writes nothing.
		if none = len(entries) == 0; none {
			return nil
		}
		next.Cookie = cookie
		var guids [][]byte
		seen := map[string]bool{}
		for _, e := range entries {
			guid := e.GetRawAttributeValue("objectGUID")
			if len(guid) == 0 || seen[string(guid)] {
				continue
			}
			seen[string(guid)] = true
			if strings.EqualFold(e.GetAttributeValue("isDeleted"), "TRUE") {
				if id, err := s.uniqueness(entryOf(e)); err == nil {
					ch.deleted = append(ch.deleted, id)
				}
				continue
			}
			guids = append(guids, guid)
		}
		for len(guids) > 0 {
			n := min(len(guids), dirsyncGUIDsPerSearch)
			var clause strings.Builder
			clause.WriteString("(|")
			for _, g := range guids[:n] {
				clause.WriteString("(objectGUID=")
				for _, b := range g {
					fmt.Fprintf(&clause, "\\%02x", b)
				}
				clause.WriteString(")")
			}
			clause.WriteString(")")
			part, err := st.readChanged(ctx, lc, clause.String(), pos.nc)
			if err != nil {
				return err
			}
			for kind, es := range part.entries {
				ch.entries[kind] = append(ch.entries[kind], es...)
			}
			for kind, ids := range part.gone {
				ch.gone[kind] = append(ch.gone[kind], ids...)
			}
			guids = guids[n:]
		}
		return nil
	})
	if err != nil {
		return err
	}
	if none {
		return nil
	}
	c, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return st.applyChanged(ch, cookieDirSync, c)
}
