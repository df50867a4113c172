//go:build integration

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/smtpload"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/services/analytics"
)

// TestOutage_ClickHouseDownDuringFlow is issue 6's done-when 2: the whole
// pipeline runs while messages flow in; the private ClickHouse is stopped
// for 10 s in the middle. Mail keeps arriving at the receiver during the
// outage; once ClickHouse is back, every table and rollup holds exactly one
// row per event in the events stream (plain counts, FINAL, uniqExact), and
// the analytics backlog returns to 0.
func TestOutage_ClickHouseDownDuringFlow(t *testing.T) {
	const outage = 10 * time.Second
	msgs := loadCorpus(t, "outage", 600, 0)
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	mx := smtptest.Start(t, smtptest.Options{})
	submit := freeAddr(t)
	cfg := pipelineConfig(t, ns.ClientURL(), ch.Addr(), mx.Addr(), submit)
	cfg.Analytics.RetryMax = time.Second
	cfg.Analytics.ClickHouse.DialTimeout = time.Second
	cfg.Analytics.ClickHouse.QueryTimeout = 5 * time.Second
	cfg.Metrics.Listen = freeAddr(t)
	// The tenant is new; without a ramp it may submit at the full rate
	// (ingest.limits), well above the flow's 20 messages a second.
	cfg.Ingest.Limits.Ramp = 0

	ctx := runInProcess(t, cfg, app.Roles)
	waitListening(t, submit, 30*time.Second)

	// The flow: 2 messages every 100 ms until stopped or the corpus runs out
	// (30 s): before, during and after the outage.
	stopFlow := make(chan struct{})
	var flow sync.WaitGroup
	var accepted []string
	flow.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(msgs); i += 2 {
			select {
			case <-stopFlow:
				return
			case <-tick.C:
			}
			var load []smtpload.Message
			for j, m := range msgs[i:min(i+2, len(msgs))] {
				load = append(load, smtpload.Message{Key: m.Key, From: "sender@e2e.example",
					To: []string{fmt.Sprintf("rcpt%d@d%d.example", i+j, (i+j)%3)}, Data: m.Data})
			}
			for _, r := range smtpload.Run(ctx, smtpload.Options{Addr: submit, Sessions: 1, User: tenantID, Pass: tenantPass}, load) {
				if r.Accepted {
					accepted = append(accepted, r.Key)
				} else {
					t.Errorf("submission %s: %v", r.Key, r.Err)
				}
			}
		}
	})

	eventually(t, 30*time.Second, "first deliveries", func() (bool, string) {
		n := len(mx.Messages())
		return n >= 20, fmt.Sprintf("%d delivered", n)
	})
	ch.Stop()
	before := len(mx.Messages())
	t.Logf("ClickHouse stopped with %d messages delivered", before)
	time.Sleep(outage)
	during := len(mx.Messages()) - before
	t.Logf("delivered during the %v outage: %d", outage, during)
	if during == 0 {
		t.Error("no mail delivered while ClickHouse was down, want the pipeline to keep delivering")
	}
	b := outageBus(t, ns.ClientURL())
	if n, err := analytics.Backlog(ctx, b); err != nil || n == 0 {
		t.Errorf("analytics backlog during the outage = %d, %v; want events waiting", n, err)
	} else {
		t.Logf("analytics backlog at the end of the outage: %d events", n)
	}
	if v := scrape(t, cfg.Metrics.Listen)["outflow_analytics_backlog_events"]; v == 0 {
		t.Error("metrics endpoint: backlog 0 during the outage, want events waiting")
	}
	ch.Restart()
	time.Sleep(2 * time.Second)
	close(stopFlow)
	flow.Wait()
	n := len(accepted)
	mx.Wait(t, n)
	t.Logf("%d messages submitted and delivered", n)

	eventually(t, 60*time.Second, "analytics backlog 0", func() (bool, string) {
		got, err := analytics.Backlog(ctx, b)
		return err == nil && got == 0, fmt.Sprintf("backlog %d, %v", got, err)
	})
	m := scrape(t, cfg.Metrics.Listen)
	t.Logf("metrics: backlog %v, inserted %v, skipped %v, insert errors %v", m["outflow_analytics_backlog_events"],
		m["outflow_analytics_events_inserted_total"], m["outflow_analytics_events_skipped_total"],
		m["outflow_analytics_insert_errors_total"])
	if m["outflow_analytics_backlog_events"] != 0 || m["outflow_analytics_insert_errors_total"] == 0 {
		t.Errorf("metrics after the outage: backlog %v, insert errors %v; want 0 and > 0",
			m["outflow_analytics_backlog_events"], m["outflow_analytics_insert_errors_total"])
	}
	streamed := streamEventCounts(t, b)
	t.Logf("events in the stream: %v", streamed)
	for _, typ := range []events.Type{events.TypeVerdict, events.TypeRouted, events.TypeDelivery} {
		if streamed[typ] != uint64(n) {
			t.Errorf("%s events in the stream = %d, want %d (one per message)", typ, streamed[typ], n)
		}
	}

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{ch.Addr()}, Auth: clickhouse.Auth{Database: "outflow"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(q string) uint64 {
		var v uint64
		if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Errorf("%s: %v", q, err)
		}
		return v
	}
	checks := []struct {
		query string
		want  uint64
	}{
		{"SELECT count() FROM messages", streamed[events.TypeRouted]},
		{"SELECT count() FROM messages FINAL", streamed[events.TypeRouted]},
		{"SELECT uniqExact(msg_id) FROM messages", uint64(n)},
		{"SELECT count() FROM verdicts", streamed[events.TypeVerdict]},
		{"SELECT count() FROM verdicts FINAL", streamed[events.TypeVerdict]},
		{"SELECT uniqExact(event_id) FROM verdicts", streamed[events.TypeVerdict]},
		{"SELECT count() FROM deliveries", streamed[events.TypeDelivery]},
		{"SELECT count() FROM deliveries FINAL", streamed[events.TypeDelivery]},
		{"SELECT uniqExact(event_id, rcpt) FROM deliveries WHERE outcome = 'delivered'", uint64(n)},
		// The rollups saw each event once too.
		{"SELECT sum(messages) FROM tenant_minute", uint64(n)},
		{"SELECT sum(verdicts) FROM tenant_minute", uint64(n)},
		{"SELECT sum(delivered) FROM tenant_minute", uint64(n)},
	}
	for _, c := range checks {
		if got := count(c.query); got != c.want {
			t.Errorf("%s = %d, want %d", c.query, got, c.want)
		}
	}
}

// scrape reads the metrics endpoint at addr into name → value.
func scrape(tb testing.TB, addr string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && !strings.HasPrefix(name, "#") {
			out[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out
}

// outageBus connects to the test's NATS server as the roles do.
func outageBus(tb testing.TB, url string) *bus.Bus {
	tb.Helper()
	cfg := bus.DefaultConfig()
	cfg.URL = url
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, cfg, quietLogger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}

// streamEventCounts counts the events in the events stream by type (a
// stream message holds one event or a batch of them).
func streamEventCounts(tb testing.TB, b *bus.Bus) map[events.Type]uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	out := map[events.Type]uint64{}
	for read := uint64(0); read < info.State.Msgs; read++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			tb.Fatalf("read event %d of %d: %v", read+1, info.State.Msgs, err)
		}
		evs, err := events.UnmarshalAll(m.Data())
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range evs {
			out[e.Type]++
		}
	}
	return out
}
