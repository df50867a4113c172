package tlspolicy

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// TLSA usages, selectors and matching types usable for SMTP (RFC 7672
// 3.1: PKIX-TA(0) and PKIX-EE(1) are not used for SMTP).
const (
	usageDANETA = 2
	usageDANEEE = 3

	selectorCert = 0
	selectorSPKI = 1

	matchFull   = 0
	matchSHA256 = 1
	matchSHA512 = 2
)

// daneCacheMax bounds how long a TLSA answer is reused (less when its TTL
// is shorter).
const daneCacheMax = 5 * time.Minute

type daneEntry struct {
	req     *delivery.TLSRequirement // nil: no DANE for this host
	err     error
	expires time.Time
}

// dane returns the DANE requirement of MX host mx (RFC 7672 2.2): nil when
// the host has no TLSA records or the answer is not vouched for by the AD
// bit (treated as no TLSA); an error when the lookup failed, which makes
// the host unusable (RFC 7672 2.2.2: a failed TLSA lookup must not be
// taken as "no records", or an attacker could strip them).
func (p *Policy) dane(ctx context.Context, domain, mx string) (*delivery.TLSRequirement, error) {
	now := p.now()
	p.mu.Lock()
	e, ok := p.tlsa[mx]
	p.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.req, e.err
	}
	name := "_25._tcp." + mx
	recs, secure, err := p.tlsaR.TLSA(ctx, name)
	e = daneEntry{expires: now.Add(daneCacheMax)}
	switch {
	case err != nil:
		e.err = &delivery.TLSFailure{Type: delivery.ResultDNSSECInvalid, Err: fmt.Errorf("dane: %w", err)}
		e.expires = now.Add(30 * time.Second)
	case !secure || len(recs) == 0:
	default:
		e.req = p.daneRequirement(domain, mx, recs)
		for _, r := range recs {
			if ttl := time.Duration(r.Hdr.Ttl) * time.Second; now.Add(ttl).Before(e.expires) {
				e.expires = now.Add(ttl)
			}
		}
	}
	p.mu.Lock()
	p.tlsa[mx] = e
	p.mu.Unlock()
	return e.req, e.err
}

// daneRequirement builds the requirement for secure TLSA records. With no
// usable record TLS is still mandatory but unauthenticated (RFC 7672 2.2).
func (p *Policy) daneRequirement(domain, mx string, recs []*dns.TLSA) *delivery.TLSRequirement {
	info := reportInfo{Type: "tlsa", Domain: domain}
	var usable []*dns.TLSA
	for _, r := range recs {
		info.Strings = append(info.Strings, fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, strings.ToUpper(r.Certificate)))
		if (r.Usage == usageDANETA || r.Usage == usageDANEEE) && r.Selector <= selectorSPKI && r.MatchingType <= matchSHA512 {
			usable = append(usable, r)
		}
	}
	if len(usable) == 0 {
		return &delivery.TLSRequirement{Mode: delivery.TLSRequired, Key: "dane-unusable", Report: info}
	}
	return &delivery.TLSRequirement{
		Mode:   delivery.TLSVerify,
		Verify: verifyDANE(usable, mx, p.now),
		Key:    "dane:" + mx,
		Report: info,
	}
}

// verifyDANE checks the server's chain against TLSA records (RFC 7672
// 3.1): DANE-EE(3) matches the leaf certificate alone, with no name or
// expiry check (3.1.1); DANE-TA(2) matches a certificate of the chain the
// server sent, and the leaf must chain to it and carry the MX host name
// (3.1.2, 3.2.3).
func verifyDANE(recs []*dns.TLSA, mx string, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		certs := cs.PeerCertificates
		if len(certs) == 0 {
			return &delivery.TLSFailure{Type: delivery.ResultValidationFailure, Err: errors.New("dane: no certificate")}
		}
		var taErr error
		for _, r := range recs {
			switch r.Usage {
			case usageDANEEE:
				if tlsaMatches(r, certs[0]) {
					return nil
				}
			case usageDANETA:
				for i, ta := range certs[1:] {
					if !tlsaMatches(r, ta) {
						continue
					}
					roots, inter := x509.NewCertPool(), x509.NewCertPool()
					roots.AddCert(ta)
					for _, c := range certs[1 : i+1] {
						inter.AddCert(c)
					}
					_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: mx, CurrentTime: now()})
					if err == nil {
						return nil
					}
					taErr = err
				}
			}
		}
		if taErr != nil {
			return &delivery.TLSFailure{Type: delivery.CertResultType(taErr), Err: fmt.Errorf("dane-ta: %w", taErr)}
		}
		return &delivery.TLSFailure{Type: delivery.ResultTLSAInvalid, Err: fmt.Errorf("dane: no TLSA record of %s matches the certificate", mx)}
	}
}

// tlsaMatches reports whether the certificate matches one TLSA record's
// selector and matching type (RFC 6698 2.1).
func tlsaMatches(r *dns.TLSA, c *x509.Certificate) bool {
	data := c.Raw
	if r.Selector == selectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case matchSHA256:
		h := sha256.Sum256(data)
		data = h[:]
	case matchSHA512:
		h := sha512.Sum512(data)
		data = h[:]
	}
	return strings.EqualFold(hex.EncodeToString(data), r.Certificate)
}
