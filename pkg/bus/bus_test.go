package bus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
)

func connect(t *testing.T) *Bus {
	t.Helper()
	return connectWith(t, func(*Config) {})
}

// connectWith is connect with mod applied to the configuration.
func connectWith(t *testing.T, mod func(*Config)) *Bus {
	t.Helper()
	ns := natstest.Start(t)
	cfg := DefaultConfig()
	cfg.URL = ns.ClientURL()
	cfg.MaxDeliver = 3
	cfg.AckWait = time.Second
	mod(&cfg)
	b, err := Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestConnect_Idempotent: a second process declaring the same resources
// neither fails nor rewrites any of them (an update of an unchanged stream
// raced in nats-server with consumers being created; see pkg/jsdeclare).
// Updates are counted by the server's advisories, read up to a sentinel
// stream's update made afterwards.
func TestConnect_Idempotent(t *testing.T) {
	b := connect(t)
	ctx := context.Background()
	var updated []string
	done := make(chan struct{})
	sub, err := b.NC.Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", func(m *nats.Msg) {
		name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if name == "SENTINEL" {
			close(done)
			return
		}
		updated = append(updated, name)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := b.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.declareOnce(ctx); err != nil {
		t.Fatalf("second declare: %v", err)
	}
	sentinel := jetstream.StreamConfig{Name: "SENTINEL", Subjects: []string{"sentinel"}}
	if _, err := b.JS.CreateStream(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	sentinel.Description = "barrier"
	if _, err := b.JS.UpdateStream(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no advisory for the sentinel stream")
	}
	if len(updated) > 0 {
		t.Errorf("second declaration updated unchanged streams %v", updated)
	}
}

func TestPublishMessage_InlineAndByReference(t *testing.T) {
	b := connect(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		size    int
		wantRef bool
	}{
		{"small inline", 1000, false},
		{"at limit inline", b.cfg.InlineLimit, false},
		{"large by reference", b.cfg.InlineLimit + 1, true},
		{"25 MiB by reference", 25 << 20, true},
	}
	for _, tt := range tests {
		body := bytes.Repeat([]byte("x"), tt.size)
		env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t", Size: int64(len(body))}
		if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, body); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := env.BodyRef != ""; got != tt.wantRef {
			t.Errorf("%s: by reference = %v, want %v", tt.name, got, tt.wantRef)
		}
		got, release, err := b.Body(ctx, env, mustLast(t, b, env.ID))
		if err != nil {
			t.Fatalf("%s: body: %v", tt.name, err)
		}
		release()
		if !bytes.Equal(got, body) {
			t.Errorf("%s: body differs (%d bytes, want %d)", tt.name, len(got), len(body))
		}
		if err := b.ReleaseBody(ctx, env); err != nil {
			t.Fatalf("%s: release: %v", tt.name, err)
		}
		if tt.wantRef {
			if _, err := b.Bodies.GetInfo(ctx, env.BodyRef); !errors.Is(err, jetstream.ErrObjectNotFound) {
				t.Errorf("%s: body still stored after release: %v", tt.name, err)
			}
		}
	}
}

// mustLast returns the payload of the last message with that envelope id.
func mustLast(t *testing.T, b *Bus, id string) []byte {
	t.Helper()
	s, err := b.JS.Stream(context.Background(), StreamSubmitted)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), SubjectSubmitted)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Decode(m.Header)
	if err != nil || env.ID != id {
		t.Fatalf("last message %v, %v; want %s", env, err, id)
	}
	return m.Data
}

func TestReleaseBody_LastJobDeletes(t *testing.T) {
	b := connect(t)
	ctx := context.Background()
	env := &envelope.Envelope{ID: envelope.NewID(), Jobs: 3}
	if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, bytes.Repeat([]byte("y"), b.cfg.InlineLimit+10)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := b.ReleaseBody(ctx, env); err != nil {
			t.Fatal(err)
		}
		_, err := b.Bodies.GetInfo(ctx, env.BodyRef)
		stored := err == nil
		if want := i < 2; stored != want {
			t.Fatalf("after %d of 3 jobs released: stored = %v, want %v", i+1, stored, want)
		}
	}
}

