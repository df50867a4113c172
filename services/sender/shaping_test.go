package sender

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/shaping"
)

// sessionCounter is an SMTP receiver that counts, per source address, the
// sessions open at once: from the connection's accept until the receiver
// reads QUIT or the connection ends. QUIT is counted as the end because
// the client may release its connection slot as soon as the 221 comes
// back, before the receiver has closed its side.
type sessionCounter struct {
	addr     string
	messages atomic.Int64

	mu       sync.Mutex
	open     map[string]int
	peak     map[string]int
	arrivals []time.Time
}

func startSessionCounter(t *testing.T) *sessionCounter {
	t.Helper()
	c := &sessionCounter{open: map[string]int{}, peak: map[string]int{}}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &countSession{c: c}, nil }))
	srv.Domain = "mx.count.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(&countListener{Listener: l, c: c})
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return c
}

func (c *sessionCounter) change(ip string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[ip] += d
	c.peak[ip] = max(c.peak[ip], c.open[ip])
}

func (c *sessionCounter) peaks() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.peak {
		out[k] = v
	}
	return out
}

type countListener struct {
	net.Listener
	c *sessionCounter
}

func (l *countListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ip, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	l.c.change(ip, 1)
	return &countConn{Conn: conn, c: l.c, ip: ip}, nil
}

type countConn struct {
	net.Conn
	c    *sessionCounter
	ip   string
	done sync.Once
	tail []byte
}

func (c *countConn) end() { c.done.Do(func() { c.c.change(c.ip, -1) }) }

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// Commands are short; keep the last bytes to find QUIT across reads.
	c.tail = append(c.tail, p[:n]...)
	if len(c.tail) > 64 {
		c.tail = c.tail[len(c.tail)-64:]
	}
	if bytes.Contains(bytes.ToUpper(c.tail), []byte("QUIT\r\n")) || err != nil {
		c.end()
	}
	return n, err
}

func (c *countConn) Close() error {
	c.end()
	return c.Conn.Close()
}

type countSession struct{ c *sessionCounter }

func (s *countSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *countSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *countSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	s.c.mu.Lock()
	s.c.arrivals = append(s.c.arrivals, time.Now())
	s.c.mu.Unlock()
	s.c.messages.Add(1)
	return err
}
func (s *countSession) Reset()        {}
func (s *countSession) Logout() error { return nil }

// onePool has a single shared address, so every connection comes from it.
var onePool = pool.Set{
	{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{{Address: "127.0.0.2", EHLO: "out1.outflow.test"}}},
	{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: "127.0.0.4", EHLO: "risk1.outflow.test"}}},
}

// startTwoSenders runs two sender processes on ns, each with its own bus
// connection and Shaper, delivering everything to addr.
func startTwoSenders(t *testing.T, sc shaping.Config, pools pool.Set, addr string) []*bus.Bus {
	t.Helper()
	ns := natstest.Start(t)
	log := slog.New(slog.DiscardHandler)
	var buses []*bus.Bus
	for i := range 2 {
		b := bustest.ConnectTo(t, ns.ClientURL(), log, func(c *bus.Config) { c.Name = fmt.Sprintf("sender-%d", i) })
		buses = append(buses, b)
		sh, err := shaping.New(context.Background(), shaping.Options{
			Config: sc, JS: b.JS, Pools: pools, Publish: b.PublishEvent, Sender: b.Config().Name, Log: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sh.Close)
		cfg := testConfig(addr)
		cfg.Workers = 8
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- RunWith(ctx, cfg, pools, b, log, Options{Shaper: sh, Name: b.Config().Name, Rand: func() float64 { return 0.5 }})
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("sender %d: %v", i, err)
			}
		})
	}

	return buses
}

// queueJobs queues n one-recipient jobs in pool shared over 7 domains.
func queueJobs(t *testing.T, b *bus.Bus, n int) {
	t.Helper()
	for i := range n {
		env := &envelope.Envelope{
			ID: envelope.NewID(), Tenant: "t1", From: "a@demo.example", Pool: "shared", Jobs: 1,
			Domain: fmt.Sprintf("d%d.example", i%7), Rcpts: []string{fmt.Sprintf("r%d@d%d.example", i, i%7)}, Received: time.Now(),
		}
		if err := b.PublishMessage(context.Background(), bus.OutboundSubject("shared"), env.JobID(), env, body); err != nil {
			t.Fatal(err)
		}
	}
}

