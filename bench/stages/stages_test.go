package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
)

// TestRun writes the events of three messages into a store, stops its
// server and reads the store as the tool does: only the message with a
// verdict, a route and exactly one delivery is timed, and each stage is
// the difference of its events' timestamps.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	s := natstest.StartDir(t, dir)
	js := natstest.Client(t, s)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamEvents, Subjects: []string{bus.SubjectEvents + ".>"}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	verdict := func(id string, at int) *events.Event {
		return &events.Event{ID: id + ".verdict", Type: events.TypeVerdict, Time: ms(at), MsgID: id, Verdict: &events.Verdict{}}
	}
	routed := func(id string, recv, at int) *events.Event {
		return &events.Event{ID: id + ".routed", Type: events.TypeRouted, Time: ms(at), MsgID: id, Routed: &events.Routed{Received: ms(recv)}}
	}
	delivery := func(id string, end int, dur int64) *events.Event {
		return &events.Event{ID: id + ".delivery", Type: events.TypeDelivery, Time: ms(end), MsgID: id, Delivery: &events.Delivery{DurationMs: dur}}
	}
	batches := [][]*events.Event{
		{verdict("a", 2), verdict("b", 1), verdict("c", 1)},
		{routed("a", 0, 5), routed("b", 0, 3)},
		{delivery("a", 20, 8), delivery("b", 10, 2)},
		{delivery("b", 400, 2)}, // b was retried: not one path
	}
	for _, b := range batches {
		var payload []byte
		for _, e := range b {
			line, err := events.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			payload = append(append(payload, line...), '\n')
		}
		if _, err := js.Publish(ctx, bus.SubjectEvents+".test", payload); err != nil {
			t.Fatal(err)
		}
	}
	js.Conn().Close()
	s.Shutdown()
	s.WaitForShutdown()

	var out bytes.Buffer
	if err := run(ctx, dir, 0, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"received -> scored":       "n=1 p50=2.0",
		"scored -> routed":         "n=1 p50=3.0",
		"routed -> delivery start": "n=1 p50=7.0",
		"delivery start -> end":    "n=1 p50=8.0",
		"received -> delivered":    "n=1 p50=20.0",
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		name := strings.TrimSpace(line[:26])
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected line %q", line)
			continue
		}
		if !strings.Contains(line, w) {
			t.Errorf("%s: %q, want it to contain %q", name, line, w)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("no line for %s in\n%s", name, out.String())
	}

	out.Reset()
	if err := run(ctx, dir, 5, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got, want := strings.Join(lines[len(lines)-2:], "\n"), "slowest 1 (received at s after 12:00:00.000; stages in ms, in the order above):\n"+
		"   0.000     2.0     3.0     7.0     8.0    20.0"; got != want {
		t.Errorf("-slow 5 ends with\n%s\nwant\n%s", got, want)
	}
}

func TestRank(t *testing.T) {
	d := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tt := range []struct {
		q    float64
		want float64
	}{{0.5, 5}, {0.9, 9}, {0.99, 10}, {0, 1}} {
		if got := rank(d, tt.q); got != tt.want {
			t.Errorf("rank(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}
