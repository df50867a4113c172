package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/outflowmail/outflow/pkg/pool"
)

// Shaper decides, per (source IP, site), when and from where mail may go. Its
// state must hold across sender processes. A nil Shaper in Options means no
// limits (tests, dev). pkg/shaping implements it.
type Shaper interface {
	// Site names the destination site of a domain from its MX host names
	// (already resolved, best first); domains whose MX hosts match share a
	// site and its limits. Transports: mxHosts is the transport host.
	Site(domain string, mxHosts []string) string
	// Limits are the effective limits toward site for domain (per-site /
	// per-domain overrides applied).
	Limits(site, domain string) Limits
	// Sources orders the pool's addresses for site: usable ones first in
	// rotation order; addresses suspended or out of rotation for site
	// (backoff actions), listed on a DNSBL, or over their warm-up cap today
	// are left out. Empty result: nothing may go to site now; until says
	// when to retry.
	Sources(site string, ips []pool.IP) (usable []pool.IP, until time.Time)
	// AcquireConn reserves one connection slot for (src, site), across
	// processes. It returns ErrBusy (wrapped) at once when the limit is
	// reached; the caller tries the next source or waits.
	AcquireConn(ctx context.Context, src, site string) (release func(), err error)
	// AllowMessage waits until (src, site) may send one more message (rate
	// per second/hour); it returns ErrRateLimited (wrapped) with no wait
	// when the wait would exceed maxWait.
	AllowMessage(ctx context.Context, src, site string, maxWait time.Duration) error
	// Observe feeds every reply from (src, site) — including successes,
	// which count for warm-up and recovery — to the backoff rules; it
	// returns the action taken, if any (for logging and events).
	Observe(src, site string, code int, enhanced, text string) Action
}

// Limits of one (source IP, site).
type Limits struct {
	MaxConnections     int           // concurrent connections; default 10 (KumoMTA)
	MaxMessagesPerConn int           // messages before the connection is closed; default 100
	MaxRcptsPerTxn     int           // RCPTs per transaction; default 100
	MessagesPerSecond  float64       // 0 = unlimited
	MessagesPerHour    int           // 0 = unlimited
	IdleTimeout        time.Duration // keep an idle connection this long; default 30s
}

// Action is what a backoff rule did.
type Action struct {
	Rule     string        // rule name
	Kind     string        // "suspend" | "throttle" | "remove" | "" (none)
	Duration time.Duration // how long the action lasts
}

// Errors a Shaper returns (wrapped).
var (
	ErrBusy        = errors.New("delivery: connection limit reached")
	ErrRateLimited = errors.New("delivery: message rate limit reached")
)
