package upstream

import (
	"context"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapproxy/ldapproxy/internal/ldapwire"
)

// The tests speak go-ldap's request and response types; these adapters encode them as
// messages for Conn.Forward and decode the relayed responses, independently of the
// frontend's code.

func message(op *ber.Packet) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 1, ""))
	p.AppendChild(op)
	return p.Bytes()
}

// Search forwards req and calls fn with each entry or reference as a go-ldap Response.
func (c *Conn) Search(ctx context.Context, req *ldap.SearchRequest, fn func(ldap.Response) error) error {
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return err
	}
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.BaseDN, ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(req.Scope), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(req.DerefAliases), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(req.SizeLimit), ""))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(req.TimeLimit), ""))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, req.TypesOnly, ""))
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	for _, a := range req.Attributes {
		attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, ""))
	}
	op.AppendChild(attrs)
	var result error
	err = c.Forward(ctx, KindSearch, message(op), func(resp ldapwire.Response) error {
		if resp.Final {
			result = resp.Err()
			return nil
		}
		p, err := ber.DecodePacketErr(resp.Msg)
		if err != nil {
			return err
		}
		r := &response{}
		switch resp.Tag {
		case ldapwire.TagSearchResultEntry:
			r.entry = &ldap.Entry{DN: p.Children[1].Children[0].Data.String()}
			for _, a := range p.Children[1].Children[1].Children {
				ea := &ldap.EntryAttribute{Name: a.Children[0].Data.String()}
				for _, v := range a.Children[1].Children {
					ea.Values = append(ea.Values, v.Data.String())
					ea.ByteValues = append(ea.ByteValues, v.Data.Bytes())
				}
				r.entry.Attributes = append(r.entry.Attributes, ea)
			}
		case ldapwire.TagSearchResultReference:
			r.referral = p.Children[1].Children[0].Data.String()
		}
		return fn(r)
	})
	if err != nil {
		return err
	}
	return result
}

// Compare forwards a compare and reads compareTrue/compareFalse.
func (c *Conn) Compare(ctx context.Context, dn, attr, value string) (bool, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationCompareRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	ava := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, attr, ""))
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, ""))
	op.AppendChild(ava)
	var code uint16
	var result error
	err := c.Forward(ctx, KindCompare, message(op), func(resp ldapwire.Response) error {
		code = resp.Code
		result = resp.Err()
		return nil
	})
	switch {
	case err != nil:
		return false, err
	case code == ldap.LDAPResultCompareTrue:
		return true, nil
	case code == ldap.LDAPResultCompareFalse:
		return false, nil
	}
	return false, result
}

// Extended forwards an extended request and decodes the response's value.
func (c *Conn) Extended(ctx context.Context, req *ldap.ExtendedRequest) (*ldap.ExtendedResponse, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, req.Name, ""))
	if req.Value != nil {
		op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, req.Value.Data.String(), ""))
	}
	resp := &ldap.ExtendedResponse{}
	var result error
	err := c.Forward(ctx, KindExtended, message(op), func(r ldapwire.Response) error {
		p, err := ber.DecodePacketErr(r.Msg)
		if err != nil {
			return err
		}
		result = ldap.GetLDAPError(p)
		for _, f := range p.Children[1].Children[3:] {
			switch f.Tag {
			case 10:
				resp.Name = f.Data.String()
			case 11:
				resp.Value = ber.NewString(ber.ClassContext, ber.TypePrimitive, 11, f.Data.String(), "")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, result
}

// response is one search result as a go-ldap Response.
type response struct {
	entry    *ldap.Entry
	referral string
}

func (r *response) Entry() *ldap.Entry       { return r.entry }
func (r *response) Referral() string         { return r.referral }
func (r *response) Controls() []ldap.Control { return nil }
func (r *response) Err() error               { return nil }
func (r *response) Next() bool               { return false }
