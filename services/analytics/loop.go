package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/reputation"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// ReputationConfig is the reputation loop (analytics.reputation): every
// Interval it reads each recently active tenant's figures over Windows from
// ClickHouse's rollups, applies Rules, and writes each state change to the
// tenant-policy KV bucket (which ingest and router watch) and to the
// policy_changes table.
type ReputationConfig struct {
	// Enabled runs the loop in the analytics role.
	Enabled bool `yaml:"enabled"`
	// Interval between evaluations.
	Interval time.Duration `yaml:"interval"`
	// Windows are the sliding windows every rule is evaluated over; the
	// longest also says which tenants "sent recently".
	Windows []time.Duration `yaml:"windows"`
	// Rules are the thresholds, floors, hysteresis and cool-down.
	Rules reputation.Rules `yaml:"rules"`
}

// DefaultReputationConfig returns the defaults.
func DefaultReputationConfig() ReputationConfig {
	return ReputationConfig{
		Enabled:  true,
		Interval: 10 * time.Second,
		Windows:  []time.Duration{15 * time.Minute, time.Hour, 24 * time.Hour},
		Rules:    reputation.DefaultRules(),
	}
}

// Validate names the first bad key.
func (c ReputationConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.Interval < 100*time.Millisecond {
		return errors.New("analytics.reputation.interval: must be at least 100ms")
	}
	if len(c.Windows) == 0 {
		return errors.New("analytics.reputation.windows: at least one window")
	}
	for i, w := range c.Windows {
		if w < time.Minute {
			return fmt.Errorf("analytics.reputation.windows[%d]: %v is shorter than the rollups' minute", i, w)
		}
	}
	return c.Rules.Validate("analytics.reputation.rules")
}

// LoopBy is the "by" of the policies the loop writes.
const LoopBy = "reputation-loop"

// loop is the reputation loop of one analytics process. Several processes
// may run it: a change is written to KV with compare-and-set on the
// revision the decision was made from, so only one of them makes it, and
// only that one writes its policy_changes row.
type loop struct {
	cfg    ReputationConfig
	conn   driver.Conn
	policy jetstream.KeyValue
	log    *slog.Logger
	now    func() time.Time
	// pending are change rows whose insert failed, retried every tick.
	pending []changeRow
}

type changeRow struct {
	id, tenant, from, to, rule, reason, figures, by string
	time                                            time.Time
	window                                          time.Duration
}

func (l *loop) run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if err := l.tick(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("reputation loop", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick evaluates every tenant with figures in the windows and every tenant
// in a state other than good (which may recover without sending).
func (l *loop) tick(ctx context.Context) error {
	l.flushPending(ctx)
	now := l.now()
	figs, err := reputation.Figures(ctx, l.conn, nil, now, l.cfg.Windows)
	if err != nil {
		return err
	}
	tenants := make([]string, 0, len(figs))
	for id := range figs {
		tenants = append(tenants, id)
	}
	keys, err := l.policy.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return fmt.Errorf("list policies: %w", err)
	}
	if keys != nil {
		for k := range keys.Keys() {
			tenants = append(tenants, k)
		}
	}
	slices.Sort(tenants)
	var errs []error
	for _, id := range slices.Compact(tenants) {
		if err := l.evaluate(ctx, id, figs[id], now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *loop) evaluate(ctx context.Context, id string, figs []reputation.TenantFigures, now time.Time) error {
	cur := tenant.Policy{State: tenant.StateGood}
	var rev uint64
	e, err := l.policy.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("policy %s: %w", id, err)
	default:
		rev = e.Revision()
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return fmt.Errorf("policy %s: decode: %w", id, err)
		}
	}
	d := l.cfg.Rules.Decide(cur, figs, now)
	if !d.Change {
		return nil
	}
	fm := reputation.FigureMap(figs)
	p := tenant.Policy{State: d.To, Reason: d.Reason, Figures: fm, Since: now.UTC(), By: LoopBy}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("policy %s: encode: %w", id, err)
	}
	// Compare-and-set on the revision decided from: an operator's pin or
	// another analytics process's change in between wins, and this
	// decision is dropped (the next tick decides again from the new state).
	var newRev uint64
	if rev == 0 {
		newRev, err = l.policy.Create(ctx, id, b)
	} else {
		newRev, err = l.policy.Update(ctx, id, b, rev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			l.log.Info("tenant policy changed meanwhile; decision dropped", "tenant", id)
			return nil
		}
		return fmt.Errorf("policy %s: write: %w", id, err)
	}
	l.log.Info("tenant state changed", "tenant", id, "from", d.From, "to", d.To, "rule", d.Rule, "reason", d.Reason)
	figJSON, _ := json.Marshal(fm)
	l.pending = append(l.pending, changeRow{
		id: fmt.Sprintf("%s/%d", id, newRev), tenant: id, from: string(d.From), to: string(d.To),
		rule: d.Rule, reason: d.Reason, figures: string(figJSON), by: LoopBy, time: now.UTC(), window: d.Window,
	})
	l.flushPending(ctx)
	return nil
}

// flushPending inserts the change rows not yet stored.
func (l *loop) flushPending(ctx context.Context) {
	if len(l.pending) == 0 {
		return
	}
	if err := insertChanges(ctx, l.conn, l.pending); err != nil {
		l.log.Warn("policy_changes insert; retried next tick", "rows", len(l.pending), "err", err)
		return
	}
	l.pending = l.pending[:0]
}

func insertChanges(ctx context.Context, conn driver.Conn, rows []changeRow) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO policy_changes (change_id, time, tenant, from_state, to_state, rule, reason, window_seconds, figures, by)")
	if err != nil {
		return fmt.Errorf("policy_changes: %w", err)
	}
	for _, r := range rows {
		if err := batch.Append(r.id, r.time.Truncate(time.Second), r.tenant, r.from, r.to, r.rule, r.reason,
			uint32(r.window/time.Second), r.figures, r.by); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("policy_changes: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("policy_changes: %w", err)
	}
	return nil
}
