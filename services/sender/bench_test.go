package sender

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// BenchmarkDeliveryWithDeferredBacklog shows that a destination that defers
// everything delays only its own mail (issue 4, done-when 3). Two identical
// worlds run in this process, each an embedded JetStream and one sender
// (default workers and max_ack_pending) serving a pool, where
// slow.example's MX answers every RCPT with 451 and fast.example's
// accepts. In one world 100,000 jobs for slow.example are first published
// straight to OUTBOUND, and each is attempted once and deferred (a
// schedule due in an hour). Then delivery to fast.example is measured in
// both, alternately for several rounds, so that the load of other
// processes on a shared machine falls on both alike. ns/op is per message
// delivered to fast.example; msgs/s the rate; cpu-µs/msg the CPU time of
// the whole process (JetStream server, sender and receivers all run in it)
// per message. The last log line gives the ratio of the rates, which
// should be about 1.
//
// OUTFLOW_BENCH_BACKLOG sets another backlog size; OUTFLOW_BENCH_PROFILE=dir
// writes a CPU profile of each measurement there. Run alone with
//
//	go test -run '^$' -bench DeliveryWithDeferredBacklog -benchtime 5000x -v ./services/sender
func BenchmarkDeliveryWithDeferredBacklog(b *testing.B) {
	backlog := 100_000
	if s := os.Getenv("OUTFLOW_BENCH_BACKLOG"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			b.Fatalf("OUTFLOW_BENCH_BACKLOG=%q: want a count", s)
		}
		backlog = n
	}
	plain := startBenchWorld(b)
	loaded := startBenchWorld(b)
	// Warm up both: connections open, JetStream files grow, the runtime
	// settles.
	for _, w := range []*benchWorld{plain, loaded} {
		w.deliver(b, 1000)
	}
	t0 := time.Now()
	if err := publishBenchJobs(loaded.b, "slow.example", backlog); err != nil {
		b.Fatal(err)
	}
	waitCount(b, &loaded.deferred, int64(backlog), 30*time.Minute)
	// Each slow job has been attempted; wait until each is stored as a
	// schedule and acked, so that the measurement runs beside the whole
	// backlog waiting in JetStream.
	waitIdle(b, loaded.b, uint64(backlog), 10*time.Minute)
	b.Logf("backlog: %d jobs for slow.example deferred in %v", backlog, time.Since(t0).Round(time.Millisecond))

	const rounds = 4
	var ratios []float64
	for i := range rounds {
		// Alternate which goes first, so that neither always follows the
		// other's work.
		if i%2 == 0 {
			plain.measure(b, "backlog=0")
			loaded.measure(b, fmt.Sprintf("backlog=%d", backlog))
		} else {
			loaded.measure(b, fmt.Sprintf("backlog=%d", backlog))
			plain.measure(b, "backlog=0")
		}
		ratios = append(ratios, loaded.lastRate/plain.lastRate)
	}
	b.Logf("fast.example over %d rounds: %.0f msgs/s without backlog, %.0f msgs/s beside %d deferred jobs: ratio %.2f "+
		"(per round %.2f); CPU per message %.0f µs and %.0f µs",
		rounds, plain.rate(), loaded.rate(), backlog, loaded.rate()/plain.rate(), ratios, plain.cpuPerMsg(), loaded.cpuPerMsg())
}

// benchWorld is one JetStream server with a sender and two receivers.
type benchWorld struct {
	b                   *bus.Bus
	delivered, deferred atomic.Int64
	// Totals of the measurements.
	msgs     int
	elapsed  time.Duration
	cpu      time.Duration
	lastRate float64
}

func startBenchWorld(b *testing.B) *benchWorld {
	w := &benchWorld{}
	fast := smtptest.Start(b, smtptest.Options{Hooks: smtptest.Hooks{Data: func(smtptest.Message) error {
		w.delivered.Add(1)
		return nil
	}}})
	slow := smtptest.Start(b, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(string) error {
		w.deferred.Add(1)
		return smtptest.Reply(451, "4.7.1", "try again later")
	}}})
	bb := bustest.Start(b, func(c *bus.Config) { c.PublishTimeout = 30 * time.Second })
	w.b = bb
	log := slog.New(slog.DiscardHandler)
	cfg := DefaultConfig()
	cfg.Transports = map[string]string{"slow.example": slow.Addr(), "fast.example": fast.Addr()}
	cfg.Retry = Retry{FirstDelay: time.Hour, MaxDelay: 2 * time.Hour, MaxAge: 72 * time.Hour}
	pools := pool.Set{
		{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{{Address: "127.0.0.2", EHLO: "out1.outflow.test"}, {Address: "127.0.0.3", EHLO: "out2.outflow.test"}}},
		{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: "127.0.0.4", EHLO: "risk1.outflow.test"}}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, pools, bb, log) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return w
}

