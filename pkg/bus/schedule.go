package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
)

// SubjectDeferred + "." + pool + "." + key holds the schedule of one
// deferred delivery job. It lives in the OUTBOUND stream (a schedule's
// target must be a subject of its own stream) but matches no consumer's
// filter, so a deferred job is stored, not pending: it does not count
// against MaxAckPending, however many wait.
const SubjectDeferred = "outflow.deferred"

// Headers of JetStream message schedules (nats-server 2.12+, ADR-51).
const (
	headerSchedule       = "Nats-Schedule"
	headerScheduleTarget = "Nats-Schedule-Target"
)

// DeferredSubject is the schedule subject of the job of message id to
// domain in pool. JetStream keeps one schedule per subject, and one job
// per (message, domain) waits at a time, so the subject is derived from
// both; hashed, because a domain may hold characters a subject token may
// not.
func DeferredSubject(pool, id, domain string) string {
	sum := sha256.Sum256([]byte(id + "\x00" + domain))
	return SubjectDeferred + "." + pool + "." + hex.EncodeToString(sum[:16])
}

// scheduling enables message schedules on the OUTBOUND stream. Schedules
// need roll-ups (each schedule is the only message of its subject) and
// rule out DiscardNew; with no limits set on the stream, DiscardOld never
// discards anything.
func scheduling(sc *jetstream.StreamConfig) {
	sc.Subjects = append(sc.Subjects, SubjectDeferred+".>")
	sc.AllowMsgSchedules = true
	sc.AllowRollup = true
	sc.Discard = jetstream.DiscardOld
}

// PublishDeferred stores a delivery job as a message schedule: at `at`,
// JetStream publishes it (headers and payload, without the schedule
// headers) to target, where the pool's consumer takes it at once. Until
// then it waits on schedule (see DeferredSubject). msgID de-duplicates a
// repeated publish, like PublishMessage's. A body above the inline limit
// must already be stored by reference (env.BodyRef), as it is for a retry.
func (b *Bus) PublishDeferred(ctx context.Context, schedule, target, msgID string, at time.Time, env *envelope.Envelope, body []byte) error {
	if env.BodyRef == "" && len(body) > b.cfg.InlineLimit {
		if err := b.putBody(ctx, env.ID, body); err != nil {
			return err
		}
		env.BodyRef = env.ID
	}
	m := nats.NewMsg(schedule)
	if env.BodyRef == "" {
		m.Data = body
	}
	if err := envelope.Encode(m, env); err != nil {
		return err
	}
	// Sub-second precision: a job must not fire before it is due, nor wait
	// a second longer than it has to.
	m.Header.Set(headerSchedule, "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set(headerScheduleTarget, target)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if _, err := b.JS.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("schedule %s for %s at %s: %w", msgID, target, at.UTC().Format(time.RFC3339), err)
	}
	return nil
}
