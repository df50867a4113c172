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
	for _, m := range ms {
		fmt.Println(m.Version, m.Name, len(m.Statements()))
	}
	// Output:
	// 1 0001_messages.sql 1
	// 2 0002_deliveries.sql 1
	// 3 0003_verdicts.sql 1
}
