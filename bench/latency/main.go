// Command latency is the load tool of make bench's latency mode (issue 7,
// docs/performance.md). It is both ends of the measurement: it submits N
// messages at a fixed rate to the system under test, and it is the SMTP
// server that system relays to. Each message carries a sequence number in a
// header, so the tool times every message from the start of its submission
// to its arrival, on one clock, and knows exactly which never arrived.
//
// It prints one line on stdout:
//
//	failed=N accepted=N delivered=N missing=N duplicates=N arrived_unaccepted=N p50_ms=… p90_ms=… p99_ms=… max_ms=… submit_p50_ms=… submit_p99_ms=… rate=…
//
// where p50…max are over the messages that were accepted and arrived, the
// submit_ percentiles time the submission alone (start to the 250 after
// the data) over the accepted messages, and rate is the submission rate
// achieved (msgs/s).
//
// With -warmup it first submits for that long at the same pace, messages
// that must arrive like the others but are left out of the figures; their
// own p99 is reported apart (warmup=N warmup_missing=N warmup_p99_ms=…),
// so the start of a run is seen, not hidden.
//
// With -duration it submits for that long at -rate instead of -n messages,
// and with -progress it logs the arrivals so far ("msg=progress
// delivered=N" on stderr) at that interval: make soak's use (bench/run.sh,
// SOAK=1), where a run lasts ten minutes.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	to       string        // the system under test's SMTP listener
	listen   string        // where the receiver listens; the system relays there
	n        int           // messages to submit
	size     int           // approximate message size in bytes
	sessions int           // concurrent SMTP sessions
	rate     float64       // submissions per second
	from     string        // envelope and header sender
	rcpt     string        // envelope and header recipient
	wait     time.Duration // how long to wait for arrivals after the last submission
	duration time.Duration // when set, n is rate × duration (the soak mode)
	progress time.Duration // when set, log the arrivals so far this often
	warmup   time.Duration // when set, submit this long before the n timed messages
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.to, "to", "", "host:port of the system under test (required)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:0", "host:port the receiver listens on")
	fs.IntVar(&c.n, "n", 1000, "messages to submit")
	fs.IntVar(&c.size, "size", 10240, "message size in bytes")
	fs.IntVar(&c.sessions, "c", 20, "concurrent SMTP sessions")
	fs.Float64Var(&c.rate, "rate", 50, "submissions per second")
	fs.StringVar(&c.from, "from", "bench@demo.example", "sender address")
	fs.StringVar(&c.rcpt, "rcpt", "rcpt@dest.example", "recipient address")
	fs.DurationVar(&c.wait, "wait", 2*time.Minute, "how long to wait for arrivals after the last submission")
	fs.DurationVar(&c.duration, "duration", 0, "submit for this long at -rate instead of -n messages")
	fs.DurationVar(&c.progress, "progress", 0, "log the count of arrivals this often (0: never)")
	fs.DurationVar(&c.warmup, "warmup", 0, "submit this long at -rate before the timed messages (0: none)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.duration > 0 {
		c.n = messagesFor(c.rate, c.duration)
	}
	return c, nil
}

// messagesFor is how many messages a paced run of d at rate submits: the
// first at once and one per tick after it, so the last starts one tick
// before d ends (never fewer than one message).
func messagesFor(rate float64, d time.Duration) int {
	return max(1, int(rate*d.Seconds()))
}

func (c config) validate() error {
	var errs []error
	if c.to == "" {
		errs = append(errs, errors.New("-to: required"))
	}
	if c.n < 1 {
		errs = append(errs, fmt.Errorf("-n: %d, want at least 1", c.n))
	}
	if c.size < 0 {
		errs = append(errs, fmt.Errorf("-size: %d, want 0 or more", c.size))
	}
	if c.sessions < 1 {
		errs = append(errs, fmt.Errorf("-c: %d, want at least 1", c.sessions))
	}
	if !(c.rate > 0) {
		errs = append(errs, fmt.Errorf("-rate: %v, want more than 0", c.rate))
	}
	if c.duration < 0 {
		errs = append(errs, fmt.Errorf("-duration: %v, want 0 (use -n) or more", c.duration))
	}
	if c.warmup < 0 {
		errs = append(errs, fmt.Errorf("-warmup: %v, want 0 (none) or more", c.warmup))
	}
	if c.progress < 0 {
		errs = append(errs, fmt.Errorf("-progress: %v, want 0 (off) or more", c.progress))
	}
	if c.wait <= 0 {
		errs = append(errs, fmt.Errorf("-wait: %v, want more than 0", c.wait))
	}
	if !strings.Contains(c.from, "@") {
		errs = append(errs, fmt.Errorf("-from: %q is not an address", c.from))
	}
	if !strings.Contains(c.rcpt, "@") {
		errs = append(errs, fmt.Errorf("-rcpt: %q is not an address", c.rcpt))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	runID, err := newRunID()
	if err != nil {
		return err
	}
	rcv, err := startReceiver(cfg.listen, runID)
	if err != nil {
		return err
	}
	defer rcv.close()
	warm := 0
	if cfg.warmup > 0 {
		warm = messagesFor(cfg.rate, cfg.warmup)
	}
	log.Info("receiving", "addr", rcv.addr(), "run", runID, "messages", cfg.n, "warmup", warm)
	if cfg.progress > 0 {
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); logProgress(pctx, log, rcv, cfg.progress) }()
		// Stopped before run returns, so that it never writes to stderr
		// after the caller is done with it.
		defer func() { stop(); <-done }()
	}

	subs := submitPaced(ctx, loadOptions{
		addr: cfg.to, sessions: cfg.sessions, rate: cfg.rate,
		from: cfg.from, rcpt: cfg.rcpt, size: cfg.size, run: runID,
	}, warm+cfg.n)
	for _, s := range subs {
		if s.err != nil {
			// One example is enough to tell what went wrong; the count is
			// in the result line.
			log.Warn("submission failed", "seq", s.seq, "err", s.err)
			break
		}
	}
	if err := rcv.waitFor(ctx, acceptedSeqs(subs), cfg.wait); err != nil {
		log.Warn("stopped waiting for arrivals", "err", err)
	}
	rep, wrep := summarizeWarm(subs, rcv.snapshot(), warm)
	line := rep.String()
	if warm > 0 {
		line += fmt.Sprintf(" warmup=%d warmup_missing=%d warmup_p99_ms=%.1f", warm, len(wrep.missing), ms(percentile(wrep.latencies, 99)))
	}
	if _, err := fmt.Fprintln(stdout, line); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if missing := append(wrep.missing, rep.missing...); len(missing) > 0 {
		log.Warn("accepted but never arrived", "count", len(missing), "first", firstSeqs(missing, 10))
	}
	if rep.accepted == 0 {
		return errNoneAccepted
	}
	return nil
}

// errNoneAccepted: the system took no message, so there is nothing to time.
var errNoneAccepted = errors.New("no message accepted")

// newRunID names this run in every message, so that a late arrival from an
// earlier run on the same port is not taken for one of ours.
func newRunID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func firstSeqs(seqs []int, n int) string {
	var b strings.Builder
	for i, s := range seqs {
		if i == n {
			b.WriteString(" …")
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, s)
	}
	return b.String()
}
