package sender

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/dnstest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

var testPools = pool.Set{
	{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{
		{Address: "127.0.0.2", EHLO: "out1.outflow.test"},
		{Address: "127.0.0.3", EHLO: "out2.outflow.test"},
	}},
	{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: "127.0.0.4", EHLO: "risk1.outflow.test"}}},
}

// world is a running sender on an embedded JetStream, with a tap on the
// events stream.
type world struct {
	b      *bus.Bus
	events chan *events.Event
}

// testConfig delivers everything to addr with a retry schedule short enough
// for tests.
func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Workers = 4
	cfg.Transports = map[string]string{"*": addr}
	cfg.ConnectTimeout = 2 * time.Second
	cfg.CommandTimeout = 5 * time.Second
	cfg.DataTimeout = 5 * time.Second
	cfg.Retry = Retry{FirstDelay: 200 * time.Millisecond, MaxDelay: 400 * time.Millisecond, MaxAge: time.Hour}
	return cfg
}

func start(t *testing.T, cfg Config, opts Options) *world {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := bustest.ConnectTo(t, natstest.Start(t).ClientURL(), log, func(c *bus.Config) {
		c.InlineLimit = 1024
		c.AckWait = 2 * time.Second
	})
	w := &world{b: b, events: make(chan *events.Event, 100)}
	sub, err := b.NC.Subscribe(events.Subject+".>", func(m *nats.Msg) {
		evs, _ := events.UnmarshalAll(m.Data)
		for _, e := range evs {
			w.events <- e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	if opts.Rand == nil {
		opts.Rand = func() float64 { return 0.5 } // no jitter
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunWith(ctx, cfg, testPools, b, log, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return w
}

// publish queues a delivery job as the router would.
func (w *world) publish(t *testing.T, env *envelope.Envelope, body []byte) {
	t.Helper()
	if env.ID == "" {
		env.ID = envelope.NewID()
	}
	if env.Received.IsZero() {
		env.Received = time.Now()
	}
	if env.Pool == "" {
		env.Pool = "shared"
	}
	if env.Jobs == 0 {
		env.Jobs = 1
	}
	if err := w.b.PublishMessage(context.Background(), bus.OutboundSubject(env.Pool), env.JobID(), env, body); err != nil {
		t.Fatal(err)
	}
}

// next returns the next delivery event; events of other types (shaping,
// TLS) are skipped.
func (w *world) next(t *testing.T) *events.Delivery {
	t.Helper()
	return w.nextWithin(t, 15*time.Second)
}

// nextWithin is next with its own patience.
func (w *world) nextWithin(t *testing.T, d time.Duration) *events.Delivery {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-w.events:
			if e.Type != events.TypeDelivery {
				continue
			}
			if e.Delivery == nil {
				t.Fatalf("event %+v without its delivery payload", e)
			}
			return e.Delivery
		case <-timeout:
			t.Fatalf("no delivery event within %v", d)
			return nil
		}
	}
}

// quiet checks that no event comes for a while.
func (w *world) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-w.events:
			if e.Type == events.TypeDelivery {
				t.Fatalf("unexpected event %+v", e.Delivery)
			}
		case <-timeout:
			return
		}
	}
}

