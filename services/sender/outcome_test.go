package sender

import (
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

func TestBackoff(t *testing.T) {
	r := Retry{FirstDelay: 5 * time.Minute, MaxDelay: 2 * time.Hour, MaxAge: 72 * time.Hour}
	tests := []struct {
		attempt  int
		giveRand float64
		want     time.Duration
	}{
		{1, 0.5, 5 * time.Minute},
		{2, 0.5, 10 * time.Minute},
		{3, 0.5, 20 * time.Minute},
		{5, 0.5, 80 * time.Minute},
		{6, 0.5, 2 * time.Hour}, // 160m capped
		{60, 0.5, 2 * time.Hour},
		{1, 0, 4 * time.Minute},                            // -20%
		{1, 0.999999, 6*time.Minute - 72*time.Microsecond}, // just under +20%
		{6, 0, 2 * time.Hour},                              // 128m after jitter, still capped
		{5, 0, 64 * time.Minute},
	}
	for _, tt := range tests {
		got := backoff(tt.attempt, r, func() float64 { return tt.giveRand })
		if got.Round(time.Millisecond) != tt.want.Round(time.Millisecond) {
			t.Errorf("backoff(%d, rand %v) = %v, want %v", tt.attempt, tt.giveRand, got, tt.want)
		}
	}
}

func TestDecide(t *testing.T) {
	r := Retry{FirstDelay: time.Minute, MaxDelay: time.Hour, MaxAge: 24 * time.Hour}
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	ok := delivery.RcptResult{Reply: delivery.Reply{Code: 250, Enhanced: "2.0.0", Text: "queued"}}
	temp := &delivery.Error{Reply: delivery.Reply{Code: 451, Enhanced: "4.3.0", Text: "later"}}
	perm := &delivery.Error{Reply: delivery.Reply{Code: 550, Enhanced: "5.1.1", Text: "unknown"}, Permanent: true}
	failed := func(e *delivery.Error) delivery.RcptResult { return delivery.RcptResult{Reply: e.Reply, Err: e} }
	noSuch := &delivery.Error{Reply: delivery.Reply{Enhanced: "5.1.2"}, Permanent: true}

	tests := []struct {
		name         string
		giveReceived time.Time
		giveResults  []delivery.RcptResult
		attempted    bool
		want         []events.Outcome
		wantRetry    []string
	}{
		{"all delivered", now, []delivery.RcptResult{ok, ok}, true,
			[]events.Outcome{events.OutcomeDelivered, events.OutcomeDelivered}, nil},
		{"mixed", now, []delivery.RcptResult{ok, failed(temp), failed(perm)}, true,
			[]events.Outcome{events.OutcomeDelivered, events.OutcomeDeferred, events.OutcomeBounced}, []string{"r1"}},
		{"DNS says no such domain", now, []delivery.RcptResult{failed(noSuch)}, true,
			[]events.Outcome{events.OutcomeBounced}, nil},
		{"deferred past max age expires", now.Add(-24*time.Hour + 30*time.Second), []delivery.RcptResult{failed(temp), ok}, true,
			[]events.Outcome{events.OutcomeExpired, events.OutcomeDelivered}, nil},
		{"not attempted", now.Add(-25 * time.Hour), nil, false,
			[]events.Outcome{events.OutcomeExpired, events.OutcomeExpired}, nil},
		{"no receive time never expires", time.Time{}, []delivery.RcptResult{failed(temp)}, true,
			[]events.Outcome{events.OutcomeDeferred}, []string{"r0"}},
	}
	for _, tt := range tests {
		env := &envelope.Envelope{ID: "m", Received: tt.giveReceived}
		for i := range max(len(tt.giveResults), 2) {
			env.Rcpts = append(env.Rcpts, "r"+string(rune('0'+i)))
		}
		env.Rcpts = env.Rcpts[:len(tt.want)]
		res := delivery.Result{Rcpts: tt.giveResults}
		p := decide(env, res, tt.attempted, now, r, func() float64 { return 0.5 })
		var got []events.Outcome
		for _, rr := range p.rcpts {
			got = append(got, rr.Outcome)
		}
		if strings.Join(outs(got), ",") != strings.Join(outs(tt.want), ",") || strings.Join(p.retry, ",") != strings.Join(tt.wantRetry, ",") {
			t.Errorf("%s: decide = %v retry %v, want %v retry %v", tt.name, got, p.retry, tt.want, tt.wantRetry)
		}
		if wantNext := len(tt.wantRetry) > 0; p.next.IsZero() == wantNext || (wantNext && !p.next.Equal(now.Add(time.Minute))) {
			t.Errorf("%s: next = %v, want %v", tt.name, p.next, wantNext)
		}
	}
}

func outs(o []events.Outcome) []string {
	s := make([]string, len(o))
	for i, x := range o {
		s[i] = string(x)
	}
	return s
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*Config)
		wantKey string
	}{
		{"defaults", func(*Config) {}, ""},
		{"workers", func(c *Config) { c.Workers = 0 }, "sender.workers"},
		{"max ack pending", func(c *Config) { c.MaxAckPending = 3 }, "sender.max_ack_pending"},
		{"resolver", func(c *Config) { c.Resolver = "8.8.8.8" }, "sender.resolver"},
		{"transport key", func(c *Config) { c.Transports = map[string]string{"Example.NET": "127.0.0.1:25"} }, "sender.transports"},
		{"transport value", func(c *Config) { c.Transports = map[string]string{"*": "127.0.0.1"} }, "sender.transports.*"},
		{"transport port", func(c *Config) { c.Transports = map[string]string{"example.net": "h:0"} }, "sender.transports.example.net"},
		{"first delay", func(c *Config) { c.Retry.FirstDelay = 0 }, "sender.retry.first_delay"},
		{"max delay below first", func(c *Config) { c.Retry.MaxDelay = time.Minute }, "sender.retry.max_delay"},
		{"max age", func(c *Config) { c.Retry.MaxAge = -time.Hour }, "sender.retry.max_age"},
		{"port", func(c *Config) { c.SMTPPort = 70000 }, "sender.smtp_port"},
		{"empty pool", func(c *Config) { c.Pools = []string{""} }, "sender.pools[0]"},
		{"timeouts", func(c *Config) { c.CommandTimeout = 0 }, "sender.command_timeout"},
		{"tenant override ok", func(c *Config) { c.Retry.Tenants = map[string]RetryOverride{"t1": {MaxAge: time.Hour}} }, ""},
		{"tenant override negative", func(c *Config) { c.Retry.Tenants = map[string]RetryOverride{"t1": {FirstDelay: -1}} }, "sender.retry.tenants.t1"},
		{"tenant override inconsistent", func(c *Config) {
			c.Retry.Tenants = map[string]RetryOverride{"t1": {FirstDelay: 3 * time.Hour}}
		}, "sender.retry.tenants.t1.max_delay"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.modify(&cfg)
		err := cfg.Validate()
		if (err == nil) != (tt.wantKey == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.wantKey+":")) {
			t.Errorf("%s: Validate() = %v, want key %q", tt.name, err, tt.wantKey)
		}
	}
}

