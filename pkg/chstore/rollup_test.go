//go:build integration

package chstore_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/events"
)

// testStatus: after Migrate nothing is pending and every embedded version is
// recorded; the features are those of the test server (18.16: no TTL).
func testStatus(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pending) != 0 {
		t.Errorf("Status after Migrate: %d pending, want 0", len(st.Pending))
	}
	if st.Features.Version == "" {
		t.Error("Status: no server version")
	}
	if len(st.Applied) < 6 {
		t.Errorf("Status.Applied = %v, want at least versions 1..6", st.Applied)
	}
	// 0061 replaced the first deliveries view.
	if n := count(t, s, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'tenant_minute_deliveries_mv'"); n != 0 {
		t.Errorf("old deliveries view still there")
	}
	for _, table := range []string{"tenant_minute", "tenant_minute_fingerprints", "tenant_hour", "tenant_hour_mv", "tenant_minute_verdicts_mv",
		"tenant_minute_messages_mv", "tenant_minute_deliveries_v2_mv", "tenant_minute_fingerprints_mv",
		"tenant_minute_bounces_mv", "tenant_minute_complaints_mv", "tenant_minute_suppressions_mv"} {
		if n := count(t, s, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = '"+table+"'"); n != 1 {
			t.Errorf("table %s: %d, want 1", table, n)
		}
	}
}

// testRollupsExact stores a mix of events the way the loader does (Present,
// then Insert of the rest), stores part of them again as a redelivery would,
// and checks that every rollup counter equals the count over the raw tables
// with FINAL, and the numbers the events imply.
func testRollupsExact(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var evs []*events.Event
	labels := []string{"clean", "clean", "suspect", "spam", "malicious"}
	for i := range 60 {
		tenant := fmt.Sprintf("t%d", i%3)
		at := base.Add(time.Duration(i) * 7 * time.Second) // spread over 7 minutes
		evs = append(evs, rollupEvents(tenant, fmt.Sprintf("m%d", i), labels[i%len(labels)], fmt.Sprintf("fp%d", i%4), at)...)
		if i%2 == 0 {
			evs = append(evs, rollupFeedback(tenant, fmt.Sprintf("m%d", i), i, at.Add(time.Minute))...)
		}
	}
	load := func(batch []*events.Event) {
		t.Helper()
		present, err := s.Present(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		var kept []*events.Event
		for _, e := range batch {
			if !present[e.ID] {
				kept = append(kept, e)
			}
		}
		if err := s.Insert(ctx, kept); err != nil {
			t.Fatal(err)
		}
	}
	load(evs[:100])
	load(evs[60:]) // 40 redelivered with the rest
	load(evs[:30]) // a whole batch again

	tests := []struct {
		name, raw, rollup string
		want              uint64
	}{
		{"messages", "SELECT count() FROM messages FINAL", "SELECT sum(messages) FROM tenant_minute", 60},
		{"hourly messages", "SELECT count() FROM messages FINAL", "SELECT sum(messages) FROM tenant_hour", 60},
		{"rcpts", "SELECT sum(rcpt_count) FROM messages FINAL", "SELECT sum(rcpts) FROM tenant_minute", 180},
		{"verdicts", "SELECT count() FROM verdicts FINAL", "SELECT sum(verdicts) FROM tenant_minute", 60},
		{"spam", "SELECT countIf(label = 'spam') FROM verdicts FINAL", "SELECT sum(spam) FROM tenant_minute", 12},
		{"clean", "SELECT countIf(label = 'clean') FROM verdicts FINAL", "SELECT sum(clean) FROM tenant_minute", 24},
		{"attempts", "SELECT count() FROM deliveries FINAL", "SELECT sum(attempts) FROM tenant_minute", 180},
		{"delivered", "SELECT countIf(outcome = 'delivered') FROM deliveries FINAL", "SELECT sum(delivered) FROM tenant_minute", 60},
		{"deferred", "SELECT countIf(outcome = 'deferred') FROM deliveries FINAL", "SELECT sum(deferred) FROM tenant_minute", 60},
		// 60 refused with a 5xx at delivery, 15 async hard bounces.
		{"hard", "SELECT countIf(outcome = 'bounced' AND reply_code >= 500) + (SELECT countIf(hard = 1) FROM bounces FINAL) FROM deliveries FINAL",
			"SELECT sum(hard_bounces) FROM tenant_minute", 75},
		{"soft", "SELECT count() FROM bounces FINAL WHERE hard = 0", "SELECT sum(soft_bounces) FROM tenant_minute", 15},
		// abuse counts, not-spam does not; unattributed reports neither.
		{"complaints", "SELECT count() FROM complaints FINAL WHERE feedback_type = 'abuse' AND tenant != ''",
			"SELECT sum(complaints) FROM tenant_minute", 10},
		{"suppressed", "SELECT count() FROM suppressions FINAL", "SELECT sum(suppressed) FROM tenant_minute", 30},
		{"blocked", "SELECT countIf(reply_text LIKE '%Spamhaus%') FROM deliveries FINAL", "SELECT sum(blocked) FROM tenant_minute", 60},
		{"fingerprints", "SELECT uniqExact(fingerprint) FROM verdicts FINAL", "SELECT uniqExact(fingerprint) FROM tenant_minute_fingerprints", 4},
		{"top fingerprint", "SELECT max(n) FROM (SELECT fingerprint, count() AS n FROM verdicts FINAL GROUP BY fingerprint)",
			"SELECT max(n) FROM (SELECT fingerprint, sum(messages) AS n FROM tenant_minute_fingerprints GROUP BY fingerprint)", 15},
	}
	for _, tt := range tests {
		raw, rollup := count(t, s, tt.raw), count(t, s, tt.rollup)
		if raw != tt.want || rollup != tt.want {
			t.Errorf("%s: raw FINAL = %d, rollup = %d, want %d", tt.name, raw, rollup, tt.want)
		}
	}
	// Per tenant and minute too, not just in total.
	perKey := func(q string) []string {
		t.Helper()
		rows, err := s.Conn().Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var tenant string
			var minute time.Time
			var a, b uint64
			if err := rows.Scan(&tenant, &minute, &a, &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, join(tenant, minute.UTC().Format("15:04"), a, b))
		}
		return out
	}
	raw := perKey(`SELECT tenant, toStartOfMinute(time) AS minute, count() AS a, countIf(label IN ('spam', 'malicious')) AS b
		FROM verdicts FINAL GROUP BY tenant, minute ORDER BY tenant, minute`)
	rollup := perKey(`SELECT tenant, minute, sum(verdicts) AS a, sum(spam) + sum(malicious) AS b
		FROM tenant_minute GROUP BY tenant, minute HAVING a > 0 ORDER BY tenant, minute`)
	if len(raw) < 10 || !slices.Equal(raw, rollup) {
		t.Errorf("per tenant and minute:\nraw    %q\nrollup %q", raw, rollup)
	}
}

