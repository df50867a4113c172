package ingest

import (
	"context"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/envelope"
)

// withMX adds an MX listener for bounce domain bounces.test, FBL address
// fbl@outflow.test and DMARC address dmarc@outflow.test.
func withMX(mutate func(*MXConfig)) func(*Config) {
	return func(c *Config) {
		c.MX = DefaultMXConfig()
		c.MX.Addr = "127.0.0.1:0"
		c.MX.BounceDomains = []string{"bounces.test"}
		c.MX.FBLAddresses = []string{"fbl@outflow.test"}
		c.MX.DMARCAddress = "dmarc@outflow.test"
		c.MX.MaxMessageSize = 32 << 10
		if mutate != nil {
			mutate(&c.MX)
		}
	}
}

// rawSMTP speaks SMTP line by line, so that a test can send paths the
// go-smtp client would refuse to write or would rewrite.
type rawSMTP struct {
	t  *testing.T
	tp *textproto.Conn
}

func dialRaw(t *testing.T, addr string) *rawSMTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := &rawSMTP{t: t, tp: textproto.NewConn(c)}
	t.Cleanup(func() { r.tp.Close() })
	r.expect("", 220)
	r.expect("EHLO probe.test", 250)
	return r
}

// cmd sends a line and returns the reply code and text.
func (r *rawSMTP) cmd(line string) (int, string) {
	r.t.Helper()
	if line != "" {
		if err := r.tp.PrintfLine("%s", line); err != nil {
			r.t.Fatal(err)
		}
	}
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil && code == 0 {
		r.t.Fatalf("%q: %v", line, err)
	}
	return code, msg
}

func (r *rawSMTP) expect(line string, want int) string {
	r.t.Helper()
	code, msg := r.cmd(line)
	if code != want {
		r.t.Fatalf("%q: got %d %s, want %d", line, code, msg, want)
	}
	return msg
}

