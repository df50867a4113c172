package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
)

func TestBatch_Codec(t *testing.T) {
	msg := func(id string, data string) *pendingMsg {
		m := nats.NewMsg(SubjectSubmitted)
		m.Header = nats.Header{}
		m.Header.Set(envelope.HeaderTenant, "t")
		m.Header.Set(envelope.HeaderEnvelope, `{"id":"`+id+`"}`)
		m.Header.Add("X-Two", "a")
		m.Header.Add("X-Two", "b")
		m.Data = []byte(data)
		return &pendingMsg{msgID: id, m: m}
	}
	batch := []*pendingMsg{msg("a", "body a\r\n"), msg("b", ""), msg("c", string(bytes.Repeat([]byte{0, 0xff}, 300)))}
	m, id := encodeBatch(SubjectSubmitted, batch)
	if id != "batch.a.c.3" || m.Header.Get(HeaderBatch) != "3" || m.Header.Get(envelope.HeaderTenant) != "t" {
		t.Fatalf("id %q, headers %v", id, m.Header)
	}
	hdrs, bodies, err := decodeBatch(m.Data, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range batch {
		if !bytes.Equal(bodies[i], p.m.Data) {
			t.Errorf("message %d: data %q, want %q", i, bodies[i], p.m.Data)
		}
		if fmt.Sprint(hdrs[i]) != fmt.Sprint(p.m.Header) {
			t.Errorf("message %d: headers %v, want %v", i, hdrs[i], p.m.Header)
		}
	}

	for _, tc := range []struct {
		name string
		data []byte
		n    int
	}{
		{"count too high", m.Data, 4},
		{"count too low", m.Data, 2},
		{"count zero", m.Data, 0},
		{"truncated", m.Data[:len(m.Data)-1], 3},
		{"empty", nil, 1},
		{"length past the end", []byte{0, 0xff, 0x01}, 1},
		{"header count past the end", []byte{0xff, 0xff, 0x03}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := decodeBatch(tc.data, tc.n); !errors.Is(err, errBadBatch) {
				t.Fatalf("err %v, want errBadBatch", err)
			}
		})
	}
}

func FuzzDecodeBatch(f *testing.F) {
	m, _ := encodeBatch(SubjectSubmitted, []*pendingMsg{
		{msgID: "a", m: &nats.Msg{Header: nats.Header{"A": {"1"}}, Data: []byte("x")}},
		{msgID: "b", m: &nats.Msg{Data: []byte("yy")}},
	})
	f.Add(m.Data, 2)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		hdrs, bodies, err := decodeBatch(data, n)
		if err == nil && (len(hdrs) != n || len(bodies) != n) {
			t.Fatalf("%d messages decoded, %d announced", len(hdrs), n)
		}
	})
}

// TestBatch_ConcurrentPublishesShareMessages: messages published to a
// stage's stream at once are stored in fewer stream messages than there are
// messages; the consumer's handler sees each one with its own envelope and
// body; a handler that asks for one message again gets its whole batch
// again, and in the end every message is handled and the stream is empty.
func TestBatch_ConcurrentPublishesShareMessages(t *testing.T) {
	b := connect(t)
	const n = 200
	body := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "body of %d\r\n", i), i%50+1) }
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			env := &envelope.Envelope{ID: fmt.Sprintf("m%03d", i), Tenant: fmt.Sprintf("t%d", i%3)}
			errs[i] = b.PublishMessage(context.Background(), SubjectSubmitted, env.ID, env, body(i))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	stored := streamMsgs(t, b, StreamSubmitted)
	t.Logf("%d messages in %d stream messages", n, stored)
	if stored >= n {
		t.Fatalf("%d messages took %d stream messages; want them batched", n, stored)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	handled := map[string]int{}
	naked := ""
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "c", Workers: 4},
			slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context, m jetstream.Msg) {
				env, err := envelope.Decode(m.Headers())
				if err != nil {
					t.Error(err)
					_ = m.Term()
					return
				}
				var i int
				fmt.Sscanf(env.ID, "m%d", &i)
				if !bytes.Equal(m.Data(), body(i)) || m.Headers().Get(envelope.HeaderTenant) != env.Tenant {
					t.Errorf("%s: body or tenant header of another message", env.ID)
				}
				mu.Lock()
				defer mu.Unlock()
				// The first message seen that shares its stream message
				// with others asks to come again.
				if naked == "" && isBatched(m) {
					naked = env.ID
					_ = m.NakWithDelay(100 * time.Millisecond)
					return
				}
				handled[env.ID]++
				_ = m.Ack()
			})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(handled)
		mu.Unlock()
		if got == n && streamMsgs(t, b, StreamSubmitted) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages handled, %d stream messages left", got, n, streamMsgs(t, b, StreamSubmitted))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if naked == "" {
		t.Fatal("no message came in a batch")
	}
	again := 0
	for id, c := range handled {
		if c > 1 {
			again++
		}
		if id == naked && c != 1 {
			t.Errorf("%s, asked again, handled %d times after", id, c)
		}
	}
	// The others of the nak'd message's batch were handled twice.
	if again == 0 {
		t.Errorf("no message of %s's batch came again", naked)
	}
	t.Logf("%s asked again; %d messages of its batch were handled twice", naked, again)
}

