// Command stages says where a message's time went in a kept bench run: it
// reads the EVENTS stream of an Outflow NATS store (bench/run.sh with
// KEEP=1 leaves it under TMP/<system>/nats, or under
// OUTFLOW_STORE/outflow-bench-PID-<system> when OUTFLOW_STORE is set) and
// prints, per stage, the p50/p90/p99/max over the messages delivered once:
//
//	received → scored        ingest's publish and the SUBMITTED hop
//	scored → routed          the classifier's publish and the CLASSIFIED hop
//	routed → delivery start  the router's publish and the OUTBOUND hop
//	delivery start → end     body, DKIM, the SMTP transaction
//
// from the events' own timestamps (the routed event carries the time
// ingest received the message; a delivery event its end and duration).
//
//	go run ./bench/stages -store /tmp/outflow-bench.XXXX/outflow-lat/nats
//
// It starts its own embedded NATS server on the store, so the Outflow that
// wrote it must have stopped (bench/run.sh stops it before it exits).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natsserver"
)

func main() {
	store := flag.String("store", "", "JetStream store directory of a stopped Outflow (required)")
	slow := flag.Int("slow", 0, "also list the N slowest messages: when each was received and its stages")
	flag.Parse()
	if *store == "" {
		fmt.Fprintln(os.Stderr, "stages: -store is required")
		os.Exit(2)
	}
	if err := run(context.Background(), *store, *slow, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, store string, slow int, out io.Writer) error {
	s, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: store})
	if err != nil {
		return err
	}
	defer s.WaitForShutdown()
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := collect(ctx, js)
	if err != nil {
		return err
	}
	if err := st.print(out); err != nil {
		return err
	}
	return st.printSlowest(out, slow)
}

// message is what the events say about one message.
type message struct {
	received, scored, routed, start, end time.Time
	deliveries                           int
}

// stageNames name the spans of a message, in the order collect measures
// them.
var stageNames = [...]string{"received -> scored", "scored -> routed", "routed -> delivery start", "delivery start -> end", "received -> delivered"}

// stages holds each stage's durations in ms, by stageNames' index, and
// each message's, in the order of receipt.
type stages struct {
	d    [len(stageNames)][]float64
	msgs []timed
}

// timed is one message's stages and when ingest received it.
type timed struct {
	received time.Time
	d        [len(stageNames)]float64
}

// collect reads every event of the stream once.
func collect(ctx context.Context, js jetstream.JetStream) (*stages, error) {
	stream, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.StreamEvents, err)
	}
	last := stream.CachedInfo().State.LastSeq
	msgs := map[string]*message{}
	if last > 0 {
		c, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, fmt.Errorf("consumer: %w", err)
		}
		for {
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				return nil, fmt.Errorf("read events: %w", err)
			}
			evs, err := events.UnmarshalAll(m.Data())
			if err != nil {
				return nil, err
			}
			for _, e := range evs {
				add(msgs, e)
			}
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if md.Sequence.Stream >= last {
				break
			}
		}
	}
	st := &stages{}
	span := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
	for _, m := range msgs {
		// Retried or split messages have several deliveries: their stages
		// are not one path, so they are left out.
		if m.deliveries != 1 || m.received.IsZero() || m.scored.IsZero() || m.routed.IsZero() {
			continue
		}
		t := timed{received: m.received, d: [len(stageNames)]float64{span(m.received, m.scored), span(m.scored, m.routed), span(m.routed, m.start), span(m.start, m.end), span(m.received, m.end)}}
		for i, d := range t.d {
			st.d[i] = append(st.d[i], d)
		}
		st.msgs = append(st.msgs, t)
	}
	sort.Slice(st.msgs, func(i, j int) bool { return st.msgs[i].received.Before(st.msgs[j].received) })
	if len(st.msgs) == 0 {
		return nil, errors.New("no message with a verdict, a route and one delivery in the events")
	}
	return st, nil
}

func add(msgs map[string]*message, e *events.Event) {
	m := msgs[e.MsgID]
	if m == nil {
		m = &message{}
		msgs[e.MsgID] = m
	}
	switch {
	case e.Type == events.TypeVerdict:
		m.scored = e.Time
	case e.Type == events.TypeRouted && e.Routed != nil:
		m.routed, m.received = e.Time, e.Routed.Received
	case e.Type == events.TypeDelivery && e.Delivery != nil:
		m.deliveries++
		m.end = e.Time
		m.start = e.Time.Add(-time.Duration(e.Delivery.DurationMs) * time.Millisecond)
	}
}

func (st *stages) print(w io.Writer) error {
	for i, name := range stageNames {
		d := slices.Clone(st.d[i])
		sort.Float64s(d)
		if _, err := fmt.Fprintf(w, "%-26s n=%d p50=%.1f p90=%.1f p99=%.1f max=%.1f ms\n", name, len(d),
			rank(d, 0.50), rank(d, 0.90), rank(d, 0.99), d[len(d)-1]); err != nil {
			return err
		}
	}
	return nil
}

// printSlowest lists the n slowest messages (received -> delivered), each
// with when it was received, in seconds after the first message, and its
// stages: slow messages received close together point at a stall of the
// whole process or machine, slow messages spread out at a queue.
func (st *stages) printSlowest(w io.Writer, n int) error {
	if n <= 0 {
		return nil
	}
	whole := len(stageNames) - 1
	byTime := slices.Clone(st.msgs)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].d[whole] > byTime[j].d[whole] })
	t0 := st.msgs[0].received
	if _, err := fmt.Fprintf(w, "slowest %d (received at s after %s; stages in ms, in the order above):\n",
		min(n, len(byTime)), t0.UTC().Format("15:04:05.000")); err != nil {
		return err
	}
	for _, m := range byTime[:min(n, len(byTime))] {
		line := fmt.Sprintf("%8.3f", m.received.Sub(t0).Seconds())
		for _, d := range m.d {
			line += fmt.Sprintf(" %7.1f", d)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// rank is the nearest-rank percentile of sorted d (a measured value).
func rank(d []float64, q float64) float64 {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}
