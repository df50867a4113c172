package feedback

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/verp"
)

const testSecret = "feedback-test-secret-0123456789"

// fixture is a running worker on a real JetStream server.
type fixture struct {
	bus   *bus.Bus
	w     *Worker
	codec *verp.Codec
}

func startWorker(t *testing.T) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	bc := bus.DefaultConfig()
	bc.URL = ns.ClientURL()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	b, err := bus.Connect(ctx, bc, log)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := verp.New(verp.Config{Domain: "bounces.test", Secrets: []string{testSecret}, PerRecipient: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(ctx, DefaultConfig(), b, NewParser(), codec, tenantSet{"acme": true}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		b.Close()
	})
	return &fixture{bus: b, w: w, codec: codec}
}

// spool puts a report on the feedback stream as the MX listener does.
func (f *fixture) spool(t *testing.T, mailbox string, rcpts []string, raw string) string {
	t.Helper()
	env := &envelope.Envelope{ID: envelope.NewID(), Rcpts: rcpts, Received: time.Now().UTC(), ClientIP: "127.0.0.9", Size: int64(len(raw))}
	if err := f.bus.PublishMessage(context.Background(), bus.SubjectFeedback+"."+mailbox, env.ID, env, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

// eventsOf reads the events stream until it holds want events about
// report or message id, or 5 s pass.
func (f *fixture) eventsOf(t *testing.T, ids map[string]bool, want int) []*events.Event {
	t.Helper()
	ctx := context.Background()
	cons, err := f.bus.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Event
	deadline := time.Now().Add(5 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		m, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if err != nil {
			continue
		}
		e, err := events.Unmarshal(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if ids[e.MsgID] || (e.Report != nil && ids[e.Report.ReportID]) {
			out = append(out, e)
		}
	}
	return out
}

func TestWorker_UnparsedKeptAndCounted(t *testing.T) {
	f := startWorker(t)
	raw := "From: someone@else.test\r\nSubject: hi\r\n\r\nnot a report at all\r\n"
	id := f.spool(t, "bounce", []string{"postmaster@bounces.test"}, raw)
	evs := f.eventsOf(t, map[string]bool{id: true}, 1)
	if len(evs) != 1 || evs[0].Type != events.TypeFeedbackReport || evs[0].Report.Class != ClassUnparsed || evs[0].Report.Error == "" {
		t.Fatalf("events = %+v, want one feedback_report of class unparsed", evs)
	}
	// The report itself is kept on the dead-letter stream, with the error.
	dead, err := f.bus.JS.Stream(context.Background(), bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(context.Background(), SubjectUnparsed)
	if err != nil {
		t.Fatalf("unparsed report not kept: %v", err)
	}
	if string(m.Data) != raw || m.Header.Get(HeaderUnparsed) == "" {
		t.Errorf("kept report = %q, error header %q", m.Data, m.Header.Get(HeaderUnparsed))
	}
	if env, err := envelope.Decode(m.Header); err != nil || env.ID != id {
		t.Errorf("kept report's envelope = %+v, %v", env, err)
	}
	if n := f.w.Stats.Unparsed.Load(); n != 1 {
		t.Errorf("Stats.Unparsed = %d, want 1", n)
	}
	waitDrained(t, f)
}

// waitDrained waits until the feedback stream is empty: every report acked.
func waitDrained(t *testing.T, f *fixture) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := f.bus.JS.Stream(context.Background(), bus.StreamFeedback)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("feedback stream still holds %d reports", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
