// Package resolver looks up the DNS records outbound delivery needs (MX,
// A/AAAA, TXT) by asking one configured recursive resolver directly with
// github.com/miekg/dns. Unlike net.Resolver it tells a name that does not
// exist (NXDOMAIN, a permanent failure for mail) apart from a lookup that
// failed (a temporary one), and its server address is configuration, so tests
// answer from a DNS server on loopback (pkg/dnstest).
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Errors of lookups. Any other error is a temporary failure.
var (
	// ErrNXDomain: the name does not exist (RFC 1035 4.1.1 RCODE 3). For
	// mail this is permanent (RFC 5321 5.1).
	ErrNXDomain = errors.New("resolver: no such domain")
	// ErrServFail: the resolver could not answer (RCODE 2 and other
	// non-answers); try again later.
	ErrServFail = errors.New("resolver: server failure")
)

// Resolver sends queries to one recursive resolver.
type Resolver struct {
	server string
	udp    *dns.Client
	tcp    *dns.Client
}

// New returns a resolver that asks server (host:port). An empty server means
// the first nameserver of /etc/resolv.conf. timeout bounds each query.
func New(server string, timeout time.Duration) (*Resolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("resolver: %w", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("resolver: /etc/resolv.conf names no nameserver")
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("resolver: address %q: %w", server, err)
	}
	return &Resolver{
		server: server,
		udp:    &dns.Client{Net: "udp", Timeout: timeout, UDPSize: udpSize},
		tcp:    &dns.Client{Net: "tcp", Timeout: timeout},
	}, nil
}

// udpSize is the EDNS0 buffer size we advertise: 1232 bytes avoids IP
// fragmentation on any path (DNS Flag Day 2020); larger answers come over TCP.
const udpSize = 1232

// Server is the address queries go to.
func (r *Resolver) Server() string { return r.server }

// MX returns the MX records of domain in the order received. A domain with
// no MX records returns none and no error (the caller applies the implicit MX
// rule of RFC 5321 5.1).
func (r *Resolver) MX(ctx context.Context, domain string) ([]*net.MX, error) {
	ans, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []*net.MX
	for _, rr := range ans {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return mxs, nil
}

// Addrs returns the IPv4 and IPv6 addresses of host, IPv4 first. With no
// address found it returns ErrNXDomain when the name does not exist, another
// error when a lookup failed, and none and no error when the name exists
// without address records.
func (r *Resolver) Addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	var errs []error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ans, err := r.query(ctx, host, qtype)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range ans {
			switch rr := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
					addrs = append(addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
					addrs = append(addrs, a)
				}
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	// A failed lookup outweighs a missing name: the address may exist.
	for _, err := range errs {
		if !errors.Is(err, ErrNXDomain) {
			return nil, err
		}
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return nil, nil
}

// TXT returns the TXT records of name, each one's strings joined (RFC 7208
// 3.3 and RFC 6376 3.6.2.2 read multi-string records this way).
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	ans, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// query returns the answer records of one type. A CNAME chain is followed by
// the recursive resolver; records of other types in the answer are dropped.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(udpSize, false)
	what := dns.TypeToString[qtype] + " " + name
	resp, _, err := r.udp.ExchangeContext(ctx, q, r.server)
	if err == nil && resp.Truncated {
		// RFC 7766 5: a truncated UDP answer is retried over TCP.
		resp, _, err = r.tcp.ExchangeContext(ctx, q, r.server)
	}
	if err != nil {
		return nil, fmt.Errorf("lookup %s at %s: %w", what, r.server, errors.Join(ErrServFail, err))
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("lookup %s: %w", what, ErrNXDomain)
	default:
		return nil, fmt.Errorf("lookup %s at %s: rcode %s: %w", what, r.server, dns.RcodeToString[resp.Rcode], ErrServFail)
	}
	return slices.DeleteFunc(resp.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype != qtype }), nil
}
