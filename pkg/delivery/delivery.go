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
	// Source is the local address to connect from and its EHLO name.
	Source pool.IP
}

// Result is the outcome of an attempt.
type Result struct {
	// MX is the host that took the transaction, or the last one tried when
	// none did; empty when no host was found.
	MX string
	// Addr is the address (ip:port) of that host.
	Addr string
	// TLS says whether the transaction ran over STARTTLS.
	TLS bool
	// Rcpts has one entry per recipient of the job, in the job's order.
	Rcpts []RcptResult
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
	// Shuffle randomises MX hosts of equal preference; default
	// math/rand/v2's.
	Shuffle func(n int, swap func(i, j int))
	Log     *slog.Logger
}

// maxAddresses bounds the addresses one attempt connects to, as Postfix's
// smtp_mx_address_limit does: a domain with many MX hosts all down must not
// hold a worker for long; the next attempt tries again.
const maxAddresses = 5

// Deliverer delivers jobs. It is safe for concurrent use.
type Deliverer struct {
	opts Options
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
	if opts.Shuffle == nil {
		opts.Shuffle = rand.Shuffle
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{opts: opts}
}

// Deliver makes one attempt to deliver job. It tries the domain's hosts in
// order until one takes the transaction; that host's replies are final for
// this attempt. When none does, every recipient gets the same error:
// permanent only if every host failed permanently.
func (d *Deliverer) Deliver(ctx context.Context, job Job) Result {
	res := Result{}
	src, err := netip.ParseAddr(job.Source.Address)
	if err != nil {
		return failAll(res, job, classify(StageConnect, "", fmt.Errorf("%w %q: %w", ErrBadSource, job.Source.Address, err)))
	}
	src = src.Unmap()
	hosts, err := d.route(ctx, job.Domain)
	if err != nil {
		return failAll(res, job, classify(StageDNS, "", err))
	}
	var (
		tried    int
		failures []*Error
		otherFam bool // some host had addresses, none of our family
	)
	for _, h := range hosts {
		addrs, err := d.addrs(ctx, h)
		if err != nil {
			if !errors.Is(err, resolver.ErrNXDomain) {
				failures = append(failures, classify(StageDNS, h.name, err))
			}
			continue
		}
		for _, a := range addrs {
			if a.Is4() != src.Is4() {
				otherFam = true
				continue
			}
			if tried == maxAddresses {
				break
			}
			tried++
			ap := netip.AddrPortFrom(a, h.port)
			res.MX, res.Addr = h.name, ap.String()
			out, ferr := d.session(ctx, job, src, h.name, ap)
			if ferr == nil {
				return out
			}
			d.opts.Log.Debug("delivery host failed", "mx", h.name, "addr", ap.String(), "err", ferr)
			failures = append(failures, ferr)
		}
	}
	if tried == 0 && len(failures) == 0 {
		if otherFam {
			return failAll(res, job, classify(StageDNS, "", fmt.Errorf("%s: %w", job.Domain, ErrNoRoute)))
		}
		return failAll(res, job, classify(StageDNS, "", fmt.Errorf("%s: %w", job.Domain, ErrNoUsableMX)))
	}
	return failAll(res, job, worst(failures))
}

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

func (d *Deliverer) dial(ctx context.Context, src netip.Addr, addr string) (net.Conn, error) {
	if d.opts.Dial != nil {
		return d.opts.Dial(ctx, src, addr)
	}
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: d.opts.ConnectTimeout}
	return nd.DialContext(ctx, "tcp", addr)
}
