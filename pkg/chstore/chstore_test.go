package chstore

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/events"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantKey string // "" means valid
	}{
		{name: "defaults", give: func(*Config) {}},
		{name: "no port", give: func(c *Config) { c.Addr = "127.0.0.1" }, wantKey: "analytics.clickhouse.addr"},
		{name: "empty addr", give: func(c *Config) { c.Addr = "" }, wantKey: "analytics.clickhouse.addr"},
		{name: "empty database", give: func(c *Config) { c.Database = "" }, wantKey: "analytics.clickhouse.database"},
		{name: "quoted database", give: func(c *Config) { c.Database = "a`b" }, wantKey: "analytics.clickhouse.database"},
		{name: "leading digit", give: func(c *Config) { c.Database = "1db" }, wantKey: "analytics.clickhouse.database"},
		{name: "underscore database", give: func(c *Config) { c.Database = "outflow_test_2" }},
		{name: "zero dial timeout", give: func(c *Config) { c.DialTimeout = 0 }, wantKey: "analytics.clickhouse.dial_timeout"},
		{name: "zero query timeout", give: func(c *Config) { c.QueryTimeout = 0 }, wantKey: "analytics.clickhouse.query_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.give(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantKey != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantKey+":")):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.wantKey)
			}
		})
	}
}

