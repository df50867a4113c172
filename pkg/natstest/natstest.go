// Package natstest starts a real embedded NATS JetStream server for tests.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/natsserver"
)

// Start runs a JetStream server on a free loopback port with its store in a
// temporary directory, and stops it when the test ends.
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	return StartDir(tb, tb.TempDir())
}

// StartSync is Start with JetStream's sync_always as given (an fsync
// before every ack, as production runs it), for benchmarks that compare
// the two.
func StartSync(tb testing.TB, syncAlways bool) *server.Server {
	tb.Helper()
	return start(tb, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: tb.TempDir(), SyncAlways: syncAlways})
}

// StartDir is Start with a given store directory, so a test can restart a
// server on the same data.
func StartDir(tb testing.TB, dir string) *server.Server {
	tb.Helper()
	return start(tb, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: dir})
}

func start(tb testing.TB, cfg natsserver.Config) *server.Server {
	tb.Helper()
	s, err := natsserver.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// JetStream is Start plus a JetStream client on a plain connection, closed
// when the test ends, for packages that use JetStream without pkg/bus.
func JetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	return Client(tb, Start(tb))
}

// Client is a JetStream client of s on a plain connection, closed when the
// test ends (or earlier through its Conn).
func Client(tb testing.TB, s *server.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}
