package shaping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// WarmupConfig is sender.warmup: how many messages a new source IP may send
// to each destination site per day while it builds a reputation. An IP is
// in warm-up when its pool entry has warmup_start (a date); that date is
// day 1.
type WarmupConfig struct {
	// DailyCaps[d-1] is the cap per site on day d (UTC days); from the day
	// after the last entry the IP has no cap.
	DailyCaps []int `yaml:"daily_caps"`
}

// DefaultWarmup is a 45-day ramp in the manner of Amazon SES's automatic
// warm-up of dedicated IPs: 50 messages per site on day 1, roughly doubling
// for the first week, then growing by a quarter to a half a day, to 500,000
// on day 44 and no cap from day 45.
func DefaultWarmup() WarmupConfig {
	return WarmupConfig{DailyCaps: []int{
		50, 100, 200, 300, 400, 500, 700, 900, 1_200, 1_500, // days 1-10
		2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 7_500, 9_000, 11_000, 13_000, // 11-20
		15_000, 18_000, 21_000, 25_000, 30_000, 35_000, 40_000, 50_000, 60_000, 70_000, // 21-30
		80_000, 90_000, 100_000, 120_000, 140_000, 160_000, 180_000, 200_000, 250_000, 300_000, // 31-40
		350_000, 400_000, 450_000, 500_000, // 41-44; day 45: no cap
	}}
}

// Validate names the first bad key.
func (w WarmupConfig) Validate() error {
	for i, c := range w.DailyCaps {
		if c < 1 {
			return fmt.Errorf("sender.warmup.daily_caps[%d]: %d, want at least 1", i, c)
		}
	}
	return nil
}

// Cap is the cap per site on now's day of a warm-up that started on start;
// ok is false when there is none (warm-up over).
func (w WarmupConfig) Cap(start, now time.Time) (int, bool) {
	day := int(now.UTC().Truncate(24*time.Hour).Sub(start.UTC().Truncate(24*time.Hour))/(24*time.Hour)) + 1
	day = max(day, 1)
	if day > len(w.DailyCaps) {
		return 0, false
	}
	return w.DailyCaps[day-1], true
}

// warmCount is the value of a warm key.
type warmCount struct {
	IP   string `json:"ip"`
	Site string `json:"site"`
	Day  string `json:"day"`
	N    int    `json:"n"`
}

// warmKey is the counter of (src, site) on now's day and the cap, when src
// is warming up.
func (s *Shaper) warmKey(src, site string, now time.Time) (string, int, bool) {
	s.mu.Lock()
	start, ok := s.warmFrom[src]
	s.mu.Unlock()
	if !ok {
		return "", 0, false
	}
	c, ok := s.warmup.Cap(start, now)
	if !ok {
		return "", 0, false
	}
	return s.keysOf(src, site).warm + now.UTC().Format("20060102"), c, true
}

// overCap reports whether src has used its warm-up cap toward site today,
// counting every process's reservations.
func (s *Shaper) overCap(src, site string, now time.Time) bool {
	key, c, ok := s.warmKey(src, site, now)
	if !ok {
		return false
	}
	tk := s.bucket(key)
	tk.mu.Lock()
	local := tk.left > 0 && now.Before(tk.until)
	tk.mu.Unlock()
	if local {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.warm[key] >= c
}

// takeWarmup counts one message of src toward site against its warm-up
// cap, reserving small blocks of the day's count in the bucket so that the
// cap holds across processes. It returns the key taken from ("" when src is
// not warming up).
func (s *Shaper) takeWarmup(ctx context.Context, src, site string, now time.Time) (string, error) {
	key, c, ok := s.warmKey(src, site, now)
	if !ok {
		return "", nil
	}
	tk := s.bucket(key)
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.left > 0 && now.Before(tk.until) {
		tk.left--
		return key, nil
	}
	for range 50 {
		var count warmCount
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			count = warmCount{IP: src, Site: site, Day: now.UTC().Format(time.DateOnly)}
		case err != nil:
			return "", fmt.Errorf("read %s: %w", key, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &count); err != nil {
				return "", fmt.Errorf("read %s: %w", key, err)
			}
		}
		if count.N >= c {
			s.mu.Lock()
			s.warm[key] = max(s.warm[key], count.N)
			s.mu.Unlock()
			return "", fmt.Errorf("%s toward %s: warm-up cap of %d today reached: %w", src, site, c, delivery.ErrRateLimited)
		}
		// A block of a fiftieth of the day's cap: unused tokens of a block
		// lapse at midnight, so the cap is never exceeded, only (by at
		// most a block per process) not quite reached.
		blk := min(clampInt(c/50, 1, 20), c-count.N)
		count.N += blk
		value, _ := json.Marshal(count)
		// Kept two days: long enough to be read all day, gone after.
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, value, jetstream.KeyTTL(48*time.Hour))
		} else {
			_, err = publishTTL(ctx, s.js, key, value, 48*time.Hour, &rev)
		}
		if isConflict(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		s.warm[key] = max(s.warm[key], count.N)
		s.mu.Unlock()
		tk.left = blk - 1
		tk.until = nextDay(now)
		return key, nil
	}
	return "", fmt.Errorf("count %s: too much contention: %w", key, delivery.ErrRateLimited)
}
