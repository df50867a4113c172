package bus

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// Events that are published while an earlier publish of the same type
// waits for JetStream go out together, as one stream message with one
// event per line (a group commit, groupcommit.go), and the first event of a
// batch waits Config.EventLinger for others. With sync_always every
// stored message costs an fsync, and every stage of every message reports
// events, so one message per event made the events stream the pipeline's
// bottleneck.
const (
	maxBatchEvents = 256
	maxBatchBytes  = 256 << 10
)

type pendingEvent struct {
	id, tenant string
	data       []byte
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
	subject := events.Subject + "." + string(e.Type)
	q := queueFor(&b.evMu, &b.evQueues, subject, func() *groupQueue[*pendingEvent] {
		eq := &eventQueue{b: b, subject: subject}
		return &groupQueue[*pendingEvent]{maxItems: maxBatchEvents, maxBytes: maxBatchBytes, linger: b.cfg.EventLinger,
			size: func(p *pendingEvent) int { return len(p.data) + 1 }, publish: eq.publish}
	})
	return q.add(ctx, &pendingEvent{id: e.ID, tenant: e.Tenant, data: data}, e.ID)
}

// eventQueue publishes the batches of one event subject.
type eventQueue struct {
	b       *Bus
	subject string
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
