// Package analytics is the role that loads the events stream into ClickHouse,
// where analysts and the reputation loop read every verdict, routing decision
// and delivery attempt.
//
// It reads EVENTS with one durable pull consumer ("analytics", shared by all
// processes of the role) and inserts in batches bounded by size and time. A
// batch is acknowledged only after ClickHouse has taken it. While ClickHouse
// is down the role keeps its batch and retries, and the rest of the events
// wait in JetStream (the stream keeps them for a week): mail keeps flowing,
// nothing is lost, and the backlog is logged. Events delivered more than once
// are caught before insert (Store.Present) and, failing that, collapse in the
// tables' ReplacingMergeTree engine. docs/analytics.md describes it all.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/metrics"
)

// Durable is the name of the role's consumer on the events stream.
const Durable = "analytics"

// Config of the analytics role.
type Config struct {
	// ClickHouse says where rows go.
	ClickHouse chstore.Config `yaml:"clickhouse"`
	// BatchSize is the most events inserted at once; a batch is flushed as
	// soon as it is full. ClickHouse prefers few large inserts to many small
	// ones.
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest an event waits in a batch that is not
	// full: the delay before a row shows up in ClickHouse at low traffic.
	// Each insert writes a new part (a directory of files, one or two per
	// column) into every table it touches and every rollup fed by it, so on
	// a machine that also runs the NATS store, inserting every second put
	// hundreds of file creations a second into the file system journal
	// that JetStream's fsyncs wait on (docs/performance.md, "Fifth round").
	FlushInterval time.Duration `yaml:"flush_interval"`
	// AckWait is how long JetStream waits for the ack of a fetched event
	// before delivering it again. It is long because the role holds a batch
	// while ClickHouse is down, and it tells JetStream it is still working
	// on it (InProgress) well within this time.
	AckWait time.Duration `yaml:"ack_wait"`
	// RetryMax caps the growing pause between inserts while ClickHouse
	// fails.
	RetryMax time.Duration `yaml:"retry_max"`
	// BacklogInterval is how often the backlog (events not yet in
	// ClickHouse) is logged.
	BacklogInterval time.Duration `yaml:"backlog_interval"`
	// ShutdownFlush bounds the last insert at shutdown; a batch it cannot
	// store is handed back to JetStream for redelivery.
	ShutdownFlush time.Duration `yaml:"shutdown_flush"`
	// Reputation is the reputation loop (loop.go).
	Reputation ReputationConfig `yaml:"reputation"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ClickHouse:      chstore.DefaultConfig(),
		BatchSize:       5000,
		FlushInterval:   5 * time.Second,
		AckWait:         5 * time.Minute,
		RetryMax:        30 * time.Second,
		BacklogInterval: 30 * time.Second,
		ShutdownFlush:   10 * time.Second,
		Reputation:      DefaultReputationConfig(),
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 100_000:
		return fmt.Errorf("analytics.batch_size: %d is outside 1..100000", c.BatchSize)
	case c.FlushInterval < 10*time.Millisecond:
		return errors.New("analytics.flush_interval: must be at least 10ms")
	case c.AckWait < 30*time.Second:
		return errors.New("analytics.ack_wait: must be at least 30s (a batch is held while ClickHouse is down)")
	case c.RetryMax < 100*time.Millisecond:
		return errors.New("analytics.retry_max: must be at least 100ms")
	case c.BacklogInterval < time.Second:
		return errors.New("analytics.backlog_interval: must be at least 1s")
	case c.ShutdownFlush <= 0:
		return errors.New("analytics.shutdown_flush: must be positive")
	}
	return c.Reputation.Validate()
}

// Run loads events into ClickHouse until ctx ends. It connects and migrates
// the schema first, retrying for as long as ClickHouse is down (events wait in
// JetStream meanwhile), so it returns an error only for a bad configuration.
// At the end it flushes the batch it holds within ShutdownFlush, or hands it
// back to JetStream, and returns once its goroutines have ended.
func Run(ctx context.Context, cfg Config, b *bus.Bus, log *slog.Logger, opts ...Option) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	m := newMetrics(o.registry, b)
	cons, err := consumer(ctx, cfg, b, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		reportBacklog(ctx, cfg.BacklogInterval, cons, cfg.BatchSize, log)
	}()
	defer func() { <-reporterDone }()

	store := connect(ctx, cfg, log)
	if store == nil {
		return nil // ctx ended
	}
	defer store.Close()
	log.Info("analytics started", "clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database)

	if cfg.Reputation.Enabled {
		rl := &loop{cfg: cfg.Reputation, conn: store.Conn(), policy: b.Policy, log: log, now: time.Now}
		loopDone := make(chan struct{})
		go func() {
			defer close(loopDone)
			rl.run(ctx)
		}()
		defer func() { <-loopDone }()
	}
	l := &loader{cfg: cfg, cons: cons, store: store, log: log, m: m}
	l.run(ctx)
	return nil
}

// Option adjusts Run.
type Option func(*options)

type options struct {
	registry *metrics.Registry
}

// WithMetrics registers the role's metrics (docs/analytics.md, "Metrics")
// in reg, for the process's metrics endpoint.
func WithMetrics(reg *metrics.Registry) Option {
	return func(o *options) { o.registry = reg }
}

// roleMetrics are what the role counts. With no registry they count
// without being exposed.
type roleMetrics struct {
	inserted, skipped, batches, insertErrors, redelivered, undecodable *metrics.Counter
	lastInsert                                                         *metrics.Gauge
}

func newMetrics(reg *metrics.Registry, b *bus.Bus) *roleMetrics {
	reg.GaugeFunc("outflow_analytics_backlog_events",
		"Events in the events stream not yet stored in ClickHouse (pending plus unacknowledged for the analytics consumer).",
		func(ctx context.Context) (float64, error) {
			n, err := Backlog(ctx, b)
			return float64(n), err
		})
	return &roleMetrics{
		inserted:     reg.Counter("outflow_analytics_events_inserted_total", "Events stored in ClickHouse."),
		skipped:      reg.Counter("outflow_analytics_events_skipped_total", "Events found already stored and not inserted again."),
		batches:      reg.Counter("outflow_analytics_batches_total", "Batches stored in ClickHouse and acknowledged."),
		insertErrors: reg.Counter("outflow_analytics_insert_errors_total", "Failed attempts to store a batch (each retried)."),
		redelivered:  reg.Counter("outflow_analytics_events_redelivered_total", "Events JetStream delivered more than once."),
		undecodable:  reg.Counter("outflow_analytics_events_undecodable_total", "Events dropped because they could not be decoded."),
		lastInsert: reg.Gauge("outflow_analytics_last_insert_timestamp_seconds",
			"Unix time of the last batch stored in ClickHouse."),
	}
}

// consumer declares the role's durable consumer, retrying until NATS
// answers.
func consumer(ctx context.Context, cfg Config, b *bus.Bus, log *slog.Logger) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:       Durable,
		Description:   "events into ClickHouse",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		// Never give up on an event: however long ClickHouse is down, the
		// event must end in it, not in a dead-letter stream.
		MaxDeliver: -1,
		// Room for the batch of each of a few processes.
		MaxAckPending: 4 * cfg.BatchSize,
		Replicas:      b.Config().Replicas,
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := b.JS.CreateOrUpdateConsumer(cctx, bus.StreamEvents, cc)
		cancel()
		if err == nil {
			return cons, nil
		}
		log.Warn("declare events consumer; retrying", "consumer", Durable, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("consumer %s/%s: %w", bus.StreamEvents, Durable, err)
		case <-time.After(time.Second):
		}
	}
}

// connect opens the store and migrates the schema, retrying with backoff
// until it succeeds or ctx ends (then it returns nil).
func connect(ctx context.Context, cfg Config, log *slog.Logger) *chstore.Store {
	bo := backoff{min: 250 * time.Millisecond, max: cfg.RetryMax}
	for attempt := 1; ; attempt++ {
		store, err := chstore.Open(ctx, cfg.ClickHouse)
		if err == nil {
			if err = store.Migrate(ctx); err == nil {
				return store
			}
			store.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		d := bo.next()
		log.Warn("clickhouse unavailable; events wait in JetStream", "attempt", attempt, "retry_in", d, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// Backlog is how many events are not yet in ClickHouse: those the consumer
// has not delivered yet plus those delivered and not acknowledged (the
// batches being inserted, or held while ClickHouse is down).
func Backlog(ctx context.Context, b *bus.Bus) (uint64, error) {
	cons, err := b.JS.Consumer(ctx, bus.StreamEvents, Durable)
	if err != nil {
		return 0, fmt.Errorf("consumer %s/%s: %w", bus.StreamEvents, Durable, err)
	}
	return backlog(ctx, cons)
}

func backlog(ctx context.Context, cons jetstream.Consumer) (uint64, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s info: %w", Durable, err)
	}
	return info.NumPending + uint64(max(info.NumAckPending, 0)), nil
}

// reportBacklog logs the backlog every interval until ctx ends: at info
// level when it exceeds a batch (analytics is behind), at debug otherwise.
func reportBacklog(ctx context.Context, every time.Duration, cons jetstream.Consumer, batch int, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := backlog(ictx, cons)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Debug("read events backlog", "err", err)
		case err != nil:
		case n > uint64(batch):
			log.Info("events backlog", "consumer", Durable, "backlog", n)
		default:
			log.Debug("events backlog", "consumer", Durable, "backlog", n)
		}
	}
}

// backoff doubles a pause from min up to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
