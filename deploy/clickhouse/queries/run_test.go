//go:build integration

package chqueries_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	chqueries "github.com/outflowmail/outflow/deploy/clickhouse/queries"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
)

// TestQueries runs every query file on a private ClickHouse seeded with two
// tenants: "good" (10 clean messages delivered from the shared pool) and
// "bad" (10 spam messages from the high-risk pool, refused by a blocklist,
// then bounced and complained about).
func TestQueries(t *testing.T) {
	ch := chtest.Start(t)
	ctx := context.Background()
	cfg := chstore.DefaultConfig()
	cfg.Addr = ch.Addr()
	s, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Minute)
	var evs []*events.Event
	for i := range 10 {
		evs = append(evs, seed("good", fmt.Sprintf("good-%d", i), now, false)...)
		evs = append(evs, seed("bad", fmt.Sprintf("bad-%d", i), now, true)...)
	}
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		params map[string]string
		// want are rows (columns joined by |) or row prefixes that must appear.
		want []string
		rows int // expected number of rows, -1 for any
	}{
		{name: "tenant_abuse_leaderboard", params: map[string]string{"hours": "1", "min_messages": "5"}, rows: 2,
			want: []string{"bad|10|100|50|100|50|1000", "good|10|0|0|0|0|0"}},
		{name: "pool_health", params: map[string]string{"hours": "1"}, rows: 2,
			want: []string{"high-risk|127.0.0.3|gmail.example|20|50|0|50|50", "shared|127.0.0.2|127.0.0.1|10|100|0|0|0"}},
		{name: "bounce_reasons", params: map[string]string{"hours": "1"}, rows: 2,
			want: []string{"x.example|delivery|bounced|blocked|554|5.7.1|10|1|", "x.example|dsn|hard bounce|userunknown|550|5.1.1|10|1|"}},
		{name: "complaint_sources", params: map[string]string{"hours": "1"}, rows: 1,
			want: []string{"bad|fbl.x.example|127.0.0.3|abuse|10|10|10|"}},
		{name: "message_trace", params: map[string]string{"id": "bad-3@bad.example"}, rows: 7,
			want: []string{"bad-3|verdict|label=spam", "bad-3|received|tenant=bad message-id=<bad-3@bad.example>",
				"bad-3|routed|pool=high-risk", "bad-3|delivery|r3@x.example attempt 1: delivered 250",
				"bad-3|delivery|b3@x.example attempt 1: bounced (blocked) 554 5.7.1",
				"bad-3|bounce|r3@x.example hard bounce 5.1.1 (userunknown)", "bad-3|complaint|abuse from r3@x.example via fbl.x.example"}},
		{name: "message_trace", params: map[string]string{"id": "good-1"}, rows: 4,
			want: []string{"good-1|delivery|r1@x.example attempt 1: delivered 250"}},
		{name: "message_trace", params: map[string]string{"id": "nothing-here"}, rows: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := chqueries.Get(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			res, err := q.Run(ctx, s.Conn(), tt.params)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res.Rows {
				if tt.name == "message_trace" {
					r = r[1:] // the time
				}
				got = append(got, strings.Join(r, "|"))
			}
			if len(got) != tt.rows {
				t.Errorf("%s(%v): %d rows, want %d:\n%s", tt.name, tt.params, len(got), tt.rows, res.Table())
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
					t.Errorf("%s(%v): no row starting %q in\n%s", tt.name, tt.params, w, res.Table())
				}
			}
		})
	}
}

// seed is one message of tenant: verdict, routed and delivery events, and
// for a bad one a second recipient refused by a blocklist, and an async hard
// bounce and a complaint for the first.
func seed(tenant, msgID string, at time.Time, bad bool) []*events.Event {
	label, pool, ip, mx := "clean", "shared", "127.0.0.2", "127.0.0.1:2525"
	n := msgID[strings.LastIndex(msgID, "-")+1:]
	rcpt := "r" + n + "@x.example"
	replies := []events.RcptReply{{Rcpt: rcpt, Outcome: events.OutcomeDelivered, Code: 250, Text: "ok"}}
	rcpts := []string{rcpt}
	if bad {
		label, pool, ip, mx = "spam", "high-risk", "127.0.0.3", "mx1.gmail.example"
		rcpts = append(rcpts, "b"+n+"@x.example")
		replies = append(replies, events.RcptReply{Rcpt: rcpts[1], Outcome: events.OutcomeBounced, Code: 554, Enhanced: "5.7.1",
			Text: "client host blocked using zen.spamhaus.org", Reason: "blocked", Bounce: "soft"})
	}
	v := events.Verdict{Score: 3, Label: label, Fingerprint: "fp-" + tenant, Model: "m"}
	evs := []*events.Event{
		{ID: msgID + ".verdict", Type: events.TypeVerdict, Time: at, Tenant: tenant, MsgID: msgID, Verdict: &v},
		{ID: msgID + ".routed", Type: events.TypeRouted, Time: at, Tenant: tenant, MsgID: msgID, Routed: &events.Routed{
			MessageID: "<" + msgID + "@" + tenant + ".example>", FromDomain: tenant + ".example", Rcpts: rcpts,
			Received: at, Verdict: v, Pool: pool, Reason: label,
		}},
		{ID: msgID + ".delivery", Type: events.TypeDelivery, Time: at, Tenant: tenant, MsgID: msgID,
			Delivery: &events.Delivery{Domain: "x.example", Pool: pool, SourceIP: ip, MX: mx, Attempt: 1,
				Rcpts: replies}},
	}
	if bad {
		b := &events.Event{ID: msgID + ".bounce", Type: events.TypeBounce, Time: at, Tenant: tenant, MsgID: msgID}
		b.Bounce = &events.Bounce{Rcpt: rcpt, Status: "5.1.1", ReplyCode: 550, Diagnostic: "no such user",
			RemoteMTA: "mx1.gmail.example", Reason: "userunknown", Hard: true, Attribution: events.AttrVERP}
		c := &events.Event{ID: msgID + ".complaint", Type: events.TypeComplaint, Time: at, Tenant: tenant, MsgID: msgID}
		c.Complaint = &events.Complaint{Rcpt: rcpt, FeedbackType: "abuse", ReportingMTA: "fbl.x.example",
			SourceIP: ip, Attribution: events.AttrVERP}
		evs = append(evs, b, c)
	}
	return evs
}