func TestRetryFor(t *testing.T) {
	r := Retry{FirstDelay: 5 * time.Minute, MaxDelay: 2 * time.Hour, MaxAge: 72 * time.Hour,
		Tenants: map[string]RetryOverride{"fast": {FirstDelay: time.Minute, MaxAge: time.Hour}}}
	tests := []struct {
		tenant string
		want   Retry
	}{
		{"other", Retry{FirstDelay: 5 * time.Minute, MaxDelay: 2 * time.Hour, MaxAge: 72 * time.Hour}},
		{"fast", Retry{FirstDelay: time.Minute, MaxDelay: 2 * time.Hour, MaxAge: time.Hour}},
	}
	for _, tt := range tests {
		got := r.For(tt.tenant)
		if got.FirstDelay != tt.want.FirstDelay || got.MaxDelay != tt.want.MaxDelay || got.MaxAge != tt.want.MaxAge || got.Tenants != nil {
			t.Errorf("For(%q) = %+v, want %+v", tt.tenant, got, tt.want)
		}
	}
}

func TestFailedReasonAndBounceKind(t *testing.T) {
	tests := []struct {
		name       string
		outcome    events.Outcome
		err        *delivery.Error
		wantReason string
		wantBounce string
	}{
		{"unknown user", events.OutcomeBounced, &delivery.Error{Reply: delivery.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}, Permanent: true, Stage: delivery.StageRcpt}, "userunknown", "hard"},
		{"mailbox full", events.OutcomeDeferred, &delivery.Error{Reply: delivery.Reply{Code: 452, Enhanced: "4.2.2", Text: "mailbox full"}, Stage: delivery.StageRcpt}, "mailboxfull", ""},
		{"blocked", events.OutcomeBounced, &delivery.Error{Reply: delivery.Reply{Code: 550, Enhanced: "5.7.1", Text: "Service unavailable; client host blocked using zen.spamhaus.org"}, Permanent: true, Stage: delivery.StageMail}, "blocked", "soft"},
		{"expired", events.OutcomeExpired, &delivery.Error{Reply: delivery.Reply{Code: 451, Enhanced: "4.3.0", Text: "later"}, Stage: delivery.StageRcpt}, "expired", ""},
		{"held by shaping", events.OutcomeDeferred, &delivery.Error{Reply: delivery.Reply{Enhanced: "4.7.0", Text: "busy"}, Stage: delivery.StageShaping}, "", ""},
	}
	for _, tt := range tests {
		got := failed("a@example.net", tt.outcome, tt.err)
		if got.Reason != tt.wantReason || got.Bounce != tt.wantBounce {
			t.Errorf("%s: reason %q bounce %q, want %q %q", tt.name, got.Reason, got.Bounce, tt.wantReason, tt.wantBounce)
		}
	}
}
