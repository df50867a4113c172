package delivery

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/outflowmail/outflow/pkg/dnstest"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/resolver"
	"github.com/outflowmail/outflow/pkg/smtptest"
)

var (
	source1 = pool.IP{Address: "127.0.0.2", EHLO: "out1.outflow.test"}
	source2 = pool.IP{Address: "127.0.0.3", EHLO: "out2.outflow.test"}
)

// env is a loopback world: a DNS server, and a Deliverer that asks it and
// connects to MX hosts on port.
type env struct {
	dns  *dnstest.Server
	port int
	d    *Deliverer
}

func newEnv(t *testing.T, port string, transports map[string]string) *env {
	t.Helper()
	ds := dnstest.Start(t)
	r, err := resolver.New(ds.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &env{dns: ds, port: p, d: New(Options{
		Resolver: r, Port: p, Transports: transports,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
	})}
}

// startMX starts one receiver per loopback address, all on the same port,
// as MX hosts are all on port 25.
func startMX(t *testing.T, opts smtptest.Options, ips ...string) []*smtptest.Receiver {
	t.Helper()
	for try := 0; ; try++ {
		first := opts
		first.Addr = ips[0] + ":0"
		rs := []*smtptest.Receiver{smtptest.Start(t, first)}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, rs[0].Port()))
			if err != nil {
				ok = false // port taken on that address; pick another
				break
			}
			l.Close()
			o := opts
			o.Addr = net.JoinHostPort(ip, rs[0].Port())
			rs = append(rs, smtptest.Start(t, o))
		}
		if ok {
			return rs
		}
		if try == 5 {
			t.Fatal("no port free on every MX address")
		}
	}
}

func job(rcpts ...string) Job {
	return Job{Domain: "example.net", From: "a@demo.example", Rcpts: rcpts,
		Body: []byte("Subject: hi\r\n\r\nhello\r\n"), Sources: []pool.IP{source1}}
}

func deliver(t *testing.T, d *Deliverer, j Job) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := d.Deliver(ctx, j)
	if len(res.Rcpts) != len(j.Rcpts) {
		t.Fatalf("Deliver: %d recipient results, want %d", len(res.Rcpts), len(j.Rcpts))
	}
	return res
}

func wantDelivered(t *testing.T, res Result) {
	t.Helper()
	for _, r := range res.Rcpts {
		if r.Err != nil || r.Reply.Code != 250 {
			t.Errorf("%s: %v (reply %+v), want delivered", r.Rcpt, r.Err, r.Reply)
		}
	}
}

func wantFailed(t *testing.T, res Result, permanent bool, code int, enhanced string) {
	t.Helper()
	for _, r := range res.Rcpts {
		switch {
		case r.Err == nil:
			t.Errorf("%s: delivered, want failure %d %s", r.Rcpt, code, enhanced)
		case r.Err.Permanent != permanent || r.Err.Code != code || r.Err.Enhanced != enhanced:
			t.Errorf("%s: %v (permanent %v), want permanent %v %d %s", r.Rcpt, r.Err, r.Err.Permanent, permanent, code, enhanced)
		case r.Reply != r.Err.Reply:
			t.Errorf("%s: reply %+v differs from error's %+v", r.Rcpt, r.Reply, r.Err.Reply)
		}
	}
}

func TestDeliver_MXPreferenceOrder(t *testing.T) {
	rs := startMX(t, smtptest.Options{}, "127.0.0.10", "127.0.0.11")
	e := newEnv(t, rs[0].Port(), nil)
	// Listed worst first: order must come from the preference.
	e.dns.AddMX("example.net", 20, "mx2.example.net")
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddAddr("mx1.example.net", "127.0.0.10")
	e.dns.AddAddr("mx2.example.net", "127.0.0.11")

	res := deliver(t, e.d, job("b@example.net"))
	wantDelivered(t, res)
	if res.MX != "mx1.example.net" {
		t.Errorf("MX = %q, want mx1.example.net", res.MX)
	}
	if n := len(rs[0].Messages()); n != 1 {
		t.Errorf("preferred MX got %d messages, want 1", n)
	}
	if n := rs[1].Connections(); n != 0 {
		t.Errorf("backup MX got %d connections, want 0", n)
	}
}

