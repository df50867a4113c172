package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/smtptest"
)

func startTestReceiver(t testing.TB, run string) *receiver {
	t.Helper()
	r, err := startReceiver("127.0.0.1:0", run)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

func testLoad(addr, run string) loadOptions {
	return loadOptions{addr: addr, sessions: 4, rate: 400, from: "bench@demo.example",
		rcpt: "rcpt@dest.example", size: 2048, run: run}
}

// The tool submitting straight to its own receiver: every message is
// accepted, arrives once, and is timed.
func TestPaced_EveryMessageArrives(t *testing.T) {
	ctx := context.Background()
	r := startTestReceiver(t, "run1")
	const n = 200
	subs := submitPaced(ctx, testLoad(r.addr(), "run1"), n)
	if err := r.waitFor(ctx, acceptedSeqs(subs), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	rep := summarize(subs, r.snapshot())
	if rep.accepted != n || rep.delivered != n || len(rep.missing) != 0 || rep.duplicates != 0 || rep.failed != 0 {
		t.Fatalf("report %v, want all %d accepted and delivered once", rep, n)
	}
	if len(rep.latencies) != n || rep.latencies[0] <= 0 || rep.rate <= 0 {
		t.Errorf("latencies %d (first %v), rate %v: want %d positive latencies and a rate",
			len(rep.latencies), rep.latencies[0], rep.rate, n)
	}
}

// A system that accepts but never delivers: nothing is timed, everything
// accepted is reported missing, and the wait ends with a timeout.
func TestPaced_NothingArrives(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.Start(t, smtptest.Options{}) // keeps what it gets, relays nothing
	r := startTestReceiver(t, "run2")
	const n = 20
	subs := submitPaced(ctx, testLoad(sink.Addr(), "run2"), n)
	err := r.waitFor(ctx, acceptedSeqs(subs), 300*time.Millisecond)
	if !errors.Is(err, errArrivalTimeout) {
		t.Fatalf("waitFor = %v, want %v", err, errArrivalTimeout)
	}
	rep := summarize(subs, r.snapshot())
	if rep.accepted != n || rep.delivered != 0 || len(rep.missing) != n || len(rep.latencies) != 0 {
		t.Fatalf("report %v, want %d accepted, none delivered, all missing", rep, n)
	}
	// The system got n distinct messages (no dedupe possible).
	ids := map[string]bool{}
	for _, m := range sink.Wait(t, n) {
		ids[header(t, m.Data, "Message-Id")+"|"+header(t, m.Data, seqHeader)] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct Message-ID/%s pairs, want %d", len(ids), seqHeader, n)
	}
}

// A rejecting system: submissions fail, nothing counts as accepted.
func TestPaced_Rejected(t *testing.T) {
	ctx := context.Background()
	sink := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{
		Rcpt: func(string) error { return smtptest.Reply(550, "5.1.1", "no such user") },
	}})
	subs := submitPaced(ctx, testLoad(sink.Addr(), "run3"), 5)
	rep := summarize(subs, arrivals{first: map[int]time.Time{}})
	if rep.accepted != 0 || rep.failed != 5 {
		t.Fatalf("report %v, want 5 failed", rep)
	}
	if !strings.Contains(subs[0].err.Error(), "550") {
		t.Errorf("err = %v, want the 550", subs[0].err)
	}
}

