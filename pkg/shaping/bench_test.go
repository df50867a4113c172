package shaping

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtptest"
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

// BenchmarkDeliver is what the Shaper costs the delivery path: 16 workers
// (the sender's default) deliver one-recipient messages to one site over
// reused connections from one or two source addresses, through a Deliverer with
// no Shaper (limits kept in this process only) and with this package's
// Shaper over an embedded JetStream (default limits, no rate: what a
// sender runs with unless configured otherwise). ns/op is per message;
// compare the two with benchstat. cpu-µs/msg is the CPU time of the whole
// process (JetStream server, receiver and Deliverer) per message.
func BenchmarkDeliver(b *testing.B) {
	two := []pool.IP{{Address: "127.0.0.2", EHLO: "out1.outflow.test"}, {Address: "127.0.0.3", EHLO: "out2.outflow.test"}}
	for _, tc := range []struct {
		name    string
		shaped  bool
		sources []pool.IP
	}{
		// Two sources: 20 connection slots for 16 workers.
		{"sources=2/shaper=none", false, two},
		{"sources=2/shaper=kv", true, two},
		// One source: 10 slots for 16 workers, so that jobs wait for a
		// connection as they do under load.
		{"sources=1/shaper=none", false, two[:1]},
		{"sources=1/shaper=kv", true, two[:1]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rcv := smtptest.Start(b, smtptest.Options{})
			opts := delivery.Options{
				Transports: map[string]string{"bench.example": rcv.Addr()},
				Log:        slog.New(slog.DiscardHandler),
			}
			if tc.shaped {
				opts.Shaper = startProc(b, startNATS(b), Options{Config: DefaultConfig()}).shaper
			}
			d := delivery.New(opts)
			b.Cleanup(d.Close)
			job := delivery.Job{
				Domain:  "bench.example",
				From:    "a@demo.example",
				Rcpts:   []string{"u@bench.example"},
				Body:    []byte("From: a@demo.example\r\nTo: u@bench.example\r\nSubject: bench\r\n\r\nhello\r\n"),
				Sources: tc.sources,
			}
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			b.ResetTimer()
			c0 := cpuTime()
			for range 16 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						res := d.Deliver(ctx, job)
						if err := res.Rcpts[0].Err; err != nil {
							failed.Store(err.Error())
							return
						}
					}
				})
			}
			wg.Wait()
			if f := failed.Load(); f != nil {
				b.Fatal(f)
			}
			// CPU time moves less than wall time on a shared machine.
			b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
