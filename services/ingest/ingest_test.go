package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/tenant"
)

type fixture struct {
	ns    *server.Server
	bus   *bus.Bus
	store tenant.Store
	srv   *Server
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a real JetStream server, a tenant "acme" (password
// "correct-horse", domain acme.example, client range 127.0.0.0/8 usable on the
// "connector" listener) and an ingest server with three listeners.
func start(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	b := bustest.ConnectTo(t, ns.ClientURL(), testLogger(t), func(c *bus.Config) { c.PublishTimeout = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	store := tenant.Store{Tenants: b.Tenants, Policy: b.Policy}
	acme := &tenant.Tenant{ID: "acme", ClientIPs: []string{"127.0.0.0/8"}}
	if err := acme.SetPassword("correct-horse"); err != nil {
		t.Fatal(err)
	}
	if err := acme.AddDomain("acme.example"); err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, acme); err != nil {
		t.Fatal(err)
	}
	dir := tenant.NewDirectory()
	go dir.Run(ctx, store, testLogger(t))
	<-dir.Ready()

	certFile, keyFile := selfSigned(t)
	cfg := DefaultConfig()
	cfg.Hostname = "submit.test"
	cfg.MaxRecipients = 3
	cfg.MaxMessageSize = 64 << 10
	cfg.ShutdownGrace = time.Second
	cfg.Listeners = []Listener{
		{Name: "plain", Addr: "127.0.0.1:0", TLS: TLSNone, AllowInsecureAuth: true},
		{Name: "starttls", Addr: "127.0.0.1:0", TLS: TLSStartTLS, CertFile: certFile, KeyFile: keyFile},
		{Name: "connector", Addr: "127.0.0.1:0", TLS: TLSNone, ClientIPTenants: true},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := New(cfg, b, dir, testLogger(t))
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &fixture{ns: ns, bus: b, store: store, srv: srv}
}

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "submit.test"},
		DNSNames: []string{"submit.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}

func dial(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCode(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want SMTP %d %v", what, err, code, enh)
	}
	if se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("%s: got %d %v %q, want %d %v", what, se.Code, se.EnhancedCode, se.Message, code, enh)
	}
}

const testBody = "From: a@acme.example\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nHello there.\r\n"

func send(c *smtp.Client, from string, to []string, body string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	return w.Close()
}

// nextSubmitted fetches one message from the submitted stream.
func nextSubmitted(t *testing.T, f *fixture) (*envelope.Envelope, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := f.bus.JS.CreateOrUpdateConsumer(ctx, bus.StreamSubmitted, jetstream.ConsumerConfig{Durable: "test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second))
	if err != nil {
		t.Fatalf("no submitted message: %v", err)
	}
	m.Ack()
	env, err := envelope.Decode(m.Headers())
	if err != nil {
		t.Fatal(err)
	}
	return env, m.Data()
}

func TestSubmit_AuthPlainAccepted(t *testing.T) {
	f := start(t, nil)
	c := dial(t, f.srv.Addr("plain"))
	if err := c.Auth(sasl.NewPlainClient("", "acme", "correct-horse")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := send(c, "a@acme.example", []string{"b@example.net", "c@example.org"}, testBody); err != nil {
		t.Fatalf("send: %v", err)
	}
	env, body := nextSubmitted(t, f)
	if env.Tenant != "acme" || env.From != "a@acme.example" || len(env.Rcpts) != 2 || env.AuthID != "acme" {
		t.Errorf("envelope = %+v", env)
	}
	if env.Size != int64(len(body)) {
		t.Errorf("size %d, body %d bytes", env.Size, len(body))
	}
	s := string(body)
	for _, want := range []string{"Received: from client.test ([127.0.0.1])", "by submit.test (Outflow) with ESMTPA id " + env.ID,
		"(tenant acme, identity acme)", "Message-ID: <" + env.ID + "@submit.test>", "\r\nDate: ", "Subject: hello"} {
		if !strings.Contains(s, want) {
			t.Errorf("body lacks %q:\n%s", want, s)
		}
	}
	if env.MessageID != env.ID+"@submit.test" {
		t.Errorf("MessageID = %q", env.MessageID)
	}
}

func TestSubmit_KeepsMessageIDAndDate(t *testing.T) {
	f := start(t, nil)
	c := dial(t, f.srv.Addr("plain"))
	if err := c.Auth(sasl.NewPlainClient("", "acme", "correct-horse")); err != nil {
		t.Fatal(err)
	}
	body := "Message-ID: <x1@acme.example>\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\n" + testBody
	if err := send(c, "a@acme.example", []string{"b@example.net"}, body); err != nil {
		t.Fatal(err)
	}
	env, got := nextSubmitted(t, f)
	if strings.Count(string(got), "Message-ID:") != 1 || strings.Count(string(got), "\nDate:") != 1 {
		t.Errorf("headers duplicated:\n%s", got)
	}
	if env.MessageID != "x1@acme.example" {
		t.Errorf("MessageID = %q, want x1@acme.example", env.MessageID)
	}
}

func TestSubmit_AuthLogin(t *testing.T) {
	f := start(t, nil)
	c := dial(t, f.srv.Addr("plain"))
	if err := c.Auth(sasl.NewLoginClient("acme", "correct-horse")); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
		t.Fatal(err)
	}
}

func TestSubmit_ClientIPConnector(t *testing.T) {
	f := start(t, nil)
	c := dial(t, f.srv.Addr("connector"))
	if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
		t.Fatalf("send without AUTH from tenant range: %v", err)
	}
	env, body := nextSubmitted(t, f)
	if env.Tenant != "acme" || env.AuthID != "ip:127.0.0.1" {
		t.Errorf("envelope = %+v", env)
	}
	if !strings.Contains(string(body), "with ESMTP id") {
		t.Errorf("connector submission should be ESMTP (no A):\n%s", body)
	}
}

func TestSubmit_Replies(t *testing.T) {
	tests := []struct {
		name     string
		listener string
		run      func(t *testing.T, f *fixture, c *smtp.Client) error
		wantCode int
		wantEnh  smtp.EnhancedCode
	}{
		{"bad password", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			return c.Auth(sasl.NewPlainClient("", "acme", "wrong-password"))
		}, 535, smtp.EnhancedCode{5, 7, 8}},
		{"unknown tenant", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			return c.Auth(sasl.NewPlainClient("", "nobody", "correct-horse"))
		}, 535, smtp.EnhancedCode{5, 7, 8}},
		{"bad password LOGIN", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			return c.Auth(sasl.NewLoginClient("acme", "nope-nope"))
		}, 535, smtp.EnhancedCode{5, 7, 8}},
		{"no auth", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			return c.Mail("a@acme.example", nil)
		}, 530, smtp.EnhancedCode{5, 7, 0}},
		{"auth before starttls", "starttls", func(t *testing.T, f *fixture, c *smtp.Client) error {
			return c.Auth(sasl.NewPlainClient("", "acme", "correct-horse"))
		}, 523, smtp.EnhancedCode{5, 7, 10}},
		{"sender domain not verified", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			return c.Mail("a@other.example", nil)
		}, 550, smtp.EnhancedCode{5, 7, 1}},
		{"declared size over limit", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			return c.Mail("a@acme.example", &smtp.MailOptions{Size: 65<<10 + 1})
		}, 552, smtp.EnhancedCode{5, 3, 4}},
		{"data over limit", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			return send(c, "a@acme.example", []string{"b@example.net"}, testBody+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 1100))
		}, 552, smtp.EnhancedCode{5, 3, 4}},
		{"too many recipients", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			return send(c, "a@acme.example", []string{"1@x.example", "2@x.example", "3@x.example", "4@x.example"}, testBody)
		}, 452, smtp.EnhancedCode{4, 5, 3}},
		{"suspended tenant", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			setPolicy(t, f, tenant.StateSuspended, "complaint rate 2.1%")
			err := c.Mail("a@acme.example", nil)
			var se *smtp.SMTPError
			if errors.As(err, &se) && !strings.Contains(se.Message, "complaint rate 2.1%") {
				t.Errorf("suspension reply %q lacks the reason", se.Message)
			}
			return err
		}, 550, smtp.EnhancedCode{5, 7, 1}},
		{"jetstream down", "plain", func(t *testing.T, f *fixture, c *smtp.Client) error {
			auth(t, c)
			f.ns.Shutdown()
			f.ns.WaitForShutdown()
			return send(c, "a@acme.example", []string{"b@example.net"}, testBody)
		}, 451, smtp.EnhancedCode{4, 3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, nil)
			c := dial(t, f.srv.Addr(tt.listener))
			wantCode(t, tt.name, tt.run(t, f, c), tt.wantCode, tt.wantEnh)
		})
	}
}

