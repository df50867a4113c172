package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// This file is the TLS step of a delivery: which MX hosts may be used, how
// a new session is upgraded with STARTTLS, and which sessions may be shared.
// The rest of the package calls only the three methods below.

// errHandshake marks a failed TLS handshake after STARTTLS was accepted: the
// connection is unusable; an error wrapping it makes the caller connect
// again and run the session in plaintext (opportunistic TLS). Policies that
// require TLS must return an error that does not wrap it.
var errHandshake = errors.New("delivery: TLS handshake")

// tlsVetoHost is asked before an MX host of domain is used; a non-nil
// *Error rules the host out for this attempt (the next host is tried) and
// is reported if no host takes the message.
func (d *Deliverer) tlsVetoHost(_ context.Context, _, _ string) *Error {
	return nil
}

// tlsKey groups sessions that may carry each other's mail: a session
// opened under one TLS requirement is not reused for a domain with another.
func (d *Deliverer) tlsKey(_, _ string) string {
	return ""
}

// startTLS runs right after the first EHLO of a new session. It upgrades
// the session when the server offers STARTTLS (RFC 3207 4) and tryTLS is
// set, then greets again (RFC 3207 4.2: the session restarts). A refused
// STARTTLS leaves the session in plaintext (RFC 3207 4). Certificates are
// not verified: this is opportunistic TLS (RFC 7435), which protects
// against passive eavesdropping only.
func (d *Deliverer) startTLS(ctx context.Context, c *client, _, mx, ehlo string, tryTLS bool) error {
	if !tryTLS || !c.has("STARTTLS") {
		return nil
	}
	r, err := c.cmd("STARTTLS")
	if err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if r.Code != 220 {
		d.opts.Log.Debug("STARTTLS refused; continuing in plaintext", "mx", mx, "code", r.Code, "text", r.Text)
		return nil
	}
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opportunistic TLS, see above
	if _, err := netip.ParseAddr(mx); err != nil {
		cfg.ServerName = mx
	}
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.opts.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("%w with %s: %w", errHandshake, mx, err)
	}
	_ = c.conn.SetDeadline(time.Time{})
	c.setConn(tc)
	c.tls = true
	if err := c.hello(ehlo); err != nil {
		return fmt.Errorf("EHLO after STARTTLS: %w", err)
	}
	return nil
}