// Mail from another run (a late copy from an earlier bench on the same
// port) or without the header is not taken for one of ours.
func TestReceiver_ForeignMessages(t *testing.T) {
	ctx := context.Background()
	r := startTestReceiver(t, "mine")
	c, err := dialSMTP(ctx, r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, data := range []string{
		"X-Bench-Seq: other.1\r\n\r\nbody\r\n",
		"Subject: no header\r\n\r\nbody\r\n",
		"X-Bench-Seq: mine.1\r\n\r\nbody\r\n",
		"X-Bench-Seq: mine.1\r\n\r\nagain\r\n",
	} {
		if err := send(c, "a@b.example", "c@d.example", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	got := r.snapshot()
	if len(got.first) != 1 || got.first[1].IsZero() || got.foreign != 2 || got.duplicates != 1 {
		t.Errorf("arrivals = %d seqs %v, foreign %d, duplicates %d; want seq 1 only, 2 foreign, 1 duplicate",
			len(got.first), got.first, got.foreign, got.duplicates)
	}
}

func TestMessage(t *testing.T) {
	o := testLoad("", "r")
	tests := []struct {
		giveSize int
		giveSeq  int
	}{{0, 0}, {1000, 1}, {10240, 99}, {100000, 7}}
	for _, tt := range tests {
		o.size = tt.giveSize
		m := message(o, tt.giveSeq, time.Now())
		if len(m) < tt.giveSize || len(m) > tt.giveSize+600 {
			t.Errorf("message(size %d) has %d bytes", tt.giveSize, len(m))
		}
		if v := header(t, m, seqHeader); v != "r."+strconv.Itoa(tt.giveSeq) {
			t.Errorf("message(seq %d) %s = %q", tt.giveSeq, seqHeader, v)
		}
		for i, line := range bytes.Split(m, []byte("\r\n")) {
			if len(line) > 78 {
				t.Errorf("message(size %d) line %d has %d characters", tt.giveSize, i, len(line))
			}
		}
	}
}

// The whole command against its own receiver: one result line.
func TestRun(t *testing.T) {
	addr := freeAddr(t)
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-to", addr, "-listen", addr, "-n", "50", "-rate", "500", "-c", "3", "-size", "500"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	if line := out.String(); !strings.HasPrefix(line, "failed=0 accepted=50 delivered=50 missing=0 ") {
		t.Errorf("output %q", line)
	}
}

func TestRun_BadFlags(t *testing.T) {
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"-n", "5"}, "-to: required"},
		{[]string{"-to", "x:1", "-rate", "0"}, "-rate"},
		{[]string{"-to", "x:1", "-n", "0"}, "-n"},
		{[]string{"-to", "x:1", "-c", "0"}, "-c"},
		{[]string{"-to", "x:1", "-from", "nobody"}, "-from"},
		{[]string{"-to", "x:1", "-wait", "0s"}, "-wait"},
		{[]string{"-to", "x:1", "-duration", "-1s"}, "-duration"},
		{[]string{"-to", "x:1", "-progress", "-1s"}, "-progress"},
		{[]string{"-to", "x:1", "-warmup", "-1s"}, "-warmup"},
	}
	for _, tt := range tests {
		var out, errs bytes.Buffer
		err := run(context.Background(), tt.give, &out, &errs)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error naming %s", tt.give, err, tt.want)
		}
	}
}

// A warm-up is submitted and must arrive, but is reported apart.
func TestRun_Warmup(t *testing.T) {
	addr := freeAddr(t)
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-to", addr, "-listen", addr, "-n", "30", "-rate", "200", "-warmup", "100ms",
		"-c", "3", "-size", "500"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	line := strings.TrimSpace(out.String())
	if !strings.HasPrefix(line, "failed=0 accepted=30 delivered=30 missing=0 ") || !strings.Contains(line, " warmup=20 warmup_missing=0 warmup_p99_ms=") {
		t.Errorf("output %q, want 30 timed messages and 20 of warm-up", line)
	}
}

// -duration replaces -n with rate × duration.
func TestParseFlags_Duration(t *testing.T) {
	tests := []struct {
		give  []string
		wantN int
	}{
		{[]string{"-to", "x:1", "-n", "7"}, 7},
		{[]string{"-to", "x:1", "-n", "7", "-rate", "80", "-duration", "10m"}, 48000},
		{[]string{"-to", "x:1", "-rate", "55", "-duration", "600s"}, 33000},
		{[]string{"-to", "x:1", "-rate", "2.5", "-duration", "3s"}, 7},
		{[]string{"-to", "x:1", "-rate", "0.1", "-duration", "1s"}, 1},
	}
	for _, tt := range tests {
		c, err := parseFlags(tt.give, io.Discard)
		if err != nil {
			t.Fatalf("parseFlags(%q): %v", tt.give, err)
		}
		if c.n != tt.wantN {
			t.Errorf("parseFlags(%q).n = %d, want %d", tt.give, c.n, tt.wantN)
		}
	}
}

// A timed run with progress: the message count follows from the rate and
// duration, and the progress lines count the arrivals as they come.
func TestRun_DurationProgress(t *testing.T) {
	addr := freeAddr(t)
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-to", addr, "-listen", addr, "-rate", "40", "-duration", "1s",
		"-progress", "100ms", "-c", "2", "-size", "300"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs.String())
	}
	if line := out.String(); !strings.HasPrefix(line, "failed=0 accepted=40 delivered=40 missing=0 ") {
		t.Errorf("output %q", line)
	}
	var counts []int
	for _, line := range strings.Split(errs.String(), "\n") {
		if _, v, ok := strings.Cut(line, "msg=progress delivered="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("progress line %q: %v", line, err)
			}
			counts = append(counts, n)
		}
	}
	// About 1 s of submissions logged every 100 ms: several lines, never
	// decreasing, never above what was sent.
	if len(counts) < 3 {
		t.Fatalf("%d progress lines in %q, want at least 3", len(counts), errs.String())
	}
	for i, n := range counts {
		if n > 40 || (i > 0 && n < counts[i-1]) {
			t.Errorf("progress counts %v: want non-decreasing, at most 40", counts)
			break
		}
	}
	if counts[len(counts)-1] == 0 {
		t.Errorf("progress counts %v: no arrival ever counted", counts)
	}
}

// freeAddr is a loopback address nothing listens on: run submits to its own
// receiver there.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func header(t testing.TB, data []byte, name string) string {
	t.Helper()
	head, _, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of header in %q", data)
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
