package ingest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/tenant"
)

// LimitsConfig is the per-tenant submission rate (ingest.limits): a token
// bucket per tenant in each ingest process, refilled at the tenant's rate,
// one token per message. Beyond it MAIL FROM gets 451 4.7.1 and the
// client retries later, as with any greylisting.
type LimitsConfig struct {
	// Rate is the messages per second of an established tenant in good
	// standing (0: unlimited).
	Rate float64 `yaml:"rate"`
	// NewRate is where a new tenant starts: its rate grows linearly from
	// NewRate to Rate over Ramp of history without incident, counted from
	// the later of its creation and the end of its last bad state.
	NewRate float64       `yaml:"new_rate"`
	Ramp    time.Duration `yaml:"ramp"`
	// ThrottledRate is the rate of a tenant the reputation loop throttled.
	ThrottledRate float64 `yaml:"throttled_rate"`
	// Burst is how many seconds of its rate a tenant may send at once
	// (at least one message).
	Burst float64 `yaml:"burst"`
	// NewDailyCap is how many messages a tenant may submit per UTC day on
	// its first day; the cap grows linearly to 100 times that by the end of
	// Ramp, after which there is none (0: no cap at all). A stolen new
	// account can do only so much damage before the loop has figures.
	NewDailyCap int64 `yaml:"new_daily_cap"`
}

// DefaultLimitsConfig returns the defaults.
func DefaultLimitsConfig() LimitsConfig {
	return LimitsConfig{Rate: 100, NewRate: 5, Ramp: 30 * 24 * time.Hour, ThrottledRate: 0.5, Burst: 2, NewDailyCap: 10_000}
}

// Validate names the first bad key.
func (c LimitsConfig) Validate() error {
	switch {
	case c.Rate < 0:
		return errors.New("ingest.limits.rate: must not be negative")
	case c.NewRate < 0 || (c.Rate > 0 && c.NewRate > c.Rate):
		return fmt.Errorf("ingest.limits.new_rate: %v is outside 0..rate", c.NewRate)
	case c.ThrottledRate <= 0:
		return errors.New("ingest.limits.throttled_rate: must be positive")
	case c.Ramp < 0:
		return errors.New("ingest.limits.ramp: must not be negative")
	case c.Burst <= 0:
		return errors.New("ingest.limits.burst: must be positive")
	case c.NewDailyCap < 0:
		return errors.New("ingest.limits.new_daily_cap: must not be negative")
	}
	return nil
}

var (
	errThrottled = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Sending rate exceeded for this account, try again later"}
	errDailyCap = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Daily sending limit of this new account reached, try again tomorrow"}
)

// history is how far t is through the ramp (0 new, 1 established): time
// since the later of its creation and its last return to good.
func (c LimitsConfig) history(t *tenant.Tenant, p tenant.Policy, now time.Time) float64 {
	start := t.Created
	if p.State == tenant.StateGood && p.Since.After(start) && p.By != "" {
		start = p.Since // good again since then: history restarts
	}
	if start.IsZero() || c.Ramp == 0 {
		return 1 // seeded tenants without a creation time: established
	}
	return min(max(float64(now.Sub(start))/float64(c.Ramp), 0), 1)
}

// DailyCapFor is a tenant's cap of messages per UTC day; 0 means none.
func (c LimitsConfig) DailyCapFor(t *tenant.Tenant, p tenant.Policy, now time.Time) int64 {
	f := c.history(t, p, now)
	if c.NewDailyCap == 0 || f >= 1 {
		return 0
	}
	return c.NewDailyCap + int64(f*99*float64(c.NewDailyCap))
}

// RateFor is a tenant's messages per second: ThrottledRate when throttled,
// else between NewRate and Rate by its history. 0 means unlimited.
func (c LimitsConfig) RateFor(t *tenant.Tenant, p tenant.Policy, now time.Time) float64 {
	if p.State == tenant.StateThrottled {
		return c.ThrottledRate
	}
	if c.Rate == 0 {
		return 0
	}
	return c.NewRate + c.history(t, p, now)*(c.Rate-c.NewRate)
}

// limiter holds one token bucket and one day's count per tenant.
type limiter struct {
	cfg     LimitsConfig
	mu      sync.Mutex
	buckets map[string]*tokenBucket
	days    map[string]dayCount
}

type dayCount struct {
	day string // UTC date
	n   int64
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg LimitsConfig) *limiter {
	return &limiter{cfg: cfg, buckets: map[string]*tokenBucket{}, days: map[string]dayCount{}}
}

// underCap reports whether t may submit another message today.
func (l *limiter) underCap(t *tenant.Tenant, p tenant.Policy, now time.Time) bool {
	limit := l.cfg.DailyCapFor(t, p, now)
	if limit == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.days[t.ID]
	return d.day != now.UTC().Format(time.DateOnly) || d.n < limit
}

// count records one accepted message of tenant id today.
func (l *limiter) count(id string, now time.Time) {
	if l.cfg.NewDailyCap == 0 {
		return
	}
	day := now.UTC().Format(time.DateOnly)
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.days[id]
	if d.day != day {
		d = dayCount{day: day}
	}
	d.n++
	l.days[id] = d
}

// allow takes a token for one message of t, or reports that there is none.
func (l *limiter) allow(t *tenant.Tenant, p tenant.Policy, now time.Time) bool {
	rate := l.cfg.RateFor(t, p, now)
	if rate == 0 {
		return true
	}
	capacity := max(rate*l.cfg.Burst, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[t.ID]
	if !ok {
		b = &tokenBucket{tokens: capacity, last: now}
		l.buckets[t.ID] = b
	}
	b.tokens = min(capacity, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
