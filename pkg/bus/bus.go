// Package bus connects the roles to NATS JetStream: it declares the streams,
// consumers, key-value buckets and object store the pipeline uses, publishes
// messages (body as raw payload, large bodies by reference) and events with
// de-duplication ids, and runs consumer loops that shut down cleanly.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/outflowmail/outflow/pkg/jsdeclare"
)

// Stream, subject, bucket and store names. Subjects are fixed so that every
// process of every role agrees on them without configuration.
const (
	StreamSubmitted  = "SUBMITTED"
	StreamClassified = "CLASSIFIED"
	StreamOutbound   = "OUTBOUND"
	StreamEvents     = "EVENTS"
	StreamDead       = "DEADLETTER"
	// StreamFeedback spools reports received on the MX listener (bounces,
	// complaints, DMARC reports) for the feedback worker.
	StreamFeedback = "FEEDBACK"

	SubjectSubmitted  = "outflow.submitted"
	SubjectClassified = "outflow.classified"
	// SubjectOutbound + "." + pool carries the delivery jobs of one pool.
	SubjectOutbound = "outflow.outbound"
	SubjectEvents   = "outflow.events"
	SubjectDead     = "outflow.dead"
	// SubjectFeedback + "." + mailbox (bounce, fbl, dmarc) carries reports.
	SubjectFeedback = "outflow.feedback"

	BucketTenants  = "tenants"
	BucketPolicy   = "tenant-policy"
	BucketBodyRefs = "body-refs"
	// BucketDKIMKeys holds tenants' DKIM private keys (PEM), keyed
	// <tenant>.<domain>.<selector>.
	BucketDKIMKeys = "dkim-keys"
	StoreBodies    = "bodies"
)

// OutboundSubject is the subject of a pool's delivery jobs.
func OutboundSubject(pool string) string { return SubjectOutbound + "." + pool }

