package shaping

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/pool"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func TestWarmupCap(t *testing.T) {
	w := WarmupConfig{DailyCaps: []int{50, 100}}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		give    time.Time
		wantCap int
		wantOK  bool
	}{
		{time.Date(2026, 10, 30, 12, 0, 0, 0, time.UTC), 50, true}, // before the start: day 1
		{time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 50, true},
		{time.Date(2026, 11, 1, 23, 59, 59, 0, time.UTC), 50, true},
		{time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 100, true},
		{time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), 0, false},
	}
	for _, tt := range tests {
		c, ok := w.Cap(start, tt.give)
		if c != tt.wantCap || ok != tt.wantOK {
			t.Errorf("Cap(%v) = %d, %v, want %d, %v", tt.give, c, ok, tt.wantCap, tt.wantOK)
		}
	}
	if d := DefaultWarmup(); len(d.DailyCaps) != 44 || d.DailyCaps[0] != 50 {
		t.Errorf("default schedule: %d days from %d, want 44 capped days (no cap from day 45) from 50", len(d.DailyCaps), d.DailyCaps[0])
	}
}

// TestWarmup_CapAcrossProcessesThenOtherIPs: a warming IP sends at most
// its day's cap to a site, counted across two processes; then Sources
// leaves it out and the pool's other IP takes the mail; alone, Sources
// gives nothing until 00:00 UTC, when the next day's cap applies.
func TestWarmup_CapAcrossProcessesThenOtherIPs(t *testing.T) {
	srv := startNATS(t)
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	warming := pool.IP{Address: "127.0.0.2", EHLO: "a.test", WarmupStart: "2026-11-29"}
	seasoned := pool.IP{Address: "127.0.0.3", EHLO: "b.test"}
	pools := pool.Set{{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{warming, seasoned}}}
	cfg := DefaultConfig()
	w := WarmupConfig{DailyCaps: []int{5, 8}}
	a := startProc(t, srv, Options{Config: cfg, Warmup: w, Pools: pools, Now: clk.now})
	b := startProc(t, srv, Options{Config: cfg, Warmup: w, Pools: pools, Now: clk.now})
	ctx := context.Background()

	sent := 0
	for i := range 20 {
		p := a
		if i%2 == 1 {
			p = b
		}
		err := p.shaper.AllowMessage(ctx, warming.Address, "google", 0)
		if errors.Is(err, delivery.ErrRateLimited) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if sent != 5 {
		t.Fatalf("warming IP sent %d messages on day 1 across two processes, want the cap 5", sent)
	}
	// Other sites have their own count.
	if err := a.shaper.AllowMessage(ctx, warming.Address, "yahoo", 0); err != nil {
		t.Fatalf("another site on day 1: %v", err)
	}
	for _, p := range []*proc{a, b} {
		eventually(t, 5*time.Second, "Sources still offers the capped IP", func() bool {
			usable, _ := p.shaper.Sources("google", pools[0].IPs)
			return len(usable) == 1 && usable[0].Address == seasoned.Address
		})
	}
	usable, until := a.shaper.Sources("google", []pool.IP{warming})
	if want := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC); len(usable) != 0 || !until.Equal(want) {
		t.Fatalf("Sources(capped IP alone) = %v, until %v; want none until %v", usable, until, want)
	}
	// Day 2: cap 8.
	clk.set(time.Date(2026, 11, 30, 0, 0, 1, 0, time.UTC))
	usable, _ = a.shaper.Sources("google", []pool.IP{warming})
	if len(usable) != 1 {
		t.Fatalf("day 2: Sources = %v, want the warming IP back", usable)
	}
	sent = 0
	for range 20 {
		if a.shaper.AllowMessage(ctx, warming.Address, "google", 0) == nil {
			sent++
		}
	}
	if sent != 8 {
		t.Fatalf("day 2: sent %d, want 8", sent)
	}
	// Day 3: warm-up over.
	clk.set(time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC))
	for range 50 {
		if err := a.shaper.AllowMessage(ctx, warming.Address, "google", 0); err != nil {
			t.Fatalf("after the warm-up: %v", err)
		}
	}
}
