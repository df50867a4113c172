package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// readEvents returns every event in the events stream and how many stream
// messages held them.
func readEvents(t *testing.T, b *Bus) (evs []*events.Event, msgs []jetstream.Msg) {
	t.Helper()
	ctx := context.Background()
	s, err := b.JS.Stream(ctx, StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.UnmarshalAll(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, got...)
		msgs = append(msgs, m)
	}
	return evs, msgs
}

// TestPublishEvent_ConcurrentEventsShareMessages: events published at once
// are stored together, each exactly once, and every caller returns only
// after its event is stored.
func TestPublishEvent_ConcurrentEventsShareMessages(t *testing.T) {
	b := connect(t)
	const n = 300
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			tenant := "t1"
			if i%2 == 1 {
				tenant = "t2"
			}
			errs[i] = b.PublishEvent(context.Background(), &events.Event{
				ID: fmt.Sprintf("ev-%03d", i), Type: events.TypeVerdict, Tenant: tenant, MsgID: fmt.Sprint(i),
				Verdict: &events.Verdict{Score: float64(i), Label: "clean"}})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	evs, msgs := readEvents(t, b)
	seen := map[string]int{}
	for _, e := range evs {
		seen[e.ID]++
		if want := fmt.Sprintf("ev-%03d", int(e.Verdict.Score)); e.ID != want {
			t.Errorf("event %s carries the payload of %s", e.ID, want)
		}
	}
	for i := range n {
		if id := fmt.Sprintf("ev-%03d", i); seen[id] != 1 {
			t.Errorf("%s stored %d times, want 1", id, seen[id])
		}
	}
	if len(msgs) >= n {
		t.Errorf("%d events took %d stream messages; want them batched", n, len(msgs))
	}
	for _, m := range msgs {
		evs, _ := events.UnmarshalAll(m.Data())
		tenant := m.Headers().Get(envelope.HeaderTenant)
		mixed := false
		for _, e := range evs {
			mixed = mixed || e.Tenant != evs[0].Tenant
		}
		if mixed && tenant != "" || !mixed && tenant != evs[0].Tenant {
			t.Errorf("batch of %d events (mixed tenants %v) has tenant header %q", len(evs), mixed, tenant)
		}
	}
	t.Logf("%d events in %d stream messages", n, len(msgs))
}

// TestPublishEvent_LoneEventAlone: an event with nothing else to send is
// stored, after the linger, as a plain single event.
func TestPublishEvent_LoneEventAlone(t *testing.T) {
	b := connect(t)
	e := &events.Event{ID: "solo", Type: events.TypeRouted, Tenant: "t", MsgID: "m"}
	if err := b.PublishEvent(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	_, msgs := readEvents(t, b)
	if len(msgs) != 1 {
		t.Fatalf("%d stream messages, want 1", len(msgs))
	}
	if got := msgs[0].Headers().Get(jetstream.MsgIDHeader); got != "solo" {
		t.Errorf("Nats-Msg-Id = %q, want the event id", got)
	}
	want, _ := events.Marshal(e)
	if string(msgs[0].Data()) != string(want) {
		t.Errorf("payload = %s, want %s", msgs[0].Data(), want)
	}
}

// TestPublishEvent_Linger: events that come within the linger of the first
// share its stream message, and none is acknowledged before the linger of
// the first has passed; the next event starts a linger of its own.
func TestPublishEvent_Linger(t *testing.T) {
	const linger = 150 * time.Millisecond
	b := connectWith(t, func(c *Config) { c.EventLinger = linger })
	publish := func(id string) error {
		return b.PublishEvent(context.Background(), &events.Event{ID: id, Type: events.TypeDelivery, Tenant: "t", MsgID: id})
	}
	t0 := time.Now()
	done := make([]time.Duration, 5)
	errs := make([]error, 5)
	var wg sync.WaitGroup
	for i := range done {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			errs[i] = publish(fmt.Sprintf("e%d", i))
			done[i] = time.Since(t0)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if done[i] < linger {
			t.Errorf("event %d acknowledged after %v, before the linger (%v) of the first", i, done[i], linger)
		}
	}
	if err := publish("later"); err != nil {
		t.Fatal(err)
	}
	evs, msgs := readEvents(t, b)
	if len(evs) != 6 || len(msgs) != 2 {
		t.Fatalf("%d events in %d stream messages, want 5 together and the later one alone", len(evs), len(msgs))
	}
	if first, _ := events.UnmarshalAll(msgs[0].Data()); len(first) != 5 {
		t.Errorf("first stream message holds %d events, want 5", len(first))
	}
}
