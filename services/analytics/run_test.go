//go:build integration

package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/metrics"
	"github.com/outflowmail/outflow/pkg/natstest"
)

// rowsPerMessage: each test message has a verdict, a routed event and a
// delivery event to two recipients.
const (
	verdictRows  = 1
	messageRows  = 1
	deliveryRows = 2
)

func TestRun_StoresEventsOfEachType(t *testing.T) {
	ch := chtest.Start(t)
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	startRun(t, cfg, b)
	ctx := context.Background()

	const n = 50
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		publish(t, b, messageEvents(i, base)...)
	}
	// An event type with no table yet is acknowledged and skipped.
	publish(t, b, &events.Event{ID: "x.complaint", Type: "complaint", Time: base, Tenant: "t1", MsgID: "m0"})

	s := openStore(t, cfg.ClickHouse)
	waitCounts(t, s, map[string]uint64{
		"SELECT count() FROM messages FINAL":               n * messageRows,
		"SELECT uniqExact(event_id) FROM messages":         n * messageRows,
		"SELECT count() FROM verdicts FINAL":               n * verdictRows,
		"SELECT count() FROM deliveries FINAL":             n * deliveryRows,
		"SELECT uniqExact(event_id, rcpt) FROM deliveries": n * deliveryRows,
	})
	// Once those are stored, the same events published again under another
	// Nats-Msg-Id, so that JetStream's own de-duplication does not catch
	// them: a producer retrying after its duplicates window. They arrive as
	// new stream messages (not redelivered) in a later batch, are found
	// stored and skipped, so plain counts and the rollups stay exact.
	for _, dup := range messageEvents(0, base) {
		publishRaw(t, b, dup, "republished-"+dup.ID)
	}
	waitBacklog(t, b, 0)
	for q, want := range map[string]uint64{
		"SELECT count() FROM messages":            n * messageRows,
		"SELECT count() FROM verdicts":            n * verdictRows,
		"SELECT count() FROM deliveries":          n * deliveryRows,
		"SELECT sum(messages) FROM tenant_minute": n * messageRows,
		"SELECT sum(verdicts) FROM tenant_minute": n * verdictRows,
		"SELECT sum(attempts) FROM tenant_minute": n * deliveryRows,
	} {
		if got := count(t, s, q); got != want {
			t.Errorf("after republished events: %s = %d, want %d", q, got, want)
		}
	}

	var msgID, messageID, tenant, pool, label string
	var score float64
	if err := s.Conn().QueryRow(ctx, `SELECT msg_id, message_id, tenant, pool, label, score
		FROM messages FINAL WHERE msg_id = 'm7'`).Scan(&msgID, &messageID, &tenant, &pool, &label, &score); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(msgID, messageID, tenant, pool, label, score), fmt.Sprint("m7", "<m7@t1.example>", "t1", "high-risk", "spam", 0.875); got != want {
		t.Errorf("messages row of m7 = %s, want %s", got, want)
	}
	var rcpt, sourceIP, outcome string
	var code uint16
	if err := s.Conn().QueryRow(ctx, `SELECT rcpt, source_ip, reply_code, outcome
		FROM deliveries FINAL WHERE msg_id = 'm7' AND outcome = 'bounced'`).Scan(&rcpt, &sourceIP, &code, &outcome); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(rcpt, sourceIP, code, outcome), fmt.Sprint("b7@x.example", "127.0.0.3", 550, "bounced"); got != want {
		t.Errorf("deliveries row of m7 = %s, want %s", got, want)
	}
	waitBacklog(t, b, 0)
}

