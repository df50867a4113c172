package sender

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// states is a tenant-state table the test changes as the reputation loop
// would through the tenant-policy bucket.
type states struct {
	mu sync.Mutex
	m  map[string]tenant.State
}

func (s *states) set(id string, st tenant.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = st
}

func (s *states) Policy(id string) tenant.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tenant.Policy{State: s.m[id]}
}

// A suspended tenant's queued job is held, not sent, while another
// tenant's goes out; released after the suspension ends, it is delivered
// from its pool.
func TestSender_HoldsSuspendedTenantsJobs(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	pol := &states{m: map[string]tenant.State{"bad": tenant.StateSuspended, "demo": tenant.StateGood}}
	w := start(t, testConfig(r.Addr()), Options{Policies: pol})
	ctx := context.Background()

	w.publish(t, &envelope.Envelope{Tenant: "bad", From: "a@bad.example", Rcpts: []string{"x@example.net"}, Domain: "example.net"}, body)
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"y@example.net"}, Domain: "example.net"}, body)

	if d := w.next(t); d.Rcpts[0].Rcpt != "y@example.net" || d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Fatalf("first delivery %+v, want the good tenant's", d.Rcpts)
	}
	var hs []held.Message
	eventually(t, "job held", func() bool {
		var err error
		hs, err = held.List(ctx, w.b, "bad")
		return err == nil && len(hs) == 1
	})
	if hs[0].From != bus.OutboundSubject("shared") || hs[0].Envelope.Domain != "example.net" {
		t.Errorf("held %+v from %s, want the example.net job from %s", hs[0].Envelope, hs[0].From, bus.OutboundSubject("shared"))
	}
	eventually(t, "held job acked", func() bool { return w.outbound(t) == 0 })
	time.Sleep(200 * time.Millisecond)
	if n := len(r.Messages()); n != 1 {
		t.Fatalf("receiver has %d messages, want only the good tenant's", n)
	}

	pol.set("bad", tenant.StateGood)
	if n, err := held.Release(ctx, w.b, "bad"); err != nil || n != 1 {
		t.Fatalf("Release = %d, %v; want 1", n, err)
	}
	if d := w.next(t); d.Rcpts[0].Rcpt != "x@example.net" || d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Fatalf("after release %+v, want the held job delivered", d.Rcpts)
	}
	if hs, err := held.List(ctx, w.b, "bad"); err != nil || len(hs) != 0 {
		t.Errorf("still held after release: %d, %v", len(hs), err)
	}
}
