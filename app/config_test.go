package app

import (
	"strings"
	"testing"
)

func TestLoad_DevConfig(t *testing.T) {
	cfg, err := Load("../deploy/local/outflow.yaml")
	if err != nil {
		t.Fatalf("Load(dev config) = %v", err)
	}
	if cfg.Ingest.Listeners[0].Addr != "127.0.0.1:2525" || len(cfg.Pools) != 2 || cfg.Tenants[0].ID != "demo" {
		t.Errorf("dev config not as documented: %+v", cfg)
	}
	if !cfg.NATS.Embedded.SyncAlways {
		t.Error("dev config must keep sync_always on")
	}
	seed, err := cfg.Tenants[0].Tenant()
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.CheckPassword("demo-password"); err != nil {
		t.Errorf("seeded demo tenant does not take demo-password: %v", err)
	}
}

const minimal = `
pools:
  - {name: shared, purpose: shared, ips: [{address: 127.0.0.2, ehlo: a.test}]}
  - {name: high-risk, purpose: high-risk, ips: [{address: 127.0.0.3, ehlo: b.test}]}
`

func TestParse_ErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		give string
		want string
	}{
		{"unknown top-level key", minimal + "bogus: 1\n", "field bogus not found"},
		{"unknown nested key", minimal + "ingest: {listen: x}\n", "field listen not found"},
		{"bad duration", minimal + "nats: {publish_timeout: soon}\n", "publish_timeout"},
		{"bad log level", minimal + "log: {level: loud}\n", "log.level"},
		{"body memory below the inline limit", minimal + "nats: {body_memory: 1000}\n", "nats.body_memory"},
		{"event linger too long", minimal + "nats: {event_linger: 2s}\n", "nats.event_linger"},
		{"negative event linger", minimal + "nats: {event_linger: -1ms}\n", "nats.event_linger"},
		{"bad listener tls", minimal + "ingest: {listeners: [{name: a, addr: '127.0.0.1:1', tls: maybe}]}\n", "ingest.listeners[0].tls"},
		{"no pools", "log: {level: info}\n", "pools:"},
		{"bad pool ip", strings.Replace(minimal, "127.0.0.3", "300.1.1.1", 1), "pools[1].ips[0].address"},
		{"sender serves unknown pool", minimal + "sender: {pools: [nope]}\n", "sender.pools[0]"},
		{"seed with bad domain", minimal + "tenants: [{id: a, domains: ['not a domain']}]\n", "tenants[0]"},
		{"seed with unknown pool", minimal + "tenants: [{id: a, pool: nope}]\n", "tenants[0].pool"},
		{"bad analytics addr", minimal + "analytics: {clickhouse: {addr: nope}}\n", "analytics.clickhouse.addr"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.give))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := Parse(strings.NewReader(minimal)); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}
