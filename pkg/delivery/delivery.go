// Package delivery is the SMTP client side of the sender role: it hands one
// delivery job (the recipients of one domain) to that domain's mail
// exchanger. It finds the MX hosts (or a configured transport), connects from
// the pool's source address, greets with that address's EHLO name, upgrades
// to TLS when offered, and runs the transaction, reporting a reply per
// recipient. It decides nothing about retries: every failure is classified
// into one *Error, permanent or temporary, and the sender maps that to
// JetStream.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/resolver"
)

// Job is what one delivery attempt sends.
type Job struct {
	// Domain is the recipient domain whose MX receives the message.
	Domain string
	// From is the envelope sender; empty for the null reverse path.
	From  string
	Rcpts []string
	Body  []byte
	// Sources are the pool's addresses to connect from, each with its EHLO
	// name; the Shaper orders them (and leaves some out) per site.
	Sources []pool.IP
	// ReturnPath, when set, gives each recipient its own envelope sender
	// (VERP) instead of From; recipients sharing a return path share a
	// transaction, the others get one each.
	ReturnPath func(rcpt string) string
}

// Result is the outcome of an attempt.
type Result struct {
	// MX is the host that took the transaction, or the last one tried when
	// none did; empty when no host was found.
	MX string
	// Addr is the address (ip:port) of that host.
	Addr string
	// Site is the destination site (Shaper.Site) of the job's domain.
	Site string
	// Source is the address the transaction was sent from (the last one
	// tried when none was sent).
	Source pool.IP
	// TLS says whether the transaction ran over STARTTLS.
	TLS bool
	// Reused says the transaction ran on a connection opened earlier.
	Reused bool
	// Timings in milliseconds: TCP connect and greeting, STARTTLS with the
	// second EHLO (both zero on a reused connection), and the transactions.
	ConnectMs, TLSMs, TxnMs int64
	// RetryAt is set when shaping (no usable source, connection or rate
	// limit) kept some recipients from being tried at all: they are deferred
	// without a server's word, and may go again at RetryAt.
	RetryAt time.Time
	// Actions are what the Shaper's backoff rules did on this attempt's
	// replies.
	Actions []Action
	// Rcpts has one entry per recipient of the job, in the job's order.
	Rcpts []RcptResult
}

// Shaped reports whether no recipient reached a server because of shaping:
// the attempt did not happen and should not count as one.
func (r Result) Shaped() bool {
	for _, rr := range r.Rcpts {
		if rr.Err == nil || rr.Err.Stage != StageShaping {
			return false
		}
	}
	return len(r.Rcpts) > 0
}

// RcptResult is the outcome for one recipient.
type RcptResult struct {
	Rcpt string
	// Reply is the server's final word for this recipient: the DATA reply
	// when delivered, else Err's reply.
	Reply Reply
	// Err is nil when the recipient's MX accepted the message.
	Err *Error
}

// Resolver looks up MX records and addresses; *resolver.Resolver is the
// production one.
type Resolver interface {
	// MX returns the domain's MX records, none for a domain without.
	MX(ctx context.Context, domain string) ([]*net.MX, error)
	// Addrs returns a host's IPv4 and IPv6 addresses.
	Addrs(ctx context.Context, host string) ([]netip.Addr, error)
}

var _ Resolver = (*resolver.Resolver)(nil)

// DialFunc opens a TCP connection to addr from the local address src.
type DialFunc func(ctx context.Context, src netip.Addr, addr string) (net.Conn, error)

// Options configure a Deliverer. Zero durations take the defaults below.
type Options struct {
	Resolver Resolver
	// Dial defaults to a net.Dialer bound to the source address.
	Dial DialFunc
	// Transports route a domain (or "*", every domain) to a host:port
	// instead of its MX hosts. Keys are lower-case.
	Transports map[string]string
	// Port is the SMTP port of MX hosts; default 25.
	Port int
	// ConnectTimeout bounds a TCP connect; default 30s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply and the greeting; default
	// 5m (RFC 5321 4.5.3.2.1-4).
	CommandTimeout time.Duration
	// DataTimeout bounds sending the body and waiting for the final reply;
	// default 10m (RFC 5321 4.5.3.2.6).
	DataTimeout time.Duration
	// Shaper limits and orders sources per site; nil applies Limits within
	// this process only.
	Shaper Shaper
	// Limits apply to every (source, site) when Shaper is nil; zero fields
	// take DefaultLimits'.
	Limits Limits
	// SlotWait bounds how long a job waits for a connection slot toward its
	// site before it is deferred by shaping; default 10s.
	SlotWait time.Duration
	// RateWait bounds how long a transaction waits for the message rate;
	// default 5s.
	RateWait time.Duration
	// Shuffle randomises MX hosts of equal preference; default
	// math/rand/v2's.
	Shuffle func(n int, swap func(i, j int))
	// TLS decides each MX host's TLS requirement and hears each session's
	// TLS outcome (tls.go); nil means opportunistic TLS everywhere.
	TLS TLSPolicy
	Log *slog.Logger
}

