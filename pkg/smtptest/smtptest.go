// Package smtptest runs a recording SMTP receiver for tests: a real go-smtp
// server on loopback that keeps every message it accepts (envelope, data,
// the connection's source address) and counts connections, and whose every
// stage (connection, EHLO, MAIL, each RCPT, DATA) can be made to fail with a
// chosen reply. The sender's tests deliver to it over real sockets.
package smtptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message the receiver accepted.
type Message struct {
	From  string
	Rcpts []string
	Data  []byte
	// RemoteIP is the source address of the connection that carried it.
	RemoteIP string
	// Helo is the name the client greeted with (after STARTTLS, if used).
	Helo string
	TLS  bool
	Time time.Time
}

// Hooks decide, stage by stage, whether the receiver accepts. A nil hook
// accepts. A hook fails the stage by returning an error: a reply made with
// Reply is sent as is; ErrDrop (Connect only) closes the connection
// without a word; any other error is sent as "554 5.0.0 <error>".
type Hooks struct {
	// Connect runs when a connection is accepted; an error replaces the 220
	// greeting (RFC 5321 3.1: a 554 greeting refuses the session) and the
	// connection is closed.
	Connect func(remoteIP string) error
	// Hello runs on the first EHLO or HELO of a session (again after
	// STARTTLS, which resets the session, RFC 3207 4.2).
	Hello func(name string) error
	// Mail runs on MAIL FROM.
	Mail func(from string) error
	// Rcpt runs on each RCPT TO.
	Rcpt func(rcpt string) error
	// Data runs when the message has been read; m is what would be
	// recorded.
	Data func(m Message) error
}

// ErrDrop makes the Connect hook close the connection without a reply.
var ErrDrop = errors.New("smtptest: drop connection")

// Reply returns an SMTP reply for a hook to fail with, such as
// Reply(450, "4.2.1", "mailbox busy").
func Reply(code int, enhanced, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text, EnhancedCode: smtp.NoEnhancedCode}
	if parts := strings.Split(enhanced, "."); len(parts) == 3 {
		for i, p := range parts {
			e.EnhancedCode[i], _ = strconv.Atoi(p)
		}
	}
	return e
}

// Options configure a receiver.
type Options struct {
	// Addr to listen on; default 127.0.0.1:0. Tests that need several MX
	// hosts on one port listen on other loopback addresses (127.0.0.10:P).
	Addr string
	// TLS offers STARTTLS with a self-signed certificate.
	TLS bool
	// TLSConfig, when TLS is set, is the server's TLS configuration (to
	// limit versions, say); a self-signed certificate is added if it has
	// none.
	TLSConfig *tls.Config
	Hooks     Hooks
}

// Receiver is a running recording SMTP server.
type Receiver struct {
	addr  string
	conns atomic.Int64

	mu       sync.Mutex
	hooks    Hooks
	messages []Message
	changed  chan struct{} // closed and replaced whenever a message arrives
}

// Start runs a receiver until the test ends.
func Start(tb testing.TB, opts Options) *Receiver {
	tb.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		tb.Fatalf("smtptest: listen %s: %v", opts.Addr, err)
	}
	r := &Receiver{addr: l.Addr().String(), hooks: opts.Hooks, changed: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(r.newSession))
	srv.Domain = "mx.smtptest.invalid"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 64 << 20
	srv.ErrorLog = discardLogger{}
	if opts.TLS {
		cert, err := selfSigned()
		if err != nil {
			tb.Fatalf("smtptest: certificate: %v", err)
		}
		cfg := &tls.Config{}
		if opts.TLSConfig != nil {
			cfg = opts.TLSConfig.Clone()
		}
		if len(cfg.Certificates) == 0 {
			cfg.Certificates = []tls.Certificate{cert}
		}
		srv.TLSConfig = cfg
	}
	done := make(chan struct{})
	ln := &listener{Listener: l, r: r, open: map[net.Conn]struct{}{}}
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		// The sessions must end at once, but go-smtp's Server.Close reads
		// each session's connection while a STARTTLS in progress replaces
		// it (a data race in v0.25.1). So the raw connections are closed
		// here, which ends every session, and Shutdown only waits for them.
		ln.closeAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	})
	return r
}

// Addr is the host:port the receiver listens on.
func (r *Receiver) Addr() string { return r.addr }

// Port is the port the receiver listens on.
func (r *Receiver) Port() string {
	_, port, _ := net.SplitHostPort(r.addr)
	return port
}

// SetHooks replaces the hooks, for tests whose receiver changes its mind
// (defers, then accepts).
func (r *Receiver) SetHooks(h Hooks) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = h
}

