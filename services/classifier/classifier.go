// Package classifier is the pipeline stage that scores every submitted
// message before it leaves: it reads the submitted stream, runs the spam
// engine, and passes the message with its verdict to the router, reporting
// the verdict as an event. It acks a submission only after both are
// acknowledged by JetStream.
package classifier

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// Scorer scores one message. The spam engine (pkg/classify) satisfies it
// through a small adapter; it must be safe for concurrent use.
type Scorer interface {
	Score(ctx context.Context, msg []byte) (envelope.Verdict, error)
}

// Config of the classifier role.
type Config struct {
	// Workers is how many messages are handled at once; 0 means sixteen
	// per CPU: with a durable spool a worker spends most of its time
	// waiting for JetStream to fsync its output, not scoring, and the more
	// wait together the more share one fsync.
	Workers int `yaml:"workers"`
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.Workers < 0 {
		return errors.New("classifier.workers: must not be negative")
	}
	return nil
}

// Run consumes the submitted stream until ctx ends.
func Run(ctx context.Context, cfg Config, sc Scorer, b *bus.Bus, log *slog.Logger) error {
	workers := cfg.Workers
	if workers == 0 {
		workers = 16 * runtime.GOMAXPROCS(0)
	}
	c := bus.Consumer{Stream: bus.StreamSubmitted, Durable: "classifier", Workers: workers}
	return b.Consume(ctx, c, log, func(ctx context.Context, m jetstream.Msg) {
		handle(ctx, sc, b, log, m)
	})
}

func handle(ctx context.Context, sc Scorer, b *bus.Bus, log *slog.Logger, m jetstream.Msg) {
	env, err := envelope.Decode(m.Headers())
	if err != nil {
		log.Error("submitted message without envelope; terminated", "err", err)
		_ = m.Term()
		return
	}
	body, release, err := b.Body(ctx, env, m.Data())
	if err != nil {
		log.Error("load body", "tenant", env.Tenant, "msg_id", env.ID, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	v, err := sc.Score(ctx, body)
	release()
	if err != nil {
		log.Error("score", "tenant", env.Tenant, "msg_id", env.ID, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	env.Verdict = &v
	event := &events.Event{
		ID: env.ID + ".verdict", Type: events.TypeVerdict, Time: time.Now().UTC(),
		Tenant: env.Tenant, MsgID: env.ID, Verdict: env.Verdict,
	}
	// The two go to different streams, whose fsyncs overlap; waiting for
	// one after the other doubled the time a message spends here. If
	// either fails, a retry republishes both, and the one already stored
	// is a duplicate that JetStream (by Nats-Msg-Id) or analytics (by
	// event id) drops.
	var evErr error
	var wg sync.WaitGroup
	wg.Go(func() { evErr = b.PublishEvent(ctx, event) })
	err = b.PublishMessage(ctx, bus.SubjectClassified, env.ID, env, m.Data())
	wg.Wait()
	if err != nil {
		log.Warn("publish classified; will retry", "tenant", env.Tenant, "msg_id", env.ID, "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if evErr != nil {
		log.Warn("publish verdict event; will retry", "tenant", env.Tenant, "msg_id", env.ID, "err", evErr)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.Ack(); err != nil {
		log.Warn("ack submitted", "tenant", env.Tenant, "msg_id", env.ID, "err", err)
	}
}
