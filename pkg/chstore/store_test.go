//go:build integration

package chstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	chschema "github.com/outflowmail/outflow/deploy/clickhouse"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
)

// TestStore shares one server among scenarios, each in its own database:
// starting ClickHouse takes seconds.
func TestStore(t *testing.T) {
	ch := chtest.Start(t)
	scenarios := []struct {
		name string
		run  func(t *testing.T, s *chstore.Store)
	}{
		{"MigrateTwice", testMigrateTwice},
		{"InsertValues", testInsertValues},
		{"DuplicatesCountOnce", testDuplicatesCountOnce},
		{"Present", testPresent},
		{"PresentManyEvents", testPresentMany},
		{"Status", testStatus},
		{"RollupsExact", testRollupsExact},
		{"FeedbackTables", testFeedbackTables},
		{"IPEvents", testIPEvents},
	}
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			cfg := chstore.DefaultConfig()
			cfg.Addr = ch.Addr()
			cfg.Database = fmt.Sprintf("outflow_%d", i)
			s := openStore(t, cfg)
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			sc.run(t, s)
		})
	}
}

func TestOpen_Down(t *testing.T) {
	cfg := chstore.DefaultConfig()
	cfg.Addr = "127.0.0.1:1" // nothing listens there
	cfg.DialTimeout = time.Second
	if s, err := chstore.Open(context.Background(), cfg); err == nil {
		s.Close()
		t.Fatal("Open with no server succeeded, want an error")
	}
}

func openStore(tb testing.TB, cfg chstore.Config) *chstore.Store {
	tb.Helper()
	s, err := chstore.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func testMigrateTwice(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	got, err := s.Applied(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range ms {
		want = append(want, m.Version)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Applied = %v, want %v", got, want)
	}
	// Recorded once each, even though Migrate ran twice.
	if n := count(t, s, "SELECT count() FROM schema_migrations"); n != uint64(len(ms)) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(ms))
	}
	for _, table := range []string{"messages", "deliveries", "verdicts"} {
		if n := count(t, s, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = '"+table+"'"); n != 1 {
			t.Errorf("table %s: %d, want 1", table, n)
		}
	}
}

func testInsertValues(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := sampleEvents("m1", at)
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}

	var (
		msgID, messageID, tenant, pool, label, fromDomain string
		score                                             float64
		rcpts, symbols                                    []string
		weights                                           []float64
		rcptCount                                         uint32
		size                                              uint64
		received, routed                                  time.Time
	)
	row := s.Conn().QueryRow(ctx, `SELECT msg_id, message_id, tenant, pool, label, score, from_domain,
		rcpts, rcpt_count, size, symbols, symbol_weights, received, routed FROM messages`)
	if err := row.Scan(&msgID, &messageID, &tenant, &pool, &label, &score, &fromDomain,
		&rcpts, &rcptCount, &size, &symbols, &weights, &received, &routed); err != nil {
		t.Fatal(err)
	}
	gotMsg := join(msgID, messageID, tenant, pool, label, score, fromDomain, rcpts, rcptCount, size,
		symbols, weights, received.UTC(), routed.UTC())
	wantMsg := join("m1", "<m1@t1.example>", "t1", "shared", "ham", 0.125, "t1.example",
		[]string{"a@x.example", "b@x.example"}, uint32(2), uint64(2048), []string{"BAYES_00", "DKIM"},
		[]float64{-1.5, 0.25}, at.Add(-2*time.Second), at)
	if gotMsg != wantMsg {
		t.Errorf("messages row = %s\nwant %s", gotMsg, wantMsg)
	}

	rows, err := s.Conn().Query(ctx, `SELECT rcpt, rcpt_domain, source_ip, mx, attempt, reply_code, enhanced,
		reply_text, outcome, duration_ms, next_attempt FROM deliveries WHERE msg_id = 'm1' ORDER BY rcpt`)
	if err != nil {
		t.Fatal(err)
	}
	var gotDel []string
	for rows.Next() {
		var rcpt, domain, ip, mx, enh, text, outcome string
		var attempt, code uint16
		var dur uint32
		var next time.Time
		if err := rows.Scan(&rcpt, &domain, &ip, &mx, &attempt, &code, &enh, &text, &outcome, &dur, &next); err != nil {
			t.Fatal(err)
		}
		gotDel = append(gotDel, join(rcpt, domain, ip, mx, attempt, code, enh, text, outcome, dur, next.UTC()))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	wantDel := []string{
		join("a@x.example", "x.example", "127.0.0.2", "mx.x.example", 1, 250, "2.0.0", "queued", "delivered", 35, at.Add(5*time.Minute)),
		join("b@x.example", "x.example", "127.0.0.2", "mx.x.example", 1, 451, "4.2.0", "busy", "deferred", 35, at.Add(5*time.Minute)),
	}
	if !slices.Equal(gotDel, wantDel) {
		t.Errorf("deliveries rows = %q\nwant %q", gotDel, wantDel)
	}

	var vLabel, vModel string
	var vScore float64
	if err := s.Conn().QueryRow(ctx, "SELECT label, score, model FROM verdicts WHERE msg_id = 'm1'").Scan(&vLabel, &vScore, &vModel); err != nil {
		t.Fatal(err)
	}
	if vLabel != "ham" || vScore != 0.125 || vModel != "test-model" {
		t.Errorf("verdicts row = %q %v %q, want ham 0.125 test-model", vLabel, vScore, vModel)
	}
}