func isBatched(m jetstream.Msg) bool {
	_, ok := m.(*batchMsg)
	return ok
}

// TestBatch_LoneMessageAlone: a message with nothing else to send is
// stored as one plain stream message, with its Nats-Msg-Id.
func TestBatch_LoneMessageAlone(t *testing.T) {
	b := connect(t)
	env := &envelope.Envelope{ID: "lone", Tenant: "t"}
	for range 2 {
		if err := b.PublishMessage(context.Background(), SubjectSubmitted, env.ID, env, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.JS.Stream(context.Background(), StreamSubmitted)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(HeaderBatch) != "" || m.Header.Get(jetstream.MsgIDHeader) != "lone" || string(m.Data) != "x" {
		t.Fatalf("stored %v %q, want a plain message", m.Header, m.Data)
	}
	if n := streamMsgs(t, b, StreamSubmitted); n != 1 {
		t.Fatalf("published twice with one id: %d stream messages, want 1", n)
	}
}

// TestBatch_KeptInHandPastAckWait: a batch whose messages take longer than
// the ack wait (1 s here) to handle, because they wait for each other, is
// not redelivered meanwhile: each message is handled once. The batch is
// published by hand so that it is the only stream message: one waiting in
// the consumer's prefetch buffer is another matter (see Consume).
func TestBatch_KeptInHandPastAckWait(t *testing.T) {
	b := connect(t)
	const n = 12
	batch := make([]*pendingMsg, n)
	for i := range batch {
		m := nats.NewMsg(SubjectSubmitted)
		if err := envelope.Encode(m, &envelope.Envelope{ID: fmt.Sprintf("slow%02d", i), Tenant: "t"}); err != nil {
			t.Fatal(err)
		}
		m.Data = []byte("x")
		batch[i] = &pendingMsg{msgID: fmt.Sprintf("slow%02d", i), m: m}
	}
	m, id := encodeBatch(SubjectSubmitted, batch)
	if _, err := b.JS.PublishMsg(context.Background(), m, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	handled := map[string]int{}
	done := make(chan error, 1)
	go func() {
		// Two at a time, 600 ms each: the batch takes 3.6 s, past the ack
		// wait, and the second worker would take its redelivery.
		done <- b.Consume(ctx, Consumer{Stream: StreamSubmitted, Durable: "slow", Workers: 2},
			slog.New(slog.DiscardHandler), func(ctx context.Context, m jetstream.Msg) {
				env, _ := envelope.Decode(m.Headers())
				time.Sleep(600 * time.Millisecond)
				mu.Lock()
				handled[env.ID]++
				mu.Unlock()
				_ = m.Ack()
			})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for streamMsgs(t, b, StreamSubmitted) != 0 || len(handledCopy(&mu, handled)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("handled %d of %d", len(handledCopy(&mu, handled)), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a redelivery would come by now
	cancel()
	<-done
	for id, c := range handledCopy(&mu, handled) {
		if c != 1 {
			t.Errorf("%s handled %d times, want 1", id, c)
		}
	}
}

func handledCopy(mu *sync.Mutex, m map[string]int) map[string]int {
	mu.Lock()
	defer mu.Unlock()
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