func TestDeliver_FallbackWhenFirstMXDown(t *testing.T) {
	rs := startMX(t, smtptest.Options{}, "127.0.0.11")
	e := newEnv(t, rs[0].Port(), nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddMX("example.net", 20, "mx2.example.net")
	e.dns.AddAddr("mx1.example.net", "127.0.0.12") // nothing listens there
	e.dns.AddAddr("mx2.example.net", "127.0.0.11")

	res := deliver(t, e.d, job("b@example.net"))
	wantDelivered(t, res)
	if res.MX != "mx2.example.net" {
		t.Errorf("MX = %q, want mx2.example.net", res.MX)
	}
}

func TestDeliver_FallbackOnBusyGreeting(t *testing.T) {
	busy := smtptest.Options{Hooks: smtptest.Hooks{Connect: func(string) error {
		return smtptest.Reply(421, "4.3.2", "too busy")
	}}}
	first := startMX(t, busy, "127.0.0.10")[0]
	second := smtptest.Start(t, smtptest.Options{Addr: "127.0.0.11:" + first.Port()})
	e := newEnv(t, first.Port(), nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddMX("example.net", 20, "mx2.example.net")
	e.dns.AddAddr("mx1.example.net", "127.0.0.10")
	e.dns.AddAddr("mx2.example.net", "127.0.0.11")

	wantDelivered(t, deliver(t, e.d, job("b@example.net")))
	if first.Connections() != 1 || len(second.Messages()) != 1 {
		t.Errorf("first MX %d connections, second %d messages; want 1 and 1", first.Connections(), len(second.Messages()))
	}
}

func TestDeliver_AllMXDown(t *testing.T) {
	e := newEnv(t, "1", nil) // port 1: nothing listens
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddMX("example.net", 20, "mx2.example.net")
	e.dns.AddAddr("mx1.example.net", "127.0.0.12")
	e.dns.AddAddr("mx2.example.net", "127.0.0.13")

	res := deliver(t, e.d, job("b@example.net", "c@example.net"))
	wantFailed(t, res, false, 0, "4.4.1")
	if res.MX != "mx2.example.net" {
		t.Errorf("MX = %q, want the last one tried, mx2.example.net", res.MX)
	}
}

func TestDeliver_AllMXRejectPermanently(t *testing.T) {
	reject := smtptest.Options{Hooks: smtptest.Hooks{Connect: func(string) error {
		return smtptest.Reply(554, "5.7.1", "your IP is listed")
	}}}
	rs := startMX(t, reject, "127.0.0.10", "127.0.0.11")
	e := newEnv(t, rs[0].Port(), nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddMX("example.net", 20, "mx2.example.net")
	e.dns.AddAddr("mx1.example.net", "127.0.0.10")
	e.dns.AddAddr("mx2.example.net", "127.0.0.11")

	res := deliver(t, e.d, job("b@example.net"))
	wantFailed(t, res, true, 554, "5.7.1")
	if rs[0].Connections() != 1 || rs[1].Connections() != 1 {
		t.Errorf("connections %d and %d, want both MX tried once", rs[0].Connections(), rs[1].Connections())
	}
}

func TestDeliver_NullMX(t *testing.T) {
	rs := startMX(t, smtptest.Options{}, "127.0.0.10")
	e := newEnv(t, rs[0].Port(), nil)
	e.dns.AddMX("example.net", 0, ".")
	e.dns.AddAddr("example.net", "127.0.0.10") // must not be used

	res := deliver(t, e.d, job("b@example.net"))
	wantFailed(t, res, true, 556, "5.1.10")
	if n := rs[0].Connections(); n != 0 {
		t.Errorf("domain address got %d connections, want 0", n)
	}
}

func TestDeliver_ImplicitMX(t *testing.T) {
	rs := startMX(t, smtptest.Options{}, "127.0.0.10")
	e := newEnv(t, rs[0].Port(), nil)
	e.dns.AddTXT("example.net", "v=spf1 -all") // the name exists, without MX
	e.dns.AddAddr("example.net", "127.0.0.10")

	res := deliver(t, e.d, job("b@example.net"))
	wantDelivered(t, res)
	if res.MX != "example.net" {
		t.Errorf("MX = %q, want the domain itself", res.MX)
	}
}

func TestDeliver_NoSuchDomain(t *testing.T) {
	e := newEnv(t, "25", nil)
	wantFailed(t, deliver(t, e.d, job("b@example.net")), true, 0, "5.1.2")
}

func TestDeliver_NoUsableMX(t *testing.T) {
	e := newEnv(t, "25", nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net") // has no address
	e.dns.AddTXT("mx2.example.net", "exists")
	e.dns.AddMX("example.net", 20, "mx2.example.net") // exists, no address
	wantFailed(t, deliver(t, e.d, job("b@example.net")), true, 0, "5.4.4")
}

func TestDeliver_DNSFailureIsTemporary(t *testing.T) {
	e := newEnv(t, "25", nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.Fail("example.net", dns.TypeMX, dns.RcodeServerFailure)
	wantFailed(t, deliver(t, e.d, job("b@example.net")), false, 0, "4.4.3")
}

func TestDeliver_NoAddressOfSourceFamily(t *testing.T) {
	e := newEnv(t, "25", nil)
	e.dns.AddMX("example.net", 10, "mx1.example.net")
	e.dns.AddAddr("mx1.example.net", "2001:db8::25")
	wantFailed(t, deliver(t, e.d, job("b@example.net")), false, 0, "4.4.4")
}

func TestDeliver_TransportOverride(t *testing.T) {
	everything := smtptest.Start(t, smtptest.Options{})
	special := smtptest.Start(t, smtptest.Options{})
	e := newEnv(t, "25", map[string]string{"*": everything.Addr(), "example.net": special.Addr()})

	wantDelivered(t, deliver(t, e.d, job("b@example.net")))
	j := job("b@example.org")
	j.Domain = "example.org"
	wantDelivered(t, deliver(t, e.d, j))
	if len(special.Messages()) != 1 || len(everything.Messages()) != 1 {
		t.Errorf("domain transport got %d, wildcard %d; want 1 and 1", len(special.Messages()), len(everything.Messages()))
	}
	if e.dns.Queries() != 0 {
		t.Errorf("%d DNS queries, want none with transports", e.dns.Queries())
	}
}

func TestDeliver_BindsSourceAddressAndEHLO(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{})
	e := newEnv(t, "25", map[string]string{"*": r.Addr()})
	for _, src := range []pool.IP{source1, source2} {
		j := job("b@example.net")
		j.Sources = []pool.IP{src}
		wantDelivered(t, deliver(t, e.d, j))
	}
	msgs := r.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for i, src := range []pool.IP{source1, source2} {
		if msgs[i].RemoteIP != src.Address || msgs[i].Helo != src.EHLO {
			t.Errorf("message %d from %s greeting %q, want %s greeting %q", i, msgs[i].RemoteIP, msgs[i].Helo, src.Address, src.EHLO)
		}
	}
}

func TestDeliver_PerRecipientReplies(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(rcpt string) error {
		switch {
		case strings.HasPrefix(rcpt, "busy"):
			return smtptest.Reply(450, "4.2.1", "mailbox busy")
		case strings.HasPrefix(rcpt, "nobody"):
			return smtptest.Reply(550, "5.1.1", "no such user")
		}
		return nil
	}}})
	e := newEnv(t, "25", map[string]string{"*": r.Addr()})

	res := deliver(t, e.d, job("ok@example.net", "busy@example.net", "nobody@example.net"))
	want := []struct {
		code      int
		enhanced  string
		delivered bool
		permanent bool
	}{
		{250, "2.0.0", true, false},
		{450, "4.2.1", false, false},
		{550, "5.1.1", false, true},
	}
	for i, w := range want {
		got := res.Rcpts[i]
		if got.Reply.Code != w.code || got.Reply.Enhanced != w.enhanced || (got.Err == nil) != w.delivered ||
			(got.Err != nil && got.Err.Permanent != w.permanent) {
			t.Errorf("%s: reply %+v err %v, want %d %s delivered %v permanent %v", got.Rcpt, got.Reply, got.Err, w.code, w.enhanced, w.delivered, w.permanent)
		}
	}
	msgs := r.Messages()
	if len(msgs) != 1 || len(msgs[0].Rcpts) != 1 || msgs[0].Rcpts[0] != "ok@example.net" {
		t.Errorf("receiver got %+v, want one message for ok@example.net", msgs)
	}
}

func TestDeliver_StageRejections(t *testing.T) {
	tests := []struct {
		name          string
		hooks         smtptest.Hooks
		wantPermanent bool
		wantCode      int
		wantEnhanced  string
	}{
		{"EHLO refused", smtptest.Hooks{Hello: func(string) error { return smtptest.Reply(550, "5.7.1", "go away") }}, true, 550, "5.7.1"},
		{"MAIL deferred", smtptest.Hooks{Mail: func(string) error { return smtptest.Reply(451, "4.7.1", "greylisted") }}, false, 451, "4.7.1"},
		{"DATA rejected", smtptest.Hooks{Data: func(smtptest.Message) error { return smtptest.Reply(554, "5.7.1", "spam") }}, true, 554, "5.7.1"},
		{"DATA deferred", smtptest.Hooks{Data: func(smtptest.Message) error { return smtptest.Reply(452, "4.3.1", "disk full") }}, false, 452, "4.3.1"},
		{"no enhanced code", smtptest.Hooks{Rcpt: func(string) error { return smtptest.Reply(550, "", "nope") }}, true, 550, "5.0.0"},
		{"connection dropped", smtptest.Hooks{Connect: func(string) error { return smtptest.ErrDrop }}, false, 0, "4.4.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := smtptest.Start(t, smtptest.Options{Hooks: tt.hooks})
			e := newEnv(t, "25", map[string]string{"*": r.Addr()})
			wantFailed(t, deliver(t, e.d, job("b@example.net", "c@example.net")), tt.wantPermanent, tt.wantCode, tt.wantEnhanced)
		})
	}
}

