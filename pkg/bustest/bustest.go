// Package bustest connects pkg/bus to a real embedded NATS JetStream server
// for tests. It is apart from pkg/natstest because pkg/bus's own tests use
// natstest, so natstest cannot import bus.
package bustest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/natstest"
)

// connectTimeout bounds declaring the streams and buckets on a loopback
// server; far longer means the server is broken, not slow.
const connectTimeout = 10 * time.Second

// Start runs an embedded JetStream server (natstest.Start) and connects a bus
// to it with a discarding logger; see ConnectTo.
func Start(tb testing.TB, edits ...func(*bus.Config)) *bus.Bus {
	tb.Helper()
	return ConnectTo(tb, natstest.Start(tb).ClientURL(), nil, edits...)
}

// ConnectTo connects a bus to the NATS server at url with the default
// configuration changed by edits, logging to log (nil discards), and closes
// it when the test ends.
func ConnectTo(tb testing.TB, url string, log *slog.Logger, edits ...func(*bus.Config)) *bus.Bus {
	tb.Helper()
	cfg := bus.DefaultConfig()
	cfg.URL = url
	for _, edit := range edits {
		edit(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	b, err := bus.Connect(ctx, cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	return b
}
