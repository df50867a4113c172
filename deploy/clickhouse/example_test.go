package chschema_test

import (
	"fmt"

	chschema "github.com/outflowmail/outflow/deploy/clickhouse"
)

func ExampleMigrations() {
	ms, err := chschema.Migrations()
	if err != nil {
		panic(err)
	}
	// The statements each file runs on ClickHouse 18.16 (no TTL: the
	// retention file has nothing to do there).
	f, err := chschema.FeaturesFor("18.16.1")
	if err != nil {
		panic(err)
	}
	for _, m := range ms {
		r, err := m.Render(f)
		if err != nil {
			panic(err)
		}
		fmt.Println(r.Version, r.Name, len(r.Statements()))
	}
	// Output:
	// 1 0001_messages.sql 1
	// 2 0002_deliveries.sql 1
	// 3 0003_verdicts.sql 1
	// 4 0004_rollup_tables.sql 2
	// 5 0005_rollup_views.sql 4
	// 6 0006_retention.sql 0
	// 7 0007_rollup_hourly.sql 3
	// 20 0020_bounces.sql 1
	// 21 0021_complaints.sql 1
	// 22 0022_dmarc_reports.sql 1
	// 23 0023_suppressions.sql 1
	// 24 0024_feedback_reports.sql 1
	// 25 0025_feedback_retention.sql 0
	// 30 0030_delivery_outcomes.sql 1
	// 40 0040_ip_events.sql 1
	// 50 0050_policy_changes.sql 1
	// 60 0060_rollup_feedback.sql 3
	// 61 0061_rollup_deliveries_reason.sql 2
	// 62 0062_retention_feedback.sql 0
}
