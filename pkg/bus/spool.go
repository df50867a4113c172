package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/jsdeclare"
)

// Spools: SUBMITTED, CLASSIFIED and OUTBOUND are read by durable consumers
// (one per role, or per pool, shared by every process) and are, in effect,
// work queues. They are declared with limits retention instead, and a
// message leaves when its consumer's ack floor has passed it and the
// consumer's process purges the stream up to there (purgeSpool, once a
// second).
//
// Why: with sync_always every removal from a work-queue stream writes a
// fsync'd tombstone, so an ack cost as much disk time as a publish, and a
// stream's writes are serialised (the tombstone is written under the lock
// the next publish needs); the three hops paid six fsyncs per message where
// three store it. A purge up to the ack floor removes whole runs of
// messages with one write. The consumer's acks are still persisted
// (JetStream writes consumer state up to ten times a second, fsync'd): a
// crash forgets at most the last ~100 ms of acks, and those messages are
// handled again, which at-least-once allows. The next stage's Nats-Msg-Id
// de-duplication absorbs repeats of the first two; a repeated delivery job
// is recognised by the sender, which reads the delivery events of the last
// minutes at start (services/sender/handled.go) and acknowledges a job whose
// attempt is recorded instead of sending it again. The delivery event is
// stored before the job is acknowledged, so a job whose ack a crash forgot
// always has one.
//
// OUTBOUND also holds deferred jobs as message schedules on other subjects
// (schedule.go), so a pool's consumer purges only its pool's subject.
var spoolStreams = map[string]bool{StreamSubmitted: true, StreamClassified: true, StreamOutbound: true}

// PurgeInterval is how often a spool's consumer purges what it acknowledged.
const PurgeInterval = time.Second

// errOtherLayout: a stream in another version's layout still holds mail;
// retrying the declaration cannot help.
var errOtherLayout = errors.New("stream in another version's layout")

func spool(c jetstream.StreamConfig) jetstream.StreamConfig {
	c.Retention = jetstream.LimitsPolicy
	return c
}

// declareStream creates a stream or updates it when its configuration
// changed (jsdeclare: never a needless update). A stream left with another
// retention by another version (a spool that was a work queue, or the
// reverse) cannot be updated in place, since JetStream does not change a
// work queue's retention: an empty one is recreated, one holding messages
// is an error that says what to do, since deleting it would lose mail.
func (b *Bus) declareStream(ctx context.Context, sc jetstream.StreamConfig) error {
	_, err := jsdeclare.Stream(ctx, b.JS, sc)
	if err == nil {
		return nil
	}
	if !strings.Contains(err.Error(), "retention") {
		return err
	}
	s, ierr := b.JS.Stream(ctx, sc.Name)
	if ierr != nil {
		return fmt.Errorf("stream %s: %w", sc.Name, errors.Join(err, ierr))
	}
	info, ierr := s.Info(ctx)
	if ierr != nil {
		return fmt.Errorf("stream %s: %w", sc.Name, errors.Join(err, ierr))
	}
	if info.Config.Retention == sc.Retention {
		return fmt.Errorf("stream %s: %w", sc.Name, err)
	}
	if info.State.Msgs > 0 {
		return fmt.Errorf("stream %s was created with %s retention by another Outflow version and still holds %d messages; "+
			"run that version until the stream is empty, then start this one (it recreates the stream): %w",
			sc.Name, info.Config.Retention, info.State.Msgs, errors.Join(errOtherLayout, err))
	}
	b.log.Info("recreating empty stream with its new retention", "stream", sc.Name,
		"from", info.Config.Retention.String(), "to", sc.Retention.String())
	if err := b.JS.DeleteStream(ctx, sc.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: delete it to recreate it: %w", sc.Name, err)
	}
	if _, err := b.JS.CreateStream(ctx, sc); err != nil {
		return fmt.Errorf("stream %s: %w", sc.Name, err)
	}
	return nil
}

// purgeSpool removes, every PurgeInterval until ctx ends, the messages of a
// spool that its consumer has acknowledged (everything at or below the ack
// floor).
func (b *Bus) purgeSpool(ctx context.Context, stream, subject string, cons jetstream.Consumer, log *slog.Logger) {
	t := time.NewTicker(PurgeInterval)
	defer t.Stop()
	var done uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		floor, err := b.purgeAcked(ctx, stream, subject, cons, done)
		if err != nil {
			log.Warn("purge acknowledged messages; retrying", "stream", stream, "err", err)
			continue
		}
		done = floor
	}
}

// purgeAcked purges stream below the consumer's ack floor if it moved past
// done, and returns the floor.
func (b *Bus) purgeAcked(ctx context.Context, stream, subject string, cons jetstream.Consumer, done uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return done, fmt.Errorf("consumer info: %w", err)
	}
	floor := info.AckFloor.Stream
	if floor <= done {
		return done, nil
	}
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		return done, fmt.Errorf("stream %s: %w", stream, err)
	}
	// WithPurgeSequence purges up to, not including, the sequence given.
	opts := []jetstream.StreamPurgeOpt{jetstream.WithPurgeSequence(floor + 1)}
	if subject != "" {
		opts = append(opts, jetstream.WithPurgeSubject(subject))
	}
	if err := s.Purge(ctx, opts...); err != nil {
		return done, fmt.Errorf("purge %s below %d: %w", stream, floor+1, err)
	}
	return floor, nil
}
