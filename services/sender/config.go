package sender

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/dnsbl"
	"github.com/outflowmail/outflow/pkg/shaping"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

// Config of the sender role.
type Config struct {
	// Pools this sender serves, by name; empty serves every pool. Several
	// sender processes serving one pool share its work.
	Pools []string `yaml:"pools"`
	// Workers is how many deliveries run at once, per pool. A delivery
	// mostly waits (for a connection slot, the remote server, the fsync of
	// its event), so there are several times more workers than a site's
	// connections (docs/performance.md, "Third round: concurrency").
	Workers int `yaml:"workers"`
	// MaxAckPending bounds the jobs of a pool held unacknowledged across
	// all sender processes. Deferred jobs do not count: they wait as
	// JetStream message schedules, outside the consumer (docs/delivery.md).
	MaxAckPending int `yaml:"max_ack_pending"`
	// Resolver is the DNS server (host:port) asked for MX and address
	// records; empty means the first nameserver in /etc/resolv.conf. It
	// should be a validating recursive resolver you trust.
	Resolver string `yaml:"resolver"`
	// ResolverTimeout bounds each DNS query.
	ResolverTimeout time.Duration `yaml:"resolver_timeout"`
	// Transports send the mail of a recipient domain, or of every domain
	// ("*"), to a fixed host:port instead of the domain's MX hosts; an exact
	// domain wins over "*". Development points "*" at the capture receiver.
	Transports map[string]string `yaml:"transports"`
	// SMTPPort is the port of MX hosts (25; tests use another).
	SMTPPort int `yaml:"smtp_port"`
	// ConnectTimeout bounds a TCP connect to one address.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// CommandTimeout bounds the greeting and each command's reply
	// (RFC 5321 4.5.3.2 recommends 5 minutes).
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// DataTimeout bounds sending the body and the final reply (RFC 5321
	// 4.5.3.2.6: 10 minutes).
	DataTimeout time.Duration `yaml:"data_timeout"`
	// Retry is the schedule of deferred recipients.
	Retry Retry `yaml:"retry"`
	// Shaping, Warmup and DNSBL configure pkg/shaping (sites, limits per
	// source address and site, backoff rules, warm-up caps) and the
	// blocklist monitor (docs/delivery.md).
	Shaping shaping.Config       `yaml:"shaping"`
	Warmup  shaping.WarmupConfig `yaml:"warmup"`
	DNSBL   dnsbl.Config         `yaml:"dnsbl"`
	// TLS is the per-domain TLS policy, MTA-STS, DANE and TLS-RPT
	// (pkg/tlspolicy).
	TLS tlspolicy.Config `yaml:"tls"`
	// Identity is sender.dkim, sender.verp and sender.provider_id
	// (identity.go).
	Identity `yaml:",inline"`
}

// Retry is the retry schedule: the first retry after FirstDelay, each
// next one after twice the previous delay (±20% jitter), never more than
// MaxDelay apart, and no attempt once a message is MaxAge old (it expires).
type Retry struct {
	FirstDelay time.Duration `yaml:"first_delay"`
	MaxDelay   time.Duration `yaml:"max_delay"`
	MaxAge     time.Duration `yaml:"max_age"`
	// Tenants override the schedule per tenant id; a zero field keeps the
	// default's value.
	Tenants map[string]RetryOverride `yaml:"tenants"`
}

// RetryOverride is one tenant's retry schedule; zero fields inherit.
type RetryOverride struct {
	FirstDelay time.Duration `yaml:"first_delay"`
	MaxDelay   time.Duration `yaml:"max_delay"`
	MaxAge     time.Duration `yaml:"max_age"`
}

// For returns the schedule of tenant: the default with the tenant's
// override applied.
func (r Retry) For(tenant string) Retry {
	o, ok := r.Tenants[tenant]
	out := Retry{FirstDelay: r.FirstDelay, MaxDelay: r.MaxDelay, MaxAge: r.MaxAge}
	if !ok {
		return out
	}
	if o.FirstDelay > 0 {
		out.FirstDelay = o.FirstDelay
	}
	if o.MaxDelay > 0 {
		out.MaxDelay = o.MaxDelay
	}
	if o.MaxAge > 0 {
		out.MaxAge = o.MaxAge
	}
	return out
}

