package sync

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-ldap/ldap/v3"
)

// cookieUSN names usn mode's position in the store (JSON of usnPosition).
const cookieUSN = "usn"

// controlShowDeleted is Active Directory's show-deleted control: a search returns
// tombstones (isDeleted=TRUE), which keep objectGUID and objectSid.
const controlShowDeleted = "1.2.840.113556.1.4.417"

// usnPosition is how far usn mode has applied one domain controller's changes: every
// change of the DC up to USN. uSNChanged numbers are the DC's own: another DC (another
// dsServiceName), or the same restored from a backup (another invocationId), numbers
// differently, and a position of one is meaningless on the other.
type usnPosition struct {
	DC           string `json:"dc"`
	InvocationID string `json:"invocation_id"`
	USN          int64  `json:"usn"`
	// nc is the domain's naming context (defaultNamingContext), which holds its
	// Deleted Objects container.
	nc string
}

func (p usnPosition) sameDC(q usnPosition) bool {
	return p.DC == q.DC && p.InvocationID == q.InvocationID
}

// errOtherDC is a poll's answer when the DC it reached is not the one of the stored
// position: only a full read can start from there.
var errOtherDC = errors.New("the domain controller is not the one of the stored position")

// readPosition reads the position of the DC lc is connected to: its highestCommittedUSN,
// dsServiceName (root DSE) and the invocationId on that NTDS Settings object.
func readPosition(lc *ldap.Conn) (usnPosition, error) {
	var p usnPosition
	res, err := lc.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"highestCommittedUSN", "dsServiceName", "defaultNamingContext"}, nil))
	if err != nil {
		return p, fmt.Errorf("read the root DSE: %w", err)
	}
	for _, e := range res.Entries {
		p.DC, p.nc = e.GetAttributeValue("dsServiceName"), e.GetAttributeValue("defaultNamingContext")
		if p.USN, err = strconv.ParseInt(e.GetAttributeValue("highestCommittedUSN"), 10, 64); err != nil {
			return p, fmt.Errorf("the root DSE's highestCommittedUSN %q: not Active Directory's? %w", e.GetAttributeValue("highestCommittedUSN"), err)
		}
	}
	if p.DC == "" {
		return p, errors.New("the root DSE names no dsServiceName: not Active Directory?")
	}
	res, err = lc.Search(ldap.NewSearchRequest(p.DC, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"invocationId"}, nil))
	if err != nil {
		return p, fmt.Errorf("read the invocationId of %s: %w", p.DC, err)
	}
	for _, e := range res.Entries {
		p.InvocationID = hex.EncodeToString(e.GetRawAttributeValue("invocationId"))
	}
	if p.InvocationID == "" {
		return p, fmt.Errorf("%s has no invocationId", p.DC)
	}
	return p, nil
}

// storedPosition is the position the store holds.
func (s *Syncer) storedPosition() (usnPosition, bool) {
	var p usnPosition
	c := s.store.Cookie(cookieUSN)
	if c == nil || json.Unmarshal(c, &p) != nil || p.DC == "" {
		return usnPosition{}, false
	}
	return p, true
}

// position reads the current position of a DC for a full read, committed with it: the
// polls that follow read what changed on that DC during and after the read.
func (s *Syncer) usnPosition(ctx context.Context) ([]byte, error) {
	var p usnPosition
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		var err error
		p, err = readPosition(lc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	return json.Marshal(p)
}

// pollUSN reads the objects whose uSNChanged is above the stored position's USN, on the
// DC of that position, and the tombstones of the objects deleted since (when the service
// account may see them; else deletions wait for the reconciliation), and applies them
// (applyChanged), the last batch committed with the DC's highestCommittedUSN read before
// the searches.
// A DC with nothing new costs one read of the root DSE and one of its NTDS Settings.
func (st *stream) pollUSN(ctx context.Context) error {
	s := st.s
	stored, _ := s.storedPosition()
	var pos usnPosition
	var ch *changed
	err := s.pool.WithService(ctx, "sync", func(lc *ldap.Conn) error {
		var err error
		if pos, err = readPosition(lc); err != nil {
			return err
		}
		if !pos.sameDC(stored) {
			return fmt.Errorf("%w: %s (invocationId %s), stored %s (invocationId %s)", errOtherDC, pos.DC, pos.InvocationID, stored.DC, stored.InvocationID)
		}
		if pos.USN <= stored.USN {
			ch = &changed{}
			return nil
		}
		clause := fmt.Sprintf("(uSNChanged>=%d)", stored.USN+1)
		if ch, err = st.readChanged(ctx, lc, clause, pos.nc); err != nil {
			return err
		}
		ch.deleted, err = s.tombstones(ctx, lc, pos.nc, clause)
		return err
	})
	if err != nil {
		return err
	}
	if pos.USN <= stored.USN {
		return nil
	}
	c, err := json.Marshal(pos)
	if err != nil {
		return err
	}
	return st.applyChanged(ch, cookieUSN, c)
}

// tombstones returns the IDs of the objects deleted with a uSNChanged the clause
// selects, from the domain's Deleted Objects container (show-deleted control). A DC that
// refuses the control or a service account that may not see tombstones gives none.
func (s *Syncer) tombstones(ctx context.Context, lc *ldap.Conn, nc, clause string) ([]string, error) {
	if nc == "" {
		nc = s.base
	}
	var ids []string
	err := pagedSearch(ctx, lc, s.cfg.PageSize, nc, "(&(isDeleted=TRUE)"+clause+")", []string{s.cfg.UniquenessField}, func(e *ldap.Entry) error {
		if id, err := s.uniqueness(entryOf(e)); err == nil {
			ids = append(ids, id)
		}
		return nil
	}, ldap.NewControlString(controlShowDeleted, true, ""))
	switch {
	case err == nil:
	case ldap.IsErrorAnyOf(err, ldap.LDAPResultUnavailableCriticalExtension, ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultNoSuchObject):
		return nil, nil
	default:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("poll deleted objects: %w", err)
	}
	return ids, nil
}
