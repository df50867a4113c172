package shaping

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// Message rates are shared by every sender process through one key per
// (src, site) and rate holding the GCRA "theoretical arrival time" (TAT):
// the time at which the rate's budget is used up. A process reserves a
// small block of n messages at once by moving the TAT forward by n
// emission intervals with a compare-and-set; the block may be used from
// max(TAT, now) on. Reserving costs one KV round trip (two when another
// process won the race) per block, not per message; the block size is a
// tenth of a second's worth (at least 1, at most 50), so the shared rate
// holds to within one block per process over any window.

// tokens is a block of messages this process reserved.
type tokens struct {
	mu    sync.Mutex // serializes reservations of one key in this process
	left  int
	from  time.Time // usable from
	until time.Time // unused tokens lapse then
	// The key's last known revision and value, tried first by the next
	// compare-and-set: one round trip instead of two while this process
	// is the only one sending.
	rev uint64
	tat time.Time
}

func (s *Shaper) bucket(key string) *tokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.buckets[key]
	if !ok {
		t = &tokens{}
		s.buckets[key] = t
	}
	return t
}

// takeRate takes one message from the per-hour and per-second rates of
// (src, site), waiting up to maxWait.
func (s *Shaper) takeRate(ctx context.Context, src, site string, l delivery.Limits, maxWait time.Duration) error {
	if l.MessagesPerHour <= 0 && l.MessagesPerSecond <= 0 {
		return nil
	}
	keys := s.keysOf(src, site)
	var wait time.Duration
	if l.MessagesPerHour > 0 {
		h := float64(l.MessagesPerHour)
		n := clampInt(int(h/360), 1, 50)
		w, err := s.takeToken(ctx, keys.rateh, time.Duration(float64(time.Hour)/h), n, max(n, int(h/60)), maxWait)
		if err != nil {
			return fmt.Errorf("%s toward %s: %d messages/hour: %w", src, site, l.MessagesPerHour, err)
		}
		wait = w
	}
	if l.MessagesPerSecond > 0 {
		r := l.MessagesPerSecond
		n := clampInt(int(r/10), 1, 50)
		w, err := s.takeToken(ctx, keys.rate, time.Duration(float64(time.Second)/r), n, n, maxWait)
		if err != nil {
			return fmt.Errorf("%s toward %s: %g messages/s: %w", src, site, r, err)
		}
		wait = max(wait, w)
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for rate of %s toward %s: %w", src, site, ctx.Err())
	}
}

func clampInt(v, lo, hi int) int { return min(max(v, lo), hi) }

// takeToken takes one token of key (emission interval T, block n, burst b)
// and returns how long to wait before using it; ErrRateLimited when that
// would exceed maxWait.
func (s *Shaper) takeToken(ctx context.Context, key string, T time.Duration, n, b int, maxWait time.Duration) (time.Duration, error) {
	tk := s.bucket(key)
	tk.mu.Lock()
	defer tk.mu.Unlock()
	now := s.now()
	if tk.left > 0 && now.Before(tk.until) {
		wait := tk.from.Sub(now)
		if wait > maxWait {
			return 0, fmt.Errorf("next message in %v: %w", wait.Round(time.Millisecond), delivery.ErrRateLimited)
		}
		tk.left--
		return max(wait, 0), nil
	}
	from, err := s.reserve(ctx, tk, key, T, n, b, maxWait)
	if err != nil {
		return 0, err
	}
	tk.left = n - 1
	tk.from = from
	// Unused tokens lapse at the end of the block's own span, so that they
	// never pile up into a burst; at least 50 ms, so that at very high
	// rates a block outlives the round trip that fetched it.
	tk.until = from.Add(max(time.Duration(n)*T+T, 50*time.Millisecond))
	return max(from.Sub(s.now()), 0), nil
}

// reserve moves key's TAT forward by n intervals and returns when the
// block may be used.
// tk (locked by the caller) remembers the key's last known state: a
// stale one only makes the compare-and-set fail (then the key is read), or
// makes the wait look shorter than it is, never longer.
func (s *Shaper) reserve(ctx context.Context, tk *tokens, key string, T time.Duration, n, b int, maxWait time.Duration) (time.Time, error) {
	known := tk.rev != 0
	for range 50 {
		now := s.now()
		tat, rev := tk.tat, tk.rev
		if !known {
			tat, rev = time.Time{}, 0
			e, err := s.kv.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return time.Time{}, fmt.Errorf("read %s: %w", key, err)
			default:
				rev = e.Revision()
				if ns, perr := strconv.ParseInt(string(e.Value()), 10, 64); perr == nil {
					tat = time.Unix(0, ns)
				}
			}
		}
		known = false
		start := now
		if tat.After(now) {
			start = tat
		}
		newTAT := start.Add(time.Duration(n) * T)
		from := newTAT.Add(-time.Duration(b) * T)
		if from.Before(now) {
			from = now
		}
		if wait := from.Sub(now); wait > maxWait {
			return time.Time{}, fmt.Errorf("next message in %v: %w", wait.Round(time.Millisecond), delivery.ErrRateLimited)
		}
		// The key is worthless once its TAT has passed; let it expire then.
		ttl := newTAT.Sub(now) + time.Second
		value := []byte(strconv.FormatInt(newTAT.UnixNano(), 10))
		var newRev uint64
		var err error
		if rev == 0 {
			newRev, err = s.kv.Create(ctx, key, value, jetstream.KeyTTL(max(ttl.Round(time.Second), time.Second)))
		} else {
			newRev, err = publishTTL(ctx, s.js, key, value, ttl, &rev)
		}
		if isConflict(err) {
			continue // another process moved it, or it expired; read again
		}
		if err != nil {
			tk.rev = 0
			return time.Time{}, err
		}
		tk.rev, tk.tat = newRev, newTAT
		return from, nil
	}
	return time.Time{}, fmt.Errorf("reserve %s: too much contention: %w", key, delivery.ErrRateLimited)
}

// giveBack returns one token taken from key's local block.
func (s *Shaper) giveBack(key string) {
	tk := s.bucket(key)
	tk.mu.Lock()
	tk.left++
	tk.mu.Unlock()
}
