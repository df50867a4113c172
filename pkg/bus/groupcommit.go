package bus

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// groupQueue is a group commit for the items published to one subject:
// an item that arrives while a publish is in flight waits and goes out
// with the others that came meanwhile, in the next publish. Nothing waits
// for a batch to fill: a lone item is published at once, so batching only
// happens when items arrive faster than JetStream stores them. Events
// (events.go) and the stages' messages (batch.go) use it.
type groupQueue[T any] struct {
	maxItems, maxBytes int
	size               func(T) int
	publish            func([]T) error
	// linger, when set, holds a batch until its oldest item has waited
	// that long (or the batch is full), so that a moderate stream of items
	// shares publishes too; only for items off the critical path (events).
	linger time.Duration

	mu      sync.Mutex
	pending []groupItem[T]
	busy    bool // a goroutine is publishing; it takes pending when done
}

type groupItem[T any] struct {
	v    T
	done chan error
	at   time.Time // when it was added; read only with linger
}

// add queues v and returns the error of the publish that carried it, or
// ctx's error, naming v by id, if that ends first (v may still be
// published).
func (q *groupQueue[T]) add(ctx context.Context, v T, id string) error {
	done := make(chan error, 1)
	q.mu.Lock()
	it := groupItem[T]{v: v, done: done}
	if q.linger > 0 {
		it.at = time.Now()
	}
	q.pending = append(q.pending, it)
	if !q.busy {
		q.busy = true
		go q.run()
	}
	q.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", id, ctx.Err())
	}
}

// run publishes batches until nothing is pending; a batch is at most
// maxItems items and maxBytes bytes, or one item of any size.
func (q *groupQueue[T]) run() {
	for {
		q.mu.Lock()
		if q.linger > 0 && len(q.pending) > 0 && len(q.pending) < q.maxItems {
			if wait := time.Until(q.pending[0].at.Add(q.linger)); wait > 0 {
				q.mu.Unlock()
				time.Sleep(wait)
				continue
			}
		}
		n, size := 0, 0
		for n < len(q.pending) && n < q.maxItems {
			s := q.size(q.pending[n].v)
			if n > 0 && size+s > q.maxBytes {
				break
			}
			size += s
			n++
		}
		if n == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		items := q.pending[:n:n]
		q.pending = q.pending[n:]
		q.mu.Unlock()
		batch := make([]T, n)
		for i, it := range items {
			batch[i] = it.v
		}
		err := q.publish(batch)
		for _, it := range items {
			it.done <- err
		}
	}
}

// queueFor returns the queue of subject in qs, made by mk the first time.
// mu guards qs.
func queueFor[T any](mu *sync.Mutex, qs *map[string]*groupQueue[T], subject string, mk func() *groupQueue[T]) *groupQueue[T] {
	mu.Lock()
	defer mu.Unlock()
	q := (*qs)[subject]
	if q == nil {
		if *qs == nil {
			*qs = map[string]*groupQueue[T]{}
		}
		q = mk()
		(*qs)[subject] = q
	}
	return q
}
