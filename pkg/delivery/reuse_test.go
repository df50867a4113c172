package delivery

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

// rawMX is a small scripted SMTP server for the behaviours go-smtp's server
// cannot be made to show: no PIPELINING, closing a connection after some
// transactions without a word (as an idle timeout does), 421 on a reused
// connection. It counts connections, messages and QUITs.
type rawMX struct {
	addr       string
	pipelining bool
	// closeAfter closes each connection silently after that many
	// messages; 0 never.
	closeAfter int
	// mail421 answers MAIL with 421 on the nth transaction of a
	// connection (1-based); 0 never.
	mail421 int

	conns, msgs, quits atomic.Int64
}

func startRaw(t *testing.T, m *rawMX) *rawMX {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	m.addr = l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			m.conns.Add(1)
			go m.serve(c)
		}
	}()
	return m
}

func (m *rawMX) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	say("220 raw.test ESMTP")
	txns, msgs := 0, 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if m.pipelining {
				say("250-raw.test\r\n250-PIPELINING\r\n250 SIZE 10000000")
			} else {
				say("250-raw.test\r\n250 SIZE 10000000")
			}
		case strings.HasPrefix(cmd, "MAIL"):
			txns++
			if txns == m.mail421 {
				say("421 4.4.2 raw.test closing connection")
				return
			}
			say("250 2.1.0 ok")
		case strings.HasPrefix(cmd, "RCPT"):
			say("250 2.1.5 ok")
		case cmd == "RSET":
			say("250 2.0.0 ok")
		case cmd == "DATA":
			say("354 go ahead")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			m.msgs.Add(1)
			msgs++
			say("250 2.0.0 queued")
			if msgs == m.closeAfter {
				return
			}
		case cmd == "QUIT":
			m.quits.Add(1)
			say("221 2.0.0 bye")
			return
		default:
			say("500 5.5.1 what?")
		}
	}
}

// recorder keeps what the client wrote, one entry per Write call: commands
// that arrive in one write were pipelined.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) dial(ctx context.Context, src netip.Addr, addr string) (net.Conn, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c, r: r}, nil
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

type recConn struct {
	net.Conn
	r *recorder
}

func (c *recConn) Write(p []byte) (int, error) {
	c.r.mu.Lock()
	c.r.writes = append(c.r.writes, string(p))
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// transportEnv is a Deliverer sending every domain to addr.
func transportEnv(t *testing.T, addr string, lim Limits, dial DialFunc) *Deliverer {
	t.Helper()
	d := New(Options{
		Transports: map[string]string{"*": addr}, Dial: dial, Limits: lim,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
	})
	t.Cleanup(d.Close)
	return d
}

func TestReuse_ManyJobsFewConnections(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	d := transportEnv(t, r.Addr(), Limits{MaxConnections: 2}, nil)
	const jobs = 50
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			res := deliver(t, d, job(fmt.Sprintf("b%d@example.net", i)))
			wantDelivered(t, res)
		})
	}
	wg.Wait()
	if n := len(r.Messages()); n != jobs {
		t.Errorf("receiver got %d messages, want %d", n, jobs)
	}
	if n := r.Connections(); n < 1 || n > 2 {
		t.Errorf("%d messages took %d connections, want 1-2", jobs, n)
	}
}

func TestReuse_MaxMessagesPerConnAndQuit(t *testing.T) {
	m := startRaw(t, &rawMX{pipelining: true})
	d := transportEnv(t, m.addr, Limits{MaxMessagesPerConn: 5}, nil)
	for i := range 20 {
		wantDelivered(t, deliver(t, d, job(fmt.Sprintf("b%d@example.net", i))))
	}
	if n := m.conns.Load(); n != 4 {
		t.Errorf("20 messages at 5 per connection took %d connections, want 4", n)
	}
	// The fourth connection reached its limit too: every one said QUIT.
	waitFor(t, func() bool { return m.quits.Load() == 4 }, "4 QUITs, got %d", m.quits.Load)
}

func TestReuse_IdleTimeoutAndCloseSayQuit(t *testing.T) {
	m := startRaw(t, &rawMX{pipelining: true})
	d := transportEnv(t, m.addr, Limits{IdleTimeout: 200 * time.Millisecond}, nil)
	wantDelivered(t, deliver(t, d, job("a@example.net")))
	waitFor(t, func() bool { return m.quits.Load() == 1 }, "QUIT after the idle timeout, got %d", m.quits.Load)

	d2 := transportEnv(t, m.addr, Limits{}, nil)
	wantDelivered(t, deliver(t, d2, job("b@example.net")))
	if m.quits.Load() != 1 {
		t.Fatalf("QUIT before Close")
	}
	d2.Close()
	if q := m.quits.Load(); q != 2 {
		t.Errorf("Close: %d QUITs in all, want 2", q)
	}
}

