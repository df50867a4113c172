package router

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/suppression"
)

func TestSuppress_DropsListedRecipientsWithEvents(t *testing.T) {
	ctx := context.Background()
	b := bustest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := suppression.Open(ctx, b.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := store.Add(ctx, suppression.Entry{Tenant: "acme", Address: "gone@x.example", Reason: "userunknown",
		Source: suppression.SourceBounce, Created: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sl, stop, err := suppression.Watch(ctx, b.JS, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	tests := []struct {
		name         string
		tenant       string
		rcpts        []string
		wantRcpts    []string
		wantFinished bool
		wantEvents   int
	}{
		{"none suppressed", "acme", []string{"a@x.example"}, []string{"a@x.example"}, false, 0},
		{"one of two", "acme", []string{"a@x.example", "GONE@x.example"}, []string{"a@x.example"}, false, 1},
		{"all", "acme", []string{"gone@x.example"}, nil, true, 1},
		{"other tenant", "beta", []string{"gone@x.example"}, []string{"gone@x.example"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := &envelope.Envelope{ID: envelope.NewID(), Tenant: tt.tenant, Rcpts: tt.rcpts}
			finished, err := suppress(ctx, sl, b, env, now)
			if err != nil {
				t.Fatal(err)
			}
			if finished != tt.wantFinished || !slices.Equal(env.Rcpts, tt.wantRcpts) {
				t.Errorf("suppress(%v) = %v, rcpts %v; want %v, %v", tt.rcpts, finished, env.Rcpts, tt.wantFinished, tt.wantRcpts)
			}
			evs := suppressedEvents(t, b, env.ID)
			if len(evs) != tt.wantEvents {
				t.Fatalf("%d suppressed events, want %d", len(evs), tt.wantEvents)
			}
			for _, e := range evs {
				if e.Tenant != "acme" || e.Suppressed == nil || e.Suppressed.Reason != "userunknown" || e.Suppressed.Source != "bounce" {
					t.Errorf("event = %+v %+v", e, e.Suppressed)
				}
			}
		})
	}
}

// suppressedEvents reads the suppressed events of message msgID.
func suppressedEvents(t *testing.T, b *bus.Bus, msgID string) []*events.Event {
	t.Helper()
	ctx := context.Background()
	cons, err := b.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject + "." + string(events.TypeSuppressed)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Event
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return out
		}
		evs, err := events.UnmarshalAll(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.MsgID == msgID {
				out = append(out, e)
			}
		}
	}
}
