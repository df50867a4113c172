package sender

import (
	"context"
	"fmt"
	"runtime"
	"sync"
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

// TestHandled_Claim: a claimed job cannot be claimed again until it is
// released; a finished one stays through a release.
func TestHandled_Claim(t *testing.T) {
	h := newHandled()
	now := time.Now()
	for _, step := range []struct {
		do   string
		want bool // claim's answer, or has after the step
	}{
		{"claim", true},
		{"claim", false}, // a copy while the first is in hand
		{"release", false},
		{"claim", true}, // put back (to wait, shaped, failed): it may come again
		{"add", true},
		{"release", true}, // finished: an ack that failed after the outcome was stored
		{"claim", false},
	} {
		var got bool
		switch step.do {
		case "claim":
			got = h.claim("j", now)
		case "release":
			h.release("j")
			got = h.has("j")
		case "add":
			h.add("j", now)
			got = h.has("j")
		}
		if got != step.want {
			t.Fatalf("%s: %v, want %v", step.do, got, step.want)
		}
	}
}

// TestSender_CopiesInHandSentOnce: two copies of one job (as a batch
// handled again after a crash leaves them, each with its own Nats-Msg-Id)
// are in the stream at once; while the first is being delivered the second
// is acknowledged, and the receiver gets the message once.
func TestSender_CopiesInHandSentOnce(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Data: func(smtptest.Message) error {
		once.Do(func() { <-release }) // hold the first DATA until the copy is acked
		return nil
	}}})
	w := start(t, testConfig(r.Addr()), Options{})
	env := &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}
	w.publish(t, env, body)
	if err := w.b.PublishMessage(context.Background(), bus.OutboundSubject("shared"), "copy", env, body); err != nil {
		t.Fatal(err)
	}
	eventually(t, "copy acked while the first is in hand", func() bool { return w.unacked(t) == 1 })
	close(release)
	if d := w.next(t); d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Fatalf("attempt: %+v", d)
	}
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
	w.quiet(t, 500*time.Millisecond)
	if n := len(r.Messages()); n != 1 {
		t.Errorf("receiver got %d messages, want 1", n)
	}
}

// has reports whether the job is claimed or finished here (for the tests:
// the sender itself only claims).
func (h *handled) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ids[keyOf(id)]
	return ok
}

// TestHandled_Forgets: a job is remembered for handledMemory after it was
// finished (or claimed), then forgotten at the next sweep.
func TestHandled_Forgets(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		later time.Duration // when the next job is added
		want  bool          // the first job still known
	}{
		{"within the memory", handledMemory - time.Minute, true},
		{"at its end", handledMemory, true},
		{"past it", handledMemory + time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandled()
			h.add("first.example.net.1.delivery", t0)
			h.add("second.example.net.1.delivery", t0.Add(tt.later))
			if got := h.has("first.example.net.1.delivery"); got != tt.want {
				t.Errorf("first job known = %v, want %v", got, tt.want)
			}
			if !h.has("second.example.net.1.delivery") {
				t.Error("the job just added is not known")
			}
		})
	}
}

// BenchmarkHandled_Memory reports the heap a remembered job costs (B/job):
// a sender holds handledMemory's worth of them.
func BenchmarkHandled_Memory(b *testing.B) {
	const jobs = 100_000
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x.recipient-domain.example.1", i)
	}
	now := time.Now()
	var perJob float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h := newHandled()
		for _, id := range ids {
			// A new string per job, as deliveryEventID makes.
			h.add(id+".delivery", now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perJob = float64(after.HeapAlloc-before.HeapAlloc) / jobs
		runtime.KeepAlive(h)
	}
	b.ReportMetric(perJob, "B/job")
}