func TestDeliver_STARTTLS(t *testing.T) {
	r := smtptest.Start(t, smtptest.Options{TLS: true})
	e := newEnv(t, "25", map[string]string{"*": r.Addr()})
	res := deliver(t, e.d, job("b@example.net"))
	wantDelivered(t, res)
	msgs := r.Messages()
	if !res.TLS || len(msgs) != 1 || !msgs[0].TLS {
		t.Fatalf("result TLS %v, messages %+v; want one message over TLS", res.TLS, msgs)
	}
	// RFC 3207 4.2: the EHLO after TLS must be ours too.
	if msgs[0].Helo != source1.EHLO {
		t.Errorf("EHLO after STARTTLS = %q, want %q", msgs[0].Helo, source1.EHLO)
	}
}

func TestDeliver_STARTTLSHandshakeFailsFallsBackToPlaintext(t *testing.T) {
	// The server offers only TLS 1.0, which Go's client refuses: the
	// handshake fails after STARTTLS was accepted.
	r := smtptest.Start(t, smtptest.Options{TLS: true, TLSConfig: &tls.Config{MaxVersion: tls.VersionTLS10}})
	e := newEnv(t, "25", map[string]string{"*": r.Addr()})
	res := deliver(t, e.d, job("b@example.net"))
	wantDelivered(t, res)
	if res.TLS || r.Connections() != 2 {
		t.Errorf("TLS %v after %d connections, want plaintext on the second", res.TLS, r.Connections())
	}
}

