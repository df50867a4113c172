package bus

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/natstest"
)

func TestPublishDeferred_FiresOnTimeWithoutPending(t *testing.T) {
	b := connect(t)
	ctx := context.Background()
	target := OutboundSubject("shared")
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, StreamOutbound, jetstream.ConsumerConfig{
		Durable: "sender-shared", FilterSubject: target, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t", Domain: "example.net", Rcpts: []string{"a@example.net"}, Attempt: 1}
	at := time.Now().Add(1500 * time.Millisecond)
	env.NotBefore = at
	sched := DeferredSubject("shared", env.ID, env.Domain)
	if err := b.PublishDeferred(ctx, sched, target, env.JobID(), at, env, []byte("body")); err != nil {
		t.Fatal(err)
	}
	// Waiting: stored in the stream, but nothing pending for the consumer.
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("while scheduled: pending %d, ack pending %d, want 0 and 0", info.NumPending, info.NumAckPending)
	}
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range msgs.Messages() {
		got = m
	}
	arrived := time.Now()
	if got == nil {
		t.Fatal("the schedule did not fire within 5s")
	}
	if arrived.Before(at) || arrived.After(at.Add(time.Second)) {
		t.Errorf("fired %v after its time, want within [0, 1s)", arrived.Sub(at))
	}
	genv, err := envelope.Decode(got.Headers())
	if err != nil {
		t.Fatal(err)
	}
	if genv.ID != env.ID || genv.Attempt != 1 || string(got.Data()) != "body" || got.Subject() != target {
		t.Errorf("fired %s %+v %q, want the scheduled job on %s", got.Subject(), genv, got.Data(), target)
	}
	if err := got.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// The schedule removed itself, and the purge a sender runs for its pool
	// (spool.go) removes the acknowledged job: the stream is empty.
	if _, err := b.purgeAcked(ctx, StreamOutbound, target, cons, 0); err != nil {
		t.Fatal(err)
	}
	waitStreamMsgs(t, b, StreamOutbound, 0, 3*time.Second)
}

// A stream declared by an older version (DiscardNew, no schedules) is
// updated in place.
func TestConnect_UpgradesOutboundForSchedules(t *testing.T) {
	ns := natstest.Start(t)
	cfg := DefaultConfig()
	cfg.URL = ns.ClientURL()
	b, err := Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	old := jetstream.StreamConfig{Name: StreamOutbound, Subjects: []string{SubjectOutbound + ".>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew}
	ctx := context.Background()
	if err := b.JS.DeleteStream(ctx, StreamOutbound); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = Connect(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.JS.Stream(ctx, StreamOutbound)
	if err != nil {
		t.Fatal(err)
	}
	if !s.CachedInfo().Config.AllowMsgSchedules {
		t.Error("OUTBOUND was not updated to allow message schedules")
	}
}
