package bus

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// Events that are published while an earlier publish of the same type
// waits for JetStream go out together, as one stream message with one
// event per line (a group commit). With sync_always every stored message
// costs an fsync, and every stage of every message reports events, so one
// message per event made the events stream the pipeline's bottleneck.
// Nothing waits for a batch to fill: a lone event is published at once, and
// batching only happens when events arrive faster than JetStream stores them.
const (
	maxBatchEvents = 256
	maxBatchBytes  = 256 << 10
)

// eventQueue batches the events of one subject.
type eventQueue struct {
	b       *Bus
	subject string

	mu      sync.Mutex
	pending []*pendingEvent
	busy    bool // a goroutine is publishing; it takes pending when done
}

type pendingEvent struct {
	id, tenant string
	data       []byte
	done       chan error
}

// PublishEvent stores an event and returns when JetStream has acknowledged
// it (alone or within a batch). An event's id is its identity downstream:
// analytics skips ids it already stored, so an event published twice (a
// retry after a lost ack) is counted once.
func (b *Bus) PublishEvent(ctx context.Context, e *events.Event) error {
	data, err := events.Marshal(e)
	if err != nil {
		return err
	}
	q := b.eventQueue(events.Subject + "." + string(e.Type))
	p := &pendingEvent{id: e.ID, tenant: e.Tenant, data: data, done: make(chan error, 1)}
	q.mu.Lock()
	q.pending = append(q.pending, p)
	if !q.busy {
		q.busy = true
		go q.run()
	}
	q.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("publish event %s: %w", e.ID, ctx.Err())
	}
}

func (b *Bus) eventQueue(subject string) *eventQueue {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	q := b.evQueues[subject]
	if q == nil {
		if b.evQueues == nil {
			b.evQueues = map[string]*eventQueue{}
		}
		q = &eventQueue{b: b, subject: subject}
		b.evQueues[subject] = q
	}
	return q
}

// run publishes batches until nothing is pending.
func (q *eventQueue) run() {
	for {
		q.mu.Lock()
		n, size := 0, 0
		for n < len(q.pending) && n < maxBatchEvents && (n == 0 || size+len(q.pending[n].data) < maxBatchBytes) {
			size += len(q.pending[n].data) + 1
			n++
		}
		if n == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		batch := q.pending[:n:n]
		q.pending = q.pending[n:]
		q.mu.Unlock()
		err := q.publish(batch)
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (q *eventQueue) publish(batch []*pendingEvent) error {
	m := nats.NewMsg(q.subject)
	msgID := batch[0].id
	if len(batch) == 1 {
		m.Data = batch[0].data
	} else {
		msgID = "batch." + batch[0].id + "." + batch[len(batch)-1].id + "." + strconv.Itoa(len(batch))
		size := 0
		for _, p := range batch {
			size += len(p.data) + 1
		}
		m.Data = make([]byte, 0, size)
		for i, p := range batch {
			if i > 0 {
				m.Data = append(m.Data, '\n')
			}
			m.Data = append(m.Data, p.data...)
		}
	}
	// The tenant header is for tooling that filters by tenant; a batch of
	// several tenants has none.
	m.Header = nats.Header{}
	tenant := batch[0].tenant
	for _, p := range batch[1:] {
		if p.tenant != tenant {
			tenant = ""
			break
		}
	}
	if tenant != "" {
		m.Header.Set(envelope.HeaderTenant, tenant)
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.b.cfg.PublishTimeout)
	defer cancel()
	if _, err := q.b.JS.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %d event(s) %s: %w", len(batch), msgID, err)
	}
	return nil
}
