package analytics

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		give    func(*Config)
		wantKey string // "" means valid
	}{
		{name: "defaults", give: func(*Config) {}},
		{name: "clickhouse", give: func(c *Config) { c.ClickHouse.Addr = "nohost" }, wantKey: "analytics.clickhouse.addr"},
		{name: "zero batch", give: func(c *Config) { c.BatchSize = 0 }, wantKey: "analytics.batch_size"},
		{name: "huge batch", give: func(c *Config) { c.BatchSize = 1_000_000 }, wantKey: "analytics.batch_size"},
		{name: "tiny flush", give: func(c *Config) { c.FlushInterval = time.Millisecond }, wantKey: "analytics.flush_interval"},
		{name: "short ack wait", give: func(c *Config) { c.AckWait = time.Second }, wantKey: "analytics.ack_wait"},
		{name: "tiny retry", give: func(c *Config) { c.RetryMax = time.Millisecond }, wantKey: "analytics.retry_max"},
		{name: "tiny backlog interval", give: func(c *Config) { c.BacklogInterval = 0 }, wantKey: "analytics.backlog_interval"},
		{name: "no shutdown flush", give: func(c *Config) { c.ShutdownFlush = 0 }, wantKey: "analytics.shutdown_flush"},
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

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.next(); got != w*time.Millisecond {
			t.Errorf("next() #%d = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	b.reset()
	if got := b.next(); got != 100*time.Millisecond {
		t.Errorf("next() after reset = %v, want 100ms", got)
	}
}
