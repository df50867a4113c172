package shaping

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAcquireConn is the cost of taking and releasing a connection
// slot: one KV create and one purge, per connection (not per message).
func BenchmarkAcquireConn(b *testing.B) {
	srv := startNATS(b)
	p := startProc(b, srv, Options{Config: DefaultConfig()})
	ctx := context.Background()
	for b.Loop() {
		release, err := p.shaper.AcquireConn(ctx, "127.0.0.2", "bench")
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

// BenchmarkAllowMessage is the per-message cost of the shared rate when
// the rate itself does not bind (10,000,000/s: blocks of 50 messages, one
// KV round trip per block) and with no rate at all (no KV access).
func BenchmarkAllowMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		rate float64
	}{{"rate-10M", 10_000_000}, {"unlimited", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := startNATS(b)
			cfg := DefaultConfig()
			cfg.Defaults.MessagesPerSecond = floatp(tc.rate)
			p := startProc(b, srv, Options{Config: cfg})
			ctx := context.Background()
			for b.Loop() {
				if err := p.shaper.AllowMessage(ctx, "127.0.0.2", "bench", time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
