package sender

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/events"
)

// handled remembers the delivery jobs whose attempt is already recorded,
// by the id of their delivery event (deliveryEventID), so that a job that
// comes again is acknowledged instead of sent again.
//
// Why: after a crash of the NATS server, JetStream hands out again what a
// consumer acknowledged in its last ~100 ms (consumer state is written up to
// ten times a second), and the SUBMITTED and CLASSIFIED spools (pkg/bus
// spool.go) then route some messages a second time, after their first jobs
// were delivered and removed (so Nats-Msg-Id no longer catches them). The
// delivery event of each attempt is stored before its job is acked, so the
// events stream knows which jobs are done: a sender reads the last
// handledMemory of delivery events at start and adds its own as it goes.
type handled struct {
	mu    sync.Mutex
	ids   map[string]time.Time // delivery event id → when recorded
	swept time.Time
}

// handledMemory is how far back jobs are remembered: longer than a restart
// after a crash plus the time to route what was in flight.
const handledMemory = 10 * time.Minute

func newHandled() *handled { return &handled{ids: map[string]time.Time{}} }

func (h *handled) add(id string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids[id] = at
	if at.Sub(h.swept) > handledMemory/10 {
		for k, t := range h.ids {
			if at.Sub(t) > handledMemory {
				delete(h.ids, k)
			}
		}
		h.swept = at
	}
}

func (h *handled) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.ids[id]
	return ok
}

// load reads the delivery events of the last handledMemory.
func (h *handled) load(ctx context.Context, b *bus.Bus, now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := now.Add(-handledMemory)
	cons, err := b.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject + "." + string(events.TypeDelivery)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return 0, fmt.Errorf("read recent delivery events: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read recent delivery events: %w", err)
	}
	n := 0
	for left := info.NumPending; left > 0; left-- {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return n, fmt.Errorf("read recent delivery events: %w", err)
		}
		evs, err := events.UnmarshalAll(m.Data())
		if err != nil {
			continue // not ours to judge; analytics reports it
		}
		for _, e := range evs {
			if final(e) {
				h.add(e.ID, e.Time)
				n++
			}
		}
	}
	return n, nil
}

// final reports whether an attempt left nothing to retry. One with
// deferred recipients is not remembered: its retry may not have been
// stored before the crash, and handling the job again stores it.
func final(e *events.Event) bool {
	if e.Delivery == nil {
		return false
	}
	for _, r := range e.Delivery.Rcpts {
		if r.Outcome == events.OutcomeDeferred {
			return false
		}
	}
	return true
}
