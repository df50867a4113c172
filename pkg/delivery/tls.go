package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// This file is the TLS step of a delivery: which MX hosts may be used, how
// a new session is upgraded with STARTTLS, and which sessions may be shared.
// The rest of the package calls only tlsVetoHost, tlsKey and startTLS. What
// each destination requires comes from Options.TLS (pkg/tlspolicy: the
// per-domain policy, MTA-STS, DANE); without it every host gets
// opportunistic TLS.

// errHandshake marks a failed TLS handshake after STARTTLS was accepted: the
// connection is unusable; an error wrapping it makes the caller connect
// again and run the session in plaintext (opportunistic TLS). Policies that
// require TLS must return an error that does not wrap it.
var errHandshake = errors.New("delivery: TLS handshake")

// TLSMode is how much a delivery insists on TLS toward an MX host.
type TLSMode string

// TLS modes, weakest first. The zero value is TLSOpportunistic.
const (
	// TLSNone never starts TLS.
	TLSNone TLSMode = "none"
	// TLSOpportunistic uses STARTTLS when offered and falls back to
	// plaintext when it fails; certificates are not enforced (RFC 7435).
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired: STARTTLS must succeed, any certificate will do.
	TLSRequired TLSMode = "required"
	// TLSVerify: STARTTLS must succeed and the certificate must pass
	// TLSRequirement.Verify (or, without one, the system roots for the MX
	// host name).
	TLSVerify TLSMode = "verify"
)

// Strict reports whether the mode refuses to send in plaintext.
func (m TLSMode) Strict() bool { return m == TLSRequired || m == TLSVerify }

// Rank orders modes from weakest (0, none) to strictest.
func (m TLSMode) Rank() int {
	switch m {
	case TLSNone:
		return 0
	case TLSRequired:
		return 2
	case TLSVerify:
		return 3
	}
	return 1
}

// TLSRequirement is what a session to one MX host for one domain needs.
type TLSRequirement struct {
	Mode TLSMode
	// Verify checks the server's certificates once the handshake is done
	// (the handshake itself verifies nothing). Under TLSVerify its error
	// fails the host; under weaker modes it is only reported (MTA-STS
	// testing mode, RFC 8461 5). Return a *TLSFailure to name the
	// RFC 8460 result type.
	Verify func(cs tls.ConnectionState) error
	// Key distinguishes sessions that may not carry each other's mail even
	// under the same Mode (a DANE session is verified for one host's
	// TLSA records).
	Key string
	// Report is handed back in TLSResult, for the policy's reporting.
	Report any
}

// TLSPolicy decides the TLS requirement of each (domain, MX host) and
// hears how each TLS session went (for TLS-RPT, RFC 8460). Implementations
// must be safe for concurrent use and cheap to ask repeatedly: ForHost is
// asked several times per host and attempt.
type TLSPolicy interface {
	// ForHost returns the requirement for delivering domain's mail to MX
	// host mx. An error rules the host out for this attempt (MTA-STS
	// enforce with a host outside the policy, a bogus TLSA answer): the
	// next host is tried, and the job is deferred if none is left. Wrap a
	// *TLSFailure to have it reported.
	ForHost(ctx context.Context, domain, mx string) (TLSRequirement, error)
	// Result reports the TLS outcome of one new session (or of a host
	// ruled out). It must not block delivery for long.
	Result(ctx context.Context, r TLSResult)
}

// TLSResult is the outcome of the TLS step toward one MX host.
type TLSResult struct {
	Domain, MX string
	Req        TLSRequirement
	// SourceIP and RemoteIP are the two ends; empty for a host ruled out
	// before connecting.
	SourceIP, RemoteIP string
	// Failure is nil when TLS was established and every check passed.
	Failure *TLSFailure
}

