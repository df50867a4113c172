// Package chtest runs a private ClickHouse server for tests: its own data
// directory and free loopback ports, stopped when the test ends, and able to
// be stopped and restarted on the same data to simulate an outage.
//
// It runs the clickhouse-server binary found on PATH (Debian's package). When
// the binary is missing the test is skipped, unless the environment says
// CI=true, where a missing server is a broken runner and the test fails.
package chtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ConfigFile is the server configuration the private server starts from; the
// ports and paths are overridden on the command line.
const ConfigFile = "/etc/clickhouse-server/config.xml"

// Timeouts of starting and stopping. 18.16 answers in under a second on a
// small machine; the margin covers a loaded CI runner. On SIGTERM the server
// waits for connected clients to notice (up to 10 s with an idle client
// connection), which tests need not sit through: after stopGrace it is
// killed. Every acknowledged insert is already on disk by then.
const (
	startTimeout = 60 * time.Second
	stopGrace    = 2 * time.Second
)

// Server is a running private ClickHouse server.
type Server struct {
	tb   testing.TB
	bin  []string // the command that runs the server
	dir  string
	addr string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
}

// Start runs a ClickHouse server on free loopback ports with its data in a
// temporary directory, waits until it answers a query, and stops it when the
// test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := serverCommand()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("chtest: %v (CI=true: install the clickhouse-server package)", err)
		}
		tb.Skipf("chtest: %v; install clickhouse-server (Debian: apt-get install clickhouse-server) to run this test", err)
	}
	if _, err := os.Stat(ConfigFile); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("chtest: server config: %v", err)
		}
		tb.Skipf("chtest: server config: %v", err)
	}
	// TempDir before Cleanup(Stop): cleanups run last-first, so the server is
	// stopped before its directory is removed.
	dir := tb.TempDir()
	s := &Server{tb: tb, bin: bin, dir: dir}
	tb.Cleanup(s.Stop)
	// Free ports are found by binding :0 and releasing them, so another
	// process can take one before the server does; retry a few times.
	for try := 0; ; try++ {
		ports, err := freePorts(3)
		if err != nil {
			tb.Fatalf("chtest: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.args = s.serverArgs(ports)
		err = s.start()
		if err == nil {
			return s
		}
		if try == 2 {
			tb.Fatalf("chtest: %v", err)
		}
		tb.Logf("chtest: %v; retrying on other ports", err)
	}
}

// Addr is the native protocol address, 127.0.0.1:port.
func (s *Server) Addr() string { return s.addr }

// Dir is the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Stop stops the server (SIGTERM, then SIGKILL if it has not exited after
// 2 s) and waits for it to exit. Its data stays for Restart. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart starts a stopped server again (or stops a running one first) on the
// same ports and data, and waits until it answers.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	if err := s.start(); err != nil {
		s.tb.Fatalf("chtest: restart: %v", err)
	}
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopGrace):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *Server) start() error {
	s.mu.Lock()
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("server output: %w", err)
	}
	cmd := exec.Command(s.bin[0], append(s.bin[1:], s.args...)...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a Ctrl-C of `go test` does not race our stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		s.mu.Unlock()
		return fmt.Errorf("start %s: %w", s.bin[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	if err := s.waitReady(exited); err != nil {
		s.Stop()
		return fmt.Errorf("clickhouse on %s: %w\n%s", s.addr, err, s.logTail())
	}
	return nil
}

// waitReady polls with a query until the server answers, it exits, or the
// start timeout passes.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("server exited during start")
		case <-time.After(100 * time.Millisecond):
		}
		if last = s.ping(); last == nil {
			return nil
		}
	}
	return fmt.Errorf("not answering after %v: %w", startTimeout, last)
}

func (s *Server) ping() error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.addr},
		DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var one uint8
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func (s *Server) serverArgs(ports []int) []string {
	d := s.dir + "/"
	return []string{
		"--config-file=" + ConfigFile,
		"--",
		"--listen_host=127.0.0.1",
		"--tcp_port=" + strconv.Itoa(ports[0]),
		"--http_port=" + strconv.Itoa(ports[1]),
		"--interserver_http_port=" + strconv.Itoa(ports[2]),
		"--path=" + d,
		"--tmp_path=" + d + "tmp/",
		"--user_files_path=" + d + "uf/",
		"--format_schema_path=" + d + "fs/",
		"--logger.log=" + d + "server.log",
		"--logger.errorlog=" + d + "server.err",
	}
}

// logTail is the end of the server's error log and output, for a failure
// message.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"server.err", "stdout"} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", name, data)
	}
	return b.String()
}

// serverCommand finds the server: Debian's clickhouse-server, or the single
// clickhouse binary of upstream packages with its "server" subcommand.
func serverCommand() ([]string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, nil
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, nil
	}
	return nil, errors.New("clickhouse-server not found on PATH")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
