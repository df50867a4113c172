// Package natsserver runs an embedded NATS server with JetStream, for
// "outflow all" (development, tests, small installations) and for
// "outflow nats" (a standalone server the other roles connect to).
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of the embedded server.
type Config struct {
	// Listen is host:port for clients; port 0 or -1 picks a free one.
	Listen string `yaml:"listen"`
	// StoreDir holds JetStream's files.
	StoreDir string `yaml:"store_dir"`
	// SyncAlways fsyncs every write before JetStream acknowledges it. Off,
	// JetStream flushes every SyncInterval and an acknowledged message can be
	// lost in a power failure (the Jepsen analysis of NATS 2.12.1).
	SyncAlways bool `yaml:"sync_always"`
	// SyncInterval is the flush interval when SyncAlways is off (NATS' default
	// is 2 minutes).
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// DefaultConfig returns the defaults: durable (fsync always), loopback only.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:4222", StoreDir: "./.data/nats", SyncAlways: true}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("nats.embedded.listen: %w", err)
	}
	if c.StoreDir == "" {
		return errors.New("nats.embedded.store_dir: required")
	}
	if c.SyncInterval < 0 {
		return errors.New("nats.embedded.sync_interval: must not be negative")
	}
	return nil
}

// Start runs the server and waits until it accepts clients. Call Shutdown
// and WaitForShutdown to stop it.
func Start(c Config) (*server.Server, error) {
	host, portS, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", c.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:   "outflow",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     c.StoreDir,
		SyncAlways:   c.SyncAlways,
		SyncInterval: c.SyncInterval,
		NoSigs:       true,
		// Bodies up to the inline limit plus headers travel in one message.
		MaxPayload: 1 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server: not ready after 15s")
	}
	return s, nil
}
