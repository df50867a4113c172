package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/natstest"
)

func streamMsgs(t testing.TB, b *Bus, name string) uint64 {
	t.Helper()
	s, err := b.JS.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestSpool_PurgedUpToAckFloor: acknowledged messages leave the spool; a
// message not yet acknowledged keeps itself and everything after it. The
// message held back stays in its handler until the test releases it, so
// the check does not race a redelivery timer.
func TestSpool_PurgedUpToAckFloor(t *testing.T) {
	b := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 1; i <= 10; i++ {
		env := &envelope.Envelope{ID: fmt.Sprintf("m%d", i), Tenant: "t"}
		if err := b.PublishMessage(ctx, SubjectSubmitted, env.ID, env, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	handled := make(chan string, 20)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "c", Workers: 2},
			slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context, m jetstream.Msg) {
				env, _ := envelope.Decode(m.Headers())
				if env.ID == "m3" {
					select {
					case <-release:
					case <-ctx.Done():
						return
					}
				}
				_ = m.Ack()
				handled <- env.ID
			})
	}()
	for range 9 {
		<-handled
	}
	// m1 and m2 go; m3 (in hand) holds back itself and m4..m10, however
	// many purges pass.
	waitStreamMsgs(t, b, StreamSubmitted, 8, 10*time.Second)
	time.Sleep(2 * PurgeInterval)
	if n := streamMsgs(t, b, StreamSubmitted); n != 8 {
		t.Fatalf("spool holds %d messages while m3 waits, want 8", n)
	}
	close(release)
	if id := <-handled; id != "m3" {
		t.Fatalf("handled %s, want m3", id)
	}
	waitStreamMsgs(t, b, StreamSubmitted, 0, 10*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitStreamMsgs waits up to within for stream to hold exactly want
// messages.
func waitStreamMsgs(t *testing.T, b *Bus, stream string, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := streamMsgs(t, b, stream)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages, want %d", stream, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeclare_StreamInAnotherLayout: a stream left with another retention
// by another version (SUBMITTED, CLASSIFIED or OUTBOUND as a work queue) is
// recreated when empty; one that holds mail stops the start with an error
// that says so, and the mail stays.
func TestDeclare_StreamInAnotherLayout(t *testing.T) {
	tests := []struct {
		name      string
		stream    string
		subject   string
		old, want jetstream.RetentionPolicy
		withMail  bool
	}{
		{"empty work-queue spool", StreamSubmitted, SubjectSubmitted, jetstream.WorkQueuePolicy, jetstream.LimitsPolicy, false},
		{"work-queue spool with mail", StreamSubmitted, SubjectSubmitted, jetstream.WorkQueuePolicy, jetstream.LimitsPolicy, true},
		{"empty work-queue outbound", StreamOutbound, SubjectOutbound + ".>", jetstream.WorkQueuePolicy, jetstream.LimitsPolicy, false},
		{"work-queue outbound with mail", StreamOutbound, SubjectOutbound + ".>", jetstream.WorkQueuePolicy, jetstream.LimitsPolicy, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := natstest.Start(t)
			js := natstest.Client(t, ns)
			ctx := context.Background()
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tt.stream, Subjects: []string{tt.subject},
				Retention: tt.old, Storage: jetstream.FileStorage})
			if err != nil {
				t.Fatal(err)
			}
			if tt.withMail {
				if _, err := js.Publish(ctx, strings.Replace(tt.subject, ">", "shared", 1), []byte("queued mail")); err != nil {
					t.Fatal(err)
				}
			}
			cfg := DefaultConfig()
			cfg.URL = ns.ClientURL()
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			b, err := Connect(cctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if tt.withMail {
				if err == nil || !strings.Contains(err.Error(), "still holds 1 messages") || cctx.Err() != nil {
					t.Fatalf("Connect = %v, want an immediate error about the queued mail", err)
				}
				info, err := s.Info(ctx)
				if err != nil || info.State.Msgs != 1 {
					t.Fatalf("old stream: %v, %v; want it kept with its message", info, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.Retention != tt.want {
				t.Errorf("retention = %v, want %v", info.Config.Retention, tt.want)
			}
		})
	}
}

// TestSpool_OutboundPurgesOnlyItsPool: a pool's consumer purges the jobs it
// acknowledged and nothing else: not another pool's jobs, not a deferred
// job waiting as a message schedule.
func TestSpool_OutboundPurgesOnlyItsPool(t *testing.T) {
	b := connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	at := time.Now().Add(time.Hour)
	env := &envelope.Envelope{ID: "later", Tenant: "t", Pool: "a"}
	if err := b.PublishDeferred(ctx, DeferredSubject("a", env.ID, "x.example"), OutboundSubject("a"), "later", at, env, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		for _, pool := range []string{"a", "b"} {
			env := &envelope.Envelope{ID: fmt.Sprintf("%s%d", pool, i), Tenant: "t", Pool: pool}
			if err := b.PublishMessage(ctx, OutboundSubject(pool), env.ID, env, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	acked := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, Consumer{Stream: StreamOutbound, Durable: "sender-a", FilterSubject: OutboundSubject("a")},
			slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context, m jetstream.Msg) {
				_ = m.Ack()
				acked <- struct{}{}
			})
	}()
	for range 10 {
		<-acked
	}
	count := func(subject string) uint64 {
		s, err := b.JS.Stream(ctx, StreamOutbound)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for count(OutboundSubject("a")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pool a still holds %d acknowledged jobs", count(OutboundSubject("a")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(OutboundSubject("b")); n != 10 {
		t.Errorf("pool b holds %d jobs, want its 10 untouched", n)
	}
	if n := count(SubjectDeferred + ".>"); n != 1 {
		t.Errorf("%d deferred jobs left, want the waiting one", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