func TestPipelining_CommandsInOneWriteAndRSETBetween(t *testing.T) {
	for _, offered := range []bool{true, false} {
		t.Run(fmt.Sprintf("offered=%v", offered), func(t *testing.T) {
			m := startRaw(t, &rawMX{pipelining: offered})
			rec := &recorder{}
			d := transportEnv(t, m.addr, Limits{}, rec.dial)
			wantDelivered(t, deliver(t, d, job("a@example.net", "b@example.net", "c@example.net")))
			wantDelivered(t, deliver(t, d, job("d@example.net")))
			if n := m.conns.Load(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
			var batch, rset bool
			singles := 0
			for _, w := range rec.all() {
				if w == "MAIL FROM:<a@demo.example> SIZE=22\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n" {
					batch = true
				}
				if strings.HasPrefix(w, "RSET\r\n") {
					rset = true
				}
				if strings.Count(w, "\r\n") == 1 && (strings.HasPrefix(w, "MAIL") || strings.HasPrefix(w, "RCPT")) {
					singles++
				}
			}
			if batch != offered {
				t.Errorf("MAIL, RCPTs and DATA in one write: %v, want %v; writes %q", batch, offered, rec.all())
			}
			if !rset {
				t.Errorf("no RSET before the second transaction; writes %q", rec.all())
			}
			if !offered && singles != 6 {
				t.Errorf("without PIPELINING: %d single MAIL/RCPT writes, want 6", singles)
			}
		})
	}
}

func TestTransactions_RcptLimitAndReturnPathSplit(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	d := transportEnv(t, r.Addr(), Limits{MaxRcptsPerTxn: 2}, nil)
	j := job("a@example.net", "b@example.net", "c@example.net", "d@example.net", "e@example.net")
	wantDelivered(t, deliver(t, d, j))
	var sizes []int
	for _, m := range r.Messages() {
		sizes = append(sizes, len(m.Rcpts))
	}
	if fmt.Sprint(sizes) != "[2 2 1]" {
		t.Errorf("transactions of %v recipients, want [2 2 1]", sizes)
	}

	r2 := smtptest.Start(t, smtptest.Options{})
	d2 := transportEnv(t, r2.Addr(), Limits{}, nil)
	j = job("a@example.net", "b@example.net")
	j.ReturnPath = func(rcpt string) string { return "bounces+" + strings.Split(rcpt, "@")[0] + "@outflow.test" }
	wantDelivered(t, deliver(t, d2, j))
	var froms []string
	for _, m := range r2.Messages() {
		froms = append(froms, m.From+"→"+strings.Join(m.Rcpts, ","))
	}
	if fmt.Sprint(froms) != "[bounces+a@outflow.test→a@example.net bounces+b@outflow.test→b@example.net]" {
		t.Errorf("per-recipient return paths: %v", froms)
	}
	if n := r.Connections() + r2.Connections(); n != 2 {
		t.Errorf("%d connections, want one per receiver", n)
	}
}

func TestReuse_DeadConnectionRetriedOnce(t *testing.T) {
	tests := []struct {
		name string
		mx   *rawMX
	}{
		// The server closed the idle connection without a word.
		{"closed silently", &rawMX{pipelining: true, closeAfter: 1}},
		{"closed silently, no pipelining", &rawMX{closeAfter: 1}},
		// The server answers the second transaction with 421.
		{"421 on reuse", &rawMX{pipelining: true, mail421: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startRaw(t, tt.mx)
			d := transportEnv(t, m.addr, Limits{}, nil)
			for i := range 3 {
				res := deliver(t, d, job(fmt.Sprintf("b%d@example.net", i)))
				wantDelivered(t, res)
				if i > 0 && res.Reused {
					t.Errorf("job %d: reported as sent on a reused connection", i)
				}
			}
			if m.msgs.Load() != 3 || m.conns.Load() != 3 {
				t.Errorf("%d messages over %d connections, want 3 over 3", m.msgs.Load(), m.conns.Load())
			}
		})
	}
}

func TestReuse_421OnFreshConnectionDefers(t *testing.T) {
	m := startRaw(t, &rawMX{pipelining: true, mail421: 1})
	d := transportEnv(t, m.addr, Limits{}, nil)
	res := deliver(t, d, job("a@example.net", "b@example.net"))
	wantFailed(t, res, false, 421, "4.4.2")
	if m.conns.Load() != 1 {
		t.Errorf("%d connections, want 1 (a fresh connection's 421 is the answer)", m.conns.Load())
	}
}

func TestReuse_SourcesInTurnAndTimings(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	d := transportEnv(t, r.Addr(), Limits{}, nil)
	j := job("a@example.net")
	j.Sources = []pool.IP{source1, source2}
	first := deliver(t, d, j)
	wantDelivered(t, first)
	if first.Reused || first.Source.Address == "" || first.Site == "" {
		t.Errorf("first result %+v: want a new connection, a source and a site", first)
	}
	// The second job may reuse the first's connection or open one from
	// the other source; either way the receiver saw only pool addresses.
	wantDelivered(t, deliver(t, d, j))
	for _, m := range r.Messages() {
		if m.RemoteIP != source1.Address && m.RemoteIP != source2.Address {
			t.Errorf("message from %s, not a pool address", m.RemoteIP)
		}
	}
}

func waitFor(t *testing.T, ok func() bool, format string, arg func() int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, arg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
