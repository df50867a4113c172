package sender

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// A deferred job waits as a message schedule: stored in OUTBOUND, but
// neither pending nor unacknowledged for the pool's consumer.
func TestSender_DeferredJobIsNotPending(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		return smtptest.Reply(451, "4.7.1", "greylisted, try later")
	}}})
	cfg := testConfig(r.Addr())
	cfg.Retry.FirstDelay, cfg.Retry.MaxDelay, cfg.Retry.MaxAge = time.Hour, 2*time.Hour, 3*time.Hour
	w := start(t, cfg, Options{})
	for i := range 20 {
		w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Domain: "example.net",
			Rcpts: []string{"b" + strings.Repeat("x", i) + "@example.net"}}, body)
	}
	for range 20 {
		if d := w.next(t); d.Rcpts[0].Outcome != events.OutcomeDeferred || d.NextAttempt.IsZero() {
			t.Fatalf("event %+v, want deferred with a next attempt", d)
		}
	}
	eventually(t, "20 schedules stored, none pending", func() bool {
		return w.outbound(t) == 20 && w.unacked(t) == 0
	})
}

// The retry of a deferred job arrives as soon as its schedule is due (the
// schedule timer fires within 250 ms of its time, plus the fetch).
func TestSender_RetryDeliveredPromptlyWhenDue(t *testing.T) {
	var calls atomic.Int32
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		if calls.Add(1) == 1 {
			return smtptest.Reply(450, "4.2.1", "mailbox busy")
		}
		return nil
	}}})
	cfg := testConfig(r.Addr())
	cfg.Retry.FirstDelay, cfg.Retry.MaxDelay = 1500*time.Millisecond, 3*time.Second
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	first := w.next(t)
	if first.Rcpts[0].Outcome != events.OutcomeDeferred || first.Rcpts[0].Code != 450 || first.Rcpts[0].Text != "mailbox busy" {
		t.Fatalf("first event %+v, want deferred 450 mailbox busy", first)
	}
	m := r.Wait(t, 1)[0]
	late := m.Time.Sub(first.NextAttempt)
	if late < 0 || late > time.Second {
		t.Errorf("retry delivered %v after its due time, want within [0, 1s)", late)
	}
	if second := w.next(t); second.Attempt != 2 || second.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Errorf("second event %+v, want attempt 2 delivered", second)
	}
}

// A tenant's retry override replaces the default schedule for its mail
// only.
func TestSender_TenantRetryOverride(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		return smtptest.Reply(452, "4.2.2", "mailbox full")
	}}})
	cfg := testConfig(r.Addr())
	cfg.Retry.FirstDelay, cfg.Retry.MaxDelay = time.Hour, 2*time.Hour
	cfg.Retry.Tenants = map[string]RetryOverride{"impatient": {FirstDelay: 100 * time.Millisecond, MaxDelay: 200 * time.Millisecond, MaxAge: time.Second}}
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "impatient", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	var last *events.Delivery
	for last == nil || last.Rcpts[0].Outcome == events.OutcomeDeferred {
		last = w.next(t)
		if last.Rcpts[0].Outcome == events.OutcomeDeferred && last.NextAttempt.Sub(time.Now()) > time.Second {
			t.Fatalf("next attempt %v: the tenant's schedule was not used", last.NextAttempt)
		}
	}
	if last.Rcpts[0].Outcome != events.OutcomeExpired || last.Rcpts[0].Reason != "expired" {
		t.Errorf("last event %+v, want expired after the tenant's 1s max age", last)
	}
}
