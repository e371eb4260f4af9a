package ldapserver

import "github.com/ldapproxy/ldapproxy/internal/ldapwire"

// Short names for the shared encoders the tests build messages with.
var (
	appendEntry     = ldapwire.AppendEntry
	appendReference = ldapwire.AppendReference
	controlFromLDAP = ldapwire.ControlFromLDAP
)

const tagInteger = ldapwire.TagInteger

// relay hands msg to the writer's Relay, as a handler that forwards upstream responses does.
func relay(w ResponseWriter, msg []byte) error {
	resp, err := ldapwire.ParseResponse(msg)
	if err != nil {
		return err
	}
	return w.(Relayer).Relay(resp)
}
