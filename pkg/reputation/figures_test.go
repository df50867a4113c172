//go:build integration

package reputation_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/reputation"
)

// sent describes messages of a tenant for the test to turn into events.
type sent struct {
	tenant string
	at     time.Time
	n      int
	label  string
	fp     string // "" gives each message its own fingerprint
	// outcomes of the message's single recipient, cycled over the n messages.
	outcomes []events.RcptReply
}

var (
	delivered = events.RcptReply{Outcome: events.OutcomeDelivered, Code: 250, Text: "ok"}
	deferred  = events.RcptReply{Outcome: events.OutcomeDeferred, Code: 451, Text: "greylisted"}
	unknown   = events.RcptReply{Outcome: events.OutcomeBounced, Code: 550, Enhanced: "5.1.1", Text: "no such user"}
	listed    = events.RcptReply{Outcome: events.OutcomeBounced, Code: 554, Enhanced: "5.7.1", Text: "blocked using zen.spamhaus.org"}
)

func TestFigures(t *testing.T) {
	ch := chtest.Start(t)
	ctx := context.Background()
	cfg := chstore.DefaultConfig()
	cfg.Addr = ch.Addr()
	cfg.Database = "figures"
	s, err := chstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	now := time.Date(2025, 6, 10, 12, 30, 20, 0, time.UTC)
	day := 24 * time.Hour
	plan := []sent{
		// Tenant a's history: hours of 10, 20 and 30 messages on earlier days.
		{tenant: "a", at: now.Add(-2 * day), n: 10, label: "clean", outcomes: []events.RcptReply{delivered}},
		{tenant: "a", at: now.Add(-3 * day), n: 20, label: "clean", outcomes: []events.RcptReply{delivered}},
		{tenant: "a", at: now.Add(-4 * day), n: 30, label: "clean", outcomes: []events.RcptReply{delivered}},
		// Older than the baseline: ignored.
		{tenant: "a", at: now.Add(-9 * day), n: 1000, label: "clean", outcomes: []events.RcptReply{delivered}},
		// 40 minutes ago (in 1 h, not in 15 min; in the baseline's 11:00 hour).
		{tenant: "a", at: now.Add(-40 * time.Minute), n: 5, label: "clean", outcomes: []events.RcptReply{delivered}},
		// The last 15 minutes: 10 messages, 3 spam or malicious, 6 identical.
		{tenant: "a", at: now.Add(-5 * time.Minute), n: 6, label: "clean", fp: "same",
			outcomes: []events.RcptReply{delivered, delivered, delivered, delivered, delivered, unknown}},
		{tenant: "a", at: now.Add(-4 * time.Minute), n: 1, label: "suspect", outcomes: []events.RcptReply{listed}},
		{tenant: "a", at: now.Add(-3 * time.Minute), n: 2, label: "spam", outcomes: []events.RcptReply{delivered, deferred}},
		{tenant: "a", at: now.Add(-2 * time.Minute), n: 1, label: "malicious", outcomes: []events.RcptReply{delivered}},
		// After now: not in any window.
		{tenant: "a", at: now.Add(2 * time.Minute), n: 50, label: "spam", outcomes: []events.RcptReply{delivered}},
		// Tenant b sent 3 messages three hours ago only.
		{tenant: "b", at: now.Add(-3 * time.Hour), n: 3, label: "clean", outcomes: []events.RcptReply{delivered}},
	}
	var evs []*events.Event
	for i, p := range plan {
		for j := range p.n {
			evs = append(evs, messageEvents(fmt.Sprintf("%s-%d-%d", p.tenant, i, j), p, j)...)
		}
	}
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}

	windows := []time.Duration{15 * time.Minute, time.Hour, 24 * time.Hour}
	got, err := reputation.Figures(ctx, s.Conn(), nil, now, windows)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["a"]) != 3 || len(got["b"]) != 3 {
		t.Fatalf("Figures = %v, want tenants a and b with 3 windows each", got)
	}
	a15, a1h, b15, b24 := got["a"][0], got["a"][1], got["b"][0], got["b"][2]
	t.Logf("%v", a15)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"a 15m messages", float64(a15.Messages), 10},
		{"a 15m verdicts", float64(a15.Verdicts), 10},
		{"a 15m spam", float64(a15.Spam), 3},
		{"a 15m spam ratio", a15.SpamRatio, 0.3},
		{"a 15m attempts", float64(a15.Attempts), 10},
		{"a 15m delivered", float64(a15.Delivered), 7},
		{"a 15m deferred", float64(a15.Deferred), 1},
		{"a 15m hard bounces", float64(a15.HardBounces), 2},
		{"a 15m hard bounce rate", a15.HardBounceRate, 2.0 / 9},
		{"a 15m blocked", float64(a15.Blocked), 1},
		{"a 15m block rate", a15.BlockRate, 0.1},
		{"a 15m complaint rate", a15.ComplaintRate, 0},
		{"a 15m top fingerprint share", a15.TopFingerprintShare, 0.6},
		{"a 15m fingerprints", float64(a15.Fingerprints), 5},
		// Hours with mail in the baseline: 5 (11:00 today), 10, 20, 30.
		{"a baseline hours", float64(a15.BaselineHours), 4},
		{"a baseline", a15.BaselineHourly, 15},
		{"a 15m volume vs baseline", a15.VolumeVsBaseline, 10 / 0.25 / 15},
		{"a 1h messages", float64(a1h.Messages), 15},
		{"a 1h volume vs baseline", a1h.VolumeVsBaseline, 1},
		{"b 15m messages", float64(b15.Messages), 0},
		{"b 15m baseline", b15.BaselineHourly, 3},
		{"b 24h messages", float64(b24.Messages), 3},
		{"b 24h spam ratio", b24.SpamRatio, 0},
		{"b 24h top fingerprint share", b24.TopFingerprintShare, 1.0 / 3},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	t.Run("only named tenants", func(t *testing.T) {
		got, err := reputation.Figures(ctx, s.Conn(), []string{"b", "nobody"}, now, windows)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got["b"][2].Messages != 3 {
			t.Errorf("Figures(b, nobody) = %v, want b alone with 3 messages in 24 h", got)
		}
	})
	t.Run("window under a minute", func(t *testing.T) {
		if _, err := reputation.Figures(ctx, s.Conn(), nil, now, []time.Duration{time.Second}); err == nil {
			t.Error("Figures(1s window) succeeded, want error")
		}
	})
}

