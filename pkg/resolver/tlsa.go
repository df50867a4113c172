package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// TLSA returns the TLSA records at name (such as "_25._tcp.mx.example.net",
// RFC 7672 2.2.3) and whether the resolver vouched for them with the AD bit
// (RFC 4035 3.2.3). The query sets DO and AD (RFC 6840 5.7) so that a
// validating resolver says so. A name without TLSA records, or that does
// not exist, returns none and no error; secure then says whether that
// denial was validated.
//
// The AD bit is only as good as the path to the resolver: DANE relies on
// sender.resolver being a validating resolver on a trusted network (RFC
// 7672 2.1, RFC 6698 4.1).
func (r *Resolver) TLSA(ctx context.Context, name string) (recs []*dns.TLSA, secure bool, err error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTLSA)
	q.RecursionDesired = true
	q.AuthenticatedData = true
	q.SetEdns0(udpSize, true)
	resp, _, err := r.udp.ExchangeContext(ctx, q, r.server)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, q, r.server)
	}
	if err != nil {
		return nil, false, fmt.Errorf("lookup TLSA %s at %s: %w", name, r.server, errors.Join(ErrServFail, err))
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		// A validating resolver answers SERVFAIL for bogus data
		// (RFC 4035 5.5).
		return nil, false, fmt.Errorf("lookup TLSA %s at %s: rcode %s: %w", name, r.server, dns.RcodeToString[resp.Rcode], ErrServFail)
	}
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			recs = append(recs, t)
		}
	}
	return recs, resp.AuthenticatedData, nil
}
