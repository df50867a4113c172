package chqueries_test

import (
	"fmt"

	chqueries "github.com/outflowmail/outflow/deploy/clickhouse/queries"
)

func ExampleQuery_Bind() {
	q, err := chqueries.Get("message_trace")
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Title)
	for _, p := range q.Params {
		fmt.Printf("--param %s=%s\t%s\n", p.Name, p.Type, p.Doc)
	}
	// Bind quotes the value for ClickHouse 18.16, which has no parameters.
	if _, err := q.Bind(map[string]string{"id": "<spring-sale-42@acme.example>"}); err != nil {
		panic(err)
	}
	// Output:
	// Message trace: everything Outflow holds about one message.
	// --param id=String	msg_id or Message-ID
}
