package shaping

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// Connection slots. Each open connection of (src, site) holds one key
// conn.<ip>.<site>.<n> with n below the connection limit, created with
// KeyValue.Create, which JetStream makes atomic (a publish expecting the
// subject to have no message): two processes can never hold the same slot.
// The key has a TTL of one lease and its holder rewrites it every third of
// a lease, so the slots of a process that died come back within a lease.
// Acquiring costs one KV round trip per slot tried; the connection then
// carries up to max_messages_per_conn messages, so this is per connection,
// not per message.

// AcquireConn takes a free connection slot of (src, site) or returns
// delivery.ErrBusy at once when every slot under the limit is taken (or
// src is suspended toward site).
func (s *Shaper) AcquireConn(ctx context.Context, src, site string) (func(), error) {
	now := s.now()
	if until, ok := s.blocked(src, site, now); ok {
		return nil, fmt.Errorf("%s toward %s: suspended until %s: %w", src, site, until.UTC().Format(time.RFC3339), delivery.ErrBusy)
	}
	limit := s.effective(src, site, now).MaxConnections
	keys := s.keysOf(src, site)
	prefix := keys.conn
	s.mu.Lock()
	mine := s.heldN[prefix]
	s.mu.Unlock()
	// Under load every worker of a process at its limit asks again each
	// time a connection frees; answering from memory spares the bucket
	// limit failed creates per ask. Create stays the only arbiter of a
	// slot: the memory only skips slots known taken.
	if mine >= limit {
		return nil, &busyError{src: src, site: site, open: mine, here: true}
	}
	start := randomOffset(limit)
	for i := range limit {
		key := keys.slot((start + i) % limit)
		s.mu.Lock()
		_, held := s.held[key]
		seen, taken := s.slots[key]
		s.mu.Unlock()
		if held || taken && now.Sub(seen) < s.lease {
			continue
		}
		rev, err := s.kv.Create(ctx, key, []byte(s.sender), jetstream.KeyTTL(s.lease))
		if isConflict(err) {
			// Taken by another process; the watch says when it goes.
			s.mu.Lock()
			if _, ok := s.slots[key]; !ok {
				s.slots[key] = now
			}
			s.mu.Unlock()
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("take connection slot %s: %w", key, err)
		}
		s.mu.Lock()
		s.held[key] = rev
		s.heldN[prefix]++
		s.mu.Unlock()
		var once sync.Once
		return func() { once.Do(func() { s.releaseSlot(key) }) }, nil
	}
	s.sayWaiting(ctx, src, site, keys, now)
	return nil, &busyError{src: src, site: site, open: limit}
}

// Waiting. A slot stays taken while its connection is idle (up to the idle
// timeout, 30 s by default), which is right for one process, since its own
// jobs reuse the connection, but starves another process that has mail for
// the pair and finds every slot taken: its jobs would wait, then defer,
// while the connections that hold the slots carry nothing. So a process
// that found no free slot among other processes' says so under
// want.<ip>.<site> (at most once per waitingEvery, with that TTL), and
// every other process closes its idle connections of the pair
// (OnWaiting); the slots they free go to whoever asks next. Connections in
// use are never closed for it.

// waitingEvery bounds how often a process says it waits for a pair (and is
// the TTL of the word): under load every worker asks many times a second.
const waitingEvery = time.Second

// waiting is the value of a want key.
type waiting struct {
	Sender string `json:"sender"`
	Src    string `json:"src"`
	Site   string `json:"site"`
}

