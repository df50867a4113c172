package shaping

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
)

// proc is one "sender process": its own NATS connection and Shaper.
type proc struct {
	nc     *nats.Conn
	shaper *Shaper

	mu     sync.Mutex
	events []*events.Event
}

func (p *proc) published() []*events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*events.Event(nil), p.events...)
}

// crash closes the process's connection without releasing anything.
func (p *proc) crash() {
	p.nc.Close()
	p.shaper.Close()
}

// startProc connects a new process to srv with opts (JS, Publish and Log
// filled in).
func startProc(tb testing.TB, srv *server.Server, opts Options) *proc {
	tb.Helper()
	js := natstest.Client(tb, srv)
	p := &proc{nc: js.Conn()}
	opts.JS = js
	opts.Publish = func(_ context.Context, e *events.Event) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.events = append(p.events, e)
		return nil
	}
	if opts.Config.ConnLease == 0 {
		opts.Config.ConnLease = DefaultConfig().ConnLease
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	p.shaper = s
	tb.Cleanup(func() {
		s.Close()
		p.nc.Close()
	})
	return p
}

func startNATS(tb testing.TB) *server.Server {
	tb.Helper()
	return natstest.Start(tb)
}

func intp(v int) *int { return &v }

func floatp(v float64) *float64 { return &v }

// eventually polls cond every 20 ms for up to d.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
