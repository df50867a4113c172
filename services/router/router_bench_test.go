package router

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/suppression"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// BenchmarkPlan measures what the router computes for each classified
// message, everything route does but its publishes: decode the envelope
// from the headers, look up the tenant's policy, drop suppressed
// recipients, choose the pool and split the recipients into one job per
// domain. The tenant directory and the suppression list (1,000 entries)
// are the real ones, filled by their KV watches from an embedded
// JetStream. The message has five recipients at three domains, one of
// them suppressed.
func BenchmarkPlan(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	bs := bustest.Start(b)

	store := tenant.Store{Tenants: bs.Tenants, Policy: bs.Policy}
	if err := store.Create(ctx, &tenant.Tenant{ID: "acme", Created: time.Now()}); err != nil {
		b.Fatal(err)
	}
	dir := tenant.NewDirectory()
	dirDone := make(chan struct{})
	go func() { defer close(dirDone); dir.Run(ctx, store, log) }()
	b.Cleanup(func() { cancel(); <-dirDone })
	<-dir.Ready()

	sup, err := suppression.Open(ctx, bs.JS, 1)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i := range 1000 {
		addr := fmt.Sprintf("gone%d@example.net", i)
		if i == 0 {
			addr = "bob@example.net"
		}
		e := suppression.Entry{Tenant: "acme", Address: addr, Reason: "userunknown", Source: "bounce", Created: now}
		if _, err := sup.Add(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	sl, stop, err := suppression.Watch(ctx, bs.JS, 1, log)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()

	m := &nats.Msg{}
	err = envelope.Encode(m, &envelope.Envelope{
		ID: envelope.NewID(), Tenant: "acme", From: "news@acme.example", Size: 10240, Received: now,
		Rcpts:   []string{"alice@example.net", "bob@example.net", "carol@example.org", "dave@mail.example.com", "erin@example.org"},
		Verdict: &events.Verdict{Score: 2.5, Label: "clean", Symbols: []events.Symbol{{Name: "BAYES_LOW", Weight: -1}, {Name: "HTML_MESSAGE", Weight: 0.25}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	decide := func() (string, []*envelope.Envelope, int) {
		env, err := envelope.Decode(m.Header)
		if err != nil {
			b.Fatal(err)
		}
		if dir.Policy(env.Tenant).State == tenant.StateSuspended {
			b.Fatal("tenant suspended")
		}
		keep, dropped := sl.Filter(env.Tenant, env.Rcpts, now)
		env.Rcpts = keep
		p, _, jobs := plan(testPools, dir, env)
		return p.Name, jobs, len(dropped)
	}
	if p, jobs, dropped := decide(); p != "shared" || len(jobs) != 3 || dropped != 1 || len(jobs[0].Rcpts) != 1 {
		b.Fatalf("plan = pool %s, %d jobs (first %v), %d suppressed; want shared, 3 jobs (first [alice@example.net]), 1 suppressed",
			p, len(jobs), jobs[0].Rcpts, dropped)
	}

	b.ReportAllocs()
	for b.Loop() {
		decide()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
