package main

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		give   []time.Duration
		giveP  float64
		wantMS int
	}{
		{"empty", nil, 50, 0},
		{"one value is every percentile", ms(7), 99, 7},
		{"median of odd count", ms(1, 2, 3, 4, 5), 50, 3},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2},
		{"p99 of 100 is the 99th", ms(hundred...), 99, 99},
		{"p90 of 100 is the 90th", ms(hundred...), 90, 90},
		{"p99 of 10 is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 50), 99, 50},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3},
		{"tiny p is the minimum", ms(4, 5, 6), 0.001, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.give, tt.giveP); got != time.Duration(tt.wantMS)*time.Millisecond {
				t.Errorf("percentile(%v, %v) = %v, want %dms", tt.give, tt.giveP, got, tt.wantMS)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Every accepted submission here took 1 ms to be answered.
	ok := func(seq, startMS int) submission {
		return submission{seq: seq, start: at(startMS), replied: at(startMS + 1), accepted: true}
	}
	tests := []struct {
		name            string
		giveSubs        []submission
		giveArrivals    map[int]int // seq → arrival in ms after t0
		giveDuplicates  int
		wantDelivered   int
		wantMissing     []int
		wantFailed      int
		wantUnaccepted  int
		wantLatenciesMS []int
	}{
		{
			name:            "all arrive",
			giveSubs:        []submission{ok(0, 0), ok(1, 10), ok(2, 20)},
			giveArrivals:    map[int]int{0: 5, 1: 40, 2: 21},
			wantDelivered:   3,
			wantLatenciesMS: []int{1, 5, 30},
		},
		{
			name:            "an accepted message never seen is missing, not timed",
			giveSubs:        []submission{ok(0, 0), ok(1, 10), ok(2, 20)},
			giveArrivals:    map[int]int{0: 5, 2: 30},
			wantDelivered:   2,
			wantMissing:     []int{1},
			wantLatenciesMS: []int{5, 10},
		},
		{
			name:            "duplicates are counted once and not timed again",
			giveSubs:        []submission{ok(0, 0)},
			giveArrivals:    map[int]int{0: 8},
			giveDuplicates:  2,
			wantDelivered:   1,
			wantLatenciesMS: []int{8},
		},
		{
			name: "a rejected or failed submission is not timed, even if it arrives",
			giveSubs: []submission{ok(0, 0),
				{seq: 1, start: at(10), err: errNoneAccepted},
				{seq: 2, err: errNoneAccepted}},
			giveArrivals:    map[int]int{0: 3, 1: 12},
			wantDelivered:   1,
			wantFailed:      2,
			wantUnaccepted:  1,
			wantLatenciesMS: []int{3},
		},
		{
			name:          "nothing arrives",
			giveSubs:      []submission{ok(0, 0), ok(1, 10)},
			wantMissing:   []int{0, 1},
			wantDelivered: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := arrivals{first: map[int]time.Time{}, duplicates: tt.giveDuplicates}
			for seq, ms := range tt.giveArrivals {
				got.first[seq] = at(ms)
			}
			r := summarize(tt.giveSubs, got)
			var lat []int
			for _, d := range r.latencies {
				lat = append(lat, int(d/time.Millisecond))
			}
			if r.delivered != tt.wantDelivered || r.failed != tt.wantFailed || r.unaccepted != tt.wantUnaccepted ||
				r.duplicates != tt.giveDuplicates || !slices.Equal(r.missing, tt.wantMissing) || !slices.Equal(lat, tt.wantLatenciesMS) {
				t.Errorf("summarize = delivered %d failed %d unaccepted %d duplicates %d missing %v latencies %v ms, "+
					"want %d %d %d %d %v %v", r.delivered, r.failed, r.unaccepted, r.duplicates, r.missing, lat,
					tt.wantDelivered, tt.wantFailed, tt.wantUnaccepted, tt.giveDuplicates, tt.wantMissing, tt.wantLatenciesMS)
			}
			if len(r.submits) != r.accepted || (r.accepted > 0 && r.submits[0] != time.Millisecond) {
				t.Errorf("submits %v, want %d of 1ms", r.submits, r.accepted)
			}
			if r.accepted != r.delivered+len(r.missing) {
				t.Errorf("accepted %d != delivered %d + missing %d", r.accepted, r.delivered, len(r.missing))
			}
		})
	}
}

func TestAchievedRate(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	starts := func(ms ...int) []submission {
		s := make([]submission, len(ms))
		for i, m := range ms {
			if m >= 0 {
				s[i].start = t0.Add(time.Duration(m) * time.Millisecond)
			}
		}
		return s
	}
	tests := []struct {
		name string
		give []submission
		want float64
	}{
		{"none", nil, 0},
		{"one start has no span", starts(5), 0},
		{"every 10 ms is 100/s", starts(0, 10, 20, 30, 40), 100},
		{"order does not matter", starts(40, 0, 20, 10, 30), 100},
		{"never started does not count", starts(0, -1, 500, -1), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := achievedRate(tt.give); got != tt.want {
				t.Errorf("achievedRate(%s) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestParseSeq(t *testing.T) {
	tests := []struct {
		give    string
		wantSeq int
		wantOK  bool
	}{
		{"abc.17", 17, true},
		{" abc.0 ", 0, true},
		{"other.17", 0, false},
		{"abc17", 0, false},
		{"abc.-1", 0, false},
		{"abc.x", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		seq, ok := parseSeq(tt.give, "abc")
		if seq != tt.wantSeq || ok != tt.wantOK {
			t.Errorf("parseSeq(%q) = %d, %v, want %d, %v", tt.give, seq, ok, tt.wantSeq, tt.wantOK)
		}
	}
}

// The warm-up's slow messages stay out of the timed figures, and what is
// missing is reported where it belongs.
func TestSummarizeWarm(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var subs []submission
	got := arrivals{first: map[int]time.Time{}}
	for i := range 10 {
		s := submission{seq: i, start: t0.Add(time.Duration(i) * 10 * time.Millisecond), accepted: true}
		s.replied = s.start.Add(time.Millisecond)
		subs = append(subs, s)
		lat := 2 * time.Millisecond
		if i < 4 {
			lat = time.Second // the warm-up is slow
		}
		if i != 2 && i != 7 {
			got.first[i] = s.start.Add(lat)
		}
	}
	timed, warm := summarizeWarm(subs, got, 4)
	if timed.accepted != 6 || timed.delivered != 5 || len(timed.missing) != 1 || timed.missing[0] != 7 {
		t.Errorf("timed: accepted %d delivered %d missing %v, want 6, 5, [7]", timed.accepted, timed.delivered, timed.missing)
	}
	if p := percentile(timed.latencies, 99); p != 2*time.Millisecond {
		t.Errorf("timed p99 %v, want 2ms: the warm-up is not timed", p)
	}
	if warm.accepted != 4 || warm.delivered != 3 || len(warm.missing) != 1 || warm.missing[0] != 2 || percentile(warm.latencies, 99) != time.Second {
		t.Errorf("warm-up: %v, want 4 accepted, 3 delivered, [2] missing, p99 1s", warm)
	}
}
