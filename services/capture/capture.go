// Package capture is the development and benchmark stand-in for the
// Internet's mail exchangers: an SMTP server that accepts every message and
// stores it as an .eml file, adding the trace headers a real final-delivery
// MTA adds (Return-Path, Received naming the connecting source address), so
// that "make run" shows which pool address each message left from. Files
// are written atomically: a reader, or a SIGTERM, never sees half a message.
package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Config of the capture receiver.
type Config struct {
	// Addr is host:port to listen on.
	Addr string `yaml:"addr"`
	// Dir receives one .eml file per message; created if missing.
	Dir string `yaml:"dir"`
	// Hostname names this receiver in its greeting and Received headers.
	Hostname string `yaml:"hostname"`
	// MaxMessageSize in bytes, advertised with SIZE (RFC 1870).
	MaxMessageSize int64 `yaml:"max_message_size"`
	// ShutdownGrace is how long open sessions may finish at shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:2625",
		Dir:            "./.data/sink",
		Hostname:       "capture.localhost",
		MaxMessageSize: 64 << 20,
		ShutdownGrace:  10 * time.Second,
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("capture.addr: %w", err)
	}
	switch {
	case c.Dir == "":
		return errors.New("capture.dir: required")
	case c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n"):
		return fmt.Errorf("capture.hostname: %q is not a host name", c.Hostname)
	case c.MaxMessageSize < 1024:
		return errors.New("capture.max_message_size: must be at least 1024")
	case c.ShutdownGrace < 0:
		return errors.New("capture.shutdown_grace: must not be negative")
	}
	return nil
}

// Run listens on cfg.Addr and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return Serve(ctx, l, cfg, log)
}

// Serve serves on l until ctx ends, then stops accepting, lets open
// sessions finish for up to cfg.ShutdownGrace, closes the rest and returns.
// A message whose file is not complete on disk was not acknowledged, so its
// sender still has it.
func Serve(ctx context.Context, l net.Listener, cfg Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		_ = l.Close()
		return fmt.Errorf("capture: %w", err)
	}
	be := &backend{cfg: cfg, log: log}
	srv := smtp.NewServer(be)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxRecipients = 1000
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slogLogger{log}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("capture receiver listening", "addr", l.Addr().String(), "dir", cfg.Dir)

	select {
	case err := <-done:
		return fmt.Errorf("capture: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Info("capture: closing sessions still open after the grace period", "err", err)
		_ = srv.Close()
	}
	<-done
	return nil
}

type backend struct {
	cfg Config
	log *slog.Logger
}

func (be *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := c.Conn().RemoteAddr().String()
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return &session{be: be, remoteIP: ip, helo: c.Hostname()}, nil
}

type session struct {
	be       *backend
	remoteIP string
	helo     string
	from     string
	rcpts    []string
}

var _ smtp.Session = (*session)(nil)

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	id := newID()
	path, err := s.be.store(now, id, s.trace(now, id), data)
	if err != nil {
		s.be.log.Error("capture: store message", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store the message now"}
	}
	s.be.log.Debug("captured message", "file", path, "source_ip", s.remoteIP, "rcpts", len(s.rcpts))
	return nil
}

func (s *session) Reset() { s.from, s.rcpts = "", nil }

func (s *session) Logout() error { return nil }

// trace returns the headers a final-delivery MTA prepends: Return-Path
// with the envelope sender (RFC 5321 4.4), Envelope-to with the envelope
// recipients (as Exim writes it, since a capture file would otherwise lose
// them), and Received naming the client's EHLO and source address.
func (s *session) trace(now time.Time, id string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", s.from)
	fmt.Fprintf(&b, "Envelope-to: %s\r\n", strings.Join(s.rcpts, ", "))
	helo := s.helo
	if helo == "" {
		helo = "unknown"
	}
	// RFC 5321 4.4: From-domain, TCP-info with the address literal, By,
	// With, ID, and For with exactly one path only when there was one
	// recipient (naming one of several would disclose it to the others).
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Outflow capture) with ESMTP id %s", clean(helo), s.remoteIP, s.be.cfg.Hostname, id)
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", s.rcpts[0])
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return []byte(b.String())
}

// store writes the message to a temporary file in the same directory,
// flushes it to disk, and renames it into place (atomic on POSIX file
// systems), then flushes the directory so the rename itself survives a
// crash.
func (be *backend) store(now time.Time, id string, trace, data []byte) (string, error) {
	final := filepath.Join(be.cfg.Dir, fmt.Sprintf("%s-%s.eml", now.Format("20060102T150405.000000000Z"), id))
	f, err := os.CreateTemp(be.cfg.Dir, ".incoming-*.tmp")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(trace); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	ok = true
	if d, err := os.Open(be.cfg.Dir); err == nil {
		err = d.Sync()
		_ = d.Close()
		if err != nil {
			return "", fmt.Errorf("sync %s: %w", be.cfg.Dir, err)
		}
	}
	return final, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// clean keeps a client-supplied EHLO name from breaking the header.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == ';' || r == '[' || r == ']' {
			return '_'
		}
		return r
	}, s)
}

// slogLogger routes go-smtp's connection errors to slog at debug level: a
// client hanging up is not an operator's concern.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	l.log.Debug("capture: " + fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.log.Debug("capture: " + fmt.Sprintln(v...)) }