// outbound is how many jobs wait in the outbound stream.
func (w *world) outbound(t *testing.T) uint64 {
	t.Helper()
	s, err := w.b.JS.Stream(context.Background(), bus.StreamOutbound)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// unacked is how many of the shared pool's jobs its consumer has not yet
// had acknowledged, in hand or waiting. OUTBOUND is a spool, so an acked
// job stays in the stream until the purge after it (outbound counts those).
func (w *world) unacked(t *testing.T) uint64 {
	t.Helper()
	c, err := w.b.JS.Consumer(context.Background(), bus.StreamOutbound, "sender-shared")
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return math.MaxUint64 // the sender has not started consuming yet
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return uint64(info.NumAckPending) + info.NumPending
}

// eventually waits until ok holds.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

var body = []byte("From: a@demo.example\r\nSubject: hi\r\n\r\nhello\r\n")

func outcomes(d *events.Delivery) map[string]events.Outcome {
	m := map[string]events.Outcome{}
	for _, r := range d.Rcpts {
		m[r.Rcpt] = r.Outcome
	}
	return m
}

func TestSender_DeliversAndAcks(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	w := start(t, testConfig(r.Addr()), Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net", "c@example.net"}, Domain: "example.net"}, body)

	d := w.next(t)
	if d.Attempt != 1 || d.Pool != "shared" || d.Domain != "example.net" || !d.NextAttempt.IsZero() || d.Sender == "" {
		t.Errorf("event %+v, want attempt 1 of example.net in pool shared by a named sender, no next attempt", d)
	}
	for _, rr := range d.Rcpts {
		if rr.Outcome != events.OutcomeDelivered || rr.Code != 250 || rr.Enhanced != "2.0.0" {
			t.Errorf("%s: %+v, want delivered 250 2.0.0", rr.Rcpt, rr)
		}
	}
	msgs := r.Wait(t, 1)
	if d.SourceIP != msgs[0].RemoteIP || !bytes.Equal(msgs[0].Data, body) || len(msgs[0].Rcpts) != 2 {
		t.Errorf("event source %s, receiver saw %+v", d.SourceIP, msgs[0])
	}
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_SendsFromPoolAddresses(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	w := start(t, testConfig(r.Addr()), Options{})
	for range 8 {
		w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	}
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"s@example.net"}, Domain: "example.net", Pool: "high-risk"}, body)
	// Connections are reused, so which shared address carries a message
	// depends on timing; each must be a shared address with its own EHLO
	// name, and the high-risk pool's message its only address.
	allowed := map[string]bool{
		"b@example.net from 127.0.0.2 as out1.outflow.test":  true,
		"b@example.net from 127.0.0.3 as out2.outflow.test":  true,
		"s@example.net from 127.0.0.4 as risk1.outflow.test": true,
	}
	for _, m := range r.Wait(t, 9) {
		if k := m.Rcpts[0] + " from " + m.RemoteIP + " as " + m.Helo; !allowed[k] {
			t.Errorf("message %q not from its pool's address", k)
		}
	}
	for range 9 {
		if d := w.next(t); d.SourceIP == "" || d.Site == "" || d.MXAddr != r.Addr() {
			t.Errorf("event %+v: want source, site and MX address", d)
		}
	}
}

