// Package held keeps the mail of suspended tenants out of delivery until an
// operator decides: the router moves a suspended tenant's classified
// messages here instead of routing them, and the sender moves its queued
// delivery jobs (retries included) here instead of sending them. Each held
// message remembers the subject it came from, so that releasing it puts it
// back where it was: a classified message is routed again, a delivery job
// goes back to its pool. Purging ends them for good.
package held

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
	"github.com/outflowmail/outflow/pkg/jsdeclare"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// Held messages are kept as they were (envelope header, inline body or body
// reference) in the HELD stream under Subject + "." + tenant, until an
// operator releases or purges them: `outflow ctl held list|release|purge
// TENANT`.
const (
	Stream  = "HELD"
	Subject = "outflow.held"
	// HeaderFrom names the subject a held message came from.
	HeaderFrom = "Outflow-Held-From"
)

// TenantSubject is the subject of a tenant's held messages.
func TenantSubject(tenantID string) string { return Subject + "." + tenantID }

// Declare creates (or updates) the HELD stream. It keeps messages until
// they are released or purged: no age limit, because held mail is an
// operator's decision to make, not the clock's.
func Declare(ctx context.Context, b *bus.Bus) (jetstream.Stream, error) {
	s, err := jsdeclare.Stream(ctx, b.JS, jetstream.StreamConfig{
		Name:        Stream,
		Description: "classified mail of suspended tenants, held for an operator",
		Subjects:    []string{Subject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    b.Config().Replicas,
		Duplicates:  b.Config().Duplicates,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Hold moves a consumed message (a classified message or a delivery job) to
// its tenant's held subject; the caller acks the original once this returns
// nil. The message id names the original's stream, sequence and job, so
// that a redelivered original is held once, and a released message that is
// held again (a new sequence) is held again.
func Hold(ctx context.Context, b *bus.Bus, env *envelope.Envelope, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("hold %s: %w", env.ID, err)
	}
	hm := nats.NewMsg(TenantSubject(env.Tenant))
	hm.Header = m.Headers()
	hm.Header.Set(HeaderFrom, m.Subject())
	hm.Data = m.Data()
	// The job id too: the messages of a spool batch share one sequence.
	id := md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10) + "." + env.JobID() + ".held"
	if _, err := b.JS.PublishMsg(ctx, hm, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("hold %s: %w", env.ID, err)
	}
	return nil
}

// Message is one held message.
type Message struct {
	Seq  uint64
	Held time.Time
	// From is the subject it came from: the classified stream's, or a
	// pool's delivery jobs'.
	From     string
	Envelope *envelope.Envelope
}

// List returns a tenant's held messages, oldest first.
func List(ctx context.Context, b *bus.Bus, tenantID string) ([]Message, error) {
	var out []Message
	err := eachHeld(ctx, b, tenantID, func(hm Message, _ jetstream.Msg) error {
		out = append(out, hm)
		return nil
	})
	return out, err
}

// Release puts a tenant's held messages back where they came from: a
// classified message is routed again, a delivery job goes back to its pool
// (each held again if the tenant is still suspended). It returns how many it
// moved.
func Release(ctx context.Context, b *bus.Bus, tenantID string) (int, error) {
	s, err := Declare(ctx, b)
	if err != nil {
		return 0, err
	}
	n := 0
	err = eachHeld(ctx, b, tenantID, func(hm Message, m jetstream.Msg) error {
		rm := nats.NewMsg(hm.From)
		rm.Header = m.Headers()
		rm.Header.Del(HeaderFrom)
		rm.Data = m.Data()
		// A fresh message id: the classified stream may still remember the
		// original's within its duplicate window.
		id := hm.Envelope.JobID() + ".released." + strconv.FormatUint(hm.Seq, 10)
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
	s, err := Declare(ctx, b)
	if err != nil {
		return 0, err
	}
	n := 0
	err = eachHeld(ctx, b, tenantID, func(hm Message, _ jetstream.Msg) error {
		env := hm.Envelope
		if err := b.ReleaseBody(ctx, env); err != nil {
			return fmt.Errorf("purge %s: %w", env.ID, err)
		}
		ev := &events.Event{ID: env.JobID() + ".purged", Type: events.TypePurged, Time: time.Now().UTC(),
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
func eachHeld(ctx context.Context, b *bus.Bus, tenantID string, f func(Message, jetstream.Msg) error) error {
	if err := tenant.ValidID(tenantID); err != nil {
		return err
	}
	s, err := Declare(ctx, b)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(TenantSubject(tenantID)))
	if err != nil {
		return fmt.Errorf("stream %s: %w", Stream, err)
	}
	want := info.State.Subjects[TenantSubject(tenantID)]
	if want == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{TenantSubject(tenantID)}})
	if err != nil {
		return fmt.Errorf("read %s: %w", Stream, err)
	}
	for seen := uint64(0); seen < want; {
		batch, err := c.Fetch(int(min(want-seen, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", Stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			seen++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", Stream, err)
			}
			env, err := envelope.Decode(m.Headers())
			if err != nil {
				return fmt.Errorf("held message %d: %w", md.Sequence.Stream, err)
			}
			from := m.Headers().Get(HeaderFrom)
			if from == "" {
				from = bus.SubjectClassified
			}
			if err := f(Message{Seq: md.Sequence.Stream, Held: md.Timestamp, From: from, Envelope: env}, m); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", Stream, err)
		}
		if got == 0 {
			break // fewer than counted: some were removed meanwhile
		}
	}
	return nil
}