// TLS-RPT result types (RFC 8460 4.3) that delivery itself detects or
// that policies return.
const (
	ResultSTARTTLSNotSupported = "starttls-not-supported"
	ResultCertHostMismatch     = "certificate-host-mismatch"
	ResultCertExpired          = "certificate-expired"
	ResultCertNotTrusted       = "certificate-not-trusted"
	ResultValidationFailure    = "validation-failure"
	ResultSTSPolicyFetch       = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid     = "sts-policy-invalid"
	ResultSTSWebPKIInvalid     = "sts-webpki-invalid"
	ResultTLSAInvalid          = "tlsa-invalid"
	ResultDNSSECInvalid        = "dnssec-invalid"
	ResultDANERequired         = "dane-required"
)

// TLSFailure is a TLS failure with its RFC 8460 result type.
type TLSFailure struct {
	Type string
	Err  error
}

func (f *TLSFailure) Error() string { return f.Type + ": " + f.Err.Error() }
func (f *TLSFailure) Unwrap() error { return f.Err }

// ErrNoSTARTTLS: the server did not offer STARTTLS, or refused it.
var ErrNoSTARTTLS = errors.New("delivery: STARTTLS not offered")

// VerifyPKIX returns a Verify function that checks the chain against roots
// (nil: the system's) for host name, classifying the failure for TLS-RPT.
func VerifyPKIX(roots *x509.CertPool, name string, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &TLSFailure{Type: ResultValidationFailure, Err: errors.New("no certificate")}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name}
		if now != nil {
			opts.CurrentTime = now()
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return &TLSFailure{Type: CertResultType(err), Err: err}
		}
		return nil
	}
}

// CertResultType names the RFC 8460 result type of an x509 verification
// error.
func CertResultType(err error) string {
	var (
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
	)
	switch {
	case errors.As(err, &host):
		return ResultCertHostMismatch
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ResultCertExpired
	case errors.As(err, &unknown):
		return ResultCertNotTrusted
	}
	return ResultValidationFailure
}

// requirement asks the policy; transports (an operator's own relay, not a
// host found in DNS) and a Deliverer without a policy get opportunistic
// TLS: MTA-STS and DANE speak about MX hosts (RFC 8461 4.1, RFC 7672 2.2).
func (d *Deliverer) requirement(ctx context.Context, domain, mx string) (TLSRequirement, error) {
	if d.opts.TLS == nil {
		return TLSRequirement{Mode: TLSOpportunistic}, nil
	}
	if _, ok := d.transport(domain); ok {
		return TLSRequirement{Mode: TLSOpportunistic}, nil
	}
	req, err := d.opts.TLS.ForHost(ctx, domain, mx)
	if req.Mode == "" {
		req.Mode = TLSOpportunistic
	}
	return req, err
}

// tlsVetoHost is asked before an MX host of domain is used; a non-nil
// *Error rules the host out for this attempt (the next host is tried) and
// is reported if no host takes the message.
func (d *Deliverer) tlsVetoHost(ctx context.Context, domain, mx string) *Error {
	req, err := d.requirement(ctx, domain, mx)
	if err == nil {
		return nil
	}
	if f, ok := errors.AsType[*TLSFailure](err); ok {
		d.opts.TLS.Result(ctx, TLSResult{Domain: domain, MX: mx, Req: req, Failure: f})
	}
	d.opts.Log.Info("MX host ruled out by TLS policy", "domain", domain, "mx", mx, "err", err)
	return tlsError(mx, err)
}

// tlsError fails a host for TLS reasons: temporary (another attempt, or
// another host, may do better), never a plaintext fallback.
func tlsError(mx string, err error) *Error {
	// RFC 3463 X.7.5: cryptographic failure.
	return &Error{Reply: Reply{Enhanced: "4.7.5", Text: err.Error()}, Stage: StageTLS, Host: mx, Err: err}
}

// tlsKey groups sessions that may carry each other's mail: a session
// opened under one TLS requirement is not reused for a domain with another.
func (d *Deliverer) tlsKey(domain, mx string) string {
	req, _ := d.requirement(context.Background(), domain, mx)
	return string(req.Mode) + "|" + req.Key
}

