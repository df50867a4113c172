package metrics_test

import (
	"context"
	"os"

	"github.com/outflowmail/outflow/pkg/metrics"
)

func ExampleRegistry() {
	reg := metrics.NewRegistry()
	inserted := reg.Counter("outflow_example_events_inserted_total", "Events stored.")
	reg.GaugeFunc("outflow_example_backlog_events", "Events waiting.", func(context.Context) (float64, error) {
		return 12, nil // e.g. read from JetStream at scrape time
	})
	inserted.Add(500)
	_ = reg.Write(context.Background(), os.Stdout)
	// Output:
	// # HELP outflow_example_backlog_events Events waiting.
	// # TYPE outflow_example_backlog_events gauge
	// outflow_example_backlog_events 12
	// # HELP outflow_example_events_inserted_total Events stored.
	// # TYPE outflow_example_events_inserted_total counter
	// outflow_example_events_inserted_total 500
}
