// Package sender is the sender role: it consumes the delivery jobs of the
// pools it serves, delivers each over SMTP from one of the pool's source
// addresses, and reports every attempt as a delivery event. Deferred
// recipients are republished as a new job due later, so a message waiting
// for a retry waits in JetStream, never in a process's memory, and a slow or
// failing destination holds up only its own mail.
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/resolver"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

// Options replace what tests must control; zero values are production's.
type Options struct {
	// Now is the clock.
	Now func() time.Time
	// Rand returns a number in [0, 1) for retry jitter.
	Rand func() float64
	// Resolver replaces the DNS resolver built from Config.Resolver.
	Resolver delivery.Resolver
	// Dial replaces the dialer bound to the pool address.
	Dial delivery.DialFunc
	// Name identifies this sender process in delivery events; default
	// host:pid.
	Name string
	// Policies are the tenants' states (a *tenant.Directory): the jobs of a
	// suspended tenant are held, not sent. Nil delivers every job.
	Policies Policies
	// Shaper replaces the pkg/shaping Shaper built from Config.Shaping.
	Shaper delivery.Shaper
}

// Policies looks up a tenant's reputation state.
type Policies interface {
	Policy(tenantID string) tenant.Policy
}

// Run delivers the jobs of the configured pools until ctx ends, then stops
// fetching, finishes the deliveries in flight and returns.
func Run(ctx context.Context, cfg Config, pools pool.Set, b *bus.Bus, log *slog.Logger) error {
	return RunWith(ctx, cfg, pools, b, log, Options{})
}