func TestPublish_DuplicateIDStoredOnce(t *testing.T) {
	b := connect(t)
	ctx := context.Background()
	env := &envelope.Envelope{ID: "dup", Tenant: "t"}
	for range 3 {
		if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	e := &events.Event{ID: "ev1", Type: events.TypeVerdict, Tenant: "t", MsgID: "dup"}
	for range 3 {
		if err := b.PublishEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{StreamSubmitted, StreamEvents} {
		s, _ := b.JS.Stream(ctx, name)
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 1 {
			t.Errorf("%s holds %d messages, want 1", name, info.State.Msgs)
		}
	}
}

func TestConsume_DeadLetterAfterMaxDeliver(t *testing.T) {
	b := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	env := &envelope.Envelope{ID: "poison", Tenant: "t"}
	if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, []byte("x")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	done := make(chan error)
	go func() {
		done <- b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "t"}, slog.New(slog.NewTextHandler(io.Discard, nil)),
			func(ctx context.Context, m jetstream.Msg) {
				calls.Add(1)
				m.NakWithDelay(10 * time.Millisecond)
			})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := b.JS.Stream(ctx, StreamDead)
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message did not reach the dead-letter stream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != int32(b.cfg.MaxDeliver) {
		t.Errorf("handler called %d times, want %d", n, b.cfg.MaxDeliver)
	}
}

func TestConsume_PanicIsRedelivered(t *testing.T) {
	b := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := &envelope.Envelope{ID: "p", Tenant: "t"}
	if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, []byte("x")); err != nil {
		t.Fatal(err)
	}
	acked := make(chan struct{})
	var calls atomic.Int32
	go b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "p"}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(ctx context.Context, m jetstream.Msg) {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			m.Ack()
			close(acked)
		})
	select {
	case <-acked:
	case <-time.After(15 * time.Second):
		t.Fatal("message not redelivered after a handler panic")
	}
}

// TestBody_WaitsForBodyMemory: stored bodies count against
// nats.body_memory until released; a worker whose body would pass it
// waits, and a body larger than the whole budget still goes, alone.
func TestBody_WaitsForBodyMemory(t *testing.T) {
	b := connectWith(t, func(c *Config) { c.InlineLimit, c.BodyMemory = 1024, 3000 })
	ctx := context.Background()
	stored := func(size int) *envelope.Envelope {
		t.Helper()
		body := bytes.Repeat([]byte("y"), size)
		env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t", Size: int64(size)}
		if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, body); err != nil {
			t.Fatal(err)
		}
		if env.BodyRef == "" {
			t.Fatalf("a %d-byte body was not stored", size)
		}
		return env
	}
	a, c, huge := stored(2000), stored(2000), stored(10000)
	wait := func(env *envelope.Envelope) (func(), error) {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, release, err := b.Body(wctx, env, nil)
		return release, err
	}

	releaseA, err := wait(a)
	if err != nil {
		t.Fatalf("first body: %v", err)
	}
	if _, err := wait(c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second body while the first is held: err = %v, want it to wait past the deadline", err)
	}
	releaseA()
	releaseA() // a second call gives nothing back twice
	releaseC, err := wait(c)
	if err != nil {
		t.Fatalf("second body after the first was released: %v", err)
	}
	if _, err := wait(huge); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a body larger than the budget while another is held: err = %v, want a wait", err)
	}
	releaseC()
	releaseHuge, err := wait(huge)
	if err != nil {
		t.Fatalf("a body larger than the budget, alone: %v", err)
	}
	if _, err := wait(a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a body while the oversized one holds the whole budget: err = %v, want a wait", err)
	}
	releaseHuge()
	// Inline bodies do not count.
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "t", Size: 10}
	if _, release, err := b.Body(ctx, env, []byte("0123456789")); err != nil || release == nil {
		t.Fatalf("inline body: release %v, err %v", release != nil, err)
	}
}

// TestConsume_StoppedWhileStarting: a role stopped before its consumer
// exists (a shutdown right after start) stops cleanly, without an error
// that would fail the process.
func TestConsume_StoppedWhileStarting(t *testing.T) {
	b := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "stopped"}, slog.New(slog.DiscardHandler),
		func(context.Context, jetstream.Msg) { t.Error("handler called") })
	if err != nil {
		t.Fatalf("Consume after a stop while starting = %v, want nil", err)
	}
}
