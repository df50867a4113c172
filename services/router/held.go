package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// Held mail: a suspended tenant's classified messages are not routed but
// moved, as they are (envelope header, inline body or body reference), to
// the HELD stream under SubjectHeld + "." + tenant. They stay there until an
// operator releases them (back to the classified stream, routed by the
// tenant's state at that moment) or purges them (bodies released, a purged
// event each): `outflow ctl held list|release|purge TENANT`.
const (
	StreamHeld  = "HELD"
	SubjectHeld = "outflow.held"
	// TypePurged is the event of a held message an operator purged.
	TypePurged events.Type = "purged"
	// ReasonHeld is the route reason logged for held messages.
	ReasonHeld = "held"
)

// HeldSubject is the subject of a tenant's held messages.
func HeldSubject(tenantID string) string { return SubjectHeld + "." + tenantID }

// DeclareHeld creates (or updates) the HELD stream. It keeps messages until
// they are released or purged: no age limit, because held mail is an
// operator's decision to make, not the clock's.
func DeclareHeld(ctx context.Context, b *bus.Bus) (jetstream.Stream, error) {
	s, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamHeld,
		Description: "classified mail of suspended tenants, held for an operator",
		Subjects:    []string{SubjectHeld + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    b.Config().Replicas,
		Duplicates:  b.Config().Duplicates,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamHeld, err)
	}
	return s, nil
}

// hold moves a classified message to its tenant's held subject; the caller
// acks the original once this returns nil. The message id, the original's
// classified-stream sequence, makes a redelivered original held once, and a
// released message that is held again (a new sequence) held again.
func hold(ctx context.Context, b *bus.Bus, env *envelope.Envelope, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("hold %s: %w", env.ID, err)
	}
	hm := nats.NewMsg(HeldSubject(env.Tenant))
	hm.Header = m.Headers()
	hm.Data = m.Data()
	id := env.ID + ".held." + strconv.FormatUint(md.Sequence.Stream, 10)
	if _, err := b.JS.PublishMsg(ctx, hm, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("hold %s: %w", env.ID, err)
	}
	return nil
}

// HeldMessage is one held message.
type HeldMessage struct {
	Seq      uint64
	Held     time.Time
	Envelope *envelope.Envelope
}

// ListHeld returns a tenant's held messages, oldest first.
func ListHeld(ctx context.Context, b *bus.Bus, tenantID string) ([]HeldMessage, error) {
	var out []HeldMessage
	err := eachHeld(ctx, b, tenantID, func(hm HeldMessage, _ jetstream.Msg) error {
		out = append(out, hm)
		return nil
	})
	return out, err
}

// Release moves a tenant's held messages back to the classified stream, to be
// routed again (held again if the tenant is still suspended). It returns how
// many it moved.
func Release(ctx context.Context, b *bus.Bus, tenantID string) (int, error) {
	s, err := DeclareHeld(ctx, b)
	if err != nil {
		return 0, err
	}
	n := 0
	err = eachHeld(ctx, b, tenantID, func(hm HeldMessage, m jetstream.Msg) error {
		rm := nats.NewMsg(bus.SubjectClassified)
		rm.Header = m.Headers()
		rm.Data = m.Data()
		// A fresh message id: the classified stream may still remember the
		// original's within its duplicate window.
		id := hm.Envelope.ID + ".released." + strconv.FormatUint(hm.Seq, 10)
		if _, err := b.JS.PublishMsg(ctx, rm, jetstream.WithMsgID(id)); err != nil {
			return fmt.Errorf("release %s: %w", hm.Envelope.ID, err)
		}
		if err := s.DeleteMsg(ctx, hm.Seq); err != nil {
			return fmt.Errorf("release %s: remove held copy: %w", hm.Envelope.ID, err)
		}
		n++
		return nil
	})
	return n, err
}

// Purge deletes a tenant's held messages: each body is released, a purged
// event published (so that ClickHouse and the tenant's webhooks learn the
// message's end), and the held copy removed. It returns how many it purged.
func Purge(ctx context.Context, b *bus.Bus, tenantID string) (int, error) {
	s, err := DeclareHeld(ctx, b)
	if err != nil {
		return 0, err
	}
	n := 0
	err = eachHeld(ctx, b, tenantID, func(hm HeldMessage, _ jetstream.Msg) error {
		env := hm.Envelope
		if err := b.ReleaseBody(ctx, env); err != nil {
			return fmt.Errorf("purge %s: %w", env.ID, err)
		}
		ev := &events.Event{ID: env.ID + ".purged", Type: TypePurged, Time: time.Now().UTC(),
			Tenant: env.Tenant, MsgID: env.ID}
		if err := b.PublishEvent(ctx, ev); err != nil {
			return fmt.Errorf("purge %s: %w", env.ID, err)
		}
		if err := s.DeleteMsg(ctx, hm.Seq); err != nil {
			return fmt.Errorf("purge %s: remove held copy: %w", env.ID, err)
		}
		n++
		return nil
	})
	return n, err
}

// eachHeld calls f for each held message of a tenant, oldest first, with an
// ordered consumer (nothing is acknowledged or left behind).
func eachHeld(ctx context.Context, b *bus.Bus, tenantID string, f func(HeldMessage, jetstream.Msg) error) error {
	if err := tenant.ValidID(tenantID); err != nil {
		return err
	}
	s, err := DeclareHeld(ctx, b)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(HeldSubject(tenantID)))
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamHeld, err)
	}
	want := info.State.Subjects[HeldSubject(tenantID)]
	if want == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{HeldSubject(tenantID)}})
	if err != nil {
		return fmt.Errorf("read %s: %w", StreamHeld, err)
	}
	for seen := uint64(0); seen < want; {
		batch, err := c.Fetch(int(min(want-seen, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", StreamHeld, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			seen++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", StreamHeld, err)
			}
			env, err := envelope.Decode(m.Headers())
			if err != nil {
				return fmt.Errorf("held message %d: %w", md.Sequence.Stream, err)
			}
			if err := f(HeldMessage{Seq: md.Sequence.Stream, Held: md.Timestamp, Envelope: env}, m); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", StreamHeld, err)
		}
		if got == 0 {
			break // fewer than counted: some were removed meanwhile
		}
	}
	return nil
}
