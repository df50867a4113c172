package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// benchBody is a 10 KiB message (as make bench's smtp-source -l 10240
// sends): a few headers and lines of text.
var benchBody = func() string {
	var sb strings.Builder
	sb.WriteString("From: news@acme.example\r\nTo: reader@example.net\r\nSubject: benchmark\r\n\r\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:70] + "\r\n"
	for sb.Len()+len(line) <= 10240 {
		sb.WriteString(line)
	}
	return sb.String()
}()

// benchIngest is a real ingest server on a loopback port with a
// client-IP listener (no AUTH: smtp-source has none either), publishing to
// an embedded JetStream whose store fsyncs every write when syncAlways is
// set, as production's nats.embedded.sync_always does. Tenant rate limits
// are off: the benchmark measures the submission path.
type benchIngest struct {
	addr string
	bus  *bus.Bus
}

func startBenchIngest(b *testing.B, syncAlways bool) *benchIngest {
	b.Helper()
	ns := natstest.StartSync(b, syncAlways)
	log := slog.New(slog.DiscardHandler)
	bs := bustest.ConnectTo(b, ns.ClientURL(), log)
	ctx, cancel := context.WithCancel(context.Background())
	store := tenant.Store{Tenants: bs.Tenants, Policy: bs.Policy}
	acme := &tenant.Tenant{ID: "acme", ClientIPs: []string{"127.0.0.0/8"}}
	if err := acme.AddDomain("acme.example"); err != nil {
		b.Fatal(err)
	}
	if err := store.Create(ctx, acme); err != nil {
		b.Fatal(err)
	}
	dir := tenant.NewDirectory()
	dirDone := make(chan struct{})
	go func() { defer close(dirDone); dir.Run(ctx, store, log) }()
	b.Cleanup(func() { cancel(); <-dirDone })
	<-dir.Ready()

	cfg := DefaultConfig()
	cfg.Hostname = "submit.test"
	cfg.ShutdownGrace = time.Second
	cfg.Limits.Rate, cfg.Limits.NewRate, cfg.Limits.NewDailyCap = 0, 0, 0
	cfg.Listeners = []Listener{{Name: "connector", Addr: "127.0.0.1:0", TLS: TLSNone, ClientIPTenants: true}}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv := New(cfg, bs, dir, log)
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { defer close(srvDone); srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-srvDone })
	return &benchIngest{addr: srv.Addr("connector"), bus: bs}
}

// dial opens one client connection that stays open for many messages.
func (bi *benchIngest) dial(b *testing.B) *smtp.Client {
	c, err := smtp.Dial(bi.addr)
	if err != nil {
		b.Error(err)
		return nil
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		b.Error(err)
		return nil
	}
	return c
}

// submit sends benchBody as one transaction; go-smtp's Close of the DATA
// writer returns an error unless the reply is 250.
func submit(c *smtp.Client) error {
	if err := c.Mail("news@acme.example", nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := c.Rcpt("reader@example.net", nil); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := io.WriteString(w, benchBody); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// stored checks that the submitted stream holds want messages: every 250
// must be a message JetStream kept.
func (bi *benchIngest) stored(b *testing.B, want uint64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bi.bus.JS.Stream(ctx, bus.StreamSubmitted)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Submissions that arrive together share a stream message (a batch,
	// pkg/bus/batch.go).
	got := bustest.Count(b, bi.bus, bus.StreamSubmitted, "")
	if got != want {
		b.Fatalf("%s holds %d messages (in %d stream messages) after %d accepted submissions", bus.StreamSubmitted, got, info.State.Msgs, want)
	}
	b.ReportMetric(float64(got)/float64(max(info.State.Msgs, 1)), "msgs/stored")
}

// BenchmarkSubmit measures one 10 KiB submission (MAIL, RCPT, DATA, 250)
// through a real ingest server to JetStream: serial on one kept connection,
// and parallel on eight (four per CPU), each with JetStream's store
// fsyncing every write (sync_always, the production default) and not.
// ns/op and msgs/s are per message; for the parallel runs they are the
// aggregate over all connections.
func BenchmarkSubmit(b *testing.B) {
	for _, syncAlways := range []bool{true, false} {
		name := fmt.Sprintf("sync_always=%t", syncAlways)
		b.Run(name+"/serial", func(b *testing.B) {
			bi := startBenchIngest(b, syncAlways)
			c := bi.dial(b)
			if c == nil {
				b.FailNow()
			}
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			for b.Loop() {
				if err := submit(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			bi.stored(b, uint64(b.N))
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			bi := startBenchIngest(b, syncAlways)
			b.SetBytes(int64(len(benchBody)))
			b.SetParallelism(4)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := bi.dial(b)
				if c == nil {
					return
				}
				for pb.Next() {
					if err := submit(c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if !b.Failed() {
				bi.stored(b, uint64(b.N))
			}
		})
	}
}