// TestRun_ClickHouseOutage stops ClickHouse while events flow: publishing
// goes on, the events wait, and after the restart every table holds exactly
// one row per event, counted plainly, without FINAL.
func TestRun_ClickHouseOutage(t *testing.T) {
	ch := chtest.Start(t)
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	cfg.BatchSize = 40
	reg := metrics.NewRegistry()
	startRun(t, cfg, b, WithMetrics(reg))
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	const before, during, after = 100, 150, 50
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range before {
			publish(t, b, messageEvents(i, base)...)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// Some batches in, some still coming.
	s := openStore(t, cfg.ClickHouse)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n uint64
		err := s.Conn().QueryRow(context.Background(), "SELECT count() FROM messages").Scan(&n)
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rows within 30s: %d, %v", n, err)
		}
	}
	ch.Stop()
	wg.Wait()
	// Mail keeps flowing while ClickHouse is down: events are accepted.
	for i := before; i < before+during; i++ {
		publish(t, b, messageEvents(i, base)...)
	}
	if n, err := Backlog(context.Background(), b); err != nil || n == 0 {
		t.Errorf("Backlog during the outage = %d, %v; want > 0", n, err)
	}
	time.Sleep(time.Second) // a few failed retries
	ch.Restart()
	for i := before + during; i < before+during+after; i++ {
		publish(t, b, messageEvents(i, base)...)
	}

	const total = before + during + after
	waitCounts(t, s, map[string]uint64{
		"SELECT count() FROM messages":   total * messageRows,
		"SELECT count() FROM verdicts":   total * verdictRows,
		"SELECT count() FROM deliveries": total * deliveryRows,
	})
	waitBacklog(t, b, 0)
	// Still exact a moment later: nothing was inserted twice.
	time.Sleep(3 * cfg.FlushInterval)
	waitCounts(t, s, map[string]uint64{
		"SELECT count() FROM messages":   total * messageRows,
		"SELECT count() FROM verdicts":   total * verdictRows,
		"SELECT count() FROM deliveries": total * deliveryRows,
	})

	// The metrics endpoint's view of the same: every event inserted once,
	// the failed attempts counted, no backlog.
	var out strings.Builder
	if err := reg.Write(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for line := range strings.Lines(out.String()) {
		if name, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && !strings.HasPrefix(name, "#") {
			got[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	nEvents := float64(total * len(messageEvents(0, base)))
	// A batch whose insert failed half-way is stored in part; on retry
	// that part is skipped, so inserted + skipped covers every event.
	inserted, skipped := got["outflow_analytics_events_inserted_total"], got["outflow_analytics_events_skipped_total"]
	if inserted > nEvents || inserted+skipped < nEvents || inserted == 0 {
		t.Errorf("metrics: inserted %v, skipped %v; want %v events in all", inserted, skipped, nEvents)
	}
	if got["outflow_analytics_insert_errors_total"] == 0 || got["outflow_analytics_batches_total"] == 0 {
		t.Errorf("metrics: insert errors %v, batches %v; want both > 0", got["outflow_analytics_insert_errors_total"],
			got["outflow_analytics_batches_total"])
	}
	if v, ok := got["outflow_analytics_backlog_events"]; !ok || v != 0 {
		t.Errorf("metrics: backlog %v (present %v), want 0\n%s", v, ok, out.String())
	}
}

// TestRun_ClickHouseDownAtStart: the role starts, and keeps running, while
// ClickHouse is down; it migrates and loads once ClickHouse is up.
func TestRun_ClickHouseDownAtStart(t *testing.T) {
	ch := chtest.Start(t)
	ch.Stop()
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	startRun(t, cfg, b)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range 10 {
		publish(t, b, messageEvents(i, base)...)
	}
	time.Sleep(500 * time.Millisecond)
	ch.Restart()
	waitCounts(t, openStore(t, cfg.ClickHouse), map[string]uint64{
		"SELECT count() FROM messages":   10 * messageRows,
		"SELECT count() FROM deliveries": 10 * deliveryRows,
	})
}

// TestRun_RedeliveredAlreadyStored: events stored before a lost ack come
// again (delivered twice); they are found in ClickHouse and not inserted
// again, so plain counts stay exact.
func TestRun_RedeliveredAlreadyStored(t *testing.T) {
	ch := chtest.Start(t)
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	var evs []*events.Event
	for i := range 20 {
		evs = append(evs, messageEvents(i, base)...)
	}
	publish(t, b, evs...)
	s := openStore(t, cfg.ClickHouse)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// A previous process stored the first half and lost its acks: store
	// them, and deliver every event once without acking it.
	if err := s.Insert(ctx, evs[:len(evs)/2]); err != nil {
		t.Fatal(err)
	}
	cons, err := consumer(ctx, cfg, b, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := cons.Fetch(len(evs), jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fetched := 0
	for m := range mb.Messages() {
		fetched++
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if fetched != len(evs) {
		t.Fatalf("fetched %d events, want %d", fetched, len(evs))
	}

	startRun(t, cfg, b)
	waitCounts(t, s, map[string]uint64{
		"SELECT count() FROM messages":   20 * messageRows,
		"SELECT count() FROM verdicts":   20 * verdictRows,
		"SELECT count() FROM deliveries": 20 * deliveryRows,
	})
	// The rollups equal the raw tables' exact counts: the redelivered half
	// reached the views once.
	waitBacklog(t, b, 0)
	for _, q := range [][2]string{
		{"SELECT sum(messages) FROM tenant_minute", "SELECT count() FROM messages FINAL"},
		{"SELECT sum(verdicts) FROM tenant_minute", "SELECT count() FROM verdicts FINAL"},
		{"SELECT sum(spam) FROM tenant_minute", "SELECT countIf(label = 'spam') FROM verdicts FINAL"},
		{"SELECT sum(attempts) FROM tenant_minute", "SELECT count() FROM deliveries FINAL"},
		{"SELECT sum(hard_bounces) FROM tenant_minute", "SELECT countIf(outcome = 'bounced') FROM deliveries FINAL"},
	} {
		if rollup, raw := count(t, s, q[0]), count(t, s, q[1]); rollup != raw || raw == 0 {
			t.Errorf("%s = %d, %s = %d; want equal and > 0", q[0], rollup, q[1], raw)
		}
	}
}

// TestRun_FlushesAtShutdown: a batch that is neither full nor due is stored
// when the role stops.
func TestRun_FlushesAtShutdown(t *testing.T) {
	ch := chtest.Start(t)
	b := connectBus(t)
	cfg := testConfig(ch.Addr())
	cfg.FlushInterval = time.Hour
	stop := startRun(t, cfg, b)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		publish(t, b, messageEvents(i, base)...)
	}
	s := openStore(t, cfg.ClickHouse)
	// Once all are fetched (delivered, not acknowledged), stop the role.
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := b.JS.Consumer(context.Background(), bus.StreamEvents, Durable)
		if err == nil {
			ci, err := info.Info(context.Background())
			if err == nil && ci.NumAckPending == 15 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("events not fetched within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, s, "SELECT count() FROM messages"); n != 0 {
		t.Fatalf("messages before shutdown = %d, want 0 (batch not due)", n)
	}
	stop()
	if n := count(t, s, "SELECT count() FROM messages"); n != 5 {
		t.Errorf("messages after shutdown = %d, want 5", n)
	}
	waitBacklog(t, b, 0)
}

func testConfig(chAddr string) Config {
	cfg := DefaultConfig()
	cfg.ClickHouse.Addr = chAddr
	cfg.ClickHouse.DialTimeout = time.Second
	cfg.ClickHouse.QueryTimeout = 10 * time.Second
	cfg.FlushInterval = 100 * time.Millisecond
	cfg.RetryMax = 300 * time.Millisecond
	cfg.BacklogInterval = time.Second
	return cfg
}

func connectBus(tb testing.TB) *bus.Bus {
	tb.Helper()
	return bustest.ConnectTo(tb, natstest.Start(tb).ClientURL(), testLogger(tb))
}

// startRun runs the role until the returned stop is called (or the test
// ends); stop waits for Run to return and checks its error.
func startRun(tb testing.TB, cfg Config, b *bus.Bus, opts ...Option) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, b, testLogger(tb), opts...) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(30 * time.Second):
				tb.Error("Run did not return within 30s of cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openStore(tb testing.TB, cfg chstore.Config) *chstore.Store {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := chstore.Open(context.Background(), cfg)
		if err == nil {
			tb.Cleanup(func() { s.Close() })
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// messageEvents are message i's verdict, routed and delivery events. Every
// seventh message is spam sent from the high-risk pool, its second
// recipient bounced.
func messageEvents(i int, base time.Time) []*events.Event {
	id := fmt.Sprintf("m%d", i)
	at := base.Add(time.Duration(i) * time.Second)
	v := events.Verdict{Score: 0.125, Label: "ham", Model: "test", Symbols: []events.Symbol{{Name: "BAYES_00", Weight: -1}}}
	pool, ip, outcome, code := "shared", "127.0.0.2", events.OutcomeDelivered, 250
	if i%7 == 0 {
		v = events.Verdict{Score: 0.875, Label: "spam", Model: "test", Symbols: []events.Symbol{{Name: "BAYES_99", Weight: 3}}}
		pool, ip, outcome, code = "high-risk", "127.0.0.3", events.OutcomeBounced, 550
	}
	vv := v
	return []*events.Event{
		{ID: id + ".verdict", Type: events.TypeVerdict, Time: at, Tenant: "t1", MsgID: id, Verdict: &vv},
		{ID: id + ".routed", Type: events.TypeRouted, Time: at, Tenant: "t1", MsgID: id, Routed: &events.Routed{
			MessageID: "<" + id + "@t1.example>", From: "s@t1.example", FromDomain: "t1.example",
			Rcpts: []string{"a" + fmt.Sprint(i) + "@x.example", "b" + fmt.Sprint(i) + "@x.example"},
			Size:  1000, Received: at, Verdict: v, Pool: pool, Reason: "verdict", Domains: 1,
		}},
		{ID: id + ".x.example.0.delivery", Type: events.TypeDelivery, Time: at.Add(time.Second), Tenant: "t1", MsgID: id,
			Delivery: &events.Delivery{Domain: "x.example", Pool: pool, SourceIP: ip, MX: "mx.x.example", Attempt: 1,
				DurationMs: 12, Rcpts: []events.RcptReply{
					{Rcpt: "a" + fmt.Sprint(i) + "@x.example", Outcome: events.OutcomeDelivered, Code: 250, Enhanced: "2.0.0"},
					{Rcpt: "b" + fmt.Sprint(i) + "@x.example", Outcome: outcome, Code: code},
				}}},
	}
}

func publish(tb testing.TB, b *bus.Bus, evs ...*events.Event) {
	tb.Helper()
	for _, e := range evs {
		if err := b.PublishEvent(context.Background(), e); err != nil {
			tb.Error(err)
			return
		}
	}
}

// publishRaw publishes e with its own Nats-Msg-Id.
func publishRaw(tb testing.TB, b *bus.Bus, e *events.Event, msgID string) {
	tb.Helper()
	data, err := events.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(events.Subject + "." + string(e.Type))
	m.Data = data
	if _, err := b.JS.PublishMsg(context.Background(), m, jetstream.WithMsgID(msgID)); err != nil {
		tb.Fatal(err)
	}
}

// waitCounts polls until every query returns its count, or fails after 30s
// showing the last counts.
func waitCounts(tb testing.TB, s *chstore.Store, want map[string]uint64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]uint64{}
		ok := true
		for q, w := range want {
			var n uint64
			if err := s.Conn().QueryRow(context.Background(), q).Scan(&n); err != nil {
				ok = false
				got[q] = 0
				continue
			}
			got[q] = n
			ok = ok && n == w
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for q, w := range want {
				if got[q] != w {
					tb.Errorf("%s = %d, want %d", q, got[q], w)
				}
			}
			tb.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitBacklog(tb testing.TB, b *bus.Bus, want uint64) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := Backlog(context.Background(), b)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("Backlog = %d, %v; want %d", n, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(tb testing.TB, s *chstore.Store, query string) uint64 {
	tb.Helper()
	var n uint64
	if err := s.Conn().QueryRow(context.Background(), query).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}