// DefaultLimits are KumoMTA's defaults where it has them.
var DefaultLimits = Limits{
	MaxConnections:     10,
	MaxMessagesPerConn: 100,
	MaxRcptsPerTxn:     100,
	IdleTimeout:        30 * time.Second,
}

// withDefaults fills zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultLimits.MaxConnections
	}
	if l.MaxMessagesPerConn <= 0 {
		l.MaxMessagesPerConn = DefaultLimits.MaxMessagesPerConn
	}
	if l.MaxRcptsPerTxn <= 0 {
		l.MaxRcptsPerTxn = DefaultLimits.MaxRcptsPerTxn
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLimits.IdleTimeout
	}
	return l
}

// maxAddresses bounds the addresses one attempt connects to, as Postfix's
// smtp_mx_address_limit does: a domain with many MX hosts all down must not
// hold a worker for long; the next attempt tries again.
const maxAddresses = 5

// Deliverer delivers jobs, keeping connections open between them (see
// pool.go). It is safe for concurrent use; Close ends its idle connections.
type Deliverer struct {
	opts  Options
	conns connPool
	// rotation takes the sources in turn when there is no Shaper.
	rotation atomic.Uint64
}

// New returns a Deliverer.
func New(opts Options) *Deliverer {
	if opts.Port == 0 {
		opts.Port = 25
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 5 * time.Minute
	}
	if opts.DataTimeout == 0 {
		opts.DataTimeout = 10 * time.Minute
	}
	if opts.SlotWait == 0 {
		opts.SlotWait = 10 * time.Second
	}
	if opts.RateWait == 0 {
		opts.RateWait = 5 * time.Second
	}
	if opts.Shuffle == nil {
		opts.Shuffle = rand.Shuffle
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	opts.Limits = opts.Limits.withDefaults()
	d := &Deliverer{opts: opts}
	d.conns.init()
	if w, ok := opts.Shaper.(waitingNotifier); ok {
		w.OnWaiting(d.yieldIdle)
	}
	return d
}

// waitingNotifier is a Shaper shared by several processes that says when
// another process waits for a connection slot of (src, site) (pkg/shaping's
// OnWaiting).
type waitingNotifier interface {
	OnWaiting(func(src, site string))
}

// yieldIdle closes this process's idle connections from src toward site,
// so that their slots go to another process that waits for one: an idle
// connection would otherwise hold its slot until its idle timeout.
func (d *Deliverer) yieldIdle(src, site string) {
	a, err := netip.ParseAddr(src)
	if err != nil {
		return
	}
	if n := d.conns.closeIdleFor(a, site); n > 0 {
		d.opts.Log.Debug("closed idle connections for another sender waiting for a slot", "source_ip", src, "site", site, "closed", n)
	}
}

// Deliver makes one attempt to deliver job. It tries the domain's hosts in
// order until one takes the transactions; that host's replies are final for
// this attempt. When none does, every recipient gets the same error:
// permanent only if every host failed permanently. The job's recipients
// are split into transactions of at most MaxRcptsPerTxn (and one per
// return path); they may share a connection with other jobs to the same
// address.
func (d *Deliverer) Deliver(ctx context.Context, job Job) Result {
	res := Result{Rcpts: make([]RcptResult, len(job.Rcpts))}
	srcs, err := parseSources(job.Sources)
	if err != nil {
		return failAll(res, job, classify(StageConnect, "", err))
	}
	hosts, err := d.route(ctx, job.Domain)
	if err != nil {
		return failAll(res, job, classify(StageDNS, "", err))
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.name
	}
	res.Site = d.site(job.Domain, names)
	lim := d.limits(res.Site, job.Domain)
	srcs, until := d.sources(res.Site, srcs)
	if len(srcs) == 0 {
		if until.IsZero() {
			until = time.Now().Add(d.opts.SlotWait) // never a busy loop
		}
		res.RetryAt = until
		return failAll(res, job, shapingError(fmt.Errorf("%w toward site %s until %s", ErrNoSource, res.Site, until.UTC().Format(time.RFC3339))))
	}
	a := &attempt{d: d, job: job, res: &res, site: res.Site, lim: lim, todo: batches(job, lim.MaxRcptsPerTxn)}
	var (
		tried    int
		failures []*Error
		otherFam bool // some host had addresses, none of our family
	)
	for _, h := range hosts {
		if len(a.todo) == 0 {
			break
		}
		if e := d.tlsVetoHost(ctx, job.Domain, h.name); e != nil {
			failures = append(failures, e)
			continue
		}
		addrs, err := d.addrs(ctx, h)
		if err != nil {
			if !errors.Is(err, resolver.ErrNXDomain) {
				failures = append(failures, classify(StageDNS, h.name, err))
			}
			continue
		}
		for _, ad := range addrs {
			fam := sameFamily(srcs, ad)
			if len(fam) == 0 {
				otherFam = true
				continue
			}
			if tried == maxAddresses || len(a.todo) == 0 {
				break
			}
			tried++
			ap := netip.AddrPortFrom(ad, h.port)
			res.MX, res.Addr = h.name, ap.String()
			ferr := a.run(ctx, h.name, ap, fam)
			if ferr == nil {
				continue // a.todo is empty unless shaping stopped it
			}
			if ferr.Stage == StageShaping {
				break
			}
			d.opts.Log.Debug("delivery host failed", "mx", h.name, "addr", ap.String(), "err", ferr)
			failures = append(failures, ferr)
		}
		if a.shaped != nil {
			break
		}
	}
	if len(a.todo) == 0 {
		return res
	}
	var e *Error
	switch {
	case a.shaped != nil:
		e = a.shaped
	case tried == 0 && len(failures) == 0 && otherFam:
		e = classify(StageDNS, "", fmt.Errorf("%s: %w", job.Domain, ErrNoRoute))
	case len(failures) == 0:
		e = classify(StageDNS, "", fmt.Errorf("%s: %w", job.Domain, ErrNoUsableMX))
	default:
		e = worst(failures)
	}
	for _, b := range a.todo {
		for _, i := range b.idx {
			res.Rcpts[i] = RcptResult{Rcpt: job.Rcpts[i], Reply: e.Reply, Err: e}
		}
	}
	return res
}

// Close ends every idle connection with QUIT and makes the Deliverer close
// connections as their transactions end. Call it once no Deliver runs, at
// shutdown.
func (d *Deliverer) Close() { d.conns.close() }

// worst picks the error that decides an attempt where no host took the
// transaction: the last temporary one if any (another attempt may succeed),
// else the last permanent one.
func worst(failures []*Error) *Error {
	for i := len(failures) - 1; i >= 0; i-- {
		if !failures[i].Permanent {
			return failures[i]
		}
	}
	return failures[len(failures)-1]
}

func failAll(res Result, job Job, e *Error) Result {
	res.Rcpts = make([]RcptResult, len(job.Rcpts))
	for i, r := range job.Rcpts {
		res.Rcpts[i] = RcptResult{Rcpt: r, Reply: e.Reply, Err: e}
	}
	return res
}

// source is a pool address ready to bind.
type source struct {
	ip   pool.IP
	addr netip.Addr
}

func parseSources(ips []pool.IP) ([]source, error) {
	if len(ips) == 0 {
		return nil, fmt.Errorf("%w: the job has no source address", ErrBadSource)
	}
	out := make([]source, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.Address)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadSource, ip.Address, err)
		}
		out = append(out, source{ip: ip, addr: a.Unmap()})
	}
	return out, nil
}

