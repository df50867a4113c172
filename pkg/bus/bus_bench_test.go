package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
)

// connectDurable is connect with JetStream fsyncing every write, as in
// production.
func connectDurable(b *testing.B) *Bus {
	b.Helper()
	ns := natstest.StartSync(b, true)
	cfg := DefaultConfig()
	cfg.URL = ns.ClientURL()
	bb, err := Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bb.Close)
	return bb
}

// BenchmarkPublishEvent: 16 goroutines reporting events at once, as the
// stages of a busy pipeline do, with sync_always.
func BenchmarkPublishEvent(b *testing.B) {
	bb := connectDurable(b) // a new server per run, so the stream holds this run's events only
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			e := &events.Event{ID: fmt.Sprintf("ev-%d", i), Type: events.TypeDelivery, Tenant: "t", MsgID: fmt.Sprint(i),
				Delivery: &events.Delivery{}}
			if err := bb.PublishEvent(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(streamMsgs(b, bb, StreamEvents)), "events/msg")
}

// BenchmarkHop: one stage hop of a 10 KiB message with sync_always: take it
// from the submitted stream, publish it on, ack it (DoubleAck, to include
// the ack's own write). The publish of the input is outside the timer.
func BenchmarkHop(b *testing.B) {
	bb := connectDurable(b)
	ctx := context.Background()
	cons, err := bb.JS.CreateOrUpdateConsumer(ctx, StreamSubmitted,
		jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 10<<10)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t"}
		if err := bb.PublishMessage(ctx, SubjectSubmitted, env.ID, env, body); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m, err := cons.Next()
		if err != nil {
			b.Fatal(err)
		}
		if err := bb.PublishMessage(ctx, SubjectClassified, env.ID, env, body); err != nil {
			b.Fatal(err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublishMessage: 16 goroutines publishing 10 KiB messages to one
// pool's delivery jobs at once, as the router's workers do under load,
// with sync_always; a consumer acknowledges them as they come (the
// sender's part in the disk's work: a work queue's ack writes a
// tombstone). Reports messages per second and messages per stream
// message.
func BenchmarkPublishMessage(b *testing.B) {
	bb := connectDurable(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stored, acked atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- bb.Consume(ctx, Consumer{Stream: StreamOutbound, Durable: "bench", FilterSubject: OutboundSubject("p"), Workers: 16},
			slog.New(slog.DiscardHandler), func(ctx context.Context, m jetstream.Msg) {
				if md, err := m.Metadata(); err == nil && md.Sequence.Stream > uint64(stored.Load()) {
					stored.Store(int64(md.Sequence.Stream)) // roughly: the highest seen
				}
				if m.DoubleAck(ctx) == nil {
					acked.Add(1)
				}
			})
	}()
	body := make([]byte, 10<<10)
	b.ReportAllocs()
	b.SetParallelism(8) // × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t", Domain: "example.com"}
			if err := bb.PublishMessage(context.Background(), OutboundSubject("p"), env.JobID(), env, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	for acked.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/float64(max(stored.Load(), 1)), "msgs/stored")
	cancel()
	<-done
}