// Connections is how many connections the receiver has accepted.
func (r *Receiver) Connections() int { return int(r.conns.Load()) }

// Messages returns the accepted messages in arrival order.
func (r *Receiver) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.messages...)
}

// Wait waits for at least n messages and returns them. It fails the test
// when 15 seconds pass without a new message, or 3 minutes in all: a slow
// machine (race detector, parallel packages) may take long, a stalled flow
// is still caught quickly.
func (r *Receiver) Wait(tb testing.TB, n int) []Message {
	tb.Helper()
	const stall, limit = 15 * time.Second, 3 * time.Minute
	deadline := time.After(limit)
	for {
		r.mu.Lock()
		got, changed := len(r.messages), r.changed
		r.mu.Unlock()
		if got >= n {
			return r.Messages()
		}
		select {
		case <-changed:
		case <-time.After(stall):
			tb.Fatalf("smtptest: %d messages, want %d; none for %s", got, n, stall)
		case <-deadline:
			tb.Fatalf("smtptest: %d messages after %s, want %d", got, limit, n)
		}
	}
}

func (r *Receiver) hooksNow() Hooks {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hooks
}

func (r *Receiver) record(m Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, m)
	close(r.changed)
	r.changed = make(chan struct{})
}

// listener counts connections and runs the Connect hook, answering a
// refused connection itself: go-smtp always greets with 220.
type listener struct {
	net.Listener
	r *Receiver

	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
}

// closeAll stops accepting and closes every accepted connection.
func (l *listener) closeAll() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.open {
		_ = c.Close()
	}
}

// track remembers c until it is closed; false when the receiver is closing.
func (l *listener) track(c net.Conn) (net.Conn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, false
	}
	tc := &trackedConn{Conn: c, l: l}
	l.open[c] = struct{}{}
	return tc, true
}

// trackedConn forgets itself in its listener when closed.
type trackedConn struct {
	net.Conn
	l    *listener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c.Conn)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.r.conns.Add(1)
		var refused error
		if hook := l.r.hooksNow().Connect; hook != nil {
			refused = hook(remoteIP(c))
		}
		if refused == nil {
			tc, ok := l.track(c)
			if !ok {
				_ = c.Close()
				return nil, net.ErrClosed
			}
			return tc, nil
		}
		if !errors.Is(refused, ErrDrop) {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, replyLine(refused))
		}
		_ = c.Close()
	}
}

func replyLine(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Sprintf("554 5.0.0 %s\r\n", err)
	}
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode == smtp.EnhancedCodeNotSet {
		return fmt.Sprintf("%d %s\r\n", se.Code, se.Message)
	}
	ec := se.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", se.Code, ec[0], ec[1], ec[2], se.Message)
}

func (r *Receiver) newSession(c *smtp.Conn) (smtp.Session, error) {
	if h := r.hooksNow().Hello; h != nil {
		if err := h(c.Hostname()); err != nil {
			return nil, asReply(err)
		}
	}
	_, isTLS := c.TLSConnectionState()
	return &session{r: r, remoteIP: remoteIP(c.Conn()), helo: c.Hostname(), tls: isTLS}, nil
}

// asReply makes any hook error an SMTP reply, so that go-smtp sends its code.
func asReply(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return Reply(554, "5.0.0", err.Error())
}

type session struct {
	r        *Receiver
	remoteIP string
	helo     string
	tls      bool
	from     string
	rcpts    []string
}

var _ smtp.Session = (*session)(nil)

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if h := s.r.hooksNow().Mail; h != nil {
		if err := h(from); err != nil {
			return asReply(err)
		}
	}
	s.from, s.rcpts = from, nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if h := s.r.hooksNow().Rcpt; h != nil {
		if err := h(to); err != nil {
			return asReply(err)
		}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(rd io.Reader) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	m := Message{From: s.from, Rcpts: append([]string(nil), s.rcpts...), Data: data,
		RemoteIP: s.remoteIP, Helo: s.helo, TLS: s.tls, Time: time.Now()}
	if h := s.r.hooksNow().Data; h != nil {
		if err := h(m); err != nil {
			return asReply(err)
		}
	}
	s.r.record(m)
	return nil
}

func (s *session) Reset() { s.from, s.rcpts = "", nil }

func (s *session) Logout() error { return nil }

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// selfSigned makes a throwaway certificate; clients of this receiver do not
// verify it (opportunistic TLS, RFC 7435).
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.smtptest.invalid"},
		DNSNames:     []string{"mx.smtptest.invalid", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}