func testDuplicatesCountOnce(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := sampleEvents("m1", at)
	// Repeated within one call, and the whole call repeated: a redelivery
	// after a lost ack.
	if err := s.Insert(ctx, append(slices.Clone(evs), evs...)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM messages"); n != 1 {
		t.Errorf("messages after one insert of a repeated event = %d rows, want 1", n)
	}
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  uint64
	}{
		{"SELECT count() FROM messages FINAL", 1},
		{"SELECT uniqExact(event_id) FROM messages", 1},
		{"SELECT count() FROM deliveries FINAL", 2},
		{"SELECT uniqExact(event_id, rcpt) FROM deliveries", 2},
		{"SELECT count() FROM verdicts FINAL", 1},
		{"SELECT uniqExact(event_id) FROM verdicts", 1},
	}
	for _, tt := range tests {
		if got := count(t, s, tt.query); got != tt.want {
			t.Errorf("%s = %d, want %d", tt.query, got, tt.want)
		}
	}
	// A merge makes the duplicates go away for plain counts too.
	for _, table := range []string{"messages", "deliveries", "verdicts"} {
		if err := s.Conn().Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		query string
		want  uint64
	}{
		{"SELECT count() FROM messages", 1},
		{"SELECT count() FROM deliveries", 2},
		{"SELECT count() FROM verdicts", 1},
	} {
		if got := count(t, s, tt.query); got != tt.want {
			t.Errorf("after OPTIMIZE: %s = %d, want %d", tt.query, got, tt.want)
		}
	}
}

func testPresent(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	stored := sampleEvents("m1", at)
	if err := s.Insert(ctx, stored); err != nil {
		t.Fatal(err)
	}
	fresh := sampleEvents("m2", at.Add(time.Hour))
	got, err := s.Present(ctx, append(slices.Clone(stored), fresh...))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range stored {
		if !got[e.ID] {
			t.Errorf("Present misses stored event %s", e.ID)
		}
	}
	for _, e := range fresh {
		if got[e.ID] {
			t.Errorf("Present reports new event %s", e.ID)
		}
	}
}

// testPresentMany looks up more events than fit one query.
func testPresentMany(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var stored, fresh []*events.Event
	for i := range 400 {
		stored = append(stored, sampleEvents(fmt.Sprintf("stored-%d", i), at.Add(time.Duration(i)*time.Second))...)
		fresh = append(fresh, sampleEvents(fmt.Sprintf("fresh-%d", i), at.Add(time.Duration(i)*time.Second))...)
	}
	if err := s.Insert(ctx, stored); err != nil {
		t.Fatal(err)
	}
	got, err := s.Present(ctx, append(slices.Clone(fresh), stored...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(stored) {
		t.Errorf("Present found %d events, want %d", len(got), len(stored))
	}
	for _, e := range stored {
		if !got[e.ID] {
			t.Fatalf("Present misses stored event %s", e.ID)
		}
	}
}

// sampleEvents is a message's verdict, routed and delivery events.
func sampleEvents(msgID string, at time.Time) []*events.Event {
	verdict := events.Verdict{Score: 0.125, Label: "ham", Fingerprint: "fp-" + msgID, Model: "test-model",
		Symbols: []events.Symbol{{Name: "BAYES_00", Weight: -1.5}, {Name: "DKIM", Weight: 0.25}}}
	v := verdict
	return []*events.Event{
		{ID: msgID + ".verdict", Type: events.TypeVerdict, Time: at.Add(-time.Second), Tenant: "t1", MsgID: msgID, Verdict: &v},
		{ID: msgID + ".routed", Type: events.TypeRouted, Time: at, Tenant: "t1", MsgID: msgID, Routed: &events.Routed{
			MessageID: "<" + msgID + "@t1.example>", From: "s@t1.example", FromDomain: "t1.example",
			Rcpts: []string{"a@x.example", "b@x.example"}, Size: 2048, Received: at.Add(-2 * time.Second),
			Verdict: verdict, Pool: "shared", Reason: "ham", Domains: 1,
		}},
		{ID: msgID + ".x.example.0.delivery", Type: events.TypeDelivery, Time: at.Add(time.Second), Tenant: "t1", MsgID: msgID,
			Delivery: &events.Delivery{Domain: "x.example", Pool: "shared", SourceIP: "127.0.0.2", MX: "mx.x.example",
				Attempt: 1, DurationMs: 35, NextAttempt: at.Add(5 * time.Minute), Rcpts: []events.RcptReply{
					{Rcpt: "a@x.example", Outcome: events.OutcomeDelivered, Code: 250, Enhanced: "2.0.0", Text: "queued"},
					{Rcpt: "b@x.example", Outcome: events.OutcomeDeferred, Code: 451, Enhanced: "4.2.0", Text: "busy"},
				}}},
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

// join renders a row's values for comparison, one | between them.
func join(vals ...any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, "|")
}