// deliver publishes n jobs for fast.example and waits for them.
func (w *benchWorld) deliver(b *testing.B, n int) {
	b.Helper()
	start := w.delivered.Load()
	if err := publishBenchJobs(w.b, "fast.example", n); err != nil {
		b.Fatal(err)
	}
	waitCount(b, &w.delivered, start+int64(n), 10*time.Minute)
}

// measure runs one sub-benchmark delivering b.N messages to fast.example.
func (w *benchWorld) measure(b *testing.B, name string) {
	b.Run(name, func(b *testing.B) {
		if dir := os.Getenv("OUTFLOW_BENCH_PROFILE"); dir != "" {
			// A CPU profile of each measurement, to see what a backlog
			// costs: go tool pprof -diff_base.
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-n%d-%d.pprof", name, b.N, time.Now().UnixNano())))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			defer pprof.StopCPUProfile()
		}
		t0, c0 := time.Now(), cpuTime()
		w.deliver(b, b.N)
		el, cel := time.Since(t0), cpuTime()-c0
		w.msgs += b.N
		w.elapsed += el
		w.cpu += cel
		w.lastRate = float64(b.N) / el.Seconds()
		b.ReportMetric(w.lastRate, "msgs/s")
		b.ReportMetric(float64(cel.Microseconds())/float64(b.N), "cpu-µs/msg")
	})
}

func (w *benchWorld) rate() float64 { return float64(w.msgs) / w.elapsed.Seconds() }

func (w *benchWorld) cpuPerMsg() float64 { return float64(w.cpu.Microseconds()) / float64(w.msgs) }

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publishBenchJobs publishes n one-recipient jobs for domain to the shared
// pool's subject, as the router would, without waiting for each ack.
func publishBenchJobs(b *bus.Bus, domain string, n int) error {
	body := []byte("From: a@demo.example\r\nTo: x@" + domain + "\r\nSubject: bench\r\n\r\nhello\r\n")
	const window = 2000
	for sent := 0; sent < n; {
		var acks []jetstream.PubAckFuture
		for ; sent < n && len(acks) < window; sent++ {
			env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "demo", From: "a@demo.example",
				Rcpts: []string{fmt.Sprintf("u%d@%s", sent, domain)}, Domain: domain, Pool: "shared", Jobs: 1,
				Received: time.Now(), Size: int64(len(body))}
			m := nats.NewMsg(bus.OutboundSubject("shared"))
			m.Data = body
			if err := envelope.Encode(m, env); err != nil {
				return err
			}
			f, err := b.JS.PublishMsgAsync(m, jetstream.WithMsgID(env.JobID()))
			if err != nil {
				return err
			}
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-time.After(time.Minute):
				return fmt.Errorf("publish: no ack within a minute")
			}
		}
	}
	return nil
}

func waitCount(b *testing.B, c *atomic.Int64, n int64, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for c.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d after %v, want %d", c.Load(), limit, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitIdle waits until the shared pool's consumer holds no job and OUTBOUND
// holds exactly the schedules.
func waitIdle(b *testing.B, bb *bus.Bus, schedules uint64, limit time.Duration) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	for {
		c, err := bb.JS.Consumer(ctx, bus.StreamOutbound, "sender-shared")
		if err != nil {
			b.Fatal(err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		s, err := bb.JS.Stream(ctx, bus.StreamOutbound)
		if err != nil {
			b.Fatal(err)
		}
		msgs := s.CachedInfo().State.Msgs
		if ci.NumPending == 0 && ci.NumAckPending == 0 && msgs == schedules {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %v: %d pending, %d unacked, %d messages in OUTBOUND, want 0, 0, %d",
				limit, ci.NumPending, ci.NumAckPending, msgs, schedules)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