// Config says how to reach NATS and how to use it.
type Config struct {
	// URL of the NATS server(s), comma separated. Empty in "outflow all" means
	// the embedded server.
	URL string `yaml:"url"`
	// Name is the connection name shown by the server's monitoring.
	Name string `yaml:"-"`
	// InProcess, when set (the embedded server of "outflow all"), connects
	// through memory instead of a loopback socket: no syscalls and no
	// kernel network stack for every message of every stage.
	InProcess nats.InProcessConnProvider `yaml:"-"`
	// InlineLimit is the largest body that travels inside a bus message; larger
	// bodies go to the object store once and travel by reference.
	InlineLimit int `yaml:"inline_limit"`
	// PublishTimeout bounds how long a publish waits for JetStream's ack.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// Replicas of every stream and bucket (1, or 3 on a cluster).
	Replicas int `yaml:"replicas"`
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration `yaml:"duplicates_window"`
	// AckWait is how long a consumer waits for an ack before redelivering.
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxDeliver bounds redeliveries of a message that keeps failing; after
	// that it is copied to the dead-letter stream.
	MaxDeliver int `yaml:"max_deliver"`
	// BodyMemory bounds the bytes of stored bodies (those above InlineLimit)
	// that this process's workers hold at once; a worker whose body would
	// pass it waits for others to finish. Workers are many, since they
	// mostly wait for fsyncs, and a stored body can be tens of MiB: without
	// a bound, 64 senders of 25 MiB messages would hold 1.6 GiB.
	BodyMemory int64 `yaml:"body_memory"`
	// EventLinger is how long an event waits for others before it is
	// published, when no publish of its type is already in flight. Events
	// are off the mail's path (a stage hands the message on without waiting
	// for its event), so a short wait costs no delivery time, and it turns
	// one fsync'd stream message per event at moderate load into one per
	// few events. 0 publishes at once.
	EventLinger time.Duration `yaml:"event_linger"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		InlineLimit:    256 << 10,
		PublishTimeout: 5 * time.Second,
		Replicas:       1,
		Duplicates:     2 * time.Minute,
		AckWait:        60 * time.Second,
		MaxDeliver:     20,
		BodyMemory:     256 << 20,
		EventLinger:    20 * time.Millisecond,
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	switch {
	case c.InlineLimit < 1024 || c.InlineLimit > 900<<10:
		return fmt.Errorf("nats.inline_limit: %d is outside 1 KiB..900 KiB (NATS' default max_payload is 1 MiB)", c.InlineLimit)
	case c.PublishTimeout <= 0:
		return errors.New("nats.publish_timeout: must be positive")
	case c.Replicas != 1 && c.Replicas != 3:
		return fmt.Errorf("nats.replicas: %d, want 1 or 3", c.Replicas)
	case c.Duplicates < time.Second:
		return errors.New("nats.duplicates_window: must be at least 1s")
	case c.AckWait < time.Second:
		return errors.New("nats.ack_wait: must be at least 1s")
	case c.MaxDeliver < 1:
		return errors.New("nats.max_deliver: must be at least 1")
	case c.BodyMemory < int64(c.InlineLimit):
		return fmt.Errorf("nats.body_memory: %d is less than nats.inline_limit (%d)", c.BodyMemory, c.InlineLimit)
	case c.EventLinger < 0 || c.EventLinger > time.Second:
		// A stage acknowledges its input after its event is stored, holding
		// a worker meanwhile: a long linger would stall the stages.
		return fmt.Errorf("nats.event_linger: %v is outside 0..1s", c.EventLinger)
	}
	return nil
}

// Bus is a connection to NATS with the pipeline's JetStream resources.
type Bus struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Tenants jetstream.KeyValue
	Policy  jetstream.KeyValue
	Bodies  jetstream.ObjectStore
	// BodyRefs counts the unfinished delivery jobs of stored bodies.
	BodyRefs jetstream.KeyValue
	// DKIMKeys holds tenants' DKIM signing keys (pkg/dkimsign).
	DKIMKeys jetstream.KeyValue
	cfg      Config
	log      *slog.Logger
	// bodyMem holds BodyMemory bytes; Body takes a stored body's size from
	// it until the caller releases the body.
	bodyMem *semaphore.Weighted

	evMu     sync.Mutex
	evQueues map[string]*groupQueue[*pendingEvent] // by subject (events.go)
	// batchQueues batch the stages' publishes, by subject (batch.go); evMu
	// guards the map.
	batchQueues map[string]*groupQueue[*pendingMsg]
}

// Connect dials NATS and declares (idempotently) every stream, bucket and
// store. It retries the initial connection until ctx ends, so that roles can
// start before the server.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	b := &Bus{NC: nc, cfg: cfg, log: log, bodyMem: semaphore.NewWeighted(cfg.BodyMemory)}
	if err := b.declare(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

// Config returns the configuration the bus was opened with.
func (b *Bus) Config() Config { return b.cfg }

// Close drains the connection: pending publishes are flushed and
// subscriptions end before the socket closes.
func (b *Bus) Close() {
	if err := b.NC.Drain(); err != nil {
		b.NC.Close()
		return
	}
	for b.NC.IsDraining() {
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *Bus) declare(ctx context.Context) error {
	js, err := jetstream.New(b.NC)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	// Until the server answers, every declaration fails; retry so a role may
	// start first.
	for {
		err = b.declareOnce(ctx)
		if err == nil || errors.Is(err, errOtherLayout) {
			return err
		}
		b.log.Warn("declare jetstream resources; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("declare jetstream resources: %w", errors.Join(err, ctx.Err()))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (b *Bus) declareOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	work := func(name string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:     name,
			Subjects: subjects,
			// A spool: a message leaves the stream when its consumer acks it.
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   b.cfg.Replicas,
			Duplicates: b.cfg.Duplicates,
			Discard:    jetstream.DiscardNew,
		}
	}
	outbound := work(StreamOutbound, SubjectOutbound+".>")
	scheduling(&outbound) // deferred jobs wait as message schedules (schedule.go)
	streams := []jetstream.StreamConfig{
		spool(work(StreamSubmitted, SubjectSubmitted)),
		spool(work(StreamClassified, SubjectClassified)),
		spool(outbound),
		work(StreamFeedback, SubjectFeedback+".>"),
		{
			Name:     StreamEvents,
			Subjects: []string{SubjectEvents + ".>"},
			// Events are kept for a week whether or not analytics has read
			// them, so that ClickHouse can be down for days and catch up, and a
			// second consumer (a webhook, a replay) can read them too.
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   b.cfg.Replicas,
			Duplicates: b.cfg.Duplicates,
			MaxAge:     7 * 24 * time.Hour,
		},
		{
			Name:      StreamDead,
			Subjects:  []string{SubjectDead + ".>"},
			Retention: jetstream.LimitsPolicy,
			Storage:   jetstream.FileStorage,
			Replicas:  b.cfg.Replicas,
			MaxAge:    30 * 24 * time.Hour,
		},
	}
	for _, sc := range streams {
		if err := b.declareStream(ctx, sc); err != nil {
			return err
		}
	}
	var err error
	if b.Tenants, err = jsdeclare.KeyValue(ctx, b.JS, jetstream.KeyValueConfig{
		Bucket: BucketTenants, Description: "tenant accounts", History: 5,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return err
	}
	if b.Policy, err = jsdeclare.KeyValue(ctx, b.JS, jetstream.KeyValueConfig{
		Bucket: BucketPolicy, Description: "tenant policy state", History: 10,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return err
	}
	if b.BodyRefs, err = jsdeclare.KeyValue(ctx, b.JS, jetstream.KeyValueConfig{
		Bucket: BucketBodyRefs, Description: "unfinished delivery jobs per stored body",
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return err
	}
	// One revision only: a replaced or deleted private key must not linger
	// in the bucket's history.
	if b.DKIMKeys, err = jsdeclare.KeyValue(ctx, b.JS, jetstream.KeyValueConfig{
		Bucket: BucketDKIMKeys, Description: "tenant DKIM signing keys", History: 1,
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return err
	}
	if b.Bodies, err = jsdeclare.ObjectStore(ctx, b.JS, jetstream.ObjectStoreConfig{
		Bucket: StoreBodies, Description: "message bodies above the inline limit",
		Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas,
	}); err != nil {
		return err
	}
	return nil
}