// RunWith is Run with injected clock, randomness, resolver or dialer.
func RunWith(ctx context.Context, cfg Config, pools pool.Set, b *bus.Bus, log *slog.Logger, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	served, err := servedPools(cfg.Pools, pools)
	if err != nil {
		return err
	}
	if opts.Policies != nil {
		// Where a suspended tenant's jobs go; the router declares it too,
		// but a sender process may start first.
		if _, err := held.Declare(ctx, b); err != nil {
			return err
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if opts.Resolver == nil && cfg.Transports["*"] == "" {
		r, err := resolver.New(cfg.Resolver, cfg.ResolverTimeout)
		if err != nil {
			return fmt.Errorf("sender.resolver: %w", err)
		}
		opts.Resolver = r
	}
	id, err := newIdentity(cfg.Identity, b, log)
	if err != nil {
		return err
	}
	tp, err := tlspolicy.New(ctx, cfg.TLS, tlspolicy.Options{Resolver: opts.Resolver, JS: b.JS, Replicas: b.Config().Replicas,
		Publish: b.PublishEvent, Sender: opts.Name, Log: log})
	if err != nil {
		return err
	}
	if opts.Shaper == nil {
		sh, stop, err := startShaping(ctx, cfg, served, b, log, opts.Name)
		if err != nil {
			return err
		}
		// Deferred before the Deliverer's Close, so it runs after it:
		// closing connections releases their slots through the Shaper.
		defer stop()
		opts.Shaper = sh
	}
	s := &sender{
		cfg: cfg, b: b, log: log, now: opts.Now, rand: opts.Rand, name: opts.Name, id: id, policies: opts.Policies,
		d: delivery.New(delivery.Options{
			Resolver: opts.Resolver, Dial: opts.Dial, Transports: cfg.Transports, Port: cfg.SMTPPort,
			ConnectTimeout: cfg.ConnectTimeout, CommandTimeout: cfg.CommandTimeout, DataTimeout: cfg.DataTimeout,
			Shaper: opts.Shaper, TLS: tp, Log: log,
		}),
	}
	// Idle connections say QUIT once every worker has finished.
	defer s.d.Close()
	s.done = newHandled()
	if n, err := s.done.load(ctx, b, s.now()); err != nil {
		// Without the memory a repeat after a crash is sent again, which
		// at-least-once allows; not a reason to stop sending.
		log.Warn("recent deliveries not loaded; a job repeated after a crash may be sent twice", "err", err)
	} else {
		log.Debug("recent deliveries loaded", "jobs", n)
	}

	// One consumer per pool, so that a pool's backlog never waits behind
	// another's; if one fails to start, stop them all.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(served))
	for i, p := range served {
		wg.Go(func() {
			c := bus.Consumer{
				Stream:        bus.StreamOutbound,
				Durable:       "sender-" + p.Name,
				FilterSubject: bus.OutboundSubject(p.Name),
				Workers:       cfg.Workers,
				MaxAckPending: cfg.MaxAckPending,
			}
			plog := log.With("pool", p.Name)
			err := b.Consume(ctx, c, plog, func(ctx context.Context, m jetstream.Msg) { s.handle(ctx, p, m, plog) })
			if err != nil {
				errs[i] = fmt.Errorf("pool %s: %w", p.Name, err)
				cancel()
			}
		})
	}
	log.Info("sender running", "pools", len(served), "workers_per_pool", cfg.Workers)
	wg.Wait()
	return errors.Join(errs...)
}

func servedPools(names []string, pools pool.Set) (pool.Set, error) {
	for _, p := range pools {
		if len(p.IPs) == 0 {
			return nil, fmt.Errorf("pool %s has no addresses", p.Name)
		}
	}
	if len(names) == 0 {
		return pools, nil
	}
	var out pool.Set
	for i, n := range names {
		p, ok := pools.Get(n)
		if !ok {
			return nil, fmt.Errorf("sender.pools[%d]: no pool named %q", i, n)
		}
		if !slices.ContainsFunc(out, func(q pool.Pool) bool { return q.Name == n }) {
			out = append(out, p)
		}
	}
	return out, nil
}

type sender struct {
	cfg  Config
	b    *bus.Bus
	d    *delivery.Deliverer
	log  *slog.Logger
	now  func() time.Time
	rand func() float64
	name string
	id   *identity // DKIM, VERP, Feedback-ID (identity.go)
	// policies, when set, hold a suspended tenant's jobs.
	policies Policies
	done     *handled // jobs whose attempt is recorded (handled.go)
}

// Delays of naks when the bus itself fails; the job is retried, not lost.
const (
	busRetryDelay   = 5 * time.Second
	finishAttempts  = 5
	finishBaseDelay = 500 * time.Millisecond
)

// handle runs one delivery job to its JetStream outcome: a job not yet due
// goes back to wait (as a message schedule); otherwise it is attempted, its
// plan decided (decide), and the original acked only after the event and
// any retry job are stored.
func (s *sender) handle(ctx context.Context, p pool.Pool, m jetstream.Msg, log *slog.Logger) {
	env, err := envelope.Decode(m.Headers())
	if err != nil {
		// Not a job this code can ever read: keep it out of the way.
		log.Error("undecodable delivery job; terminating it", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	if s.policies != nil && s.policies.Policy(env.Tenant).State == tenant.StateSuspended {
		// Queued mail of a suspended tenant, retries included, waits for
		// an operator (outflow ctl held) instead of going out.
		if err := held.Hold(ctx, s.b, env, m); err != nil {
			log.Warn("hold a suspended tenant's job; will retry", "tenant", env.Tenant, "err", err)
			_ = m.NakWithDelay(busRetryDelay)
			return
		}
		if err := m.DoubleAck(ctx); err != nil {
			log.Warn("ack held job", "err", err)
		}
		log.Info("tenant suspended: delivery job held", "tenant", env.Tenant, "msg_id", env.ID, "domain", env.Domain)
		return
	}
	log = log.With("tenant", env.Tenant, "msg_id", env.ID, "domain", env.Domain, "attempt", env.Attempt+1)
	id := deliveryEventID(env)
	if !s.done.claim(id, s.now()) {
		log.Info("delivery job already handled or in hand here; acknowledging the repeat")
		if err := m.DoubleAck(ctx); err != nil {
			log.Warn("ack repeated job", "err", err)
		}
		return
	}
	// Unless the job reaches an outcome, it comes again: forget the claim.
	finished := false
	defer func() {
		if !finished {
			s.done.release(id)
		}
	}()
	start := s.now()
	if wait := env.NotBefore.Sub(start); wait > 0 {
		s.wait(ctx, p, m, env, log)
		return
	}
	retry := s.cfg.Retry.For(env.Tenant)
	var (
		res       delivery.Result
		attempted bool
	)
	if deadline := expiresAt(env, retry); deadline.IsZero() || start.Before(deadline) {
		// In hand from here: the body may wait for memory (nats.body_memory)
		// and the delivery for a connection slot.
		stop := bus.KeepInProgress(m, s.b.Config().AckWait/3)
		body, release, err := s.b.Body(ctx, env, m.Data())
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			stop()
			// Bodies are deleted only when their last job is final: this
			// is a redelivery of a job that already finished.
			log.Warn("body already released; dropping a finished job's redelivery")
			_ = m.Term()
			finished = true
			return
		}
		if err != nil {
			stop()
			log.Warn("load body; will retry", "err", err)
			_ = m.NakWithDelay(busRetryDelay)
			return
		}
		returnPath, body, err := s.id.prepare(ctx, env, p.Name, body)
		if err != nil {
			release()
			stop()
			log.Error("prepare message (Feedback-ID, DKIM, VERP); will retry", "err", err)
			_ = m.NakWithDelay(busRetryDelay)
			return
		}
		res = s.d.Deliver(ctx, delivery.Job{Domain: env.Domain, From: env.From, Rcpts: env.Rcpts, Body: body, Sources: p.IPs, ReturnPath: returnPath})
		release()
		stop()
		attempted = true
		if res.Shaped() {
			s.shaped(ctx, p, m, env, res, log)
			return
		}
	}
	end := s.now()
	pl := decide(env, res, attempted, end, retry, s.rand)
	ev := deliveryEvent(env, p.Name, res, pl, start, end)
	ev.Delivery.Sender = s.name
	if err := s.finish(ctx, m, p, env, pl, ev, log); err != nil {
		// The attempt will be repeated; a recipient already delivered may
		// receive it twice (at-least-once).
		log.Error("record delivery outcome; job will be retried", "err", err)
		_ = m.NakWithDelay(busRetryDelay)
		return
	}
	finished = true
	logAttempt(log, ev, pl, res)
}

// maxNakWait is the longest a job that is not yet due is held as a delayed
// nak; a longer wait becomes a message schedule, which does not count
// against MaxAckPending.
const maxNakWait = time.Second

// wait puts a job that is not yet due back to wait: briefly as a delayed
// nak (a schedule fires up to a second early at most, never late), else as
// a schedule.
func (s *sender) wait(ctx context.Context, p pool.Pool, m jetstream.Msg, env *envelope.Envelope, log *slog.Logger) {
	if wait := env.NotBefore.Sub(s.now()); wait <= maxNakWait {
		_ = m.NakWithDelay(wait)
		return
	}
	id := fmt.Sprintf("%s.wait.%d", env.JobID(), env.NotBefore.UnixNano())
	if err := s.b.PublishDeferred(ctx, bus.DeferredSubject(p.Name, env.ID, env.Domain), m.Subject(), id, env.NotBefore, env, m.Data()); err != nil {
		log.Warn("schedule a job not yet due; will retry", "err", err)
		_ = m.NakWithDelay(busRetryDelay)
		return
	}
	_ = m.DoubleAck(ctx)
}

// shaped reschedules a job that shaping kept from every server: it was not
// an attempt, so the attempt count stays and no event is written; it goes
// again when shaping allows (with up to a second of jitter, so that jobs
// held together do not return together).
func (s *sender) shaped(ctx context.Context, p pool.Pool, m jetstream.Msg, env *envelope.Envelope, res delivery.Result, log *slog.Logger) {
	at := res.RetryAt
	if now := s.now(); at.Before(now) {
		at = now
	}
	at = at.Add(time.Duration(s.rand() * float64(time.Second)))
	next := env.Clone()
	next.NotBefore = at
	id := fmt.Sprintf("%s.shaped.%d", env.JobID(), at.UnixNano())
	if err := s.b.PublishDeferred(ctx, bus.DeferredSubject(p.Name, env.ID, env.Domain), m.Subject(), id, at, next, m.Data()); err != nil {
		log.Warn("reschedule a job held by shaping; will retry", "err", err)
		_ = m.NakWithDelay(busRetryDelay)
		return
	}
	_ = m.DoubleAck(ctx)
	log.Debug("held by shaping", "site", res.Site, "until", at, "err", res.Rcpts[0].Err)
}

// finish stores the outcome: the event, then the retry job or the body's
// release, then the ack. Event and retry job carry ids derived from the
// job's, so repeating finish after a partial failure stores nothing twice.
// The body is released after the ack: if the process dies in between, the
// body leaks, which is better than a redelivered job finding it gone.
func (s *sender) finish(ctx context.Context, m jetstream.Msg, p pool.Pool, env *envelope.Envelope, pl plan, ev *events.Event, log *slog.Logger) error {
	var err error
	for i := range finishAttempts {
		if i > 0 {
			time.Sleep(finishBaseDelay << (i - 1))
			_ = m.InProgress()
		}
		if err = s.store(ctx, m, p, env, pl, ev); err == nil {
			break
		}
		log.Warn("store delivery outcome; retrying", "err", err)
	}
	if err != nil {
		return err
	}
	if pl.final() {
		if err := s.b.ReleaseBody(ctx, env); err != nil {
			log.Warn("release body; it stays stored", "body_ref", env.BodyRef, "err", err)
		}
	}
	return nil
}

func (s *sender) store(ctx context.Context, m jetstream.Msg, p pool.Pool, env *envelope.Envelope, pl plan, ev *events.Event) error {
	if err := s.b.PublishEvent(ctx, ev); err != nil {
		return err
	}
	// A finished job is remembered, here and after a restart (handled.go);
	// a deferred one only stays claimed here: if its retry was not stored
	// before a crash, handling it again stores it.
	if pl.final() {
		s.done.add(ev.ID, s.now())
	} else {
		retry := env.Clone()
		retry.Rcpts = pl.retry
		retry.Attempt++
		retry.NotBefore = pl.next
		// The retry waits as a message schedule that publishes it to the
		// same subject (its pool) when due. The payload is the inline
		// body, or empty when the body is stored by reference.
		sched := bus.DeferredSubject(p.Name, env.ID, env.Domain)
		if err := s.b.PublishDeferred(ctx, sched, m.Subject(), retry.JobID(), pl.next, retry, m.Data()); err != nil {
			return fmt.Errorf("schedule deferred recipients: %w", err)
		}
	}
	if err := m.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack job: %w", err)
	}
	return nil
}

// deliveryEventID is the id of the event of a job's attempt.
func deliveryEventID(env *envelope.Envelope) string { return env.JobID() + ".delivery" }

// deliveryEvent reports one attempt. Its id is the job id's (which carries
// the attempt number), so a repeated publish of the same attempt is stored
// once.
func deliveryEvent(env *envelope.Envelope, poolName string, res delivery.Result, pl plan, start, end time.Time) *events.Event {
	return &events.Event{
		ID: deliveryEventID(env), Type: events.TypeDelivery, Time: end.UTC(),
		Tenant: env.Tenant, MsgID: env.ID,
		Delivery: &events.Delivery{
			Domain: env.Domain, Pool: poolName, SourceIP: res.Source.Address, MX: res.MX,
			Attempt: env.Attempt + 1, DurationMs: end.Sub(start).Milliseconds(),
			Site: res.Site, MXAddr: res.Addr, TLS: res.TLS, Reused: res.Reused,
			ConnectMs: res.ConnectMs, TLSMs: res.TLSMs, TxnMs: res.TxnMs,
			NextAttempt: pl.next, Rcpts: pl.rcpts,
		},
	}
}

func logAttempt(log *slog.Logger, ev *events.Event, pl plan, res delivery.Result) {
	counts := map[events.Outcome]int{}
	for _, r := range pl.rcpts {
		counts[r.Outcome]++
	}
	attrs := []any{"mx", res.MX, "source_ip", ev.Delivery.SourceIP, "duration_ms", ev.Delivery.DurationMs,
		"delivered", counts[events.OutcomeDelivered], "deferred", counts[events.OutcomeDeferred],
		"bounced", counts[events.OutcomeBounced], "expired", counts[events.OutcomeExpired]}
	for _, r := range res.Rcpts {
		if r.Err != nil {
			attrs = append(attrs, "smtp_code", r.Err.Code, "err", r.Err)
			break
		}
	}
	if !pl.final() {
		attrs = append(attrs, "next_attempt", pl.next)
	}
	log.Info("delivery attempt", attrs...)
}
