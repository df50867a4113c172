package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// report is the run's result.
type report struct {
	failed    int // submissions not answered 250, or never started
	accepted  int
	delivered int   // accepted and seen arriving
	missing   []int // accepted, never seen arriving, in seq order
	// duplicates are further copies of messages already seen; unaccepted
	// are arrivals of messages whose submission did not end in a 250 (the
	// system took it, but the tool saw an error, e.g. a timeout). Neither
	// is timed.
	duplicates, unaccepted int
	latencies              []time.Duration // delivered messages' arrival − submission start, sorted
	// submits are the accepted messages' reply − submission start, sorted:
	// the part of the latency spent before the system answered 250.
	submits []time.Duration
	rate    float64 // submissions started per second
}

// acceptedSeqs lists the messages the system took responsibility for.
func acceptedSeqs(subs []submission) []int {
	var seqs []int
	for _, s := range subs {
		if s.accepted {
			seqs = append(seqs, s.seq)
		}
	}
	return seqs
}

// summarize matches submissions to arrivals. Only a message both accepted
// and seen arriving has a latency; an accepted one never seen is missing.
func summarize(subs []submission, got arrivals) report {
	var r report
	r.duplicates = got.duplicates
	for _, s := range subs {
		at, arrived := got.first[s.seq]
		if s.accepted {
			r.submits = append(r.submits, s.replied.Sub(s.start))
		}
		switch {
		case s.accepted && arrived:
			r.accepted++
			r.delivered++
			r.latencies = append(r.latencies, at.Sub(s.start))
		case s.accepted:
			r.accepted++
			r.missing = append(r.missing, s.seq)
		default:
			r.failed++
			if arrived {
				r.unaccepted++
			}
		}
	}
	slices.Sort(r.latencies)
	slices.Sort(r.submits)
	r.rate = achievedRate(subs)
	return r
}

// summarizeWarm reports the timed messages (all but the first warm) and
// the warm-up apart; duplicates are the run's, in both.
func summarizeWarm(subs []submission, got arrivals, warm int) (timed, warmup report) {
	return summarize(subs[warm:], got), summarize(subs[:warm], got)
}

// achievedRate is the pace the submissions actually started at: n starts
// span n−1 intervals. Messages that never got a session (a failed dial, a
// cancelled run) have no start and do not count.
func achievedRate(subs []submission) float64 {
	var first, last time.Time
	n := 0
	for _, s := range subs {
		if s.start.IsZero() {
			continue
		}
		if n == 0 || s.start.Before(first) {
			first = s.start
		}
		if n == 0 || s.start.After(last) {
			last = s.start
		}
		n++
	}
	span := last.Sub(first)
	if n < 2 || span <= 0 {
		return 0
	}
	return float64(n-1) / span.Seconds()
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted:
// the smallest value with at least p % of the values at or below it, so it
// is always one of the measured values. Zero for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r report) String() string {
	l := r.latencies
	var maxLat time.Duration
	if len(l) > 0 {
		maxLat = l[len(l)-1]
	}
	return fmt.Sprintf("failed=%d accepted=%d delivered=%d missing=%d duplicates=%d arrived_unaccepted=%d "+
		"p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f submit_p50_ms=%.1f submit_p99_ms=%.1f rate=%.1f",
		r.failed, r.accepted, r.delivered, len(r.missing), r.duplicates, r.unaccepted,
		ms(percentile(l, 50)), ms(percentile(l, 90)), ms(percentile(l, 99)), ms(maxLat),
		ms(percentile(r.submits, 50)), ms(percentile(r.submits, 99)), r.rate)
}
