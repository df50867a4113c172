// Package tlspolicy decides how the sender protects each SMTP session with
// TLS and records how each session went. It implements delivery.TLSPolicy
// from, strongest first: DANE (RFC 7672, TLSA records vouched for by a
// validating resolver), MTA-STS (RFC 8461, a policy fetched over HTTPS and
// cached in memory and in the NATS KV bucket mta-sts, shared by every
// sender process), and the operator's per-domain mode (sender.tls). Every
// session's result becomes a tls event for the daily TLS-RPT reports
// (RFC 8460, pkg/tlsrpt).
package tlspolicy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/jsdeclare"
)

// TXTResolver looks up TXT records (MTA-STS); *resolver.Resolver is one.
type TXTResolver interface {
	TXT(ctx context.Context, name string) ([]string, error)
}

// TLSAResolver looks up TLSA records and says whether the answer carried
// the AD bit (DANE); *resolver.Resolver is one.
type TLSAResolver interface {
	TLSA(ctx context.Context, name string) ([]*dns.TLSA, bool, error)
}

// Options are what the policy uses besides its Config.
type Options struct {
	// Resolver answers address lookups for the MTA-STS fetch; when it is
	// also a TXTResolver MTA-STS works, when a TLSAResolver DANE does.
	// Nil turns both off.
	Resolver delivery.Resolver
	// JS, when set, holds the shared MTA-STS cache (bucket mta-sts, with
	// Replicas replicas).
	JS       jetstream.JetStream
	Replicas int
	// Publish stores tls events (bus.Bus.PublishEvent); nil records none.
	Publish func(ctx context.Context, e *events.Event) error
	// Sender names this sender process in events.
	Sender string
	// RootCAs and HTTPRootCAs replace the roots built from the config
	// (system roots plus ca_file) for SMTP and for policy fetches.
	RootCAs, HTTPRootCAs *x509.CertPool
	// HTTPSPort replaces 443 for policy fetches (tests).
	HTTPSPort int
	Now       func() time.Time
	Log       *slog.Logger
}

// Policy is the sender's delivery.TLSPolicy. Safe for concurrent use.
type Policy struct {
	cfg   Config
	opts  Options
	roots *x509.CertPool
	txt   TXTResolver
	tlsaR TLSAResolver
	http  *http.Client
	kv    jetstream.KeyValue

	mu  sync.Mutex
	sts map[string]*stsEntry // by domain
	// fetching has a channel per domain whose policy is being fetched,
	// closed when done: workers that need it meanwhile wait for that fetch.
	fetching map[string]chan struct{}
	tlsa     map[string]daneEntry // by MX host
}

var _ delivery.TLSPolicy = (*Policy)(nil)

// New returns a Policy; with opts.JS it declares the mta-sts bucket.
func New(ctx context.Context, cfg Config, opts Options) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &Policy{cfg: cfg, opts: opts, roots: opts.RootCAs, sts: map[string]*stsEntry{}, fetching: map[string]chan struct{}{}, tlsa: map[string]daneEntry{}}
	if p.roots == nil {
		r, err := loadRoots(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sender.tls.ca_file: %w", err)
		}
		p.roots = r
	}
	if opts.Resolver != nil {
		if cfg.MTASTS.Enabled {
			p.txt, _ = opts.Resolver.(TXTResolver)
		}
		if cfg.DANE.Enabled {
			p.tlsaR, _ = opts.Resolver.(TLSAResolver)
		}
	}
	if cfg.DANE.Enabled && p.tlsaR == nil {
		opts.Log.Warn("sender.tls.dane.enabled, but no DNS resolver that can look up TLSA records; DANE is off")
	}
	if p.txt != nil {
		roots := opts.HTTPRootCAs
		if roots == nil {
			r, err := loadRoots(cfg.MTASTS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("sender.tls.mta_sts.ca_file: %w", err)
			}
			roots = r
		}
		p.http = p.newHTTPClient(roots)
		if opts.JS != nil {
			kv, err := jsdeclare.KeyValue(ctx, opts.JS, jetstream.KeyValueConfig{
				Bucket: BucketMTASTS, Description: "cached MTA-STS policies by domain", History: 1,
				Replicas: max(opts.Replicas, 1),
			})
			if err != nil {
				return nil, err
			}
			p.kv = kv
		}
	}
	return p, nil
}

func (p *Policy) now() time.Time { return p.opts.Now() }

// reportInfo is the TLS-RPT "policy" of a requirement (RFC 8460 4.4).
type reportInfo struct {
	Type    string // sts, tlsa, no-policy-found
	Domain  string
	Strings []string
	MX      []string
}