func TestRows(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	received := at.Add(-time.Minute)
	next := at.Add(10 * time.Minute)
	epoch := time.Unix(0, 0).UTC()
	tests := []struct {
		name           string
		give           *events.Event
		wantMessages   [][]any
		wantDeliveries [][]any
		wantVerdicts   [][]any
	}{
		{
			name: "routed",
			give: &events.Event{ID: "m1.routed", Type: events.TypeRouted, Time: at, Tenant: "t1", MsgID: "m1",
				Routed: &events.Routed{
					MessageID: "<a@b>", FromDomain: "b.example", Rcpts: []string{"x@y.example", "z@y.example"},
					Size: 1234, Received: received, Pool: "shared", Reason: "ham",
					Verdict: events.Verdict{Score: 0.25, Label: "ham", Fingerprint: "fp", Model: "v1",
						Symbols: []events.Symbol{{Name: "A", Weight: 1.5}, {Name: "B", Weight: -0.5}}},
				}},
			wantMessages: [][]any{{"m1.routed", "t1", "m1", "<a@b>", "b.example",
				[]string{"x@y.example", "z@y.example"}, uint32(2), uint64(1234), 0.25, "ham",
				[]string{"A", "B"}, []float64{1.5, -0.5}, "fp", "v1", "shared", "ham",
				received.Truncate(time.Second), at.Truncate(time.Second)}},
		},
		{
			name: "routed without recipients or symbols",
			give: &events.Event{ID: "m2.routed", Type: events.TypeRouted, Time: at, Tenant: "t1", MsgID: "m2",
				Routed: &events.Routed{Size: -1}},
			wantMessages: [][]any{{"m2.routed", "t1", "m2", "", "", []string{}, uint32(0), uint64(0), 0.0, "",
				[]string{}, []float64{}, "", "", "", "", epoch, at.Truncate(time.Second)}},
		},
		{
			name: "delivery, one row per recipient",
			give: &events.Event{ID: "m1.y.example.0.delivery", Type: events.TypeDelivery, Time: at, Tenant: "t1", MsgID: "m1",
				Delivery: &events.Delivery{Domain: "y.example", Pool: "shared", SourceIP: "127.0.0.2", MX: "mx.y.example",
					Attempt: 1, DurationMs: 42, NextAttempt: next, Site: "y-site", MXAddr: "127.0.0.9:25", TLS: true,
					ConnectMs: 3, TLSMs: 4, TxnMs: 5, Rcpts: []events.RcptReply{
						{Rcpt: "x@y.example", Outcome: events.OutcomeDelivered, Code: 250, Enhanced: "2.0.0", Text: "ok"},
						{Rcpt: "z@y.example", Outcome: events.OutcomeDeferred, Code: 451, Enhanced: "4.7.1", Text: "later", Reason: "blocked"},
					}}},
			wantDeliveries: [][]any{
				{"m1.y.example.0.delivery", at.Truncate(time.Second), "t1", "m1", "x@y.example", "y.example", "shared",
					"mx.y.example", "127.0.0.2", uint16(1), uint16(250), "2.0.0", "ok", "delivered", uint32(42), next.Truncate(time.Second),
					"y-site", "127.0.0.9:25", uint8(1), uint8(0), uint32(3), uint32(4), uint32(5), "", ""},
				{"m1.y.example.0.delivery", at.Truncate(time.Second), "t1", "m1", "z@y.example", "y.example", "shared",
					"mx.y.example", "127.0.0.2", uint16(1), uint16(451), "4.7.1", "later", "deferred", uint32(42), next.Truncate(time.Second),
					"y-site", "127.0.0.9:25", uint8(1), uint8(0), uint32(3), uint32(4), uint32(5), "blocked", ""},
			},
		},
		{
			name: "delivery without domain or next attempt",
			give: &events.Event{ID: "d2", Type: events.TypeDelivery, Time: at, Tenant: "t1", MsgID: "m1",
				Delivery: &events.Delivery{Attempt: 70000, DurationMs: -5, Rcpts: []events.RcptReply{
					{Rcpt: "x@Y.Example", Outcome: events.OutcomeBounced, Code: 550}}}},
			wantDeliveries: [][]any{{"d2", at.Truncate(time.Second), "t1", "m1", "x@Y.Example", "y.example", "", "", "",
				uint16(65535), uint16(550), "", "", "bounced", uint32(0), epoch, "", "", uint8(0), uint8(0), uint32(0),
				uint32(0), uint32(0), "", ""}},
		},
		{
			name: "verdict",
			give: &events.Event{ID: "m1.verdict", Type: events.TypeVerdict, Time: at, Tenant: "t1", MsgID: "m1",
				Verdict: &events.Verdict{Score: 0.9, Label: "spam", Symbols: []events.Symbol{{Name: "S", Weight: 2}}, Fingerprint: "f", Model: "m"}},
			wantVerdicts: [][]any{{"m1.verdict", at.Truncate(time.Second), "t1", "m1", 0.9, "spam",
				[]string{"S"}, []float64{2}, "f", "m"}},
		},
		{name: "routed without payload", give: &events.Event{ID: "x", Type: events.TypeRouted}},
		{name: "unknown type", give: &events.Event{ID: "x", Type: "complaint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageRows(tt.give); !reflect.DeepEqual(got, tt.wantMessages) {
				t.Errorf("messageRows = %#v\nwant %#v", got, tt.wantMessages)
			}
			if got := deliveryRows(tt.give); !reflect.DeepEqual(got, tt.wantDeliveries) {
				t.Errorf("deliveryRows = %#v\nwant %#v", got, tt.wantDeliveries)
			}
			if got := verdictRows(tt.give); !reflect.DeepEqual(got, tt.wantVerdicts) {
				t.Errorf("verdictRows = %#v\nwant %#v", got, tt.wantVerdicts)
			}
			wantStorable := tt.wantMessages != nil || tt.wantDeliveries != nil || tt.wantVerdicts != nil
			if got := Storable(tt.give); got != wantStorable {
				t.Errorf("Storable = %v, want %v", got, wantStorable)
			}
		})
	}
}

func TestUnique(t *testing.T) {
	a, b, a2 := &events.Event{ID: "a"}, &events.Event{ID: "b"}, &events.Event{ID: "a"}
	got := unique([]*events.Event{a, b, a2, b})
	if want := []*events.Event{a, b}; !reflect.DeepEqual(got, want) {
		t.Errorf("unique = %v, want %v", got, want)
	}
}
