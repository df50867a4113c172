package delivery

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// host is one place to try: an MX host, the implicit MX, or a transport.
type host struct {
	name string
	port uint16
	// literal is set when the host is an IP address, not a name.
	literal netip.Addr
}

// route returns the hosts to try for domain, best first.
func (d *Deliverer) route(ctx context.Context, domain string) ([]host, error) {
	if t, ok := d.transport(domain); ok {
		h, err := parseHostPort(t)
		if err != nil {
			return nil, fmt.Errorf("transport for %s: %w", domain, err)
		}
		return []host{h}, nil
	}
	mxs, err := d.opts.Resolver.MX(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("MX of %s: %w", domain, err)
	}
	// RFC 7505 3: a single MX record with an empty target (".") says the
	// domain accepts no mail; RFC 7505 4.1: do not try its address.
	if len(mxs) == 1 && isRoot(mxs[0].Host) {
		return nil, fmt.Errorf("%s: %w", domain, ErrNullMX)
	}
	port := uint16(d.opts.Port)
	if len(mxs) == 0 {
		// RFC 5321 5.1: no MX records means an implicit MX of preference
		// 0 pointing at the domain itself (its A/AAAA records).
		return []host{hostOf(domain, port)}, nil
	}
	// RFC 5321 5.1: try in order of preference, lowest first, and
	// randomise among hosts of equal preference to spread the load.
	d.opts.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	hosts := make([]host, 0, len(mxs))
	for _, mx := range mxs {
		if isRoot(mx.Host) {
			continue // a null MX mixed with real ones is unusable, not fatal
		}
		hosts = append(hosts, hostOf(mx.Host, port))
	}
	return hosts, nil
}

func (d *Deliverer) transport(domain string) (string, bool) {
	if t, ok := d.opts.Transports[strings.ToLower(domain)]; ok {
		return t, true
	}
	t, ok := d.opts.Transports["*"]
	return t, ok
}

// addrs returns the addresses of h: none, without error, when the host has
// no address records or does not exist.
func (d *Deliverer) addrs(ctx context.Context, h host) ([]netip.Addr, error) {
	if h.literal.IsValid() {
		return []netip.Addr{h.literal}, nil
	}
	addrs, err := d.opts.Resolver.Addrs(ctx, h.name)
	if err != nil {
		return nil, fmt.Errorf("address of %s: %w", h.name, err)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

func hostOf(name string, port uint16) host {
	name = strings.TrimSuffix(name, ".")
	h := host{name: name, port: port}
	if a, err := netip.ParseAddr(name); err == nil {
		h.literal = a.Unmap()
	}
	return h
}

func parseHostPort(s string) (host, error) {
	name, p, err := net.SplitHostPort(s)
	if err != nil {
		return host{}, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return host{}, fmt.Errorf("port %q: must be 1-65535", p)
	}
	return hostOf(name, uint16(port)), nil
}

func isRoot(name string) bool { return name == "." || name == "" }

// CheckTransport reports whether s is a usable transport address
// (host:port), for configuration checks.
func CheckTransport(s string) error {
	_, err := parseHostPort(s)
	return err
}