// validate names the first bad key below prefix.
func (r Retry) validate(prefix string) error {
	durations := []struct {
		key string
		d   time.Duration
	}{
		{prefix + ".first_delay", r.FirstDelay},
		{prefix + ".max_delay", r.MaxDelay},
		{prefix + ".max_age", r.MaxAge},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return fmt.Errorf("%s: %v, must be positive", d.key, d.d)
		}
	}
	switch {
	case r.MaxDelay < r.FirstDelay:
		return fmt.Errorf("%s.max_delay: %v is less than first_delay %v", prefix, r.MaxDelay, r.FirstDelay)
	case r.MaxAge < r.FirstDelay:
		return fmt.Errorf("%s.max_age: %v is less than first_delay %v", prefix, r.MaxAge, r.FirstDelay)
	}
	return nil
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Workers:         64,
		MaxAckPending:   4096,
		ResolverTimeout: 5 * time.Second,
		SMTPPort:        25,
		ConnectTimeout:  30 * time.Second,
		CommandTimeout:  5 * time.Minute,
		DataTimeout:     10 * time.Minute,
		Retry: Retry{
			FirstDelay: 5 * time.Minute,
			MaxDelay:   2 * time.Hour,
			MaxAge:     72 * time.Hour,
		},
		Identity: DefaultIdentity(),
		Shaping:  shaping.DefaultConfig(),
		Warmup:   shaping.DefaultWarmup(),
		DNSBL:    dnsbl.DefaultConfig(),
		TLS:      tlspolicy.DefaultConfig(),
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	for i, p := range c.Pools {
		if p == "" {
			return fmt.Errorf("sender.pools[%d]: empty pool name", i)
		}
	}
	if c.Workers < 1 {
		return errors.New("sender.workers: must be at least 1")
	}
	if c.MaxAckPending < c.Workers {
		return fmt.Errorf("sender.max_ack_pending: %d is less than workers (%d)", c.MaxAckPending, c.Workers)
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			return fmt.Errorf("sender.resolver: %w", err)
		}
	}
	for domain, to := range c.Transports {
		if domain == "" || (domain != "*" && (domain != strings.ToLower(domain) || strings.ContainsAny(domain, "@ *"))) {
			return fmt.Errorf("sender.transports: key %q must be a lower-case domain or \"*\"", domain)
		}
		if err := delivery.CheckTransport(to); err != nil {
			return fmt.Errorf("sender.transports.%s: %q: %w", domain, to, err)
		}
	}
	durations := []struct {
		key string
		d   time.Duration
	}{
		{"sender.resolver_timeout", c.ResolverTimeout},
		{"sender.connect_timeout", c.ConnectTimeout},
		{"sender.command_timeout", c.CommandTimeout},
		{"sender.data_timeout", c.DataTimeout},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return fmt.Errorf("%s: %v, must be positive", d.key, d.d)
		}
	}
	if c.SMTPPort < 1 || c.SMTPPort > 65535 {
		return fmt.Errorf("sender.smtp_port: %d, want 1-65535", c.SMTPPort)
	}
	if err := c.Retry.validate("sender.retry"); err != nil {
		return err
	}
	if err := c.Shaping.Validate(); err != nil {
		return err
	}
	if err := c.Warmup.Validate(); err != nil {
		return err
	}
	if err := c.DNSBL.Validate(); err != nil {
		return err
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	for _, tenant := range slices.Sorted(maps.Keys(c.Retry.Tenants)) {
		o := c.Retry.Tenants[tenant]
		if o.FirstDelay < 0 || o.MaxDelay < 0 || o.MaxAge < 0 {
			return fmt.Errorf("sender.retry.tenants.%s: durations must not be negative", tenant)
		}
		if err := c.Retry.For(tenant).validate("sender.retry.tenants." + tenant); err != nil {
			return err
		}
	}
	return c.Identity.validate()
}
