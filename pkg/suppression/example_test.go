package suppression_test

import (
	"fmt"
	"time"

	"github.com/outflowmail/outflow/pkg/suppression"
)

// Keys do not reveal the address and ignore its case.
func ExampleKey() {
	fmt.Println(suppression.Key("acme", "Bob@Example.NET") == suppression.Key("acme", "bob@example.net"))
	fmt.Println(suppression.Key("acme", "bob@example.net"))
	// Output:
	// true
	// acme.e7b3b708168e80fd10abb34296e9863d
}

// A bounce entry lasts the configured time; a complaint entry, by default,
// forever.
func ExampleConfig_TTL() {
	cfg := suppression.DefaultConfig()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	bounce := suppression.Entry{Source: suppression.SourceBounce, Created: now, Expires: now.Add(cfg.TTL(suppression.SourceBounce))}
	complaint := suppression.Entry{Source: suppression.SourceComplaint, Created: now}
	later := now.Add(31 * 24 * time.Hour)
	fmt.Println(cfg.TTL(suppression.SourceBounce), bounce.Active(later), complaint.Active(later))
	// Output: 720h0m0s false true
}