func TestSubmit_StartTLSThenAuth(t *testing.T) {
	f := start(t, nil)
	c, err := smtp.DialStartTLS(f.srv.Addr("starttls"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auth(t, c)
	if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
		t.Fatal(err)
	}
	_, body := nextSubmitted(t, f)
	if !strings.Contains(string(body), "with ESMTPSA id") {
		t.Errorf("want ESMTPSA in Received:\n%s", body)
	}
}

func TestSubmit_ImplicitTLS(t *testing.T) {
	var certFile, keyFile string
	f := start(t, func(c *Config) {
		certFile, keyFile = c.Listeners[1].CertFile, c.Listeners[1].KeyFile
		c.Listeners = append(c.Listeners, Listener{Name: "smtps", Addr: "127.0.0.1:0", TLS: TLSImplicit, CertFile: certFile, KeyFile: keyFile})
	})
	c, err := smtp.DialTLS(f.srv.Addr("smtps"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auth(t, c)
	if err := send(c, "a@acme.example", []string{"b@example.net"}, testBody); err != nil {
		t.Fatal(err)
	}
}

func auth(t *testing.T, c *smtp.Client) {
	t.Helper()
	if err := c.Auth(sasl.NewPlainClient("", "acme", "correct-horse")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
}

func setPolicy(t *testing.T, f *fixture, st tenant.State, reason string) {
	t.Helper()
	if err := f.store.PutPolicy(context.Background(), "acme", tenant.Policy{State: st, Reason: reason, Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// The directory applies it by watching; wait until it has.
	deadline := time.Now().Add(3 * time.Second)
	for f.srv.dir.Policy("acme").State != st {
		if time.Now().After(deadline) {
			t.Fatal("policy not applied by the watch within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string
	}{
		{"bad tls", func(c *Config) { c.Listeners = []Listener{{Name: "a", Addr: "127.0.0.1:1", TLS: "maybe"}} }, "ingest.listeners[0].tls"},
		{"tls without cert", func(c *Config) { c.Listeners = []Listener{{Name: "a", Addr: "127.0.0.1:1", TLS: TLSImplicit}} }, "ingest.listeners[0].cert_file"},
		{"bad addr", func(c *Config) { c.Listeners = []Listener{{Name: "a", Addr: "nope", TLS: TLSNone}} }, "ingest.listeners[0].addr"},
		{"rcpts", func(c *Config) { c.MaxRecipients = 0 }, "ingest.max_recipients"},
		{"size", func(c *Config) { c.MaxMessageSize = 10 }, "ingest.max_message_size"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantKey) {
			t.Errorf("%s: Validate() = %v, want error naming %s", tt.name, err, tt.wantKey)
		}
	}
}
