// Package router chooses the IP pool of every classified message and splits
// it into one delivery job per recipient domain. Spam goes out through the
// high-risk pool rather than being dropped (filters have false positives),
// and so does all mail of a tenant on probation, so that the shared pool
// keeps its reputation. Tenant policy comes from a watched KV bucket, never a
// per-message lookup.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/suppression"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// Config of the router role.
type Config struct {
	// Workers is how many messages are routed at once. A worker spends
	// nearly all its time waiting for its publishes to be fsync'd, and the
	// more wait together the more share one fsync (group commit), so there
	// are many (docs/performance.md, "Third round: concurrency").
	Workers int `yaml:"workers"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Workers: 32} }

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.Workers < 1 {
		return errors.New("router.workers: must be at least 1")
	}
	return nil
}

// Route reasons, recorded with every message.
const (
	ReasonVerdict   = "verdict"
	ReasonProbation = "probation"
	ReasonDedicated = "dedicated"
	ReasonDefault   = "shared"
)

// Decide picks the pool for a message. The order matters: a spam verdict
// or probation overrides a dedicated pool, because a dedicated pool's IPs
// are still the provider's reputation.
func Decide(pools pool.Set, label string, p tenant.Policy, dedicated string) (pool.Pool, string) {
	highRisk, _ := pools.ByPurpose(pool.HighRisk)
	switch {
	case label == "spam" || label == "malicious":
		return highRisk, ReasonVerdict
	case p.State == tenant.StateProbation:
		return highRisk, ReasonProbation
	}
	if dedicated != "" {
		if d, ok := pools.Get(dedicated); ok {
			return d, ReasonDedicated
		}
	}
	shared, _ := pools.ByPurpose(pool.Shared)
	return shared, ReasonDefault
}

// SplitByDomain groups recipients by lower-cased domain, keeping first-seen
// order so that job ids are stable across redeliveries.
func SplitByDomain(rcpts []string) (domains []string, byDomain map[string][]string) {
	byDomain = map[string][]string{}
	for _, r := range rcpts {
		d := envelope.Domain(r)
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], r)
	}
	return domains, byDomain
}

// Run consumes the classified stream until ctx ends.
func Run(ctx context.Context, cfg Config, pools pool.Set, dir *tenant.Directory, b *bus.Bus, log *slog.Logger) error {
	select {
	case <-dir.Ready():
	case <-ctx.Done():
		return nil
	}
	sl, stopList, err := suppression.Watch(ctx, b.JS, b.Config().Replicas, log)
	if err != nil {
		return err
	}
	if _, err := held.Declare(ctx, b); err != nil {
		stopList()
		return err
	}
	defer stopList()
	c := bus.Consumer{Stream: bus.StreamClassified, Durable: "router", Workers: cfg.Workers}
	return b.Consume(ctx, c, log, func(ctx context.Context, m jetstream.Msg) {
		if err := route(ctx, pools, dir, sl, b, m); err != nil {
			log.Warn("route; will retry", "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		if err := m.Ack(); err != nil {
			log.Warn("ack classified", "err", err)
		}
	})
}

func route(ctx context.Context, pools pool.Set, dir *tenant.Directory, sl *suppression.List, b *bus.Bus, m jetstream.Msg) error {
	env, err := envelope.Decode(m.Headers())
	if err != nil {
		return err
	}
	if dir.Policy(env.Tenant).State == tenant.StateSuspended {
		return held.Hold(ctx, b, env, m)
	}
	if finished, err := suppress(ctx, sl, b, env, time.Now()); err != nil || finished {
		return err
	}
	p, reason, jobs := plan(pools, dir, env)
	ev := &events.Event{
		ID: env.ID + ".routed", Type: events.TypeRouted, Time: time.Now().UTC(),
		Tenant: env.Tenant, MsgID: env.ID,
		Routed: &events.Routed{
			MessageID: env.MessageID, From: env.From, FromDomain: env.FromDomain(),
			Rcpts: env.Rcpts, Size: env.Size, Received: env.Received,
			Pool: p.Name, Reason: reason, Domains: len(jobs),
		},
	}
	if env.Verdict != nil {
		ev.Routed.Verdict = *env.Verdict
	}
	// The jobs and the event are published at once and awaited together:
	// one after the other, a message waited for as many fsyncs as it has
	// publishes. A failure means a retry of all of them; what was already
	// stored is dropped as a duplicate (Nats-Msg-Id, event id).
	errs := make([]error, len(jobs)+1)
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Go(func() { errs[i] = b.PublishMessage(ctx, bus.OutboundSubject(p.Name), job.JobID(), job, m.Data()) })
	}
	errs[len(jobs)] = b.PublishEvent(ctx, ev)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("route %s: %w", env.ID, err)
	}
	return nil
}

// plan is the routing decision for a message whose suppressed recipients
// are already removed: the pool (from its verdict, the tenant's policy and
// dedicated pool) and one delivery job per recipient domain. It publishes
// nothing, so that BenchmarkPlan can measure the decision apart from the
// fsync'd publishes that follow it.
func plan(pools pool.Set, dir *tenant.Directory, env *envelope.Envelope) (p pool.Pool, reason string, jobs []*envelope.Envelope) {
	label := ""
	if env.Verdict != nil {
		label = env.Verdict.Label
	}
	dedicated := ""
	if t := dir.Tenant(env.Tenant); t != nil {
		dedicated = t.Pool
	}
	p, reason = Decide(pools, label, dir.Policy(env.Tenant), dedicated)
	domains, byDomain := SplitByDomain(env.Rcpts)
	jobs = make([]*envelope.Envelope, 0, len(domains))
	for _, d := range domains {
		job := env.Clone()
		job.Rcpts = byDomain[d]
		job.Domain = d
		job.Pool = p.Name
		job.RouteReason = reason
		job.Jobs = len(domains)
		jobs = append(jobs, job)
	}
	return p, reason, jobs
}
