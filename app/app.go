// Package app composes the roles into the outflow binary's targets: each
// role alone ("outflow sender") or all of them in one process with an
// embedded NATS server ("outflow all"), started in dependency order and
// stopped in reverse, like Loki's -target.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/classify"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/metrics"
	"github.com/outflowmail/outflow/pkg/natsserver"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/pkg/verp"
	"github.com/outflowmail/outflow/services/analytics"
	"github.com/outflowmail/outflow/services/capture"
	"github.com/outflowmail/outflow/services/classifier"
	"github.com/outflowmail/outflow/services/feedback"
	"github.com/outflowmail/outflow/services/ingest"
	"github.com/outflowmail/outflow/services/router"
	"github.com/outflowmail/outflow/services/sender"
)

// Roles, in the order they start (downstream first, so that every stage's
// consumer exists before mail reaches it); they stop in reverse, so ingest
// stops accepting before anything behind it stops.
var Roles = []string{"analytics", "feedback", "sender", "router", "classifier", "ingest"}

// NewLogger builds the process logger from the log section.
func NewLogger(c LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// RunAll runs every role in this process. With an empty nats.url it starts
// the embedded NATS server first and stops it last.
func RunAll(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if cfg.NATS.URL == "" {
		ns, err := startEmbedded(cfg, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		cfg.NATS.URL = ns.ClientURL()
		cfg.NATS.InProcess = ns
	}
	return Run(ctx, cfg, Roles, log)
}

// RunNATS runs only the embedded NATS server, for installations whose roles
// run as separate processes without a NATS deployment of their own.
func RunNATS(ctx context.Context, cfg *Config, log *slog.Logger) error {
	ns, err := startEmbedded(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, ns.ClientURL())
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

func startEmbedded(cfg *Config, log *slog.Logger) (*server.Server, error) {
	ns, err := natsserver.Start(cfg.NATS.Embedded)
	if err != nil {
		return nil, err
	}
	log.Info("embedded nats", "url", ns.ClientURL(), "store_dir", cfg.NATS.Embedded.StoreDir,
		"sync_always", cfg.NATS.Embedded.SyncAlways)
	return ns, nil
}

// Run connects to NATS and runs the named roles until ctx ends.
func Run(ctx context.Context, cfg *Config, roles []string, log *slog.Logger) error {
	for _, r := range roles {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("unknown role %q", r)
		}
	}
	bc := cfg.NATS.Config
	bc.Name = "outflow " + fmt.Sprint(roles)
	b, err := bus.Connect(ctx, bc, log)
	if err != nil {
		return err
	}
	defer b.Close()
	store := tenant.Store{Tenants: b.Tenants, Policy: b.Policy}
	if err := seedTenants(ctx, store, cfg.Tenants, log); err != nil {
		return err
	}

	// Background services the roles share, stopped after them.
	bgCtx, bgCancel := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	defer func() { bgCancel(); bg.Wait() }()
	dir := tenant.NewDirectory()
	bg.Add(1)
	go func() {
		defer bg.Done()
		if err := dir.Run(bgCtx, store, log); err != nil {
			log.Error("tenant directory", "err", err)
		}
	}()
	reg := metrics.NewRegistry()
	if cfg.Metrics.Listen != "" {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := metrics.Serve(bgCtx, cfg.Metrics, reg, log); err != nil {
				log.Error("metrics endpoint", "err", err)
			}
		}()
	}
	if cfg.Capture.Enabled {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := capture.Run(bgCtx, cfg.Capture.Config, log.With("role", "capture")); err != nil {
				log.Error("capture receiver", "err", err)
			}
		}()
	}
	select {
	case <-dir.Ready():
	case <-ctx.Done():
		return nil
	}

	var started []runningRole
	failed := make(chan error, len(roles))
	for _, name := range Roles {
		if !slices.Contains(roles, name) {
			continue
		}
		start, err := roleFunc(name, cfg, b, dir, reg, log.With("role", name))
		if err != nil {
			stopAll(started)
			return err
		}
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := runningRole{name: name, cancel: cancel, done: make(chan error, 1)}
		go func() {
			err := start(rctx)
			if err != nil && rctx.Err() == nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
			r.done <- err
		}()
		started = append(started, r)
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-failed:
		log.Error("role failed; shutting down", "err", runErr)
	}
	stopAll(started)
	return runErr
}

// runningRole is a started role: cancel stops it, done reports its end.
type runningRole struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// stopAll stops roles in reverse start order, each completely before the
// next, so that no stage is left without its downstream while it drains.
func stopAll(started []runningRole) {
	for i := len(started) - 1; i >= 0; i-- {
		started[i].cancel()
		<-started[i].done
	}
}

func roleFunc(name string, cfg *Config, b *bus.Bus, dir *tenant.Directory, reg *metrics.Registry, log *slog.Logger) (func(context.Context) error, error) {
	switch name {
	case "ingest":
		return func(ctx context.Context) error { return ingest.Run(ctx, cfg.Ingest, b, dir, log) }, nil
	case "classifier":
		eng, err := classify.New(cfg.Classifier.Engine)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			return classifier.Run(ctx, cfg.Classifier.Config, engineScorer{eng}, b, log)
		}, nil
	case "router":
		return func(ctx context.Context) error { return router.Run(ctx, cfg.Router, cfg.Pools, dir, b, log) }, nil
	case "sender":
		return func(ctx context.Context) error {
			return sender.RunWith(ctx, cfg.Sender, cfg.Pools, b, log, sender.Options{Policies: dir})
		}, nil
	case "analytics":
		return func(ctx context.Context) error {
			return analytics.Run(ctx, cfg.Analytics, b, log, analytics.WithMetrics(reg))
		}, nil
	case "feedback":
		codec, err := verpCodec(cfg)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return feedback.Run(ctx, cfg.Feedback, b, codec, dir, reg, log) }, nil
	}
	return nil, fmt.Errorf("unknown role %q", name)
}

// verpCodec is the sender's VERP codec, for the feedback worker to read the
// return paths back; nil when VERP is off.
func verpCodec(cfg *Config) (*verp.Codec, error) {
	if cfg.Sender.VERP.Domain == "" {
		return nil, nil
	}
	return verp.New(cfg.Sender.VERP)
}

// engineScorer adapts the spam engine to the classifier role's interface.
type engineScorer struct{ e *classify.Engine }

func (s engineScorer) Score(ctx context.Context, msg []byte) (envelope.Verdict, error) {
	v, err := s.e.Classify(ctx, msg)
	if err != nil {
		return envelope.Verdict{}, err
	}
	out := envelope.Verdict{Score: v.Score, Label: string(v.Label), Fingerprint: v.Fingerprint, Model: v.Model}
	for _, sym := range v.Symbols {
		out.Symbols = append(out.Symbols, envelope.Symbol{Name: sym.Name, Weight: sym.Weight})
	}
	return out, nil
}

// seedTenants creates the configured tenants that do not exist yet.
func seedTenants(ctx context.Context, s tenant.Store, seeds []SeedTenant, log *slog.Logger) error {
	for _, seed := range seeds {
		t, err := seed.Tenant()
		if err != nil {
			return err
		}
		if _, err := s.Get(ctx, t.ID); err == nil {
			continue
		} else if !errors.Is(err, tenant.ErrNotFound) {
			return err
		}
		t.Created = time.Now().UTC()
		if err := s.Create(ctx, t); errors.Is(err, tenant.ErrExists) {
			continue // another process seeded it first
		} else if err != nil {
			return err
		}
		log.Info("seeded tenant", "tenant", t.ID)
	}
	return nil
}