// rollupFeedback is what comes back about message msgID (i-th): an async
// bounce, hard for even i/2, and a suppressed recipient; for every third
// message also a complaint, abuse or not-spam in turn, and one that could
// not be attributed.
func rollupFeedback(tenant, msgID string, i int, at time.Time) []*events.Event {
	b := &events.Event{ID: msgID + ".bounce", Type: events.TypeBounce, Time: at, Tenant: tenant, MsgID: msgID}
	b.Bounce = &events.Bounce{Rcpt: "a@x.example", Status: "5.1.1", Reason: "userunknown", Hard: i/2%2 == 0, Attribution: events.AttrVERP}
	sup := &events.Event{ID: msgID + ".suppressed", Type: events.TypeSuppressed, Time: at, Tenant: tenant, MsgID: msgID}
	sup.Suppressed = &events.Suppressed{Rcpt: "c@x.example", Reason: "userunknown", Source: "bounce", Since: at}
	out := []*events.Event{b, sup}
	if i%3 == 0 {
		c := &events.Event{ID: msgID + ".complaint", Type: events.TypeComplaint, Time: at, Tenant: tenant, MsgID: msgID}
		c.Complaint = &events.Complaint{Rcpt: "a@x.example", FeedbackType: []string{"abuse", "not-spam"}[i/3%2], Attribution: events.AttrVERP}
		lost := &events.Event{ID: msgID + ".lost", Type: events.TypeComplaint, Time: at}
		lost.Complaint = &events.Complaint{FeedbackType: "abuse", Attribution: events.AttrNone}
		out = append(out, c, lost)
	}
	return out
}

// rollupEvents is one message of tenant: a verdict, a routed event with
// three recipients and one delivery attempt delivering the first, deferring
// the second and rejecting the third with a blocklist reply.
func rollupEvents(tenant, msgID, label, fp string, at time.Time) []*events.Event {
	v := events.Verdict{Score: 1, Label: label, Fingerprint: fp, Model: "m"}
	rcpts := []string{"a@x.example", "b@x.example", "c@x.example"}
	return []*events.Event{
		{ID: msgID + ".verdict", Type: events.TypeVerdict, Time: at, Tenant: tenant, MsgID: msgID, Verdict: &v},
		{ID: msgID + ".routed", Type: events.TypeRouted, Time: at, Tenant: tenant, MsgID: msgID, Routed: &events.Routed{
			From: "s@" + tenant + ".example", FromDomain: tenant + ".example", Rcpts: rcpts, Received: at, Verdict: v, Pool: "shared",
		}},
		{ID: msgID + ".x.example.1", Type: events.TypeDelivery, Time: at, Tenant: tenant, MsgID: msgID,
			Delivery: &events.Delivery{Domain: "x.example", Pool: "shared", SourceIP: "127.0.0.2", MX: "mx.x.example", Attempt: 1,
				Rcpts: []events.RcptReply{
					{Rcpt: rcpts[0], Outcome: events.OutcomeDelivered, Code: 250, Text: "ok"},
					{Rcpt: rcpts[1], Outcome: events.OutcomeDeferred, Code: 451, Text: "try later"},
					{Rcpt: rcpts[2], Outcome: events.OutcomeBounced, Code: 554, Enhanced: "5.7.1",
						Text: "Service unavailable; client host blocked using Spamhaus"},
				}}},
	}
}
