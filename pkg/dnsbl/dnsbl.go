// Package dnsbl watches the platform's own source IPs on DNS blocklists
// (RFC 5782): every interval it looks each pool address up in the
// configured zones, records the listings in the shaping bucket, where every
// sender's Shaper reads them and leaves a listed address out of rotation for
// every site, and publishes a dnsbl event when an address is listed or
// delisted. Each sender process may run a Monitor; they share one state.
package dnsbl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/shaping"
)

// Config is sender.dnsbl.
type Config struct {
	// Zones to look the pool's addresses up in, such as zen.spamhaus.org
	// and b.barracudacentral.org; none disables monitoring.
	Zones []string `yaml:"zones"`
	// Interval between rounds of lookups.
	Interval time.Duration `yaml:"interval"`
	// Resolver is the DNS server (host:port) asked; empty means
	// sender.resolver, then the first nameserver of /etc/resolv.conf.
	// Spamhaus refuses queries that come through large public resolvers
	// (answering 127.255.255.x), so use your own recursive resolver.
	Resolver string `yaml:"resolver"`
	// Timeout bounds each query.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the defaults: no zones, every 15 minutes.
func DefaultConfig() Config {
	return Config{Interval: 15 * time.Minute, Timeout: 5 * time.Second}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	for i, z := range c.Zones {
		if _, ok := dns.IsDomainName(z); !ok || z == "" || strings.ContainsAny(z, " *") {
			return fmt.Errorf("sender.dnsbl.zones[%d]: %q is not a domain name", i, z)
		}
	}
	if c.Interval < time.Second {
		return fmt.Errorf("sender.dnsbl.interval: %v, want at least 1s", c.Interval)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("sender.dnsbl.timeout: %v, must be positive", c.Timeout)
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			return fmt.Errorf("sender.dnsbl.resolver: %w", err)
		}
	}
	return nil
}

// Errors of a lookup. Neither means listed: the previous state stands.
var (
	// ErrRefused: the list refused to answer (Spamhaus answers
	// 127.255.255.252-255 to queries through open resolvers or over quota).
	ErrRefused = errors.New("dnsbl: query refused by the list")
	// ErrUnexpected: an answer outside 127.0.0.0/8 (a resolver that
	// rewrites NXDOMAIN, say).
	ErrUnexpected = errors.New("dnsbl: answer outside 127.0.0.0/8")
)

// Result of looking one address up in one zone.
type Result struct {
	Listed bool
	// Answer is the A record (127.0.0.x, the list's code), Reason the TXT
	// record, when listed.
	Answer string
	Reason string
}

// Resolver asks one DNS server.
type Resolver struct {
	Addr    string
	Timeout time.Duration
}

// QueryName is the name under zone that lists ip: its octets reversed
// (RFC 5782 2.1), or its 32 nibbles reversed for IPv6 (2.4).
func QueryName(ip netip.Addr, zone string) string {
	var parts []string
	if ip.Is4() || ip.Is4In6() {
		b := ip.Unmap().As4()
		for i := 3; i >= 0; i-- {
			parts = append(parts, fmt.Sprint(b[i]))
		}
	} else {
		b := ip.As16()
		for i := 15; i >= 0; i-- {
			parts = append(parts, fmt.Sprintf("%x", b[i]&0xf), fmt.Sprintf("%x", b[i]>>4))
		}
	}
	return strings.Join(parts, ".") + "." + dns.Fqdn(zone)
}

// Lookup asks whether zone lists ip. NXDOMAIN, or no A record, is "not
// listed"; a 127.0.0.x answer is listed (RFC 5782 2.1) and its TXT record
// is the reason; a refusal, an answer outside 127/8, a failure rcode or a
// timeout is an error, never "listed".
func (r Resolver) Lookup(ctx context.Context, ip netip.Addr, zone string) (Result, error) {
	name := QueryName(ip, zone)
	in, err := r.exchange(ctx, name, dns.TypeA)
	if err != nil {
		return Result{}, err
	}
	switch in.Rcode {
	case dns.RcodeNameError:
		return Result{}, nil
	case dns.RcodeSuccess:
	default:
		return Result{}, fmt.Errorf("look up %s: %s", name, dns.RcodeToString[in.Rcode])
	}
	var res Result
	for _, rr := range in.Answer {
		a, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		addr, _ := netip.AddrFromSlice(a.A.To4())
		switch {
		case !netip.MustParsePrefix("127.0.0.0/8").Contains(addr):
			return Result{}, fmt.Errorf("look up %s: %s: %w", name, addr, ErrUnexpected)
		case netip.MustParsePrefix("127.255.255.0/24").Contains(addr):
			return Result{}, fmt.Errorf("look up %s: %s: %w", name, addr, ErrRefused)
		case !res.Listed:
			res = Result{Listed: true, Answer: addr.String()}
		}
	}
	if !res.Listed {
		return Result{}, nil // NODATA
	}
	// The reason is a courtesy; the listing stands without it.
	if txt, err := r.exchange(ctx, name, dns.TypeTXT); err == nil {
		for _, rr := range txt.Answer {
			if t, ok := rr.(*dns.TXT); ok {
				res.Reason = strings.Join(t.Txt, "")
				break
			}
		}
	}
	return res, nil
}

