//go:build integration

package chstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/events"
)

// testIPEvents: backoff actions and DNSBL listing changes land in ip_events,
// one row each, and a repeated batch is recognised by Present.
func testIPEvents(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := []*events.Event{
		{ID: "s1", Type: events.TypeShaping, Time: at, Shaping: &events.Shaping{
			SourceIP: "127.0.0.2", Site: "yahoo", Rule: "yahoo-ts04", Action: "suspend",
			Until: at.Add(time.Hour), Reply: "421 4.7.0 [TSS04] Messages temporarily deferred", Sender: "h:1"}},
		{ID: "d1", Type: events.TypeDNSBL, Time: at.Add(time.Minute), DNSBL: &events.DNSBL{
			IP: "127.0.0.3", Zone: "zen.example", Listed: true, Answer: "127.0.0.2", Reason: "listed for spam"}},
		{ID: "x", Type: events.TypeShaping, Time: at}, // no payload: skipped
	}
	if chstore.Storable(evs[2]) || !chstore.Storable(evs[0]) || !chstore.Storable(evs[1]) {
		t.Fatal("Storable: want the two events with payloads only")
	}
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	present, err := s.Present(ctx, evs[:2])
	if err != nil || !present["s1"] || !present["d1"] {
		t.Fatalf("Present = %v, %v; want s1 and d1", present, err)
	}
	tests := []struct{ query, want string }{
		{"SELECT concat(kind, source_ip, site, rule, action, toString(until), detail, sender) FROM ip_events WHERE event_id = 's1'",
			"shaping127.0.0.2yahooyahoo-ts04suspend2025-06-01 13:00:00421 4.7.0 [TSS04] Messages temporarily deferredh:1"},
		{"SELECT concat(kind, source_ip, zone, toString(listed), detail) FROM ip_events WHERE event_id = 'd1'",
			"dnsbl127.0.0.3zen.example1127.0.0.2 listed for spam"},
		{"SELECT toString(count()) FROM ip_events", "2"},
	}
	for _, tt := range tests {
		var got string
		if err := s.Conn().QueryRow(ctx, tt.query).Scan(&got); err != nil {
			t.Errorf("%s: %v", tt.query, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s = %q, want %q", tt.query, got, tt.want)
		}
	}
}
