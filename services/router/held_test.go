package router

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// TestRun_PolicyEnforcement runs the router on a real JetStream: a policy
// written to the KV bucket takes effect within a second (probation → the
// high-risk pool; suspended → held), held mail is listed, released back
// into routing and purged with a purged event.
func TestRun_PolicyEnforcement(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := bustest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pools := pool.Set{
		{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{{Address: "127.0.0.2"}}},
		{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: "127.0.0.3"}}},
	}
	store := tenant.Store{Tenants: b.Tenants, Policy: b.Policy}
	dir := tenant.NewDirectory()
	go dir.Run(ctx, store, log)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, DefaultConfig(), pools, dir, b, log) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	outbound := func(p string) uint64 {
		t.Helper()
		return bustest.Count(t, b, bus.StreamOutbound, bus.OutboundSubject(p))
	}
	n := 0
	submit := func() string {
		t.Helper()
		n++
		env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "acme", From: "a@acme.example",
			Rcpts: []string{"r@x.example"}, Verdict: &events.Verdict{Label: "ham"}}
		if err := b.PublishMessage(ctx, bus.SubjectClassified, env.ID, env, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	setPolicy := func(st tenant.State) time.Time {
		t.Helper()
		if err := store.PutPolicy(ctx, "acme", tenant.Policy{State: st, Since: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	// within waits up to a second (the promise: policy applies within one)
	// for cond.
	within := func(what string, since time.Time, cond func() bool) {
		t.Helper()
		for !cond() {
			if time.Since(since) > time.Second {
				t.Fatalf("%s: not within 1s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s after %v", what, time.Since(since).Round(time.Millisecond))
	}
	heldCount := func() int {
		hs, err := held.List(ctx, b, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return len(hs)
	}

	submit()
	within("good → shared", time.Now(), func() bool { return outbound("shared") == 1 })

	at := setPolicy(tenant.StateProbation)
	within("probation → high-risk", at, func() bool {
		if outbound("high-risk") > 0 {
			return true
		}
		submit() // routed by the policy the router had when it took it
		time.Sleep(50 * time.Millisecond)
		return false
	})

	at = setPolicy(tenant.StateSuspended)
	within("suspended → held", at, func() bool {
		if heldCount() > 0 {
			return true
		}
		submit()
		time.Sleep(50 * time.Millisecond)
		return false
	})
	for range 3 {
		submit()
	}
	sharedBefore, riskBefore := outbound("shared"), outbound("high-risk")
	within("all held", time.Now(), func() bool { return heldCount() == n-int(sharedBefore+riskBefore) })
	nHeld := heldCount()
	if outbound("shared") != sharedBefore || outbound("high-risk") != riskBefore {
		t.Fatal("a suspended tenant's message was routed")
	}

	// Released while still suspended: held again, not sent.
	if got, err := held.Release(ctx, b, "acme"); err != nil || got != nHeld {
		t.Fatalf("Release = %d, %v; want %d", got, err, nHeld)
	}
	within("released while suspended: held again", time.Now(), func() bool { return heldCount() == nHeld })

	// Released when good: routed to the shared pool, nothing left held.
	setPolicy(tenant.StateGood)
	time.Sleep(200 * time.Millisecond)
	if got, err := held.Release(ctx, b, "acme"); err != nil || got != nHeld {
		t.Fatalf("Release = %d, %v; want %d", got, err, nHeld)
	}
	within("released when good: routed", time.Now(), func() bool {
		return outbound("shared") == sharedBefore+uint64(nHeld) && heldCount() == 0
	})

	// Purged: gone, one purged event each.
	setPolicy(tenant.StateSuspended)
	time.Sleep(200 * time.Millisecond)
	ids := map[string]bool{submit(): true, submit(): true}
	within("held for purge", time.Now(), func() bool { return heldCount() == 2 })
	if got, err := held.Purge(ctx, b, "acme"); err != nil || got != 2 {
		t.Fatalf("Purge = %d, %v; want 2", got, err)
	}
	if heldCount() != 0 {
		t.Error("held messages left after purge")
	}
	cons, err := b.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Subject + "." + string(events.TypePurged)}})
	if err != nil {
		t.Fatal(err)
	}
	for purged := 0; purged < 2; {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		evs, err := events.UnmarshalAll(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if !ids[e.MsgID] || e.Tenant != "acme" {
				t.Errorf("purged event %s", m.Data())
			}
			delete(ids, e.MsgID)
			purged++
		}
	}
	if _, err := held.List(ctx, b, "Bad Id"); err == nil {
		t.Error("List accepted a malformed tenant id")
	}
}
