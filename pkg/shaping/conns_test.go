package shaping

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// TestAcquireConn_TwoProcessesNeverExceedLimit: two processes, each with
// its own NATS connection, hammer one (source IP, site) whose limit is 3;
// the number of slots held at once never exceeds 3, and reaches it.
func TestAcquireConn_TwoProcessesNeverExceedLimit(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.Sites = []SiteRule{{Name: "tight", MX: []string{"*.tight.example"}, Limits: LimitsConfig{MaxConnections: intp(3)}}}
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})

	var held, peak, acquired, busy atomic.Int64
	var wg sync.WaitGroup
	for _, p := range []*proc{a, b} {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 15 {
					release, err := p.shaper.AcquireConn(context.Background(), "127.0.0.2", "tight")
					if errors.Is(err, delivery.ErrBusy) {
						busy.Add(1)
						time.Sleep(2 * time.Millisecond)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					acquired.Add(1)
					n := held.Add(1)
					for {
						old := peak.Load()
						if n <= old || peak.CompareAndSwap(old, n) {
							break
						}
					}
					time.Sleep(3 * time.Millisecond)
					held.Add(-1)
					release()
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("acquired %d, busy %d, peak %d", acquired.Load(), busy.Load(), peak.Load())
	if peak.Load() > 3 {
		t.Fatalf("peak concurrent slots %d, limit 3", peak.Load())
	}
	if peak.Load() < 3 || busy.Load() == 0 {
		t.Fatalf("peak %d, busy %d: the limit was never reached, the test proves nothing", peak.Load(), busy.Load())
	}
}

// TestAcquireConn_CrashedHolderSlotReturns: a process holding every slot
// dies without releasing; the slots come back after the lease, while a
// live holder keeps its slot past the lease by refreshing it.
func TestAcquireConn_CrashedHolderSlotReturns(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.ConnLease = 3 * time.Second
	cfg.Defaults.MaxConnections = intp(1)
	ctx := context.Background()
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})

	// A live holder: still held after two leases.
	release, err := a.shaper.AcquireConn(ctx, "127.0.0.2", "s1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * cfg.ConnLease)
	if _, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "s1"); !errors.Is(err, delivery.ErrBusy) {
		t.Fatalf("slot of a live holder after two leases: AcquireConn = %v, want ErrBusy", err)
	}
	release()
	// b hears of the release through its watch: within a second, well
	// before the slot could have lapsed (it was rewritten at most a third
	// of a lease ago).
	eventually(t, time.Second, "b takes the slot a released", func() bool {
		rb, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "s1")
		if err != nil {
			return false
		}
		rb()
		return true
	})

	// A crashed holder.
	if _, err := a.shaper.AcquireConn(ctx, "127.0.0.2", "s2"); err != nil {
		t.Fatal(err)
	}
	a.crash()
	crashed := time.Now()
	if _, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "s2"); !errors.Is(err, delivery.ErrBusy) {
		t.Fatalf("right after the crash: AcquireConn = %v, want ErrBusy", err)
	}
	eventually(t, cfg.ConnLease+5*time.Second, "the crashed holder's slot did not come back", func() bool {
		r, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "s2")
		if err == nil {
			r()
		}
		return err == nil
	})
	t.Logf("slot back %v after the crash (lease %v)", time.Since(crashed).Round(100*time.Millisecond), cfg.ConnLease)
}

// TestAllowMessage_RateAcrossProcesses: two processes sending as fast as
// they are let to one (source IP, site) limited to 20 messages/s together
// get no more than 2 s × 20 plus one block per process in 2 s.
func TestAllowMessage_RateAcrossProcesses(t *testing.T) {
	srv := startNATS(t)
	const rate = 20
	cfg := DefaultConfig()
	cfg.Domains = map[string]LimitsConfig{"rated.example": {MessagesPerSecond: floatp(rate)}}
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})
	site := a.shaper.Site("rated.example", []string{"mx.rated.example"})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for _, p := range []*proc{a, b} {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					err := p.shaper.AllowMessage(ctx, "127.0.0.2", site, time.Second)
					switch {
					case err == nil:
						if ctx.Err() == nil {
							sent.Add(1)
						}
					case errors.Is(err, delivery.ErrRateLimited), ctx.Err() != nil:
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	block := rate / 10
	limit := 2*rate + 3*block
	t.Logf("%d messages in 2 s at %d/s across two processes (allowed %d)", sent.Load(), rate, limit)
	if n := sent.Load(); n > int64(limit) || n < rate {
		t.Fatalf("sent %d in 2 s, want between %d and %d", n, rate, limit)
	}
}

// TestAllowMessage_MaxWait: with the budget used, a caller unwilling to
// wait gets ErrRateLimited at once.
func TestAllowMessage_MaxWait(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.Defaults.MessagesPerSecond = floatp(1)
	a := startProc(t, srv, Options{Config: cfg})
	ctx := context.Background()
	if err := a.shaper.AllowMessage(ctx, "127.0.0.2", "s", 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.shaper.AllowMessage(ctx, "127.0.0.2", "s", 100*time.Millisecond); !errors.Is(err, delivery.ErrRateLimited) {
		t.Fatalf("second message at 1/s with maxWait 100ms: %v, want ErrRateLimited", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("ErrRateLimited after %v, want at once", d)
	}
	if err := a.shaper.AllowMessage(ctx, "127.0.0.2", "s", 2*time.Second); err != nil {
		t.Fatalf("second message willing to wait 2s: %v", err)
	}
}

// TestAcquireConn_AnswersFromMemory: a process holding every slot of a
// (source IP, site) says busy without asking the bucket (it still does
// with its connection to NATS gone), and a slot another process frees is
// taken again once the watch has seen it go, not only after a lease.
func TestAcquireConn_AnswersFromMemory(t *testing.T) {
	srv := startNATS(t)
	cfg := DefaultConfig()
	cfg.Sites = []SiteRule{{Name: "tight", MX: []string{"*.tight.example"}, Limits: LimitsConfig{MaxConnections: intp(2)}}}
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})
	ctx := context.Background()

	var releases []func()
	for range 2 {
		release, err := a.shaper.AcquireConn(ctx, "127.0.0.2", "tight")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	// b learns of a's slots from the watch, then from its own failed
	// creates; either way it is busy.
	if _, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "tight"); !errors.Is(err, delivery.ErrBusy) {
		t.Fatalf("b while a holds both slots: %v, want ErrBusy", err)
	}
	releases[0]()
	eventually(t, 5*time.Second, "b takes the slot a freed", func() bool {
		release, err := b.shaper.AcquireConn(ctx, "127.0.0.2", "tight")
		if err != nil {
			return false
		}
		t.Cleanup(release)
		return true
	})

	// a holds both slots of another source: it says busy from memory, even
	// with its connection to NATS gone.
	release, err := a.shaper.AcquireConn(ctx, "127.0.0.3", "tight")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	release2, err := a.shaper.AcquireConn(ctx, "127.0.0.3", "tight")
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	a.nc.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = a.shaper.AcquireConn(cctx, "127.0.0.3", "tight")
	if !errors.Is(err, delivery.ErrBusy) {
		t.Fatalf("a at its limit with NATS gone: %v, want ErrBusy from memory", err)
	}
	if want := "127.0.0.3 toward tight: 2 connections open here: " + delivery.ErrBusy.Error(); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
