// Package bustest connects pkg/bus to a real embedded NATS JetStream server
// for tests. It is apart from pkg/natstest because pkg/bus's own tests use
// natstest, so natstest cannot import bus.
package bustest

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// Count returns how many messages a stream holds on subject (every
// subject when empty), counting each message inside a batch (the
// Outflow-Batch header; pkg/bus batch.go): messages published at once
// share stream messages, so the stream's own count is fewer.
func Count(tb testing.TB, b *bus.Bus, stream, subject string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed (acked from a work queue, or deleted)
		}
		if err != nil {
			tb.Fatal(err)
		}
		if subject != "" && m.Subject != subject {
			continue
		}
		k, err := strconv.ParseUint(m.Header.Get(bus.HeaderBatch), 10, 64)
		if err != nil {
			k = 1
		}
		n += k
	}
	return n
}