func feedbackCount(t *testing.T, f *fixture) uint64 {
	t.Helper()
	st, err := f.bus.JS.Stream(context.Background(), bus.StreamFeedback)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestMX_OpenRelayProbesRefused(t *testing.T) {
	f := start(t, withMX(nil))
	probes := []string{
		"victim@example.net",                          // another domain
		"postmaster@example.net",                      // another domain's postmaster
		"victim%example.net@bounces.test",             // percent hack
		"victim%example.net@[127.0.0.1]",              // percent hack at an IP literal
		`"victim@example.net"@bounces.test`,           // quoted local part hiding an @
		`"victim%example.net"@bounces.test`,           // quoted percent hack
		"@bounces.test:victim@example.net",            // source route through us
		"@a.example,@bounces.test:victim@example.net", // longer source route
		"victim@example.net@bounces.test",             // two @
		"example.net!victim@bounces.test",             // bang path
		"example.net!victim",                          // bare bang path
		"victim@[127.0.0.1]",                          // IP literal
		"victim@[IPv6:::1]",                           // IPv6 literal
		"postmaster@[127.0.0.1]",                      // postmaster at an IP literal
		"victim@sub.bounces.test",                     // subdomain of ours
		"victim@bounces.test.example.net",             // ours as a prefix
		"victim@bounces.test.",                        // trailing dot
		"fbl@outflow.test.example.net",                // FBL address with a suffix
		"other@outflow.test",                          // other local part at the FBL domain
		"victim",                                      // no domain at all
	}
	for _, p := range probes {
		t.Run(p, func(t *testing.T) {
			r := dialRaw(t, f.srv.MXAddr())
			r.expect("MAIL FROM:<>", 250)
			code, msg := r.cmd("RCPT TO:<" + p + ">")
			t.Logf("RCPT TO:<%s> = %d %s", p, code, msg)
			if code < 500 || code > 599 {
				t.Fatalf("RCPT TO:<%s> = %d %s, want a 5xx refusal", p, code, msg)
			}
			// Parsable addresses that are not ours get the relay refusal;
			// the rest a syntax error from go-smtp.
			if code != 550 && code != 501 && code != 553 {
				t.Errorf("RCPT TO:<%s> = %d %s, want 550 5.7.1 (or a syntax error)", p, code, msg)
			}
			if code == 550 && !strings.HasPrefix(msg, "5.7.1") {
				t.Errorf("RCPT TO:<%s> = %d %s, want 5.7.1", p, code, msg)
			}
			// With no recipient accepted there is nothing to send.
			if code, _ := r.cmd("DATA"); code < 500 {
				t.Errorf("DATA after refused RCPT = %d, want 5xx", code)
			}
		})
	}
	// Also with a real sender, and no AUTH offered at all.
	r := dialRaw(t, f.srv.MXAddr())
	if code, msg := r.cmd("AUTH PLAIN AGFjbWUAY29ycmVjdC1ob3JzZQ=="); code < 500 {
		t.Errorf("AUTH on the MX = %d %s, want refused", code, msg)
	}
	r.expect("MAIL FROM:<spammer@example.org>", 250)
	r.expect("RCPT TO:<victim@example.net>", 550)
	if n := feedbackCount(t, f); n != 0 {
		t.Errorf("feedback stream holds %d messages after relay probes, want 0", n)
	}
}

func TestMX_AcceptsOwnAddresses(t *testing.T) {
	f := start(t, withMX(nil))
	tests := []struct {
		rcpt, wantMailbox string
	}{
		{"bounces+abcdef234@bounces.test", MailboxBounce},
		{"BOUNCES+ABCDEF234@Bounces.Test", MailboxBounce}, // case folded by the remote MTA
		{"postmaster@bounces.test", MailboxBounce},        // RFC 5321 4.5.1
		{"fbl@outflow.test", MailboxFBL},
		{"FBL@outflow.TEST", MailboxFBL},
		{"dmarc@outflow.test", MailboxDMARC},
	}
	cons, err := f.bus.JS.CreateOrUpdateConsumer(context.Background(), bus.StreamFeedback, jetstream.ConsumerConfig{Durable: "t", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		c := dial(t, f.srv.MXAddr())
		report := "From: MAILER-DAEMON@mx.example.net\r\nSubject: report\r\n\r\nbody of " + tt.rcpt + "\r\n"
		if err := send(c, "", []string{tt.rcpt}, report); err != nil {
			t.Fatalf("send to %s: %v", tt.rcpt, err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second))
		if err != nil {
			t.Fatalf("report to %s not spooled: %v", tt.rcpt, err)
		}
		_ = m.Ack()
		if want := bus.SubjectFeedback + "." + tt.wantMailbox; m.Subject() != want {
			t.Errorf("report to %s on %s, want %s", tt.rcpt, m.Subject(), want)
		}
		env, err := envelope.Decode(m.Headers())
		if err != nil {
			t.Fatal(err)
		}
		body := string(m.Data())
		if env.From != "" || env.Rcpts[0] != tt.rcpt || env.ClientIP != "127.0.0.1" || env.Size != int64(len(body)) {
			t.Errorf("envelope = %+v", env)
		}
		if !strings.HasPrefix(body, "Received: from client.test ([127.0.0.1])\r\n\tby submit.test (Outflow MX) with ESMTP id "+env.ID) ||
			!strings.HasSuffix(body, report) {
			t.Errorf("spooled body:\n%s", body)
		}
	}
}

func TestMX_Replies(t *testing.T) {
	const report = "Subject: r\r\n\r\nx\r\n"
	tests := []struct {
		name     string
		mutate   func(*MXConfig)
		run      func(t *testing.T, f *fixture, c *smtp.Client) error
		wantCode int
		wantEnh  smtp.EnhancedCode
	}{
		{"too large", nil, func(t *testing.T, f *fixture, c *smtp.Client) error {
			return send(c, "", []string{"fbl@outflow.test"}, report+strings.Repeat(strings.Repeat("y", 70)+"\r\n", 500))
		}, 552, smtp.EnhancedCode{5, 3, 4}},
		{"rate limited", func(c *MXConfig) { c.RatePerMinute = 2 }, func(t *testing.T, f *fixture, c *smtp.Client) error {
			for i := range 2 {
				if err := send(c, "", []string{"fbl@outflow.test"}, report); err != nil {
					t.Fatalf("report %d within the rate: %v", i, err)
				}
			}
			return c.Mail("", nil)
		}, 451, smtp.EnhancedCode{4, 7, 1}},
		{"jetstream down", nil, func(t *testing.T, f *fixture, c *smtp.Client) error {
			f.ns.Shutdown()
			f.ns.WaitForShutdown()
			return send(c, "", []string{"bounces+x@bounces.test"}, report)
		}, 451, smtp.EnhancedCode{4, 3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, withMX(tt.mutate))
			c := dial(t, f.srv.MXAddr())
			wantCode(t, tt.name, tt.run(t, f, c), tt.wantCode, tt.wantEnh)
		})
	}
}

func TestMXConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*MXConfig)
		wantKey string
	}{
		{"no addresses", func(c *MXConfig) { c.BounceDomains, c.FBLAddresses, c.DMARCAddress = nil, nil, "" }, "ingest.mx.bounce_domains"},
		{"bad domain", func(c *MXConfig) { c.BounceDomains = []string{"a@b.example"} }, "ingest.mx.bounce_domains[0]"},
		{"quoted fbl", func(c *MXConfig) { c.FBLAddresses = []string{`"x@y"@b.example`} }, "ingest.mx.fbl_addresses[0]"},
		{"bad dmarc", func(c *MXConfig) { c.DMARCAddress = "dmarc" }, "ingest.mx.dmarc_address"},
		{"bad addr", func(c *MXConfig) { c.Addr = "25" }, "ingest.mx.addr"},
		{"rate", func(c *MXConfig) { c.RatePerMinute = 0 }, "ingest.mx.rate_per_minute"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		withMX(tt.mutate)(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantKey) {
			t.Errorf("%s: Validate() = %v, want error naming %s", tt.name, err, tt.wantKey)
		}
	}
}

func TestRateLimiter_Refills(t *testing.T) {
	r := newRateLimiter(60)
	ip := netip.MustParseAddr("127.0.0.9")
	now := time.Unix(1e9, 0)
	for i := range 60 {
		if !r.allow(ip, now) {
			t.Fatalf("message %d of the burst refused", i)
		}
	}
	if r.allow(ip, now) {
		t.Fatal("61st message within the same instant allowed")
	}
	if !r.allow(netip.MustParseAddr("127.0.0.10"), now) {
		t.Fatal("another IP is limited too")
	}
	if !r.allow(ip, now.Add(time.Second)) {
		t.Fatal("one token not refilled after a second at 60/min")
	}
}