// startTLS runs right after the first EHLO of a new session. It upgrades
// the session when the server offers STARTTLS (RFC 3207 4) and tryTLS is
// set, then greets again (RFC 3207 4.2: the session restarts). What a
// failure does depends on the requirement: under opportunistic TLS
// (RFC 7435) a refused STARTTLS leaves the session in plaintext and a
// failed handshake makes the caller reconnect in plaintext; under required
// and verify the host fails with a temporary error and nothing is sent in
// clear. Every new session's outcome goes to the policy's Result.
func (d *Deliverer) startTLS(ctx context.Context, c *client, domain, mx, ehlo string, tryTLS bool) error {
	req, err := d.requirement(ctx, domain, mx)
	if err != nil {
		return tlsError(mx, err)
	}
	if req.Mode == TLSNone || !tryTLS {
		// !tryTLS is the plaintext retry after a failed handshake, which
		// was reported already; strict modes never get here.
		return nil
	}
	_, viaTransport := d.transport(domain)
	report := func(f *TLSFailure) {
		if d.opts.TLS == nil || viaTransport {
			return // TLS-RPT speaks of MX hosts, not of our own relays
		}
		r := TLSResult{Domain: domain, MX: mx, Req: req, Failure: f}
		if la, ok := c.conn.LocalAddr().(*net.TCPAddr); ok {
			r.SourceIP = la.IP.String()
		}
		if ra, ok := c.conn.RemoteAddr().(*net.TCPAddr); ok {
			r.RemoteIP = ra.IP.String()
		}
		d.opts.TLS.Result(ctx, r)
	}
	fail := func(f *TLSFailure) error {
		report(f)
		if req.Mode.Strict() {
			return tlsError(mx, fmt.Errorf("TLS %s toward %s: %w", req.Mode, mx, f))
		}
		d.opts.Log.Debug("TLS failed; continuing in plaintext", "mx", mx, "err", f)
		return nil
	}
	if !c.has("STARTTLS") {
		return fail(&TLSFailure{Type: ResultSTARTTLSNotSupported, Err: ErrNoSTARTTLS})
	}
	r, err := c.cmd("STARTTLS")
	if err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if r.Code != 220 {
		return fail(&TLSFailure{Type: ResultSTARTTLSNotSupported, Err: fmt.Errorf("%w: %w", ErrNoSTARTTLS, &ReplyError{Reply: r})})
	}
	// Certificates are checked after the handshake by req.Verify (DANE
	// needs its own checks), so the handshake itself verifies nothing.
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // verified below as the requirement says
	if _, err := netip.ParseAddr(mx); err != nil {
		cfg.ServerName = mx
	}
	tc := tls.Client(c.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, d.opts.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		f := &TLSFailure{Type: ResultValidationFailure, Err: fmt.Errorf("handshake with %s: %w", mx, err)}
		report(f)
		if req.Mode.Strict() {
			return tlsError(mx, f)
		}
		return fmt.Errorf("%w with %s: %w", errHandshake, mx, err)
	}
	verify := req.Verify
	if verify == nil && req.Mode == TLSVerify {
		verify = VerifyPKIX(nil, mx, nil)
	}
	if verify != nil {
		if err := verify(tc.ConnectionState()); err != nil {
			f, ok := errors.AsType[*TLSFailure](err)
			if !ok {
				f = &TLSFailure{Type: ResultValidationFailure, Err: err}
			}
			report(f)
			if req.Mode == TLSVerify {
				// RFC 3207 4.1: a client that finds the security level
				// too low SHOULD issue QUIT right after the negotiation.
				c.setConn(tc)
				c.quit()
				return tlsError(mx, fmt.Errorf("TLS verify toward %s: %w", mx, f))
			}
			d.opts.Log.Info("TLS certificate check failed; delivering anyway (report only)", "mx", mx, "err", f)
		} else {
			report(nil)
		}
	} else {
		report(nil)
	}
	_ = c.conn.SetDeadline(time.Time{})
	c.setConn(tc)
	c.tls = true
	if err := c.hello(ehlo); err != nil {
		return fmt.Errorf("EHLO after STARTTLS: %w", err)
	}
	return nil
}
