package sender

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/events"
)

// handled remembers the delivery jobs in hand here and those whose attempt
// is already recorded, by the id of their delivery event
// (deliveryEventID), so that a job that comes again is acknowledged instead
// of sent again.
//
// Why: after a crash of the NATS server, JetStream hands out again what a
// consumer acknowledged in its last ~100 ms (consumer state is written up to
// ten times a second): OUTBOUND, a spool (pkg/bus spool.go), hands out jobs
// already attempted, and the SUBMITTED and CLASSIFIED spools route some
// messages a second time, after their first jobs were delivered and removed
// (so Nats-Msg-Id no longer catches them). The delivery event of each
// attempt is stored before its job is acked, so the events stream knows
// which jobs are done: a sender reads the last handledMemory of delivery
// events at start and adds its own as it goes. Copies of a job also come
// from batches (claim).
type handled struct {
	mu    sync.Mutex
	ids   map[jobKey]handledJob // delivery event id's key → its job here
	swept time.Time
}

// jobKey stands for a delivery event id: the first 128 bits of its SHA-256.
// A sender remembers every job of the last handledMemory (162,000 of them
// at 270 msgs/s), and the ids themselves (~60 bytes each, plus a string
// header and a time.Time per entry) made this the largest structure in a
// sender's heap; a key and a packed entry take a third as much. A
// collision between two of a few million ids has a probability below
// 10^-25.
type jobKey [16]byte

func keyOf(id string) jobKey {
	sum := sha256.Sum256([]byte(id))
	return jobKey(sum[:16])
}

type handledJob struct {
	at    int64 // when claimed or finished, Unix nanoseconds
	final bool  // its outcome is stored: a copy is never sent again
}

// handledMemory is how far back jobs are remembered: longer than a restart
// after a crash plus the time to route what was in flight.
const handledMemory = 10 * time.Minute

func newHandled() *handled { return &handled{ids: map[jobKey]handledJob{}} }

// add remembers a job whose outcome is stored.
func (h *handled) add(id string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.put(keyOf(id), at, true)
}

// put records a job and forgets those older than handledMemory (a sweep
// per tenth of it). Lock held.
func (h *handled) put(k jobKey, at time.Time, final bool) {
	h.ids[k] = handledJob{at: at.UnixNano(), final: final}
	if at.Sub(h.swept) > handledMemory/10 {
		oldest := at.Add(-handledMemory).UnixNano()
		for k, o := range h.ids {
			if o.at < oldest {
				delete(h.ids, k)
			}
		}
		h.swept = at
	}
}

// claim marks a job as in hand here and reports true, or reports false
// when it already is, or has finished: another copy of it came. Copies
// come when a batch (pkg/bus batch.go) is handled again after a crash or a
// redelivery and its messages are routed again: inside a batch a job has no
// Nats-Msg-Id of its own to stop the copy at the stream. The copy is
// acknowledged; the claimed one stays in the stream until its outcome is
// stored, so nothing is lost, and a claim is released when its job goes
// back to wait without an outcome (release).
func (h *handled) claim(id string, at time.Time) bool {
	k := keyOf(id)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ids[k]; ok {
		return false
	}
	h.put(k, at, false)
	return true
}

// release forgets a claim whose job was put back (to wait, for shaping,
// held, or redelivered after a failure): it comes again and must be
// handled. A finished job stays: its outcome is stored, even if the ack
// that followed failed.
func (h *handled) release(id string) {
	k := keyOf(id)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ids[k].final {
		delete(h.ids, k)
	}
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
