package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler processes one message. It must Ack, Nak, NakWithDelay or Term it;
// the context stays valid while the consumer drains at shutdown, so in-flight
// work can finish and be acknowledged.
type Handler func(ctx context.Context, m jetstream.Msg)

// Consumer describes a durable pull consumer and how to run it.
type Consumer struct {
	Stream string
	// Durable name; every process of a role uses the same one, so they share
	// the work.
	Durable string
	// FilterSubject, when set, narrows the stream (a pool's subject).
	FilterSubject string
	// Workers is how many messages are handled at once.
	Workers int
	// AckWait overrides the bus default (long SMTP transfers call InProgress).
	AckWait time.Duration
	// MaxAckPending bounds unacknowledged messages across all processes; 0
	// means Workers × 64.
	MaxAckPending int
}

// Consume runs c until ctx ends, then stops fetching, lets the workers finish
// (and ack or nak) the messages they hold, and returns. A message delivered
// more than the bus's MaxDeliver times is copied to the dead-letter stream and
// terminated instead of being handled again.
func (b *Bus) Consume(ctx context.Context, c Consumer, log *slog.Logger, h Handler) error {
	if c.Workers < 1 {
		c.Workers = 1
	}
	if c.AckWait == 0 {
		c.AckWait = b.cfg.AckWait
	}
	maxPending := c.MaxAckPending
	if maxPending == 0 {
		maxPending = c.Workers * 64
	}
	cc := jetstream.ConsumerConfig{
		Durable:       c.Durable,
		FilterSubject: c.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		// One more than our own limit, so that the delivery past it reaches
		// us and goes to the dead-letter stream rather than staying stuck.
		MaxDeliver:    b.cfg.MaxDeliver + 1,
		MaxAckPending: maxPending,
		Replicas:      b.cfg.Replicas,
	}
	cons, err := b.createConsumer(ctx, c.Stream, cc)
	if err != nil {
		// createConsumer gives up only when ctx ends: a role stopped while
		// it was starting, with nothing in hand, which is a clean stop.
		log.Info("stopped before the consumer was ready", "consumer", c.Durable, "err", err)
		return nil
	}
	// Up to Workers×2 messages wait prefetched, without InProgress: one
	// that waits there past the ack wait (60 s by default; only when every
	// worker is held that long, by slow destinations say) is delivered
	// again, and a repeat of a job is acknowledged by the sender's claim.
	iter, err := cons.Messages(jetstream.PullMaxMessages(c.Workers*2), jetstream.PullHeartbeat(5*time.Second))
	if err != nil {
		return fmt.Errorf("consume %s/%s: %w", c.Stream, c.Durable, err)
	}
	// Workers see a context that outlives ctx, so that draining completes.
	workCtx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	if spoolStreams[c.Stream] {
		// A filtered consumer purges only the subject it reads.
		wg.Go(func() { b.purgeSpool(ctx, c.Stream, c.FilterSubject, cons, log) })
	}
	batchSlots := make(chan struct{}, c.Workers)
	for range c.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := iter.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					// Heartbeats missed while the server restarts: the
					// iterator recovers by itself.
					log.Debug("consumer next", "consumer", c.Durable, "err", err)
					continue
				}
				if m.Headers().Get(HeaderBatch) != "" {
					b.handleBatch(workCtx, c, log, h, m, batchSlots)
					continue
				}
				b.handle(workCtx, c, log, h, m)
			}
		}()
	}
	<-ctx.Done()
	iter.Drain()
	wg.Wait()
	return nil
}

func (b *Bus) createConsumer(ctx context.Context, stream string, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := b.JS.CreateOrUpdateConsumer(cctx, stream, cc)
		cancel()
		if err == nil {
			return cons, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("consumer %s/%s: %w", stream, cc.Durable, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (b *Bus) handle(ctx context.Context, c Consumer, log *slog.Logger, h Handler, m jetstream.Msg) {
	if b.deadLettered(ctx, c, log, m) {
		return
	}
	b.handleOne(ctx, c, log, h, m)
}

// deadLettered moves m to the dead-letter stream, and says so, when it was
// delivered more than MaxDeliver times.
func (b *Bus) deadLettered(ctx context.Context, c Consumer, log *slog.Logger, m jetstream.Msg) bool {
	md, err := m.Metadata()
	if err != nil || md.NumDelivered <= uint64(b.cfg.MaxDeliver) {
		return false
	}
	b.deadLetter(ctx, c, log, m, md.NumDelivered)
	return true
}

// handleOne runs h on m; a panic is logged and m redelivered.
func (b *Bus) handleOne(ctx context.Context, c Consumer, log *slog.Logger, h Handler, m jetstream.Msg) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("handler panic; message will be redelivered", "consumer", c.Durable,
				"err", fmt.Errorf("panic: %v", r), "stack", string(debug.Stack()))
			_ = m.NakWithDelay(5 * time.Second)
		}
	}()
	h(ctx, m)
}

// deadLetter copies a message that keeps failing to the dead-letter stream,
// with where it came from, then terminates it in its own stream.
func (b *Bus) deadLetter(ctx context.Context, c Consumer, log *slog.Logger, m jetstream.Msg, n uint64) {
	dm := nats.NewMsg(SubjectDead + "." + c.Durable)
	dm.Data = m.Data()
	dm.Header = nats.Header{}
	for k, v := range m.Headers() {
		dm.Header[k] = v
	}
	dm.Header.Set("Outflow-Dead-Subject", m.Subject())
	dm.Header.Set("Outflow-Dead-Deliveries", fmt.Sprint(n))
	pctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if _, err := b.JS.PublishMsg(pctx, dm); err != nil {
		log.Error("dead-letter publish; will retry", "consumer", c.Durable, "err", err)
		_ = m.NakWithDelay(10 * time.Second)
		return
	}
	log.Error("message moved to dead-letter stream", "consumer", c.Durable, "subject", m.Subject(), "deliveries", n)
	_ = m.Term()
}

// KeepInProgress tells JetStream that m is still being worked on
// (InProgress) every interval until stop is called, so that a message held
// past the ack wait (a long transfer, a batch whose messages wait for
// workers) is not redelivered meanwhile.
func KeepInProgress(m jetstream.Msg, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(max(every, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
