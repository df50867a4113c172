//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/services/ingest"
)

const (
	drillPass        = "drill-password"
	drillBounces     = "bounces.drill.test"
	drillFBL         = "fbl@provider.drill.test"
	drillGoodPerTen  = 700 // ham messages of each good tenant
	drillSendingTime = 60 * time.Second
)

// drillMessage is one corpus message prepared for submission.
type drillMessage struct {
	key  string
	data []byte
	spam bool // corpus label
}

// drillCorpus reads the corpus's ham (easy_ham, easy_ham_2 and hard_ham,
// whose commercial newsletters a bulk sender's good mail looks like) and
// spam, each message with a unique Message-ID.
func drillCorpus(t *testing.T) (ham, spam []drillMessage) {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "labels.tsv"))
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	defer f.Close()
	var hard []drillMessage
	sc := bufio.NewScanner(f)
	sc.Scan()
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 3 {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(corpusDir, cols[0]))
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("drill-%d@e2e.test", len(ham)+len(spam)+len(hard))
		data, ok := submission(raw, key)
		if !ok {
			continue
		}
		m := drillMessage{key: key, data: data, spam: cols[1] == "spam"}
		switch {
		case m.spam:
			spam = append(spam, m)
		case cols[2] == "hard_ham":
			hard = append(hard, m)
		default:
			ham = append(ham, m)
		}
	}
	// Newsletters spread through the good mail rather than bunched at the end.
	mixed := make([]drillMessage, 0, len(ham)+len(hard))
	for i, j := 0, 0; i < len(ham) || j < len(hard); {
		for k := 0; k < 12 && i < len(ham); k++ {
			mixed = append(mixed, ham[i])
			i++
		}
		if j < len(hard) {
			mixed = append(mixed, hard[j])
			j++
		}
	}
	return mixed, spam
}

// drillSent is one submission attempt.
type drillSent struct {
	tenant   string
	key      string
	rcpt     string
	spam     bool
	bad      bool // the message is what makes the tenant bad
	at       time.Time
	accepted bool
	reply    string
}

// drillSender submits one tenant's messages over one SMTP session, paced,
// reconnecting after a refusal, and records every attempt.
type drillSender struct {
	addr, tenant string
	mu           sync.Mutex
	sent         []drillSent
}

func (s *drillSender) run(ctx context.Context, msgs []drillSent, data map[string][]byte, every time.Duration) {
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for _, m := range msgs {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c == nil {
			var err error
			if c, err = smtp.Dial(s.addr); err == nil {
				if err = c.Auth(sasl.NewPlainClient("", s.tenant, drillPass)); err != nil {
					c.Close()
					c = nil
				}
			}
			if err != nil {
				m.at, m.reply = time.Now(), "connect: "+err.Error()
				s.record(m)
				continue
			}
		}
		m.at = time.Now()
		err := c.SendMail("news@"+s.tenant+".example", []string{m.rcpt}, bytes.NewReader(data[m.key]))
		m.accepted = err == nil
		if err != nil {
			m.reply = err.Error()
			if c.Reset() != nil {
				c.Close()
				c = nil
			}
		}
		s.record(m)
	}
}

func (s *drillSender) record(m drillSent) {
	s.mu.Lock()
	s.sent = append(s.sent, m)
	s.mu.Unlock()
}

func (s *drillSender) attempts() []drillSent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]drillSent(nil), s.sent...)
}

// drillChange is a tenant-policy change seen by the test's KV watch.
type drillChange struct {
	at     time.Time
	policy tenant.Policy
}