func TestSender_MixedOutcomesRetryOnlyDeferred(t *testing.T) {
	var busyCalls atomic.Int32
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(rcpt string) error {
		switch {
		case strings.HasPrefix(rcpt, "busy") && busyCalls.Add(1) == 1:
			return smtptest.Reply(450, "4.2.1", "mailbox busy")
		case strings.HasPrefix(rcpt, "nobody"):
			return smtptest.Reply(550, "5.1.1", "no such user")
		}
		return nil
	}}})
	w := start(t, testConfig(r.Addr()), Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Domain: "example.net",
		Rcpts: []string{"ok@example.net", "busy@example.net", "nobody@example.net"}}, body)

	first := w.next(t)
	want := map[string]events.Outcome{"ok@example.net": events.OutcomeDelivered, "busy@example.net": events.OutcomeDeferred, "nobody@example.net": events.OutcomeBounced}
	if got := outcomes(first); !maps.Equal(got, want) {
		t.Fatalf("first attempt outcomes %v, want %v", got, want)
	}
	for _, rr := range first.Rcpts {
		if rr.Rcpt == "busy@example.net" && (rr.Code != 450 || rr.Enhanced != "4.2.1" || rr.Text != "mailbox busy") {
			t.Errorf("deferred reply %+v, want 450 4.2.1 mailbox busy", rr)
		}
		if rr.Rcpt == "nobody@example.net" && (rr.Code != 550 || rr.Enhanced != "5.1.1" || rr.Bounce != "hard" || rr.Reason != "userunknown") {
			t.Errorf("bounced reply %+v, want 550 5.1.1, a hard bounce for userunknown", rr)
		}
	}
	if first.NextAttempt.IsZero() {
		t.Error("first attempt has no next attempt time")
	}

	second := w.next(t)
	if second.Attempt != 2 || len(second.Rcpts) != 1 || second.Rcpts[0].Rcpt != "busy@example.net" || second.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Fatalf("second attempt %+v, want attempt 2 delivering only busy@example.net", second)
	}
	msgs := r.Wait(t, 2)
	if !slices.Equal(msgs[0].Rcpts, []string{"ok@example.net"}) || !slices.Equal(msgs[1].Rcpts, []string{"busy@example.net"}) {
		t.Errorf("receiver got recipients %v then %v", msgs[0].Rcpts, msgs[1].Rcpts)
	}
	w.quiet(t, 500*time.Millisecond) // the bounced recipient is not retried
	eventually(t, "jobs acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_RetryScheduleUntilDelivered(t *testing.T) {
	var conns atomic.Int32
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Connect: func(string) error {
		if conns.Add(1) <= 2 {
			return smtptest.Reply(421, "4.7.0", "try again later")
		}
		return nil
	}}})
	cfg := testConfig(r.Addr())
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)

	var times []time.Time
	for attempt := 1; attempt <= 3; attempt++ {
		d := w.next(t)
		times = append(times, time.Now())
		wantOutcome := events.OutcomeDeferred
		if attempt == 3 {
			wantOutcome = events.OutcomeDelivered
		}
		if d.Attempt != attempt || d.Rcpts[0].Outcome != wantOutcome {
			t.Fatalf("event %+v, want attempt %d %s", d, attempt, wantOutcome)
		}
		if attempt < 3 && (d.Rcpts[0].Code != 421 || d.NextAttempt.IsZero()) {
			t.Errorf("attempt %d: reply %+v next %v, want 421 and a next attempt", attempt, d.Rcpts[0], d.NextAttempt)
		}
	}
	// Delays double from first_delay, capped at max_delay (jitter off).
	for i, want := range []time.Duration{cfg.Retry.FirstDelay, cfg.Retry.MaxDelay} {
		if got := times[i+1].Sub(times[i]); got < want-50*time.Millisecond {
			t.Errorf("delay before attempt %d = %v, want at least %v", i+2, got, want)
		}
	}
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_PermanentFailureBounces(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Mail: func(string) error {
		return smtptest.Reply(550, "5.7.1", "sender blocked")
	}}})
	w := start(t, testConfig(r.Addr()), Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	d := w.next(t)
	if rr := d.Rcpts[0]; rr.Outcome != events.OutcomeBounced || rr.Code != 550 || rr.Enhanced != "5.7.1" || !d.NextAttempt.IsZero() {
		t.Errorf("event %+v, want bounced 550 5.7.1 and no next attempt", d)
	}
	w.quiet(t, 500*time.Millisecond)
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_ExpiredJobIsNotTried(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	w := start(t, testConfig(r.Addr()), Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net",
		Received: time.Now().Add(-2 * time.Hour)}, body)
	d := w.next(t)
	if rr := d.Rcpts[0]; rr.Outcome != events.OutcomeExpired || rr.Enhanced != "4.4.7" || rr.Reason != "expired" {
		t.Errorf("event %+v, want expired 4.4.7 with reason expired", d)
	}
	if r.Connections() != 0 {
		t.Errorf("%d connections for an expired job, want 0", r.Connections())
	}
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_ExpiresWhenNextRetryIsTooLate(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		return smtptest.Reply(452, "4.2.2", "mailbox full")
	}}})
	cfg := testConfig(r.Addr())
	cfg.Retry.MaxAge = time.Second
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	var last *events.Delivery
	for last == nil || last.Rcpts[0].Outcome == events.OutcomeDeferred {
		last = w.next(t)
	}
	if rr := last.Rcpts[0]; rr.Outcome != events.OutcomeExpired || rr.Code != 452 || rr.Reason != "expired" || !last.NextAttempt.IsZero() {
		t.Errorf("last event %+v, want expired (reason expired) with the last reply (452) and no next attempt", last)
	}
	w.quiet(t, time.Second)
	eventually(t, "job acked", func() bool { return w.outbound(t) == 0 })
}

