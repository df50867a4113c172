//go:build integration

package chstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/events"
)

// insertBatch is how many events one measured insert carries, about what
// the analytics loader gathers in a busy second.
const insertBatch = 1000

// deliveryBatch returns insertBatch delivery events of ten tenants, one
// recipient each (one deliveries row each), the ids unique to round so
// that no round's rows are taken for another's.
func deliveryBatch(round int, at time.Time) []*events.Event {
	evs := make([]*events.Event, insertBatch)
	for i := range evs {
		msgID := fmt.Sprintf("r%d-m%d", round, i)
		domain := fmt.Sprintf("d%d.example", i%50)
		evs[i] = &events.Event{
			ID: msgID + "." + domain + ".0.delivery", Type: events.TypeDelivery, Time: at,
			Tenant: fmt.Sprintf("t%d", i%10), MsgID: msgID,
			Delivery: &events.Delivery{
				Domain: domain, Pool: "shared", SourceIP: "127.0.0.2", MX: "mx." + domain, Sender: "host:1",
				Attempt: 1, DurationMs: 42, Site: domain, MXAddr: "127.0.0.1:25", TLS: true, Reused: i%4 != 0,
				ConnectMs: 3, TLSMs: 9, TxnMs: 30,
				Rcpts: []events.RcptReply{{
					Rcpt: fmt.Sprintf("user%d@%s", i, domain), Outcome: events.OutcomeDelivered,
					Code: 250, Enhanced: "2.0.0", Text: "2.0.0 Ok: queued as 4XyZ",
				}},
			},
		}
	}
	return evs
}

// BenchmarkInsert measures writing a batch of 1,000 delivery events into a
// private ClickHouse (materialized rollups included), alone and as the
// analytics loader does it: Present first (one primary-key query), then
// Insert of the events not yet stored. ns/op is per batch; rows/s counts
// deliveries rows. The batches are built outside the timer.
func BenchmarkInsert(b *testing.B) {
	ch := chtest.Start(b)
	tests := []struct {
		name    string
		present bool
	}{
		{"Insert", false},
		{"PresentInsert", true},
	}
	// Each run (-count) gets a database of its own, so that its count of
	// rows is its own.
	runs := 0
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			runs++
			cfg := chstore.DefaultConfig()
			cfg.Addr = ch.Addr()
			cfg.Database = fmt.Sprintf("outflow_bench_%d", runs)
			s := openStore(b, cfg)
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			at := time.Now().UTC()
			b.ReportAllocs()
			rounds := 0
			for b.Loop() {
				b.StopTimer()
				evs := deliveryBatch(rounds, at)
				rounds++
				b.StartTimer()
				if tt.present {
					found, err := s.Present(ctx, evs)
					if err != nil {
						b.Fatal(err)
					}
					if len(found) != 0 {
						b.Fatalf("Present found %d of a new batch, want 0", len(found))
					}
				}
				if err := s.Insert(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*insertBatch)/b.Elapsed().Seconds(), "rows/s")
			if n := count(b, s, "SELECT count() FROM deliveries"); n != uint64(rounds*insertBatch) {
				b.Fatalf("deliveries holds %d rows after %d batches of %d", n, rounds, insertBatch)
			}
		})
	}
}