// mode is the operator's mode for domain.
func (p *Policy) mode(domain string) delivery.TLSMode {
	if m, ok := p.cfg.Policies[domain]; ok {
		return m
	}
	return p.cfg.Default
}

func stricter(a, b delivery.TLSMode) delivery.TLSMode {
	if b.Rank() > a.Rank() {
		return b
	}
	return a
}

// ForHost implements delivery.TLSPolicy. DANE comes first: a host with
// secure TLSA records is verified by them and MTA-STS is not applied to
// it (RFC 8461 2). Then an MTA-STS policy in enforce mode rules out hosts
// it does not list and verifies the others' certificates (RFC 8461 4, 5);
// in testing mode it only reports. Then the operator's mode.
func (p *Policy) ForHost(ctx context.Context, domain, mx string) (delivery.TLSRequirement, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	mx = strings.ToLower(strings.TrimSuffix(mx, "."))
	mode := p.mode(domain)
	if p.tlsaR != nil {
		req, err := p.dane(ctx, domain, mx)
		if err != nil {
			return delivery.TLSRequirement{Mode: mode, Report: reportInfo{Type: events.TLSPolicyTLSA, Domain: domain}}, err
		}
		if req != nil {
			r := *req
			r.Mode = stricter(mode, r.Mode)
			return r, nil
		}
	}
	if p.txt != nil {
		if pol := p.stsPolicy(ctx, domain); pol != nil && pol.Mode != STSNone {
			info := reportInfo{Type: events.TLSPolicySTS, Domain: domain, Strings: pol.Lines, MX: pol.MX}
			verify := delivery.VerifyPKIX(p.roots, mx, p.now)
			if !pol.Matches(mx) {
				f := &delivery.TLSFailure{Type: delivery.ResultValidationFailure,
					Err: fmt.Errorf("mta-sts: no MX matches policy (%s is not in %s)", mx, strings.Join(pol.MX, ", "))}
				if pol.Mode == STSEnforce {
					return delivery.TLSRequirement{Mode: delivery.TLSVerify, Report: info}, f
				}
				if mode != delivery.TLSVerify {
					// Report-only; under the operator's verify mode Verify
					// is enforced, so there only the certificate counts.
					verify = func(tls.ConnectionState) error { return f }
				}
			}
			if pol.Mode == STSEnforce {
				return delivery.TLSRequirement{Mode: delivery.TLSVerify, Verify: verify, Report: info}, nil
			}
			// Testing: deliver as the operator's mode says, report what
			// enforce would have refused (RFC 8461 5).
			return delivery.TLSRequirement{Mode: stricter(mode, delivery.TLSOpportunistic), Verify: verify, Key: "sts-testing", Report: info}, nil
		}
	}
	req := delivery.TLSRequirement{Mode: mode, Report: reportInfo{Type: events.TLSPolicyNone, Domain: domain}}
	if mode == delivery.TLSVerify {
		req.Verify = delivery.VerifyPKIX(p.roots, mx, p.now)
	}
	return req, nil
}

// Result implements delivery.TLSPolicy: it stores the session's result as
// a tls event.
func (p *Policy) Result(ctx context.Context, r delivery.TLSResult) {
	info, _ := r.Req.Report.(reportInfo)
	if info.Type == "" {
		info = reportInfo{Type: events.TLSPolicyNone, Domain: r.Domain}
	}
	p.publish(ctx, info, r)
}

func (p *Policy) publish(ctx context.Context, info reportInfo, r delivery.TLSResult) {
	if !p.cfg.Report.Enabled || p.opts.Publish == nil {
		return
	}
	t := &events.TLS{
		PolicyDomain: info.Domain, PolicyType: info.Type, PolicyStrings: info.Strings, MXPatterns: info.MX,
		Result: events.TLSSuccess, MX: r.MX, SendingIP: r.SourceIP, ReceivingIP: r.RemoteIP, Sender: p.opts.Sender,
	}
	if r.Failure != nil {
		t.Result, t.Detail = r.Failure.Type, r.Failure.Err.Error()
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	ev := &events.Event{ID: "tls." + hex.EncodeToString(id[:]), Type: events.TypeTLS, Time: p.now().UTC(), TLS: t}
	// A result is recorded even when the delivery's context ends, and a
	// slow bus delays the session by at most this much.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.opts.Publish(pctx, ev); err != nil {
		p.opts.Log.Warn("record TLS result", "domain", info.Domain, "mx", r.MX, "err", err)
	}
}
