package capture

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// start serves a capture receiver on a free loopback port until the test
// ends; stop ends it early and waits for Serve to return.
func start(t *testing.T) (addr, dir string, stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.ShutdownGrace = 5 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, cfg, slog.New(slog.DiscardHandler)) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return l.Addr().String(), cfg.Dir, stop
}

// dialFrom opens an SMTP client from a chosen loopback source address.
func dialFrom(t *testing.T, src, addr, ehlo string) *smtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(ehlo); err != nil {
		t.Fatal(err)
	}
	return c
}

func emlFiles(t *testing.T, dir string) (eml []string, other []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") && !strings.HasPrefix(e.Name(), ".") {
			eml = append(eml, filepath.Join(dir, e.Name()))
		} else {
			other = append(other, e.Name())
		}
	}
	return eml, other
}

func TestCapture_StoresMessageWithReceivedHeader(t *testing.T) {
	addr, dir, _ := start(t)
	body := "From: a@demo.example\r\nSubject: hi\r\n\r\nhello\r\n"
	c := dialFrom(t, "127.0.0.2", addr, "out1.outflow.test")
	if err := c.SendMail("a@demo.example", []string{"b@example.net"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	files, other := emlFiles(t, dir)
	if len(files) != 1 || len(other) != 0 {
		t.Fatalf("files %v, other %v; want one .eml and nothing else", files, other)
	}
	got, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Return-Path: <a@demo.example>\r\n",
		"Envelope-to: b@example.net\r\n",
		"Received: from out1.outflow.test ([127.0.0.2])\r\n\tby capture.localhost (Outflow capture) with ESMTP id ",
		"\r\n\tfor <b@example.net>;\r\n",
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("file lacks %q:\n%s", want, got)
		}
	}
	if !bytes.HasSuffix(got, []byte(body)) {
		t.Errorf("file does not end with the message:\n%s", got)
	}
}

func TestCapture_NoForClauseWithSeveralRecipients(t *testing.T) {
	addr, dir, _ := start(t)
	c := dialFrom(t, "127.0.0.3", addr, "out2.outflow.test")
	if err := c.SendMail("", []string{"b@example.net", "c@example.net"}, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	files, _ := emlFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("%d files, want 1", len(files))
	}
	got, _ := os.ReadFile(files[0])
	if bytes.Contains(got, []byte("for <")) || !bytes.Contains(got, []byte("Envelope-to: b@example.net, c@example.net\r\n")) ||
		!bytes.Contains(got, []byte("Return-Path: <>\r\n")) || !bytes.Contains(got, []byte("([127.0.0.3])")) {
		t.Errorf("trace headers wrong:\n%s", got)
	}
}

func TestCapture_ShutdownLetsTransferFinish(t *testing.T) {
	addr, dir, stop := start(t)
	c := dialFrom(t, "127.0.0.2", addr, "out1.outflow.test")
	if err := c.Mail("a@demo.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: half\r\n\r\nfirst half\r\n")
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(100 * time.Millisecond) // the receiver is shutting down now
	if files, _ := emlFiles(t, dir); len(files) != 0 {
		t.Fatalf("a file exists before the message ended: %v", files)
	}
	io.WriteString(w, "second half\r\n")
	if err := w.Close(); err != nil {
		t.Fatalf("end of data during shutdown: %v", err)
	}
	c.Quit()
	<-stopped
	files, other := emlFiles(t, dir)
	if len(files) != 1 || len(other) != 0 {
		t.Fatalf("files %v, other %v; want one complete .eml", files, other)
	}
	if got, _ := os.ReadFile(files[0]); !bytes.HasSuffix(got, []byte("first half\r\nsecond half\r\n")) {
		t.Errorf("file incomplete:\n%s", got)
	}
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(*Config)
		wantKey string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad addr", func(c *Config) { c.Addr = "2625" }, "capture.addr"},
		{"no dir", func(c *Config) { c.Dir = "" }, "capture.dir"},
		{"bad hostname", func(c *Config) { c.Hostname = "a b" }, "capture.hostname"},
		{"tiny size", func(c *Config) { c.MaxMessageSize = 10 }, "capture.max_message_size"},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.modify(&cfg)
		err := cfg.Validate()
		if (err == nil) != (tt.wantKey == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.wantKey+":")) {
			t.Errorf("%s: Validate() = %v, want key %q", tt.name, err, tt.wantKey)
		}
	}
}
