package upstream

import (
	"context"
	"fmt"
)

// DialService opens a session connection bound as the service account (bind_dn; an
// anonymous one when none is configured): for clients the proxy authenticates by itself,
// whose direct-mode reads run upstream with the service account's rights.
func (p *Pool) DialService(ctx context.Context) (*Conn, error) {
	c, err := p.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if p.cfg.BindDN == "" {
		return c, nil
	}
	if err := c.Bind(ctx, p.cfg.BindDN, []byte(p.bindPassword())); err != nil {
		c.Close()
		return nil, fmt.Errorf("upstream: service account bind: %w", err)
	}
	return c, nil
}