// messageEvents is message j of p: its verdict, routed and delivery events.
func messageEvents(msgID string, p sent, j int) []*events.Event {
	fp := p.fp
	if fp == "" {
		fp = "fp-" + msgID
	}
	v := events.Verdict{Score: 1, Label: p.label, Fingerprint: fp, Model: "m"}
	r := p.outcomes[j%len(p.outcomes)]
	r.Rcpt = "rcpt-" + msgID + "@x.example"
	return []*events.Event{
		{ID: msgID + ".verdict", Type: events.TypeVerdict, Time: p.at, Tenant: p.tenant, MsgID: msgID, Verdict: &v},
		{ID: msgID + ".routed", Type: events.TypeRouted, Time: p.at, Tenant: p.tenant, MsgID: msgID, Routed: &events.Routed{
			FromDomain: p.tenant + ".example", Rcpts: []string{r.Rcpt}, Received: p.at, Verdict: v, Pool: "shared",
		}},
		{ID: msgID + ".delivery", Type: events.TypeDelivery, Time: p.at, Tenant: p.tenant, MsgID: msgID,
			Delivery: &events.Delivery{Domain: "x.example", Pool: "shared", SourceIP: "127.0.0.2", MX: "mx.x.example",
				Attempt: 1, Rcpts: []events.RcptReply{r}}},
	}
}

// BenchmarkFigures: 1,000 tenants with a rollup row every minute for 8 days
// (11.5 million rows), three windows.
func BenchmarkFigures(b *testing.B) {
	ch := chtest.Start(b)
	ctx := context.Background()
	cfg := chstore.DefaultConfig()
	cfg.Addr = ch.Addr()
	cfg.Database = "bench"
	s, err := chstore.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	now := time.Date(2025, 6, 10, 12, 30, 0, 0, time.UTC)
	const tenants, minutes = 1000, 8 * 24 * 60
	if err := s.Conn().Exec(ctx, fmt.Sprintf(`INSERT INTO tenant_minute (tenant, minute, messages, verdicts, spam, attempts, delivered)
		SELECT concat('t', toString(number %% %d)), toDateTime(%d - 60 * intDiv(number, %d)), 10, 10, number %% 2, 10, 9
		FROM numbers(%d)`, tenants, now.Unix(), tenants, tenants*minutes)); err != nil {
		b.Fatal(err)
	}
	// The hourly rollup the messages view would have filled alongside.
	if err := s.Conn().Exec(ctx, `INSERT INTO tenant_hour (tenant, hour, messages)
		SELECT tenant, toStartOfHour(minute) AS hour, sum(messages) FROM tenant_minute GROUP BY tenant, hour`); err != nil {
		b.Fatal(err)
	}
	windows := []time.Duration{15 * time.Minute, time.Hour, 24 * time.Hour}
	b.ResetTimer()
	for b.Loop() {
		got, err := reputation.Figures(ctx, s.Conn(), nil, now, windows)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != tenants {
			b.Fatalf("Figures: %d tenants, want %d", len(got), tenants)
		}
	}
}
