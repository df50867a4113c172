package chstore_test

import (
	"context"
	"log"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/events"
)

// Open a store, create or update the schema, and insert events. Inserting
// the same events again adds no rows that count: see docs/analytics.md.
func Example() {
	ctx := context.Background()
	cfg := chstore.DefaultConfig() // 127.0.0.1:9000, database outflow
	s, err := chstore.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	err = s.Insert(ctx, []*events.Event{{
		V: events.Version, ID: "m1.verdict", Type: events.TypeVerdict, Time: time.Now(),
		Tenant: "t1", MsgID: "m1", Verdict: &events.Verdict{Score: 0.02, Label: "ham"},
	}})
	if err != nil {
		log.Fatal(err)
	}
}