// TestAbuseDrill is issue 6's first acceptance test. The full pipeline
// (every role, the reputation loop in the analytics role, a private
// ClickHouse, the MX listener taking reports) runs with windows of a
// minute and a loop every half second; six tenants send at once:
//
//   - good-a, good-b, good-c: corpus ham, newsletters (hard_ham) included;
//   - spammer: 20 ham, then mostly corpus spam (4 in 5);
//   - bouncer: ham to a list where 40 % of recipients are unknown (the
//     receiver answers 550 5.1.1);
//   - complainer: ham whose recipients "angry…" complain (an ARF report
//     mailed back to the MX listener for each of them, 5 %).
//
// At the receiver, by source IP, it measures the spam share of the shared
// pool's traffic (by corpus label), the time from each bad tenant's first bad
// message to its first state change, and the states of the good tenants;
// and checks that every state change has exactly one policy_changes row.
func TestAbuseDrill(t *testing.T) {
	ham, spam := drillCorpus(t)
	const nSpammer, nBouncer, nComplainer = 150, 150, 150
	needHam := 3*drillGoodPerTen + 20 + nSpammer/5 + nBouncer + nComplainer
	if len(ham) < needHam || len(spam) < nSpammer {
		t.Fatalf("corpus has %d ham and %d spam, want %d and %d", len(ham), len(spam), needHam, nSpammer)
	}
	data := map[string][]byte{}
	for _, m := range append(append([]drillMessage(nil), ham...), spam...) {
		data[m.key] = m.data
	}
	takeHam := func(n int) []drillMessage {
		out := ham[:n]
		ham = ham[n:]
		return out
	}

	ns := natstest.Start(t)
	chs := chtest.Start(t)
	rcv := smtptest.Start(t, smtptest.Options{Hooks: smtptest.Hooks{Rcpt: func(rcpt string) error {
		if strings.HasPrefix(rcpt, "unknown") {
			return smtptest.Reply(550, "5.1.1", "<"+rcpt+">: Recipient address rejected: User unknown")
		}
		return nil
	}}})
	submit, mx := freeAddr(t), freeAddr(t)
	cfg := pipelineConfig(t, ns.ClientURL(), chs.Addr(), rcv.Addr(), submit)
	hash, err := bcrypt.GenerateFromPassword([]byte(drillPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good := []string{"good-a", "good-b", "good-c"}
	bad := []string{"spammer", "bouncer", "complainer"}
	cfg.Tenants = nil
	for _, id := range append(append([]string(nil), good...), bad...) {
		cfg.Tenants = append(cfg.Tenants, app.SeedTenant{ID: id, PasswordHash: string(hash), Domains: []string{id + ".example"}})
	}
	cfg.Ingest.MX = ingest.DefaultMXConfig()
	cfg.Ingest.MX.Addr = mx
	cfg.Ingest.MX.BounceDomains = []string{drillBounces}
	cfg.Ingest.MX.FBLAddresses = []string{drillFBL}
	cfg.Sender.VERP.Domain = drillBounces
	cfg.Sender.VERP.Secrets = []string{"drill-verp-secret-0123456789"}
	// Short windows and a fast loop; floors scaled to the drill's volumes
	// (hundreds of messages, not the thousands an hour of the defaults).
	// The thresholds, hysteresis and rule order are the defaults.
	cfg.Analytics.FlushInterval = 100 * time.Millisecond
	rep := &cfg.Analytics.Reputation
	rep.Enabled = true
	rep.Interval = 500 * time.Millisecond
	rep.Windows = []time.Duration{time.Minute, 5 * time.Minute}
	rep.Rules.SpamRatio.Floor = 20
	rep.Rules.HardBounceRate.Floor = 20
	rep.Rules.ComplaintRate.Floor = 25
	rep.Rules.BlockRate.Floor = 20
	rep.Rules.CoolDown = 10 * time.Minute // no recovery during the drill
	// The seeded tenants are established senders, not new accounts on
	// their first day's limits (ingest.limits.new_rate, tested in ingest).
	cfg.Ingest.Limits.Ramp = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := runInProcess(t, cfg, app.Roles)
	waitListening(t, submit, 30*time.Second)
	waitListening(t, mx, 30*time.Second)

	// Watch the tenant-policy bucket as router and ingest do.
	bc := bus.DefaultConfig()
	bc.URL = ns.ClientURL()
	b, err := bus.Connect(ctx, bc, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var chMu sync.Mutex
	changes := map[string][]drillChange{}
	w, err := b.Policy.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var p tenant.Policy
			if json.Unmarshal(e.Value(), &p) == nil {
				chMu.Lock()
				changes[e.Key()] = append(changes[e.Key()], drillChange{at: time.Now(), policy: p})
				chMu.Unlock()
			}
		}
	}()

	// The plans: who sends what to whom, and which message is bad.
	plans := map[string][]drillSent{}
	for _, id := range good {
		for i, m := range takeHam(drillGoodPerTen) {
			plans[id] = append(plans[id], drillSent{tenant: id, key: m.key, rcpt: fmt.Sprintf("reader%d@%s-list.example", i, id)})
		}
	}
	si, sh := 0, takeHam(20+nSpammer/5)
	for i := range 20 + nSpammer {
		m := drillSent{tenant: "spammer", rcpt: fmt.Sprintf("target%d@victims.example", i)}
		if i >= 20 && i%5 != 0 {
			m.key, m.spam, m.bad = spam[si].key, true, true
			si++
		} else {
			m.key = sh[0].key
			sh = sh[1:]
		}
		plans["spammer"] = append(plans["spammer"], m)
	}
	for i, m := range takeHam(nBouncer) {
		s := drillSent{tenant: "bouncer", key: m.key, rcpt: fmt.Sprintf("member%d@bought-list.example", i)}
		if i%5 == 1 || i%5 == 3 { // 40 % unknown
			s.rcpt, s.bad = fmt.Sprintf("unknown%d@bought-list.example", i), true
		}
		plans["bouncer"] = append(plans["bouncer"], s)
	}
	for i, m := range takeHam(nComplainer) {
		s := drillSent{tenant: "complainer", key: m.key, rcpt: fmt.Sprintf("reader%d@optin.example", i)}
		if i%20 == 7 { // 5 % complain
			s.rcpt, s.bad = fmt.Sprintf("angry%d@optin.example", i), true
		}
		plans["complainer"] = append(plans["complainer"], s)
	}

	// Complaints: each message an "angry" recipient receives is reported
	// back to the MX listener, as a mailbox provider's feedback loop does.
	var repMu sync.Mutex
	reported := map[string]bool{}
	complaints := 0
	stopReports := make(chan struct{})
	reportsDone := make(chan struct{})
	go func() {
		defer close(reportsDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopReports:
				return
			case <-tick.C:
			}
			for _, m := range rcv.Messages() {
				if len(m.Rcpts) != 1 || !strings.HasPrefix(m.Rcpts[0], "angry") || reported[m.Rcpts[0]] {
					continue
				}
				reported[m.Rcpts[0]] = true
				if err := mailDrillReport(mx, drillFBL, drillARF(m.Data, m.Rcpts[0], m.From, m.RemoteIP)); err != nil {
					t.Errorf("complaint for %s: %v", m.Rcpts[0], err)
					continue
				}
				repMu.Lock()
				complaints++
				repMu.Unlock()
			}
		}
	}()

	start := time.Now()
	senders := map[string]*drillSender{}
	var wg sync.WaitGroup
	for id, plan := range plans {
		s := &drillSender{addr: submit, tenant: id}
		senders[id] = s
		every := drillSendingTime / time.Duration(len(plan))
		if id == "spammer" {
			every = 400 * time.Millisecond // 20 clean in 8 s, then spam
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, plan, data, every)
		}()
	}
	wg.Wait()
	t.Logf("submissions done after %v", time.Since(start).Round(time.Millisecond))

	// Every good message accepted must arrive; every bad tenant must have
	// changed state.
	accepted := map[string]drillSent{}
	for _, s := range senders {
		for _, a := range s.attempts() {
			if a.accepted {
				accepted[a.key] = a
			}
		}
	}
	for _, id := range good {
		for _, a := range senders[id].attempts() {
			if !a.accepted {
				t.Errorf("good tenant %s: %s refused: %s", id, a.key, a.reply)
				break
			}
		}
	}
	wantGood := 3 * drillGoodPerTen
	eventually(t, 90*time.Second, "good tenants' mail delivered", func() (bool, string) {
		n := 0
		for _, m := range rcv.Messages() {
			if a, ok := accepted[messageID(m.Data)]; ok && strings.HasPrefix(a.tenant, "good-") {
				n++
			}
		}
		return n >= wantGood, fmt.Sprintf("%d/%d", n, wantGood)
	})
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chs.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queryString := func(q string) string {
		var s string
		if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
			return "error: " + err.Error()
		}
		return s
	}
	t.Logf("ClickHouse: complaints %s; feedback reports %s", queryString(
		"SELECT arrayStringConcat(groupArray(concat(tenant, ':', toString(n))), ' ') FROM (SELECT tenant, count() AS n FROM outflow.complaints FINAL GROUP BY tenant)"),
		queryString("SELECT arrayStringConcat(groupArray(concat(class, ':', attribution, ':', toString(n))), ' ') FROM (SELECT class, attribution, count() AS n FROM outflow.feedback_reports FINAL GROUP BY class, attribution)"))
	firstChange := func(id string) (drillChange, bool) {
		chMu.Lock()
		defer chMu.Unlock()
		for _, c := range changes[id] {
			if c.policy.State != tenant.StateGood {
				return c, true
			}
		}
		return drillChange{}, false
	}
	repMu.Lock()
	t.Logf("complaints mailed back so far: %d", complaints)
	repMu.Unlock()
	eventually(t, 30*time.Second, "every bad tenant demoted", func() (bool, string) {
		var missing []string
		for _, id := range bad {
			if _, ok := firstChange(id); !ok {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, strings.Join(missing, ", ")
	})
	time.Sleep(2 * time.Second) // the last deliveries, and the loop's last word
	close(stopReports)
	<-reportsDone

	// Shared-pool spam share, by corpus label, at the receiver.
	var shared, sharedSpam, risk, riskSpam int
	byTenantShared := map[string]int{}
	for _, m := range rcv.Messages() {
		a, ok := accepted[messageID(m.Data)]
		if !ok {
			t.Errorf("received a message nobody submitted: %q", messageID(m.Data))
			continue
		}
		switch m.RemoteIP {
		case sharedIP:
			shared++
			byTenantShared[a.tenant]++
			if a.spam {
				sharedSpam++
			}
		case highRiskIP:
			risk++
			if a.spam {
				riskSpam++
			}
		}
	}
	share := 0.0
	if shared > 0 {
		share = float64(sharedSpam) / float64(shared)
	}
	t.Logf("shared pool: %d messages, %d corpus spam: spam share %.3f%% (target < 0.1%%); per tenant %v",
		shared, sharedSpam, 100*share, byTenantShared)
	t.Logf("high-risk pool: %d messages, %d corpus spam; complaints mailed back: %d", risk, riskSpam, complaints)
	if shared < wantGood {
		t.Errorf("shared pool carried %d messages, fewer than the good tenants' %d", shared, wantGood)
	}
	if share >= 0.001 {
		t.Errorf("shared-pool spam share %.3f%%, want < 0.1%%", 100*share)
	}

	// Containment: first bad message to first state change.
	for _, id := range bad {
		var first time.Time
		for _, a := range senders[id].attempts() {
			if a.bad && a.accepted {
				first = a.at
				break
			}
		}
		c, _ := firstChange(id)
		took := c.at.Sub(first)
		t.Logf("%s: first bad message %s after start, %s (%s) %v later; by %s",
			id, first.Sub(start).Round(time.Millisecond), c.policy.State, c.policy.Reason, took.Round(time.Millisecond), c.policy.By)
		if first.IsZero() || took > 30*time.Second || took < 0 {
			t.Errorf("%s: containment %v (first bad message at %v), want within 30s", id, took, first)
		}
	}

	// Enforcement at ingest: once a tenant is suspended (applied within a
	// second), its submissions get 550 5.7.1 with the reason; throttled
	// ones beyond the rate get 451 4.7.1.
	for _, id := range bad {
		var suspendedAt time.Time
		chMu.Lock()
		for _, c := range changes[id] {
			if c.policy.State == tenant.StateSuspended {
				suspendedAt = c.at
				break
			}
		}
		chMu.Unlock()
		replies := map[string]int{}
		for _, a := range senders[id].attempts() {
			switch {
			case a.accepted:
				replies["250"]++
				if !suspendedAt.IsZero() && a.at.After(suspendedAt.Add(time.Second)) {
					t.Errorf("%s: message accepted %v after its suspension", id, a.at.Sub(suspendedAt))
				}
			case strings.Contains(a.reply, "550") && strings.Contains(a.reply, "suspended"):
				replies["550 5.7.1 suspended"]++
			case strings.Contains(a.reply, "451") && strings.Contains(a.reply, "rate exceeded"):
				replies["451 4.7.1 rate"]++
			default:
				replies[a.reply]++
			}
		}
		t.Logf("%s at ingest: %v", id, replies)
		if !suspendedAt.IsZero() && replies["550 5.7.1 suspended"] == 0 {
			t.Errorf("%s: suspended but never refused with 550 5.7.1", id)
		}
	}

	// No good tenant left good.
	for _, id := range good {
		chMu.Lock()
		cs := changes[id]
		chMu.Unlock()
		for _, c := range cs {
			if c.policy.State != tenant.StateGood {
				t.Errorf("good tenant %s demoted: %s (%s)", id, c.policy.State, c.policy.Reason)
			}
		}
	}
	t.Logf("good tenants demoted: 0 of %d expected; policy changes seen: %s", len(good), drillSummary(&chMu, changes))

	// Exactly one policy_changes row per change the loop made.
	chMu.Lock()
	want := map[string]uint64{}
	for id, cs := range changes {
		for _, c := range cs {
			if c.policy.By == "reputation-loop" {
				want[id]++
			}
		}
	}
	chMu.Unlock()
	for _, id := range append(append([]string(nil), good...), bad...) {
		var n uint64
		eventually(t, 10*time.Second, "policy_changes rows of "+id, func() (bool, string) {
			if err := conn.QueryRow(ctx, "SELECT count() FROM outflow.policy_changes FINAL WHERE tenant = ?", id).Scan(&n); err != nil {
				return false, err.Error()
			}
			return n == want[id], fmt.Sprintf("%d rows, %d changes", n, want[id])
		})
	}

	// Suspended tenants' queued mail is held, not sent.
	for _, id := range bad {
		hs, err := held.List(ctx, b, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) > 0 {
			t.Logf("%s: %d messages held", id, len(hs))
		}
		for _, m := range rcv.Messages() {
			for _, h := range hs {
				if messageID(m.Data) != "" && strings.Contains(string(m.Data), h.Envelope.ID) {
					t.Errorf("%s: held message %s was delivered", id, h.Envelope.ID)
				}
			}
		}
	}
}

func drillSummary(mu *sync.Mutex, changes map[string][]drillChange) string {
	mu.Lock()
	defer mu.Unlock()
	var parts []string
	for id, cs := range changes {
		var states []string
		for _, c := range cs {
			states = append(states, string(c.policy.State))
		}
		parts = append(parts, id+": "+strings.Join(states, "→"))
	}
	return strings.Join(parts, "; ")
}

// mailDrillReport sends a report to the MX listener as a receiver's MTA
// does: null sender, no AUTH.
func mailDrillReport(mx, to string, report []byte) error {
	c, err := smtp.Dial(mx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("fbl.receiver.test"); err != nil {
		return err
	}
	return c.SendMail("", []string{to}, bytes.NewReader(report))
}

// drillARF is an RFC 5965 abuse report about original as received by rcpt,
// with the whole original attached under its Return-Path (the VERP address
// that attributes it).
func drillARF(original []byte, rcpt, returnPath, sourceIP string) []byte {
	var b bytes.Buffer
	now := time.Now().Format(time.RFC1123Z)
	fmt.Fprintf(&b, "From: Feedback Loop <feedback@fbl.receiver.test>\r\nTo: %s\r\n"+
		"Subject: complaint about a message\r\nDate: %s\r\nMessage-ID: <arf-%d@fbl.receiver.test>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"ARFBOUNDARY\"\r\n\r\n",
		drillFBL, now, time.Now().UnixNano())
	fmt.Fprintf(&b, "--ARFBOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"+
		"This is an email abuse report for an email message received from IP %s.\r\n\r\n", sourceIP)
	fmt.Fprintf(&b, "--ARFBOUNDARY\r\nContent-Type: message/feedback-report\r\n\r\n"+
		"Feedback-Type: abuse\r\nUser-Agent: DrillFBL/1.0\r\nVersion: 1\r\n"+
		"Original-Mail-From: <%s>\r\nOriginal-Rcpt-To: <%s>\r\nSource-IP: %s\r\nArrival-Date: %s\r\n\r\n",
		returnPath, rcpt, sourceIP, now)
	b.WriteString("--ARFBOUNDARY\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", returnPath)
	b.Write(original)
	b.WriteString("\r\n--ARFBOUNDARY--\r\n")
	return b.Bytes()
}
