package shaping

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/pool"
)

// countingReceiver is a Go SMTP server that counts the sessions open at
// once (from the connection's start to its end, which go-smtp reports
// before it closes the socket) and the messages it accepted.
type countingReceiver struct {
	addr     string
	open     atomic.Int64
	peak     atomic.Int64
	messages atomic.Int64
}

func startCountingReceiver(t *testing.T) *countingReceiver {
	t.Helper()
	r := &countingReceiver{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		n := r.open.Add(1)
		for {
			old := r.peak.Load()
			if n <= old || r.peak.CompareAndSwap(old, n) {
				break
			}
		}
		// Hold each session a little, as a real MX does, so connections
		// overlap.
		time.Sleep(5 * time.Millisecond)
		return &countingSession{r: r}, nil
	}))
	srv.Domain = "mx.count.test"
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return r
}

type countingSession struct {
	r      *countingReceiver
	logout sync.Once
}

func (s *countingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *countingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *countingSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	s.r.messages.Add(1)
	return err
}
func (s *countingSession) Reset() {}
func (s *countingSession) Logout() error {
	s.logout.Do(func() { s.r.open.Add(-1) })
	return nil
}

// deliverOne is the tiny driver: one connection slot, one SMTP session
// from src carrying n messages, QUIT, and the slot is released only once
// the receiver has closed the connection.
func deliverOne(ctx context.Context, s *Shaper, src, site, addr string, n int) error {
	release, err := s.AcquireConn(ctx, src, site)
	if err != nil {
		return err
	}
	defer release()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := smtp.NewClient(conn)
	if err := c.Hello("driver.test"); err != nil {
		return err
	}
	for range n {
		if err := s.AllowMessage(ctx, src, site, 5*time.Second); err != nil {
			return err
		}
		if err := c.SendMail("a@driver.test", []string{"b@count.test"}, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			return err
		}
	}
	// QUIT by hand and read to EOF: the receiver has ended the session by
	// then, so a released slot never overlaps a session still open there.
	if _, err := conn.Write([]byte("QUIT\r\n")); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	return err
}

// TestReceiverSeesNoMoreThanLimit: two processes with eight workers each
// deliver to one receiver from one source IP with a limit of 3
// connections; the receiver never has more than 3 sessions open at once.
func TestReceiverSeesNoMoreThanLimit(t *testing.T) {
	srv := startNATS(t)
	rcv := startCountingReceiver(t)
	cfg := DefaultConfig()
	cfg.Defaults.MaxConnections = intp(3)
	a := startProc(t, srv, Options{Config: cfg, Sender: "a"})
	b := startProc(t, srv, Options{Config: cfg, Sender: "b"})
	site := a.shaper.Site("count.test", []string{"mx.count.test"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var delivered, busy atomic.Int64
	var wg sync.WaitGroup
	for _, p := range []*proc{a, b} {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for delivered.Load() < 200 && ctx.Err() == nil {
					err := deliverOne(ctx, p.shaper, "127.0.0.2", site, rcv.addr, 2)
					switch {
					case err == nil:
						delivered.Add(2)
					case errors.Is(err, delivery.ErrBusy):
						busy.Add(1)
						time.Sleep(2 * time.Millisecond)
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("receiver: %d messages, peak %d sessions at once (limit 3); %d busy answers", rcv.messages.Load(), rcv.peak.Load(), busy.Load())
	if p := rcv.peak.Load(); p > 3 {
		t.Fatalf("receiver saw %d sessions at once, limit 3", p)
	}
	if rcv.peak.Load() < 2 || busy.Load() == 0 {
		t.Fatalf("peak %d, busy %d: the senders never competed for slots, the test proves nothing", rcv.peak.Load(), busy.Load())
	}
}

// TestIdleConnectionsYieldToAnotherProcess: process a delivers one message
// and keeps its connection idle, holding the pair's only slot; process b
// then has a message for the same pair. a closes its idle connection
// because b waits, and b delivers long before a's idle timeout (1 min) and
// before its own slot wait (10 s) runs out. The receiver never has two
// sessions open at once.
func TestIdleConnectionsYieldToAnotherProcess(t *testing.T) {
	srv := startNATS(t)
	rcv := startCountingReceiver(t)
	cfg := DefaultConfig()
	cfg.Defaults.MaxConnections = intp(1)
	idle := time.Minute
	cfg.Defaults.IdleTimeout = &idle
	deliverer := func(name string) *delivery.Deliverer {
		d := delivery.New(delivery.Options{
			Transports: map[string]string{"count.test": rcv.addr},
			Shaper:     startProc(t, srv, Options{Config: cfg, Sender: name}).shaper,
		})
		t.Cleanup(d.Close)
		return d
	}
	a, b := deliverer("a"), deliverer("b")
	job := delivery.Job{
		Domain: "count.test", From: "a@driver.test", Rcpts: []string{"u@count.test"},
		Body:    []byte("From: a@driver.test\r\nSubject: x\r\n\r\nx\r\n"),
		Sources: []pool.IP{{Address: "127.0.0.2", EHLO: "out.driver.test"}},
	}
	ctx := context.Background()
	if err := a.Deliver(ctx, job).Rcpts[0].Err; err != nil {
		t.Fatalf("a: %v", err)
	}
	if n := rcv.open.Load(); n != 1 {
		t.Fatalf("%d sessions open after a's delivery, want a's idle one", n)
	}
	start := time.Now()
	res := b.Deliver(ctx, job)
	took := time.Since(start)
	if err := res.Rcpts[0].Err; err != nil {
		t.Fatalf("b, after %v: %v", took.Round(time.Millisecond), err)
	}
	t.Logf("b delivered after %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("b waited %v for a's idle connection's slot, want a few hundred ms", took.Round(time.Millisecond))
	}
	if p := rcv.peak.Load(); p > 1 {
		t.Errorf("receiver saw %d sessions at once, limit 1", p)
	}
	if n := rcv.messages.Load(); n != 2 {
		t.Errorf("receiver got %d messages, want 2", n)
	}
}
