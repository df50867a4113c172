package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/tenant"
)

func TestLimitsRateFor(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	c := LimitsConfig{Rate: 100, NewRate: 10, Ramp: 10 * 24 * time.Hour, ThrottledRate: 0.5, Burst: 1}
	day := 24 * time.Hour
	created := func(ago time.Duration) *tenant.Tenant { return &tenant.Tenant{ID: "t", Created: now.Add(-ago)} }
	good := tenant.Policy{State: tenant.StateGood}
	tests := []struct {
		name string
		c    LimitsConfig
		t    *tenant.Tenant
		p    tenant.Policy
		want float64
	}{
		{"new tenant starts low", c, created(0), good, 10},
		{"half the ramp", c, created(5 * day), good, 55},
		{"after the ramp", c, created(30 * day), good, 100},
		{"no creation time: established", c, &tenant.Tenant{ID: "t"}, good, 100},
		{"throttled", c, created(30 * day), tenant.Policy{State: tenant.StateThrottled}, 0.5},
		{"probation keeps the grown rate", c, created(30 * day), tenant.Policy{State: tenant.StateProbation}, 100},
		{"good again: history restarts", c, created(300 * day),
			tenant.Policy{State: tenant.StateGood, Since: now.Add(-day), By: "reputation-loop"}, 19},
		{"unlimited", LimitsConfig{ThrottledRate: 1, Burst: 1}, created(0), good, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.RateFor(tt.t, tt.p, now); got != tt.want {
				t.Errorf("RateFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLimiterBucket(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	l := newLimiter(LimitsConfig{Rate: 2, NewRate: 2, ThrottledRate: 0.5, Burst: 2})
	acme := &tenant.Tenant{ID: "acme"}
	other := &tenant.Tenant{ID: "other"}
	good := tenant.Policy{State: tenant.StateGood}
	for i := range 4 {
		if !l.allow(acme, good, now) {
			t.Fatalf("message %d of the 4-message burst refused", i+1)
		}
	}
	if l.allow(acme, good, now) {
		t.Fatal("fifth message of a 4-message burst accepted")
	}
	if !l.allow(other, good, now) {
		t.Fatal("another tenant limited by acme's bucket")
	}
	if !l.allow(acme, good, now.Add(500*time.Millisecond)) || l.allow(acme, good, now.Add(500*time.Millisecond)) {
		t.Fatal("half a second at 2/s should give exactly one message")
	}
	throttled := tenant.Policy{State: tenant.StateThrottled}
	later := now.Add(time.Hour)
	if !l.allow(acme, throttled, later) || l.allow(acme, throttled, later) {
		t.Fatal("throttled at 0.5/s with a 2 s burst: one message, then none")
	}
	if !l.allow(acme, throttled, later.Add(2*time.Second)) {
		t.Fatal("throttled bucket not refilled after 2 s")
	}
}

func TestLimitsDailyCap(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	c := LimitsConfig{Rate: 100, NewRate: 10, Ramp: 10 * day, ThrottledRate: 1, Burst: 1, NewDailyCap: 100}
	good := tenant.Policy{State: tenant.StateGood}
	created := func(ago time.Duration) *tenant.Tenant { return &tenant.Tenant{ID: "t", Created: now.Add(-ago)} }
	for _, tt := range []struct {
		name string
		c    LimitsConfig
		t    *tenant.Tenant
		want int64
	}{
		{"first day", c, created(0), 100},
		{"half the ramp", c, created(5 * day), 100 + 4950},
		{"after the ramp: none", c, created(10 * day), 0},
		{"seeded: none", c, &tenant.Tenant{ID: "t"}, 0},
		{"off", LimitsConfig{Ramp: 10 * day}, created(0), 0},
	} {
		if got := tt.c.DailyCapFor(tt.t, good, now); got != tt.want {
			t.Errorf("%s: DailyCapFor = %d, want %d", tt.name, got, tt.want)
		}
	}

	l := newLimiter(LimitsConfig{Rate: 100, NewRate: 100, Ramp: 10 * day, ThrottledRate: 1, Burst: 1, NewDailyCap: 3})
	ten := created(0)
	for i := range 3 {
		if !l.underCap(ten, good, now) {
			t.Fatalf("message %d of 3 refused", i+1)
		}
		l.count(ten.ID, now)
	}
	if l.underCap(ten, good, now) {
		t.Fatal("fourth message of a 3-message day accepted")
	}
	if !l.underCap(ten, good, now.Add(13*time.Hour)) {
		t.Fatal("cap not reset on the next UTC day")
	}
}

// TestSubmit_DailyCap: a tenant created now may submit new_daily_cap
// messages, then gets 451 4.7.1.
func TestSubmit_DailyCap(t *testing.T) {
	f := start(t, func(c *Config) { c.Limits.NewDailyCap = 2 })
	acme, err := f.store.Get(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	acme.Created = time.Now().UTC()
	if err := f.store.Put(context.Background(), acme); err != nil {
		t.Fatal(err)
	}
	for f.srv.dir.Tenant("acme").Created.IsZero() {
		time.Sleep(5 * time.Millisecond)
	}
	c := dial(t, f.srv.Addr("plain"))
	auth(t, c)
	for i := range 2 {
		if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	wantCode(t, "third message", c.Mail("a@acme.example", nil), 451, smtp.EnhancedCode{4, 7, 1})
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name string
		set  func(*LimitsConfig)
		want string
	}{
		{"rate", func(c *LimitsConfig) { c.Rate = -1 }, "ingest.limits.rate"},
		{"new above rate", func(c *LimitsConfig) { c.NewRate = c.Rate + 1 }, "ingest.limits.new_rate"},
		{"throttled", func(c *LimitsConfig) { c.ThrottledRate = 0 }, "ingest.limits.throttled_rate"},
		{"burst", func(c *LimitsConfig) { c.Burst = 0 }, "ingest.limits.burst"},
		{"daily cap", func(c *LimitsConfig) { c.NewDailyCap = -1 }, "ingest.limits.new_daily_cap"},
	}
	for _, tt := range tests {
		c := DefaultLimitsConfig()
		tt.set(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

// TestSubmit_Throttled: a throttled policy written to KV reaches ingest by
// its watch within a second, after which the tenant's messages beyond its
// lowered rate get 451 4.7.1; back to good, they are accepted again.
func TestSubmit_Throttled(t *testing.T) {
	f := start(t, func(c *Config) { c.Limits.ThrottledRate, c.Limits.Burst = 0.2, 1 })
	c := dial(t, f.srv.Addr("plain"))
	auth(t, c)
	for i := range 5 {
		if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
			t.Fatalf("good tenant, message %d: %v", i+1, err)
		}
	}
	at := time.Now()
	if err := f.store.PutPolicy(context.Background(), "acme",
		tenant.Policy{State: tenant.StateThrottled, Reason: "complaint_rate 0.30% over 15m0s", Since: at}); err != nil {
		t.Fatal(err)
	}
	for f.srv.dir.Policy("acme").State != tenant.StateThrottled {
		if time.Since(at) > time.Second {
			t.Fatal("throttled policy not applied within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("policy applied by ingest %v after the KV write", time.Since(at).Round(time.Millisecond))
	if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
		t.Fatalf("first throttled message (the bucket's one): %v", err)
	}
	wantCode(t, "second throttled message", c.Mail("a@acme.example", nil), 451, smtp.EnhancedCode{4, 7, 1})
	setPolicy(t, f, tenant.StateGood, "")
	// Good again, the bucket refills at the good rate (a new tenant's,
	// since its history restarts): a client retrying after 451 as RFC 5321
	// asks gets through within a second, not at the throttled 0.2/s.
	var err error
	for start := time.Now(); time.Since(start) < time.Second; time.Sleep(50 * time.Millisecond) {
		if err = c.Reset(); err != nil {
			t.Fatal(err)
		}
		if err = send(c, "a@acme.example", []string{"b@example.net"}, testBody); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("good again: %v", err)
	}
}
