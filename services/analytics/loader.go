package analytics

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/events"
)

// loader fetches events into a batch and inserts the batch.
type loader struct {
	cfg   Config
	cons  jetstream.Consumer
	store *chstore.Store
	log   *slog.Logger
	m     *roleMetrics
}

// held is a fetched stream message (one event, or a batch of events
// published together), not yet acknowledged.
type held struct {
	msg jetstream.Msg
	evs []*events.Event
	// redelivered: JetStream delivered it before (counted in metrics); an earlier insert of
	// it may have succeeded with the ack lost.
	redelivered bool
}

// run fills batches and flushes each when it is full or FlushInterval after
// its first event, until ctx ends; then it flushes (or hands back) what it
// holds.
func (l *loader) run(ctx context.Context) {
	var batch []held
	nev := 0 // events in batch
	var deadline time.Time
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		if len(batch) > 0 && (nev >= l.cfg.BatchSize || !time.Now().Before(deadline)) {
			if !l.flush(ctx, batch) {
				break // ctx ended while ClickHouse was failing; shutdown below
			}
			batch, nev = nil, 0
			continue
		}
		wait := l.cfg.FlushInterval
		if len(batch) > 0 {
			wait = time.Until(deadline)
		}
		// At most a second per fetch, so that shutdown is never slower than
		// that; at least a little, so a nearly due batch does not spin.
		wait = min(max(wait, 20*time.Millisecond), time.Second)
		msgs, err := l.fetch(max(l.cfg.BatchSize-nev, 1), wait)
		if err != nil && len(msgs) == 0 {
			d := bo.next()
			l.log.Debug("fetch events", "consumer", Durable, "retry_in", d, "err", err)
			sleep(ctx, d)
			continue
		}
		bo.reset()
		for _, m := range msgs {
			h, ok := l.decode(m)
			if !ok {
				continue
			}
			if len(batch) == 0 {
				deadline = time.Now().Add(l.cfg.FlushInterval)
			}
			batch = append(batch, h)
			nev += len(h.evs)
		}
	}
	l.shutdown(ctx, batch)
}

// fetch pulls up to n events, waiting at most wait for them.
func (l *loader) fetch(n int, wait time.Duration) ([]jetstream.Msg, error) {
	mb, err := l.cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var msgs []jetstream.Msg
	for m := range mb.Messages() {
		msgs = append(msgs, m)
	}
	if err := mb.Error(); err != nil {
		return msgs, fmt.Errorf("fetch: %w", err)
	}
	return msgs, nil
}

// decode parses an event. One that cannot be parsed never will be, so it is
// terminated; the stream still keeps it (limits retention) for inspection.
func (l *loader) decode(m jetstream.Msg) (held, bool) {
	h := held{msg: m}
	md, err := m.Metadata()
	if err == nil {
		h.redelivered = md.NumDelivered > 1
	}
	if h.redelivered {
		l.m.redelivered.Inc()
	}
	h.evs, err = events.UnmarshalAll(m.Data())
	if err != nil {
		var seq uint64
		if md != nil {
			seq = md.Sequence.Stream
		}
		l.log.Error("undecodable event dropped", "subject", m.Subject(), "stream_seq", seq, "err", err)
		l.m.undecodable.Inc()
		_ = m.Term()
		return h, false
	}
	return h, true
}

// flush stores batch and acknowledges it. While ClickHouse fails it keeps
// the batch and retries with growing pauses, telling JetStream the events
// are still being worked on; it returns false if ctx ends first, with the
// batch neither stored nor acknowledged.
func (l *loader) flush(ctx context.Context, batch []held) bool {
	bo := backoff{min: 250 * time.Millisecond, max: l.cfg.RetryMax}
	lastProgress := time.Now()
	for attempt := 1; ; attempt++ {
		err := l.insert(ctx, batch)
		if err == nil {
			l.ack(batch)
			l.m.batches.Inc()
			l.m.lastInsert.Set(float64(time.Now().Unix()))
			if attempt > 1 {
				l.log.Info("clickhouse back; held events stored", "events", len(batch), "attempts", attempt)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.m.insertErrors.Inc()
		d := bo.next()
		l.log.Warn("insert events; holding the batch and retrying", "events", len(batch),
			"attempt", attempt, "retry_in", d, "err", err)
		if !sleep(ctx, d) {
			return false
		}
		if time.Since(lastProgress) > l.cfg.AckWait/3 {
			for _, h := range batch {
				_ = h.msg.InProgress()
			}
			lastProgress = time.Now()
		}
		// ClickHouse may have come back without our tables (a new server,
		// a dropped database); create them again. If it is still down the
		// insert says so.
		_ = l.store.Migrate(ctx)
	}
}

// shutdown makes one bounded attempt to store what is held when ctx has
// ended; what it cannot store goes back to JetStream for the next process.
func (l *loader) shutdown(ctx context.Context, batch []held) {
	if len(batch) == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ShutdownFlush)
	defer cancel()
	err := l.insert(fctx, batch)
	if err == nil {
		l.ack(batch)
		l.m.batches.Inc()
		l.log.Info("events flushed at shutdown", "events", len(batch))
		return
	}
	for _, h := range batch {
		_ = h.msg.Nak()
	}
	l.log.Warn("events handed back to JetStream at shutdown", "events", len(batch), "err", err)
}

// insert stores the batch's events, first leaving out those already stored.
// The look-up runs for every batch, not only for redelivered events: the
// rollup views count every inserted row, so an event must reach ClickHouse
// once, and an event can also come twice as two stream messages (a producer
// republishing it after the stream's duplicate window). It costs one
// primary-key query per table per 500 events. A panic (a bug meeting an odd
// event) becomes an error, so that the batch is retried rather than the
// process lost.
func (l *loader) insert(ctx context.Context, batch []held) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("insert panic: %v\n%s", r, debug.Stack())
		}
	}()
	var evs []*events.Event
	for _, h := range batch {
		evs = append(evs, h.evs...)
	}
	present, err := l.store.Present(ctx, evs)
	if err != nil {
		return err
	}
	kept := evs[:0]
	for _, e := range evs {
		if !present[e.ID] {
			kept = append(kept, e)
			// A retried publish can put an event in two batches that
			// arrive together; the first one counts.
			present[e.ID] = true
		}
	}
	if n := len(evs) - len(kept); n > 0 {
		l.log.Info("skipped events already in clickhouse", "events", n)
		l.m.skipped.Add(uint64(n))
	}
	if err := l.store.Insert(ctx, kept); err != nil {
		return err
	}
	l.m.inserted.Add(uint64(len(kept)))
	return nil
}

// ack acknowledges a stored batch. A lost ack means the events come again;
// they are then found already stored and skipped.
func (l *loader) ack(batch []held) {
	failed := 0
	var first error
	for _, h := range batch {
		if err := h.msg.Ack(); err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		l.log.Warn("ack stored events; they will be delivered again and skipped",
			"events", failed, "err", first)
	}
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