func TestDeliver_ContextEndClosesConnection(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	r := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Data: func(smtptest.Message) error {
		<-release // a receiver that never answers the end of data
		return nil
	}}})
	e := newEnv(t, "25", map[string]string{"*": r.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := e.d.Deliver(ctx, job("b@example.net"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Deliver took %v after its context ended", d)
	}
	wantFailed(t, res, false, 0, "4.4.2")
}

func TestClassify(t *testing.T) {
	tests := []struct {
		give          error
		stage         Stage
		wantCode      int
		wantEnhanced  string
		wantPermanent bool
	}{
		{smtptest.Reply(550, "5.1.1", "no such user"), StageRcpt, 550, "5.1.1", true},
		{smtptest.Reply(421, "4.7.0", "try later"), StageGreeting, 421, "4.7.0", false},
		{smtptest.Reply(550, "", "no"), StageRcpt, 550, "5.0.0", true},
		{smtptest.Reply(450, "5.1.1", "mismatched"), StageRcpt, 450, "4.0.0", false},
		{smtptest.Reply(354, "", "odd"), StageData, 354, "4.0.0", false},
		{fmt.Errorf("x: %w", ErrNullMX), StageDNS, 556, "5.1.10", true},
		{fmt.Errorf("x: %w", resolver.ErrNXDomain), StageDNS, 0, "5.1.2", true},
		{fmt.Errorf("x: %w", resolver.ErrServFail), StageDNS, 0, "4.4.3", false},
		{fmt.Errorf("x: %w", ErrNoUsableMX), StageDNS, 0, "5.4.4", true},
		{fmt.Errorf("connect: %w", &net.OpError{Op: "dial"}), StageConnect, 0, "4.4.1", false},
		{fmt.Errorf("read: %w", net.ErrClosed), StageData, 0, "4.4.2", false},
	}
	for _, tt := range tests {
		got := classify(tt.stage, "mx", tt.give)
		if got.Code != tt.wantCode || got.Enhanced != tt.wantEnhanced || got.Permanent != tt.wantPermanent {
			t.Errorf("classify(%s, %v) = %d %s permanent %v, want %d %s permanent %v",
				tt.stage, tt.give, got.Code, got.Enhanced, got.Permanent, tt.wantCode, tt.wantEnhanced, tt.wantPermanent)
		}
	}
}

func TestSplitEnhanced(t *testing.T) {
	tests := []struct {
		give, wantEnhanced, wantText string
	}{
		{"2.0.0 OK: queued", "2.0.0", "OK: queued"},
		{"5.1.10 null MX", "5.1.10", "null MX"},
		{"OK queued as 12345", "", "OK queued as 12345"},
		{"1.2.3 not a class", "", "1.2.3 not a class"},
		{"4.7.x bad", "", "4.7.x bad"},
		{"", "", ""},
	}
	for _, tt := range tests {
		enh, text := splitEnhanced(tt.give)
		if enh != tt.wantEnhanced || text != tt.wantText {
			t.Errorf("splitEnhanced(%q) = %q, %q, want %q, %q", tt.give, enh, text, tt.wantEnhanced, tt.wantText)
		}
	}
}
