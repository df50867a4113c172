package sender

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/dnsbl"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/shaping"
)

// startShaping builds the Shaper every sender process shares state with
// (the NATS KV bucket "shaping") and, when blocklist zones are configured,
// runs the DNSBL monitor of every pool address beside it. stop ends both.
func startShaping(ctx context.Context, cfg Config, pools pool.Set, b *bus.Bus, log *slog.Logger, name string) (*shaping.Shaper, func(), error) {
	sh, err := shaping.New(ctx, shaping.Options{
		Config: cfg.Shaping, Warmup: cfg.Warmup, JS: b.JS, Replicas: b.Config().Replicas,
		Pools: pools, Publish: b.PublishEvent, Sender: name, Log: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sender.shaping: %w", err)
	}
	if len(cfg.DNSBL.Zones) == 0 {
		return sh, sh.Close, nil
	}
	kv, err := shaping.Bucket(ctx, b.JS, b.Config().Replicas)
	if err != nil {
		sh.Close()
		return nil, nil, fmt.Errorf("sender.dnsbl: %w", err)
	}
	dc := cfg.DNSBL
	if dc.Resolver == "" {
		dc.Resolver = cfg.Resolver
	}
	var ips []string
	for _, p := range pools {
		for _, ip := range p.IPs {
			ips = append(ips, ip.Address)
		}
	}
	mon, err := dnsbl.New(dnsbl.Options{Config: dc, KV: kv, IPs: ips, Publish: b.PublishEvent, Log: log})
	if err != nil {
		sh.Close()
		return nil, nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mon.Run(mctx); err != nil {
			log.Error("dnsbl monitor stopped", "err", err)
		}
	})
	return sh, func() {
		cancel()
		wg.Wait()
		sh.Close()
	}, nil
}
