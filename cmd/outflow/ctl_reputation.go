package main

import (
	"context"
	"time"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/reputation"
	"github.com/outflowmail/outflow/services/analytics"
)

// currentFigures reads a tenant's figures now over the reputation loop's
// windows (the config's analytics.reputation.windows), one line per window,
// for "ctl tenant show". ClickHouse is reached with the config's
// analytics.clickhouse settings, bounded to a few seconds: tenant show must
// answer even while ClickHouse is down.
func currentFigures(ctx context.Context, configPath, id string) ([]string, error) {
	chc, rc := chstore.DefaultConfig(), analytics.DefaultReputationConfig()
	if configPath != "" {
		cfg, err := app.Load(configPath)
		if err != nil {
			return nil, err
		}
		chc, rc = cfg.Analytics.ClickHouse, cfg.Analytics.Reputation
	}
	chc.DialTimeout = min(chc.DialTimeout, 2*time.Second)
	chc.QueryTimeout = min(chc.QueryTimeout, 5*time.Second)
	ctx, cancel := context.WithTimeout(ctx, chc.DialTimeout+chc.QueryTimeout)
	defer cancel()
	store, err := chstore.Open(ctx, chc)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	figs, err := reputation.Figures(ctx, store.Conn(), []string{id}, time.Now(), rc.Windows)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, f := range figs[id] {
		out = append(out, f.String())
	}
	return out, nil
}
