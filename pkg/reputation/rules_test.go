package reputation

import (
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/tenant"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r := DefaultRules()
	const w15, w1h = 15 * time.Minute, time.Hour
	// fig is a window's figures with the denominators of every rule at n.
	fig := func(w time.Duration, n uint64, set func(*TenantFigures)) TenantFigures {
		f := TenantFigures{Window: w, Messages: n, Verdicts: n, Delivered: n, Attempts: n}
		if set != nil {
			set(&f)
		}
		return f
	}
	spam := func(v float64) func(*TenantFigures) { return func(f *TenantFigures) { f.SpamRatio = v } }
	bounce := func(v float64) func(*TenantFigures) { return func(f *TenantFigures) { f.HardBounceRate = v } }
	complaint := func(v float64) func(*TenantFigures) { return func(f *TenantFigures) { f.ComplaintRate = v } }
	block := func(v float64) func(*TenantFigures) { return func(f *TenantFigures) { f.BlockRate = v } }
	spike := func(v float64, hours uint64) func(*TenantFigures) {
		return func(f *TenantFigures) { f.VolumeVsBaseline, f.BaselineHours = v, hours }
	}
	good := tenant.Policy{State: tenant.StateGood}
	in := func(s tenant.State, since time.Duration) tenant.Policy {
		return tenant.Policy{State: s, Since: now.Add(-since)}
	}
	tests := []struct {
		name     string
		cur      tenant.Policy
		figs     []TenantFigures
		want     tenant.State
		wantRule string
	}{
		{"no figures: stays good", good, nil, tenant.StateGood, ""},
		{"empty state is good", tenant.Policy{}, nil, tenant.StateGood, ""},
		{"clean figures", good, []TenantFigures{fig(w15, 5000, nil)}, tenant.StateGood, ""},
		{"spam 10% → probation", good, []TenantFigures{fig(w15, 500, spam(0.10))}, tenant.StateProbation, "spam_ratio"},
		{"spam 25% → throttled", good, []TenantFigures{fig(w15, 500, spam(0.25))}, tenant.StateThrottled, "spam_ratio"},
		{"spam 60% → suspended", good, []TenantFigures{fig(w15, 500, spam(0.60))}, tenant.StateSuspended, "spam_ratio"},
		{"spam under the floor", good, []TenantFigures{fig(w15, 199, spam(0.90))}, tenant.StateGood, ""},
		{"bounces 5% (SES review) → probation", good, []TenantFigures{fig(w15, 1000, bounce(0.05))}, tenant.StateProbation, "hard_bounce_rate"},
		{"bounces 10% (SES pause) → suspended", good, []TenantFigures{fig(w15, 1000, bounce(0.10))}, tenant.StateSuspended, "hard_bounce_rate"},
		{"1 bounce in 13 sends decides nothing", good, []TenantFigures{fig(w15, 13, bounce(1.0/13))}, tenant.StateGood, ""},
		{"complaints 0.1% → probation", good, []TenantFigures{fig(w1h, 5000, complaint(0.001))}, tenant.StateProbation, "complaint_rate"},
		{"complaints 0.3% → throttled", good, []TenantFigures{fig(w1h, 5000, complaint(0.003))}, tenant.StateThrottled, "complaint_rate"},
		{"complaints 0.5% → suspended", good, []TenantFigures{fig(w1h, 5000, complaint(0.005))}, tenant.StateSuspended, "complaint_rate"},
		{"complaints under the floor", good, []TenantFigures{fig(w1h, 1999, complaint(0.01))}, tenant.StateGood, ""},
		{"blocks 5% → throttled", good, []TenantFigures{fig(w1h, 2000, block(0.05))}, tenant.StateThrottled, "block_rate"},
		{"blocks 10% → suspended", good, []TenantFigures{fig(w1h, 2000, block(0.10))}, tenant.StateSuspended, "block_rate"},
		{"volume spike → probation", good, []TenantFigures{fig(w1h, 1000, spike(12, 48))}, tenant.StateProbation, "volume_spike"},
		{"volume spike without a baseline", good, []TenantFigures{fig(w1h, 1000, spike(12, 3))}, tenant.StateGood, ""},
		{"harshest finding over all windows wins", good,
			[]TenantFigures{fig(w15, 500, spam(0.12)), fig(w1h, 1000, bounce(0.11))}, tenant.StateSuspended, "hard_bounce_rate"},
		{"escalation ignores the cool-down", in(tenant.StateProbation, time.Second),
			[]TenantFigures{fig(w15, 500, spam(0.5))}, tenant.StateSuspended, "spam_ratio"},
		{"same level: no change", in(tenant.StateProbation, 2*time.Hour),
			[]TenantFigures{fig(w15, 500, spam(0.11))}, tenant.StateProbation, ""},
		{"harsher state than the figures: held during the cool-down", in(tenant.StateSuspended, 30*time.Minute),
			nil, tenant.StateSuspended, ""},
		{"recovery after the cool-down", in(tenant.StateProbation, 2*time.Hour),
			[]TenantFigures{fig(w15, 500, spam(0.01))}, tenant.StateGood, "recovered"},
		{"hysteresis: above half the entry keeps probation", in(tenant.StateProbation, 2*time.Hour),
			[]TenantFigures{fig(w15, 1000, bounce(0.03))}, tenant.StateProbation, ""},
		{"hysteresis: below half the entry recovers", in(tenant.StateProbation, 2*time.Hour),
			[]TenantFigures{fig(w15, 1000, bounce(0.02))}, tenant.StateGood, "recovered"},
		{"suspended steps down as far as the figures allow", in(tenant.StateSuspended, 2*time.Hour),
			[]TenantFigures{fig(w1h, 1000, spam(0.11))}, tenant.StateThrottled, "recovered"},
		{"no mail at all after the cool-down: good", in(tenant.StateThrottled, 2*time.Hour),
			nil, tenant.StateGood, "recovered"},
		{"pinned: never demoted", tenant.Policy{State: tenant.StateGood, Pinned: true},
			[]TenantFigures{fig(w15, 5000, spam(0.9))}, tenant.StateGood, ""},
		{"pinned: never restored", tenant.Policy{State: tenant.StateSuspended, Pinned: true, Since: now.Add(-48 * time.Hour)},
			nil, tenant.StateSuspended, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Decide(tt.cur, tt.figs, now)
			if d.To != tt.want || d.Rule != tt.wantRule || d.Change != (d.From != d.To) {
				t.Fatalf("Decide = %+v, want %s by %q", d, tt.want, tt.wantRule)
			}
			if d.Change && d.Reason == "" {
				t.Errorf("change without a reason: %+v", d)
			}
		})
	}
}

func TestRulesValidate(t *testing.T) {
	if err := DefaultRules().Validate("r"); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		set  func(*Rules)
		want string
	}{
		{"negative", func(r *Rules) { r.SpamRatio.Probation = -1 }, "r.spam_ratio.probation"},
		{"decreasing", func(r *Rules) { r.HardBounceRate.Suspended = 0.01 }, "r.hard_bounce_rate.suspended"},
		{"percent not fraction", func(r *Rules) { r.ComplaintRate.Suspended = 5 }, "r.complaint_rate"},
		{"leave", func(r *Rules) { r.Leave = 0 }, "r.leave"},
		{"cool-down", func(r *Rules) { r.CoolDown = -time.Second }, "r.cool_down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultRules()
			tt.set(&r)
			err := r.Validate("r")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
