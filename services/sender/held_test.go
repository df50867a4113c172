package sender

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/shaping"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// A backoff rule suspends the site for every source after a 421: the next
// job is held by shaping — no connection, no event, its attempt count
// unchanged — and goes out once the suspension ends.
func TestSender_HeldByShapingIsNotAnAttempt(t *testing.T) {
	var busy atomic.Bool
	busy.Store(true)
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		if busy.Load() {
			return smtptest.Reply(421, "4.7.0", "test-throttle: slow down")
		}
		return nil
	}}})
	cfg := testConfig(r.Addr())
	cfg.Retry.FirstDelay, cfg.Retry.MaxDelay, cfg.Retry.MaxAge = time.Hour, 2*time.Hour, 3*time.Hour
	cfg.Shaping.Backoff = []shaping.Rule{{Name: "test-suspend", Code: "421", Text: "test-throttle",
		Action: shaping.KindSuspend, Duration: 2 * time.Second, Scope: "site"}}
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"a@example.net"}, Domain: "example.net"}, body)
	if d := w.next(t); d.Rcpts[0].Outcome != events.OutcomeDeferred || d.Rcpts[0].Code != 421 {
		t.Fatalf("first event %+v, want deferred 421", d)
	}
	busy.Store(false)
	conns := r.Connections()
	published := time.Now()
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	d := w.next(t)
	if d.Attempt != 1 || d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Errorf("event %+v, want attempt 1 delivered: being held is not an attempt", d)
	}
	if waited := time.Since(published); waited < time.Second {
		t.Errorf("delivered %v after publishing, want after the suspension", waited)
	}
	if got := r.Connections(); got > conns+1 {
		t.Errorf("%d new connections while suspended, want at most the one that delivered", got-conns)
	}
}
