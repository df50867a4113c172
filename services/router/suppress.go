package router

import (
	"context"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/suppression"
)

// received is the message's received time, the same in every copy of its
// events (ClickHouse collapses copies only within a partition), or now.
func received(env *envelope.Envelope, now time.Time) time.Time {
	if env.Received.IsZero() {
		return now.UTC()
	}
	return env.Received.UTC()
}

// suppress drops the recipients on the tenant's suppression list from env,
// with a suppressed event for each, before anything is routed. It reports
// whether no recipient is left: the message is then finished, and its
// stored body (if any) is released. The events' ids are derived from the
// message and recipient, so a redelivered message does not count twice.
func suppress(ctx context.Context, sl *suppression.List, b *bus.Bus, env *envelope.Envelope, now time.Time) (finished bool, err error) {
	keep, dropped := sl.Filter(env.Tenant, env.Rcpts, now)
	for _, e := range dropped {
		ev := &events.Event{
			ID: env.ID + ".suppressed." + suppression.AddressHash(e.Address), Type: events.TypeSuppressed,
			Time: received(env, now), Tenant: env.Tenant, MsgID: env.ID,
		}
		ev.Suppressed = &events.Suppressed{Rcpt: e.Address, Reason: e.Reason, Source: e.Source, Since: e.Created}
		if err := b.PublishEvent(ctx, ev); err != nil {
			return false, err
		}
	}
	env.Rcpts = keep
	if len(keep) > 0 {
		return false, nil
	}
	return true, b.ReleaseBody(ctx, env)
}