func TestSender_NotBeforeWaitsInJetStream(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	w := start(t, testConfig(r.Addr()), Options{})
	due := time.Now().Add(time.Second)
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net",
		Attempt: 1, NotBefore: due}, body)
	w.next(t)
	if got := r.Wait(t, 1)[0].Time; got.Before(due) {
		t.Errorf("delivered at %v, before its due time %v", got, due)
	}
}

func TestSender_WaitingRetriesDoNotBlockDueJobs(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	cfg := testConfig(r.Addr())
	cfg.Workers = 1 // the bus default would allow 64 unacknowledged jobs
	w := start(t, cfg, Options{})
	later := time.Now().Add(time.Hour)
	for range 100 {
		w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"slow@example.org"}, Domain: "example.org",
			Attempt: 1, NotBefore: later}, body)
	}
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net"}, body)
	// One worker reschedules the 100 waiting jobs one after another, each an
	// fsync'd publish: seconds on a quiet machine, more under CI's load.
	// What matters is that the due job is delivered, not how fast.
	if d := w.nextWithin(t, time.Minute); d.Domain != "example.net" || d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Errorf("event %+v, want example.net delivered", d)
	}
	eventually(t, "only the 100 waiting jobs left", func() bool { return w.outbound(t) == 100 })
}

func TestSender_LargeBodyReleasedAfterLastJob(t *testing.T) {
	var deferOnce sync.Once
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(rcpt string) error {
		var err error
		if strings.HasSuffix(rcpt, "@example.org") {
			deferOnce.Do(func() { err = smtptest.Reply(451, "4.3.0", "later") })
		}
		return err
	}}})
	w := start(t, testConfig(r.Addr()), Options{})
	large := append(bytes.Clone(body), bytes.Repeat([]byte("0123456789abcdef\r\n"), 1000)...)
	id := envelope.NewID()
	// Two jobs of one message, as the router splits two domains: the body
	// is stored once, and both jobs refer to it.
	bodyRef := ""
	for _, dom := range []string{"example.net", "example.org"} {
		env := &envelope.Envelope{ID: id, Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@" + dom}, Domain: dom, Jobs: 2, BodyRef: bodyRef}
		w.publish(t, env, large)
		bodyRef = env.BodyRef
	}
	stored := func() bool {
		_, err := w.b.Bodies.GetInfo(context.Background(), id)
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !stored() {
		t.Fatal("body not stored by reference")
	}
	final := 0
	for final < 2 {
		d := w.next(t)
		if d.Rcpts[0].Outcome == events.OutcomeDelivered {
			final++
		}
		if final == 1 && d.Domain == "example.net" && !stored() {
			t.Fatal("body released while another job still needs it")
		}
	}
	for _, m := range r.Wait(t, 2) {
		if !bytes.Equal(m.Data, large) {
			t.Errorf("message to %v: %d bytes, want %d", m.Rcpts, len(m.Data), len(large))
		}
	}
	eventually(t, "body released", func() bool { return !stored() })
}

func TestSender_ResolvesMXAndBindsPoolAddress(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Addr: "127.0.0.10:0"})
	ds := dnstest.Start(t)
	ds.AddMX("example.net", 10, "mx.example.net")
	ds.AddAddr("mx.example.net", "127.0.0.10")
	cfg := testConfig("")
	cfg.Transports = nil
	cfg.Resolver = ds.Addr
	cfg.SMTPPort, _ = strconv.Atoi(r.Port())
	cfg.Pools = []string{"high-risk"}
	w := start(t, cfg, Options{})
	w.publish(t, &envelope.Envelope{Tenant: "demo", From: "a@demo.example", Rcpts: []string{"b@example.net"}, Domain: "example.net", Pool: "high-risk"}, body)
	d := w.next(t)
	if d.MX != "mx.example.net" || d.SourceIP != "127.0.0.4" || d.Rcpts[0].Outcome != events.OutcomeDelivered {
		t.Errorf("event %+v, want delivered via mx.example.net from 127.0.0.4", d)
	}
	if m := r.Wait(t, 1)[0]; m.RemoteIP != "127.0.0.4" || m.Helo != "risk1.outflow.test" {
		t.Errorf("receiver saw %s greeting %q, want 127.0.0.4 greeting risk1.outflow.test", m.RemoteIP, m.Helo)
	}
}

// tlog sends a logger's lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