// OnWaiting registers f, called (on a goroutine of its own) with the
// (source IP, site) of each word from another process that waits for a
// connection slot of that pair; pkg/delivery closes its idle connections of
// the pair in f.
func (s *Shaper) OnWaiting(f func(src, site string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onWaiting = append(s.onWaiting, f)
}

// sayWaiting writes the pair's want key, unless this process did less than
// waitingEvery ago. A failed write is only logged: the slots come back at
// the holders' idle timeout anyway.
func (s *Shaper) sayWaiting(ctx context.Context, src, site string, k *pairKeys, now time.Time) {
	s.mu.Lock()
	if now.Sub(s.saidWaiting[k.want]) < waitingEvery {
		s.mu.Unlock()
		return
	}
	if len(s.saidWaiting) >= maxKeys {
		clear(s.saidWaiting)
	}
	s.saidWaiting[k.want] = now
	s.mu.Unlock()
	v, err := json.Marshal(waiting{Sender: s.sender, Src: src, Site: site})
	if err == nil {
		err = s.putTTL(ctx, k.want, v, waitingEvery)
	}
	if err != nil {
		s.log.Debug("say waiting for a connection slot", "key", k.want, "err", err)
	}
}

// heardWaiting passes another process's want to the OnWaiting functions.
// Called from the watch, with s.mu not held: closing a connection releases
// its slot, which takes s.mu.
func (s *Shaper) heardWaiting(value []byte) {
	var w waiting
	if json.Unmarshal(value, &w) != nil || w.Sender == s.sender {
		return
	}
	s.mu.Lock()
	fs := slices.Clone(s.onWaiting)
	s.mu.Unlock()
	for _, f := range fs {
		s.wg.Go(func() { f(w.Src, w.Site) })
	}
}

// busyError is delivery.ErrBusy with its (source IP, site). It is what
// waiting workers hear again and again under load, so it is formatted
// only when read.
type busyError struct {
	src, site string
	open      int
	here      bool // every slot is this process's
}

func (e *busyError) Error() string {
	where := ""
	if e.here {
		where = " here"
	}
	return fmt.Sprintf("%s toward %s: %d connections open%s: %v", e.src, e.site, e.open, where, delivery.ErrBusy)
}

func (e *busyError) Unwrap() error { return delivery.ErrBusy }

// dropHeld forgets a slot of this process. Lock held.
func (s *Shaper) dropHeld(key string) {
	if _, ok := s.held[key]; !ok {
		return
	}
	delete(s.held, key)
	prefix := key[:strings.LastIndexByte(key, '.')+1]
	if s.heldN[prefix]--; s.heldN[prefix] <= 0 {
		delete(s.heldN, prefix)
	}
}

// releaseSlot frees a slot if this process still holds it.
func (s *Shaper) releaseSlot(key string) {
	s.mu.Lock()
	rev, ok := s.held[key]
	s.dropHeld(key)
	s.mu.Unlock()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Purge only our revision: if the lease ran out and another process
	// took the slot, it stays theirs. The purge marker goes after a minute.
	err := s.kv.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute))
	if err != nil && !isConflict(err) {
		s.log.Warn("release connection slot; it expires with its lease", "key", key, "err", err)
	}
}

// refreshLoop rewrites the held slots every third of a lease.
func (s *Shaper) refreshLoop(ctx context.Context) {
	t := time.NewTicker(s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.refresh(ctx)
	}
}

func (s *Shaper) refresh(ctx context.Context) {
	s.mu.Lock()
	held := make(map[string]uint64, len(s.held))
	for k, v := range s.held {
		held[k] = v
	}
	s.mu.Unlock()
	for key, rev := range held {
		rctx, cancel := context.WithTimeout(ctx, s.lease/3)
		newRev, err := s.renew(rctx, key, rev)
		cancel()
		s.mu.Lock()
		cur, still := s.held[key]
		switch {
		case !still || cur != rev:
			// Released meanwhile: if this renewal won the race with the
			// release's purge, the purge failed; purge the renewed slot.
			if err == nil && !still {
				s.mu.Unlock()
				pctx, cancel := context.WithTimeout(ctx, s.lease/3)
				_ = s.kv.Purge(pctx, key, jetstream.LastRevision(newRev), jetstream.PurgeTTL(time.Minute))
				cancel()
				continue
			}
		case err == nil:
			s.held[key] = newRev
		case isConflict(err):
			// The lease ran out (this process stalled) and the slot is
			// someone else's now; the connection keeps going, uncounted,
			// until it closes.
			s.dropHeld(key)
			s.log.Warn("connection slot lost to another sender after its lease ran out", "key", key)
		default:
			s.log.Warn("refresh connection slot", "key", key, "err", err)
		}
		s.mu.Unlock()
	}
}

// renew rewrites a held slot with a fresh TTL if it is still at rev.
func (s *Shaper) renew(ctx context.Context, key string, rev uint64) (uint64, error) {
	return publishTTL(ctx, s.js, key, []byte(s.sender), s.lease, &rev)
}
