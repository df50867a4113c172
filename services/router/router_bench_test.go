package router

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/suppression"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// routeWorld is what the router works with, all real: an embedded
// JetStream, the tenant directory and the suppression list (1,000 entries
// of tenant acme) filled by their KV watches, and a classified message of
// acme with five recipients at three domains, one of them suppressed.
type routeWorld struct {
	bus *bus.Bus
	dir *tenant.Directory
	sl  *suppression.List
	env *envelope.Envelope
	msg *nats.Msg // env encoded
}

func startRouteWorld(b *testing.B, syncAlways bool) *routeWorld {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	ns := natstest.StartSync(b, syncAlways)
	bs := bustest.ConnectTo(b, ns.ClientURL(), log)

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
	b.Cleanup(stop)

	m := nats.NewMsg(bus.SubjectClassified)
	m.Data = []byte("From: news@acme.example\r\nSubject: x\r\n\r\nbody\r\n")
	env := &envelope.Envelope{
		ID: envelope.NewID(), Tenant: "acme", From: "news@acme.example", Size: 10240, Received: now,
		Rcpts:   []string{"alice@example.net", "bob@example.net", "carol@example.org", "dave@mail.example.com", "erin@example.org"},
		Verdict: &events.Verdict{Score: 2.5, Label: "clean", Symbols: []events.Symbol{{Name: "BAYES_LOW", Weight: -1}, {Name: "HTML_MESSAGE", Weight: 0.25}}},
	}
	if err := envelope.Encode(m, env); err != nil {
		b.Fatal(err)
	}
	return &routeWorld{bus: bs, dir: dir, sl: sl, env: env, msg: m}
}

// BenchmarkPlan measures what the router computes for each classified
// message, everything route does but its publishes: decode the envelope
// from the headers, look up the tenant's policy, drop suppressed
// recipients, choose the pool and split the recipients into one job per
// domain.
func BenchmarkPlan(b *testing.B) {
	w := startRouteWorld(b, false)
	now := time.Now()
	decide := func() (string, []*envelope.Envelope, int) {
		env, err := envelope.Decode(w.msg.Header)
		if err != nil {
			b.Fatal(err)
		}
		if w.dir.Policy(env.Tenant).State == tenant.StateSuspended {
			b.Fatal("tenant suspended")
		}
		keep, dropped := w.sl.Filter(env.Tenant, env.Rcpts, now)
		env.Rcpts = keep
		p, _, jobs := plan(testPools, w.dir, env)
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

// BenchmarkRoute measures route end to end for the same message on
// JetStream with fsync on every write (sync_always, the production
// default) and off: fetch it from the classified stream, then the plan
// and its publishes (three delivery jobs, a suppressed and a routed
// event), then the ack. Publishing the input to the classified stream is
// outside the timer. Set beside BenchmarkPlan, it shows what the
// publishes cost.
func BenchmarkRoute(b *testing.B) {
	for _, syncAlways := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync_always=%t", syncAlways), func(b *testing.B) {
			w := startRouteWorld(b, syncAlways)
			ctx := context.Background()
			cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, bus.StreamClassified,
				jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				// A new message each time, or JetStream's duplicate
				// window would drop the publishes as repeats.
				w.env.ID = envelope.NewID()
				if err := w.bus.PublishMessage(ctx, bus.SubjectClassified, w.env.ID, w.env, w.msg.Data); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
				if err != nil {
					b.Fatal(err)
				}
				if err := route(ctx, testPools, w.dir, w.sl, w.bus, m); err != nil {
					b.Fatal(err)
				}
				if err := m.DoubleAck(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if got, want := bustest.Count(b, w.bus, bus.StreamOutbound, ""), uint64(3*b.N); got != want {
				b.Fatalf("%s holds %d jobs after %d messages routed, want %d", bus.StreamOutbound, got, b.N, want)
			}
		})
	}
}
