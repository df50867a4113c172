package suppression

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// List is a local copy of the bucket kept current by a KV watch, for the
// router's per-recipient checks. A change made anywhere (the feedback
// worker, ctl) reaches every router within the watch's latency, typically
// milliseconds.
type List struct {
	mu      sync.RWMutex
	entries map[string]Entry // by Key
	ready   chan struct{}
}

// NewList returns an empty list; Run fills it.
func NewList() *List {
	return &List{entries: map[string]Entry{}, ready: make(chan struct{})}
}

// Ready is closed once the bucket's current contents are loaded.
func (l *List) Ready() <-chan struct{} { return l.ready }

// Run watches the store's bucket until ctx ends.
func (l *List) Run(ctx context.Context, s *Store, log *slog.Logger) error {
	w, err := s.KV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case kve, ok := <-w.Updates():
			if !ok {
				return errors.New("watch " + Bucket + ": closed")
			}
			if kve == nil {
				select {
				case <-l.ready:
				default:
					close(l.ready)
				}
				continue
			}
			l.apply(kve, log)
		}
	}
}

func (l *List) apply(kve jetstream.KeyValueEntry, log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kve.Operation() != jetstream.KeyValuePut {
		delete(l.entries, kve.Key())
		return
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		log.Error("suppression entry unreadable; ignored", "key", kve.Key(), "err", err)
		return
	}
	l.entries[kve.Key()] = e
}

// Lookup returns the active entry of address for tenant at now.
func (l *List) Lookup(tenant, address string, now time.Time) (Entry, bool) {
	l.mu.RLock()
	e, ok := l.entries[Key(tenant, address)]
	l.mu.RUnlock()
	if !ok || !e.Active(now) {
		return Entry{}, false
	}
	return e, true
}

// Filter splits rcpts into those still to be mailed and the entries of
// those suppressed for tenant at now, in order.
func (l *List) Filter(tenant string, rcpts []string, now time.Time) (keep []string, dropped []Entry) {
	keep = rcpts[:0:0]
	for _, r := range rcpts {
		if e, ok := l.Lookup(tenant, r, now); ok {
			e.Address = r
			dropped = append(dropped, e)
			continue
		}
		keep = append(keep, r)
	}
	return keep, dropped
}

// Watch opens the bucket, starts a List on it and waits until the list has
// loaded the bucket's contents. stop ends the watch and waits for it.
func Watch(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (l *List, stop func(), err error) {
	s, err := Open(ctx, js, replicas)
	if err != nil {
		return nil, nil, err
	}
	l = NewList()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(wctx, s, log); err != nil {
			log.Error("suppression list watch ended", "err", err)
		}
	}()
	stop = func() { cancel(); <-done }
	select {
	case <-l.Ready():
		return l, stop, nil
	case <-done:
		cancel()
		return nil, nil, errors.New("suppression list: watch ended before it was ready")
	case <-ctx.Done():
		stop()
		return nil, nil, fmt.Errorf("suppression list: %w", ctx.Err())
	}
}