func sameFamily(srcs []source, a netip.Addr) []source {
	var out []source
	for _, s := range srcs {
		if s.addr.Is4() == a.Is4() {
			out = append(out, s)
		}
	}
	return out
}

// site names the job's destination site: the Shaper's, else the best MX
// host (domains sharing it share connections anyway).
func (d *Deliverer) site(domain string, mxHosts []string) string {
	if d.opts.Shaper != nil {
		return d.opts.Shaper.Site(domain, mxHosts)
	}
	if len(mxHosts) > 0 {
		return strings.ToLower(mxHosts[0])
	}
	return strings.ToLower(domain)
}

func (d *Deliverer) limits(site, domain string) Limits {
	if d.opts.Shaper != nil {
		return d.opts.Shaper.Limits(site, domain).withDefaults()
	}
	return d.opts.Limits
}

// sources orders the usable sources for site: the Shaper's choice, or all
// of them in turn.
func (d *Deliverer) sources(site string, srcs []source) ([]source, time.Time) {
	if d.opts.Shaper == nil {
		n := int(d.rotation.Add(1) % uint64(len(srcs)))
		return append(slices.Clone(srcs[n:]), srcs[:n]...), time.Time{}
	}
	ips := make([]pool.IP, len(srcs))
	for i, s := range srcs {
		ips[i] = s.ip
	}
	usable, until := d.opts.Shaper.Sources(site, ips)
	var out []source
	for _, ip := range usable {
		if i := slices.IndexFunc(srcs, func(s source) bool { return s.ip.Address == ip.Address }); i >= 0 {
			out = append(out, srcs[i])
		}
	}
	return out, until
}

func (d *Deliverer) dial(ctx context.Context, src netip.Addr, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()
	if d.opts.Dial != nil {
		return d.opts.Dial(ctx, src, addr)
	}
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	return nd.DialContext(ctx, "tcp", addr)
}