// waitMessages waits up to 60 s for n messages at the receiver.
func (c *sessionCounter) waitMessages(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for c.messages.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d of %d messages in 60s", c.messages.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShaping_TwoSendersNeverExceedConnectionLimit: two sender processes,
// each with its own NATS connection and Shaper, deliver 120 jobs from one
// pool address to one receiver whose site allows 2 connections per
// address; the receiver never sees more than 2 sessions from the address at
// once, and every job is delivered.
func TestShaping_TwoSendersNeverExceedConnectionLimit(t *testing.T) {
	rcv := startSessionCounter(t)
	sc := shaping.DefaultConfig()
	two, idle := 2, 300*time.Millisecond
	sc.Defaults = shaping.LimitsConfig{MaxConnections: &two, IdleTimeout: &idle}
	buses := startTwoSenders(t, sc, onePool, rcv.addr)

	// Count the deliveries each process made, from its delivery events.
	var mu sync.Mutex
	bySender := map[string]int{}
	sub, err := buses[0].NC.Subscribe(events.Subject+"."+string(events.TypeDelivery), func(m *nats.Msg) {
		evs, _ := events.UnmarshalAll(m.Data)
		for _, e := range evs {
			if e.Delivery != nil {
				mu.Lock()
				bySender[e.Delivery.Sender]++
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	const jobs = 120
	queueJobs(t, buses[0], jobs)
	rcv.waitMessages(t, jobs)
	peaks := rcv.peaks()
	eventually(t, "delivery events of every job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bySender["sender-0"]+bySender["sender-1"] >= jobs
	})
	mu.Lock()
	t.Logf("receiver: %d messages, peak sessions at once per source address %v (limit 2); deliveries by process %v",
		rcv.messages.Load(), peaks, bySender)
	both := bySender["sender-0"] > 0 && bySender["sender-1"] > 0
	mu.Unlock()
	if !both {
		t.Fatal("one process made every delivery: the processes did not compete")
	}
	if peaks["127.0.0.2"] > 2 {
		t.Fatalf("receiver saw %d sessions at once from 127.0.0.2, limit 2", peaks["127.0.0.2"])
	}
	if peaks["127.0.0.2"] < 2 {
		t.Fatalf("peak %d: the limit was never reached, the test proves nothing", peaks["127.0.0.2"])
	}
}

// TestShaping_TwoSendersHoldTheRate: two sender processes deliver 80 jobs
// from one address to a site limited to 20 messages/s; counted at the
// receiver, no 2-second window holds more than 2 × 20 plus a block of 2
// per process and a little for arrival jitter.
func TestShaping_TwoSendersHoldTheRate(t *testing.T) {
	rcv := startSessionCounter(t)
	sc := shaping.DefaultConfig()
	rate := 20.0
	sc.Defaults = shaping.LimitsConfig{MessagesPerSecond: &rate}
	buses := startTwoSenders(t, sc, onePool, rcv.addr)
	const jobs = 80
	queueJobs(t, buses[0], jobs)
	rcv.waitMessages(t, jobs)

	rcv.mu.Lock()
	at := slices.Clone(rcv.arrivals)
	rcv.mu.Unlock()
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range at {
		j, _ := slices.BinarySearchFunc(at, at[i].Add(2*time.Second), func(a, b time.Time) int { return a.Compare(b) })
		most = max(most, j-i)
	}
	const allowed = 2*20 + 2*2 + 4
	t.Logf("%d messages over %v; at most %d in any 2 s window (allowed %d)", len(at), at[len(at)-1].Sub(at[0]).Round(time.Millisecond), most, allowed)
	if most > allowed {
		t.Fatalf("%d messages in a 2 s window at 20/s, want at most %d", most, allowed)
	}
	if most < 20 {
		t.Fatalf("at most %d messages in any 2 s window: the senders never pressed against the rate", most)
	}
}
