//go:build integration

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
)

// TestCtlAnalytics runs ctl migrate (dry run, then for real), ctl trace by
// both ids and ctl query against a private ClickHouse.
func TestCtlAnalytics(t *testing.T) {
	ch := chtest.Start(t)
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := analyticsCtl(ctx, "", append([]string{args[0], "--clickhouse", ch.Addr()}, args[1:]...), &out)
		return out.String(), err
	}

	out, err := run("migrate", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"clickhouse 18.16", "ttl=false", "applied: none", "pending: 0001_messages.sql (1 statements)",
		"CREATE TABLE IF NOT EXISTS tenant_minute", "dry run: nothing applied"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctl migrate --dry-run: no %q in\n%s", want, out)
		}
	}
	out, err = run("migrate")
	if err != nil || !strings.Contains(out, "applied 0005_rollup_views.sql") {
		t.Fatalf("ctl migrate = %v\n%s", err, out)
	}
	out, err = run("migrate")
	if err != nil || !strings.Contains(out, "pending: none") || !strings.Contains(out, "applied: 1 2 3 4 5 6") {
		t.Errorf("second ctl migrate = %v\n%s", err, out)
	}

	cfg := chstore.DefaultConfig()
	cfg.Addr = ch.Addr()
	s, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Now().UTC().Truncate(time.Second)
	v := events.Verdict{Score: 0.5, Label: "clean", Fingerprint: "fp", Model: "m"}
	if err := s.Insert(ctx, []*events.Event{
		{ID: "m1.verdict", Type: events.TypeVerdict, Time: at, Tenant: "acme", MsgID: "m1", Verdict: &v},
		{ID: "m1.routed", Type: events.TypeRouted, Time: at, Tenant: "acme", MsgID: "m1", Routed: &events.Routed{
			MessageID: "<hello@acme.example>", Rcpts: []string{"a@x.example"}, Received: at, Verdict: v, Pool: "shared"}},
		{ID: "m1.d1", Type: events.TypeDelivery, Time: at.Add(time.Second), Tenant: "acme", MsgID: "m1", Delivery: &events.Delivery{
			Domain: "x.example", Pool: "shared", SourceIP: "127.0.0.2", MX: "mx.x.example", Attempt: 1,
			Rcpts: []events.RcptReply{{Rcpt: "a@x.example", Outcome: events.OutcomeDelivered, Code: 250, Text: "queued as 42"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m1", "hello@acme.example", "<hello@acme.example>"} {
		out, err := run("trace", id)
		if err != nil {
			t.Fatalf("ctl trace %s: %v", id, err)
		}
		for _, want := range []string{"message m1", "verdict", "label=clean", "routed", "pool=shared",
			"a@x.example attempt 1: delivered 250 queued as 42 [mx mx.x.example from 127.0.0.2"} {
			if !strings.Contains(out, want) {
				t.Errorf("ctl trace %s: no %q in\n%s", id, want, out)
			}
		}
	}
	if out, err := run("trace", "unknown"); err == nil || !strings.Contains(err.Error(), "no message") {
		t.Errorf("ctl trace unknown = %v\n%s, want a no message error", err, out)
	}

	out, err = run("query")
	if err != nil || !strings.Contains(out, "tenant_abuse_leaderboard") || !strings.Contains(out, "--param hours=UInt32") {
		t.Errorf("ctl query = %v\n%s", err, out)
	}
	out, err = run("query", "tenant_abuse_leaderboard", "--param", "hours=1", "--param", "min_messages=1")
	if err != nil || !strings.Contains(out, "acme") {
		t.Errorf("ctl query tenant_abuse_leaderboard = %v\n%s", err, out)
	}
	if _, err := run("query", "tenant_abuse_leaderboard", "--param", "hours=x", "--param", "min_messages=1"); err == nil ||
		!strings.Contains(err.Error(), "parameter hours") {
		t.Errorf("ctl query with a bad parameter = %v, want an error naming it", err)
	}
}
