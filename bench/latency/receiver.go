package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// seqHeader carries "<run>.<seq>" in every message the tool submits.
const seqHeader = "X-Bench-Seq"

// arrivals is what the receiver has seen.
type arrivals struct {
	first      map[int]time.Time // seq → when its first copy had been read in full
	duplicates int               // further copies of a seq already seen
	foreign    int               // messages without our run's header
}

// receiver is the SMTP server the system under test relays to. It accepts
// everything and notes when each of this run's messages arrived.
type receiver struct {
	srv  *smtp.Server
	ln   net.Listener
	done chan struct{}
	run  string

	mu      sync.Mutex
	got     arrivals
	changed chan struct{} // closed and replaced on every arrival
}

func startReceiver(addr, run string) (*receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	r := &receiver{ln: ln, done: make(chan struct{}), run: run,
		got: arrivals{first: map[int]time.Time{}}, changed: make(chan struct{})}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{r: r}, nil
	}))
	r.srv.Domain = "latency.bench.localhost"
	r.srv.ReadTimeout = time.Minute
	r.srv.WriteTimeout = time.Minute
	r.srv.MaxMessageBytes = 64 << 20
	r.srv.ErrorLog = discardLogger{}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

func (r *receiver) addr() string { return r.ln.Addr().String() }

// close stops the server, ending sessions still open (the system under
// test may keep idle connections to its relay), and waits for it.
func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
	}
	<-r.done
}

func (r *receiver) note(seq int, ok bool, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch _, seen := r.got.first[seq]; {
	case !ok:
		r.got.foreign++
	case seen:
		r.got.duplicates++
	default:
		r.got.first[seq] = at
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// snapshot returns a copy of the arrivals so far.
func (r *receiver) snapshot() arrivals {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.got
	a.first = make(map[int]time.Time, len(r.got.first))
	for k, v := range r.got.first {
		a.first[k] = v
	}
	return a
}

// delivered counts the distinct messages of this run seen so far.
func (r *receiver) delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got.first)
}

// logProgress logs the arrivals so far every interval until ctx ends, so
// that a long run (make soak) can be watched, and sampled, while it runs.
func logProgress(ctx context.Context, log *slog.Logger, r *receiver, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			log.Info("progress", "delivered", r.delivered())
		case <-ctx.Done():
			return
		}
	}
}

// errArrivalTimeout: some accepted messages had not arrived in time.
var errArrivalTimeout = errors.New("latency: timed out waiting for arrivals")

// waitFor returns once every seq in want has arrived, or with an error when
// wait passes or ctx ends first.
func (r *receiver) waitFor(ctx context.Context, want []int, wait time.Duration) error {
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		changed, all := r.changed, true
		for _, s := range want {
			if _, ok := r.got.first[s]; !ok {
				all = false
				break
			}
		}
		r.mu.Unlock()
		if all {
			return nil
		}
		select {
		case <-changed:
		case <-timeout.C:
			return fmt.Errorf("after %v: %w", wait, errArrivalTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// parseSeq reads "<run>.<seq>" and reports whether it belongs to run.
func parseSeq(v, run string) (int, bool) {
	id, n, ok := strings.Cut(strings.TrimSpace(v), ".")
	if !ok || id != run {
		return 0, false
	}
	seq, err := strconv.Atoi(n)
	if err != nil || seq < 0 {
		return 0, false
	}
	return seq, true
}

type session struct{ r *receiver }

var _ smtp.Session = (*session)(nil)

func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }

// Data takes the sequence from the header and counts the message as
// arrived once all of it has been read: that is when a real MX would have
// it, just before its 250.
func (s *session) Data(rd io.Reader) error {
	br := bufio.NewReader(rd)
	h, herr := textproto.NewReader(br).ReadMIMEHeader()
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read data: %w", err)
	}
	at := time.Now()
	seq, ok := 0, false
	if herr == nil {
		seq, ok = parseSeq(h.Get(seqHeader), s.r.run)
	}
	s.r.note(seq, ok, at)
	return nil
}

// discardLogger silences go-smtp's per-connection error log: a system
// closing its idle relay connections at shutdown is not news.
type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}
