//go:build integration

// Package e2e holds the end-to-end tests: the whole pipeline with a real
// embedded NATS JetStream, a private ClickHouse, SMTP over loopback sockets,
// and the outflow binary run as subprocesses (crash, shutdown, several
// processes). They run under `make test` (build tag integration).
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outflowmail/outflow/app"
)

// binary is the outflow binary built once for the subprocess tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outflow-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "outflow")
	build := exec.Command("go", "build", "-o", binary, "../cmd/outflow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build outflow:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runInProcess runs roles of cfg in this process until the test ends, then
// checks that they stopped cleanly. The context returned ends with them.
func runInProcess(t *testing.T, cfg *app.Config, roles []string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, roles, quietLogger()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app.Run: %v", err)
		}
	})
	return ctx
}

// waitListening waits until addr accepts TCP connections.
func waitListening(tb testing.TB, addr string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not listening after %s: %v", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// process is an outflow subprocess whose output is kept for failure reports.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess runs the outflow binary with args; the test's cleanup kills
// it if it is still running and prints its output when the test failed.
func startProcess(tb testing.TB, name string, args ...string) *process {
	tb.Helper()
	p := &process{name: name, cmd: exec.Command(binary, args...), out: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("--- output of %s:\n%s", p.name, tail(p.out.String(), 60))
		}
	})
	return p
}

// stop sends sig and waits for the process to end.
func (p *process) stop(tb testing.TB, sig os.Signal, within time.Duration) error {
	tb.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err // keep it for cleanup
		return err
	case <-time.After(within):
		tb.Fatalf("%s still running %s after %v", p.name, within, sig)
		return nil
	}
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// eventually polls cond until it holds or the time is up.
func eventually(tb testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not reached within %s (last: %s)", what, within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