func (r Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: r.Timeout}
	in, _, err := c.ExchangeContext(ctx, m, r.Addr)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, r.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return in, nil
}

// Options configure a Monitor.
type Options struct {
	Config Config
	// KV is the shaping bucket (shaping.Bucket).
	KV jetstream.KeyValue
	// IPs are the addresses to watch (every pool's).
	IPs []string
	// Publish sends an event; nil publishes none.
	Publish func(context.Context, *events.Event) error
	Log     *slog.Logger
	Now     func() time.Time
}

// Monitor looks the IPs up periodically.
type Monitor struct {
	cfg     Config
	res     Resolver
	kv      jetstream.KeyValue
	ips     []netip.Addr
	publish func(context.Context, *events.Event) error
	log     *slog.Logger
	now     func() time.Time
}

// New checks the options; a Config without resolver uses the first
// nameserver of /etc/resolv.conf.
func New(opts Options) (*Monitor, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.KV == nil {
		return nil, errors.New("dnsbl: no shaping bucket")
	}
	m := &Monitor{
		cfg: opts.Config, kv: opts.KV, publish: opts.Publish, log: opts.Log, now: opts.Now,
		res: Resolver{Addr: opts.Config.Resolver, Timeout: opts.Config.Timeout},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.res.Addr == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("sender.dnsbl.resolver: none set and /etc/resolv.conf has none: %v", err)
		}
		m.res.Addr = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	for i, s := range opts.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dnsbl: address %d: %w", i, err)
		}
		if !slices.Contains(m.ips, ip) {
			m.ips = append(m.ips, ip)
		}
	}
	return m, nil
}

// Run checks every address now and then every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	if len(m.cfg.Zones) == 0 || len(m.ips) == 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check runs one round: every address in every zone.
func (m *Monitor) Check(ctx context.Context) {
	for _, ip := range m.ips {
		if ctx.Err() != nil {
			return
		}
		if err := m.checkIP(ctx, ip); err != nil && ctx.Err() == nil {
			m.log.Warn("dnsbl check", "ip", ip, "err", err)
		}
	}
}

func (m *Monitor) checkIP(ctx context.Context, ip netip.Addr) error {
	key := shaping.DNSBLKey(ip.String())
	var prev shaping.Listing
	var rev uint64
	e, err := m.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("read %s: %w", key, err)
	default:
		rev = e.Revision()
		if err := json.Unmarshal(e.Value(), &prev); err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
	}
	now := m.now()
	next := shaping.Listing{IP: ip.String(), Checked: now, Next: now.Add(m.cfg.Interval)}
	type change struct {
		zone   shaping.ZoneListed
		listed bool
	}
	var changes []change
	for _, zone := range m.cfg.Zones {
		was := slices.IndexFunc(prev.Zones, func(z shaping.ZoneListed) bool { return z.Zone == zone })
		qctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		r, err := m.res.Lookup(qctx, ip, zone)
		cancel()
		switch {
		case err != nil:
			// Unknown: keep what we knew.
			m.log.Warn("dnsbl lookup failed; keeping the previous state", "ip", ip, "zone", zone, "err", err)
			if was >= 0 {
				next.Zones = append(next.Zones, prev.Zones[was])
			}
		case r.Listed:
			z := shaping.ZoneListed{Zone: zone, Answer: r.Answer, Reason: r.Reason}
			next.Zones = append(next.Zones, z)
			if was < 0 {
				changes = append(changes, change{z, true})
			}
		case was >= 0:
			changes = append(changes, change{prev.Zones[was], false})
		}
	}
	// Write with compare-and-set: when another sender process wrote
	// first, it also published the events.
	switch {
	case next.Listed():
		value, _ := json.Marshal(next)
		if rev == 0 {
			_, err = m.kv.Create(ctx, key, value)
		} else {
			_, err = m.kv.Update(ctx, key, value, rev)
		}
	case rev != 0:
		err = m.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	for _, c := range changes {
		m.log.Warn("dnsbl", "ip", ip, "zone", c.zone.Zone, "listed", c.listed, "answer", c.zone.Answer, "reason", c.zone.Reason)
		if m.publish == nil {
			continue
		}
		what := "delisted"
		if c.listed {
			what = "listed"
		}
		ev := &events.Event{
			ID:   fmt.Sprintf("dnsbl.%s.%s.%s.%d", shaping.IPToken(ip.String()), c.zone.Zone, what, rev),
			Type: events.TypeDNSBL,
			Time: now,
			DNSBL: &events.DNSBL{
				IP: ip.String(), Zone: c.zone.Zone, Listed: c.listed, Answer: c.zone.Answer, Reason: c.zone.Reason,
			},
		}
		if err := m.publish(ctx, ev); err != nil {
			m.log.Warn("publish dnsbl event", "ip", ip, "zone", c.zone.Zone, "err", err)
		}
	}
	return nil
}
