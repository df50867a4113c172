//go:build integration

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtpload"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/services/ingest"
)

const (
	tenantID   = "e2e"
	tenantPass = "e2e-password"
	sharedIP   = "127.0.0.2"
	highRiskIP = "127.0.0.3"
)

// testPools are the two pools every e2e test uses: the shared pool sends from
// 127.0.0.2, the high-risk pool from 127.0.0.3 (Linux routes all of 127/8 to
// lo, so the receiver sees those as the connection's source).
var testPools = pool.Set{
	{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{{Address: sharedIP, EHLO: "shared.e2e.test"}}},
	{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: highRiskIP, EHLO: "risk.e2e.test"}}},
}

// pipelineConfig is an "outflow all" configuration for an in-process test.
func pipelineConfig(tb testing.TB, natsURL, chAddr, mxAddr, submitAddr string) *app.Config {
	tb.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(tenantPass), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.Log.Level = "warn"
	cfg.NATS.URL = natsURL
	cfg.Pools = testPools
	cfg.Tenants = []app.SeedTenant{{ID: tenantID, PasswordHash: string(hash), Domains: []string{"e2e.example"}}}
	cfg.Ingest.Hostname = "submit.e2e.test"
	cfg.Ingest.Listeners = []ingest.Listener{{Name: "submission", Addr: submitAddr, TLS: ingest.TLSNone, AllowInsecureAuth: true}}
	// These tests push a new tenant's mail as fast as the pipeline takes
	// it; the per-tenant submission rate is tested in services/ingest.
	cfg.Ingest.Limits.Rate = 0
	cfg.Sender.Transports = map[string]string{"*": mxAddr}
	cfg.Analytics.ClickHouse.Addr = chAddr
	cfg.Analytics.FlushInterval = 200 * time.Millisecond
	// One tenant sending a fifth of corpus spam would be demoted by the
	// reputation loop halfway through; the loop has its own drill
	// (abuse_drill_test.go), which turns it back on.
	cfg.Analytics.Reputation.Enabled = false
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	return &cfg
}

// TestPipeline_CorpusThroughEveryRole is the backbone's acceptance test: 1,000
// corpus messages over 10 connections through ingest, classifier, router and
// sender, each arriving exactly once, spam from the high-risk pool's address
// and ham from the shared one, with ClickHouse rows for every message and
// every delivery attempt.
func TestPipeline_CorpusThroughEveryRole(t *testing.T) {
	const nHam, nSpam = 800, 200
	msgs := loadCorpus(t, "pipe", nHam, nSpam)
	if len(msgs) != nHam+nSpam {
		t.Fatalf("corpus gave %d messages, want %d", len(msgs), nHam+nSpam)
	}
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	mx := smtptest.Start(t, smtptest.Options{})
	submit := freeAddr(t)
	cfg := pipelineConfig(t, ns.ClientURL(), ch.Addr(), mx.Addr(), submit)

	ctx := runInProcess(t, cfg, app.Roles)
	waitListening(t, submit, 30*time.Second)

	load := make([]smtpload.Message, len(msgs))
	wantIP := map[string]string{}
	for i, m := range msgs {
		load[i] = smtpload.Message{Key: m.Key, From: "sender@e2e.example",
			To: []string{fmt.Sprintf("rcpt%d@d%d.example", i, i%5)}, Data: m.Data}
		wantIP[m.Key] = sharedIP
		if m.Label == "spam" || m.Label == "malicious" {
			wantIP[m.Key] = highRiskIP
		}
	}
	start := time.Now()
	results := smtpload.Run(ctx, smtpload.Options{Addr: submit, Sessions: 10, User: tenantID, Pass: tenantPass}, load)
	if s := smtpload.Summarize(results); s.Accepted != len(msgs) {
		for _, r := range results {
			if !r.Accepted {
				t.Fatalf("%+v: first failure %s: %v", s, r.Key, r.Err)
			}
		}
	}
	got := mx.Wait(t, len(msgs))
	t.Logf("%d messages submitted and delivered in %s", len(msgs), time.Since(start).Round(time.Millisecond))

	seen := map[string]int{}
	spamHighRisk, spamTotal := 0, 0
	for _, m := range got {
		key := messageID(m.Data)
		seen[key]++
		want, ok := wantIP[key]
		if !ok {
			t.Errorf("received unknown message %q", key)
			continue
		}
		if m.RemoteIP != want {
			t.Errorf("%s arrived from %s, want %s", key, m.RemoteIP, want)
		}
	}
	for _, m := range msgs {
		if seen[m.Key] != 1 {
			t.Errorf("%s arrived %d times, want exactly once", m.Key, seen[m.Key])
		}
		if m.Spam {
			spamTotal++
			if wantIP[m.Key] == highRiskIP {
				spamHighRisk++
			}
		}
	}
	// The routing is by verdict (checked above); this guards against a
	// classifier that calls nothing spam, which would make that check empty.
	if spamHighRisk < spamTotal*9/10 {
		t.Errorf("only %d of %d corpus spam messages were scored spam", spamHighRisk, spamTotal)
	}
	t.Logf("corpus spam routed to high-risk: %d/%d", spamHighRisk, spamTotal)

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(q string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Logf("%s: %v", q, err)
		}
		return n
	}
	eventually(t, 30*time.Second, "ClickHouse rows", func() (bool, string) {
		m := count("SELECT uniqExact(msg_id) FROM outflow.messages WHERE tenant = 'e2e'")
		d := count("SELECT uniqExact(event_id, rcpt) FROM outflow.deliveries WHERE tenant = 'e2e'")
		return m == uint64(len(msgs)) && d == uint64(len(msgs)), fmt.Sprintf("messages %d, deliveries %d", m, d)
	})
	// Exactly one row each, after ClickHouse has merged away any duplicate.
	if n := count("SELECT count() FROM outflow.messages FINAL WHERE tenant = 'e2e'"); n != uint64(len(msgs)) {
		t.Errorf("messages rows = %d, want %d", n, len(msgs))
	}
	if n := count("SELECT count() FROM outflow.deliveries FINAL WHERE tenant = 'e2e' AND outcome = 'delivered'"); n != uint64(len(msgs)) {
		t.Errorf("delivered rows = %d, want %d", n, len(msgs))
	}
	if n := count("SELECT count() FROM outflow.messages FINAL WHERE pool = 'high-risk' AND label IN ('spam', 'malicious')"); n != uint64(spamHighRisk+countHighRiskHam(msgs, wantIP)) {
		t.Errorf("high-risk spam rows = %d", n)
	}
}

// countHighRiskHam counts corpus ham that the engine scored spam (false
// positives), which the router also sends through the high-risk pool.
func countHighRiskHam(msgs []corpusMessage, wantIP map[string]string) int {
	n := 0
	for _, m := range msgs {
		if !m.Spam && wantIP[m.Key] == highRiskIP {
			n++
		}
	}
	return n
}
