package sender

import (
	"context"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// TestSender_RepeatedJobNotSentTwice: a job that comes again after its
// attempt was recorded (what a NATS crash causes, see handled.go) is
// acknowledged, not delivered a second time.
func TestSender_RepeatedJobNotSentTwice(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	w := start(t, testConfig(r.Addr()), Options{})
	env := &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}
	w.publish(t, env, body)
	if d := w.next(t); d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Fatalf("first attempt: %+v", d)
	}
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
	// The same job again, under another Nats-Msg-Id so that JetStream's
	// duplicate window does not drop it first.
	if err := w.b.PublishMessage(context.Background(), bus.OutboundSubject("shared"), "again", env, body); err != nil {
		t.Fatal(err)
	}
	eventually(t, "repeat acked", func() bool { return w.outbound(t) == 0 })
	w.quiet(t, 500*time.Millisecond)
	if n := len(r.Messages()); n != 1 {
		t.Errorf("receiver got %d messages, want 1", n)
	}
}

// TestHandled_Load: a sender starting reads the recent attempts that left
// nothing to retry; attempts with deferred recipients, and old ones, are
// not remembered.
func TestHandled_Load(t *testing.T) {
	b := bustest.ConnectTo(t, natstest.Start(t).ClientURL(), nil)
	now := time.Now()
	ev := func(id string, at time.Time, outcomes ...events.Outcome) *events.Event {
		d := &events.Delivery{}
		for _, o := range outcomes {
			d.Rcpts = append(d.Rcpts, events.RcptReply{Rcpt: "x@example.net", Outcome: o})
		}
		return &events.Event{ID: id, Type: events.TypeDelivery, Time: at, Tenant: "t", Delivery: d}
	}
	for _, e := range []*events.Event{
		ev("done.delivery", now.Add(-time.Minute), events.OutcomeDelivered, events.OutcomeBounced),
		ev("waiting.delivery", now.Add(-time.Minute), events.OutcomeDelivered, events.OutcomeDeferred),
		{ID: "verdict", Type: events.TypeVerdict, Time: now, Tenant: "t"},
	} {
		if err := b.PublishEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandled()
	n, err := h.load(context.Background(), b, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || !h.has("done.delivery") || h.has("waiting.delivery") || h.has("verdict") {
		t.Errorf("loaded %d: done %v, waiting %v, verdict %v; want only the final attempt", n,
			h.has("done.delivery"), h.has("waiting.delivery"), h.has("verdict"))
	}
	// Entries older than handledMemory go at the next sweep (one per
	// tenth of it).
	h.add("old", now.Add(-2*handledMemory))
	h.add("new", now.Add(handledMemory/5))
	if h.has("old") || !h.has("new") {
		t.Errorf("after a sweep: old %v, new %v; want only new", h.has("old"), h.has("new"))
	}
}
