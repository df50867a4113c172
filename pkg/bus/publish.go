package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/envelope"
)

// PublishMessage publishes a message to subject with msgID as its
// Nats-Msg-Id, so that a retried publish is stored once. A body above the
// inline limit is put in the object store (once: a body that already has a
// reference is not stored again) and the bus message carries only the
// envelope. It returns when JetStream has acknowledged the message.
func (b *Bus) PublishMessage(ctx context.Context, subject, msgID string, env *envelope.Envelope, body []byte) error {
	m := nats.NewMsg(subject)
	if env.BodyRef == "" && len(body) > b.cfg.InlineLimit {
		if err := b.putBody(ctx, env.ID, body); err != nil {
			return err
		}
		env.BodyRef = env.ID
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
	defer cancel()
	if env.BodyRef == "" {
		m.Data = body
	}
	if err := envelope.Encode(m, env); err != nil {
		return err
	}
	if batched(subject) {
		return b.publishBatched(ctx, msgID, m)
	}
	if _, err := b.JS.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("publish %s to %s: %w", msgID, subject, err)
	}
	return nil
}

// putBody stores a large body in the object store.
func (b *Bus) putBody(ctx context.Context, name string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, b.bodyTimeout(len(body)))
	defer cancel()
	if _, err := b.Bodies.PutBytes(ctx, name, body); err != nil {
		return fmt.Errorf("store body %s: %w", name, err)
	}
	return nil
}

// bodyTimeout bounds moving a body of size bytes through the object store:
// the publish timeout plus a second per MiB, because a 25 MiB body is about
// 200 chunks, each fsynced with sync_always, and JetStream's 5 s default
// would fail it on a busy disk.
func (b *Bus) bodyTimeout(size int) time.Duration {
	return b.cfg.PublishTimeout + time.Duration(size>>20)*time.Second
}

// Body returns a bus message's body: its payload, or the referenced object.
//
// A stored body counts against nats.body_memory from here until the caller
// calls release (set when err is nil), when done with the body: a
// worker waits here while the bodies other workers hold fill the budget. A
// body larger than the whole budget takes all of it, so it goes alone
// rather than never.
func (b *Bus) Body(ctx context.Context, env *envelope.Envelope, payload []byte) (body []byte, release func(), err error) {
	if env.BodyRef == "" {
		return payload, func() {}, nil
	}
	w := min(max(env.Size, int64(b.cfg.InlineLimit)), b.cfg.BodyMemory)
	if err := b.bodyMem.Acquire(ctx, w); err != nil {
		return nil, nil, fmt.Errorf("wait for body memory (%d bytes): %w", w, err)
	}
	var once sync.Once
	release = func() { once.Do(func() { b.bodyMem.Release(w) }) }
	ctx, cancel := context.WithTimeout(ctx, b.bodyTimeout(int(env.Size)))
	defer cancel()
	body, err = b.Bodies.GetBytes(ctx, env.BodyRef)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("load body %s: %w", env.BodyRef, err)
	}
	return body, release, nil
}

// ReleaseBody is called when one delivery job of a message reaches a final
// state. The stored body (if any) is deleted when the last of the message's
// jobs is final; a counter in the body-refs bucket, decremented with
// compare-and-set, makes that safe across sender processes.
func (b *Bus) ReleaseBody(ctx context.Context, env *envelope.Envelope) error {
	if env.BodyRef == "" {
		return nil
	}
	if env.Jobs > 1 {
		last, err := b.countDown(ctx, env.BodyRef, env.Jobs)
		if err != nil || !last {
			return err
		}
	}
	if err := b.Bodies.Delete(ctx, env.BodyRef); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete body %s: %w", env.BodyRef, err)
	}
	return nil
}

// countDown decrements the remaining-jobs counter of a body and reports
// whether this was the last job.
func (b *Bus) countDown(ctx context.Context, key string, jobs int) (bool, error) {
	for range 100 {
		e, err := b.BodyRefs.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			// First job to finish creates the counter.
			_, err = b.BodyRefs.Create(ctx, key, []byte(strconv.Itoa(jobs-1)))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("count jobs of %s: %w", key, err)
			}
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("count jobs of %s: %w", key, err)
		}
		n, _ := strconv.Atoi(string(e.Value()))
		if n <= 1 {
			if err := b.BodyRefs.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
				continue
			}
			return true, nil
		}
		if _, err := b.BodyRefs.Update(ctx, key, []byte(strconv.Itoa(n-1)), e.Revision()); err != nil {
			continue // lost a race with another sender; read again
		}
		return false, nil
	}
	return false, fmt.Errorf("count jobs of %s: too much contention", key)
}
