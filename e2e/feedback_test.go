//go:build integration

package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/app"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/services/ingest"
)

const (
	bounceDomain = "bounces.e2e.test"
	fblAddress   = "fbl@provider.e2e.test"
	dmarcAddress = "dmarc@provider.e2e.test"
)

// feedbackPipeline runs every role (feedback worker included) with VERP on
// and the MX listener open, and returns the receiver, the submission and
// MX addresses and a ClickHouse connection.
type feedbackPipeline struct {
	rcv            *smtptest.Receiver
	submit, mx     string
	natsURL        string
	ch             driver.Conn
	tenantMessages map[string]string // rcpt -> platform msg id, filled by send
}

func startFeedbackPipeline(t *testing.T) *feedbackPipeline {
	t.Helper()
	ns := natstest.Start(t)
	chs := chtest.Start(t)
	rcv := smtptest.Start(t, smtptest.Options{})
	p := &feedbackPipeline{rcv: rcv, submit: freeAddr(t), mx: freeAddr(t), natsURL: ns.ClientURL(), tenantMessages: map[string]string{}}
	cfg := pipelineConfig(t, ns.ClientURL(), chs.Addr(), rcv.Addr(), p.submit)
	cfg.Ingest.MX = ingest.DefaultMXConfig()
	cfg.Ingest.MX.Addr = p.mx
	cfg.Ingest.MX.BounceDomains = []string{bounceDomain}
	cfg.Ingest.MX.FBLAddresses = []string{fblAddress}
	cfg.Ingest.MX.DMARCAddress = dmarcAddress
	cfg.Sender.VERP.Domain = bounceDomain
	cfg.Sender.VERP.Secrets = []string{"e2e-verp-secret-0123456789"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	runInProcess(t, cfg, app.Roles)
	waitListening(t, p.submit, 30*time.Second)
	waitListening(t, p.mx, 30*time.Second)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chs.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.ch = conn
	return p
}

// send submits a message from the tenant to rcpts.
func (p *feedbackPipeline) send(t *testing.T, subject string, rcpts ...string) {
	t.Helper()
	c, err := smtp.Dial(p.submit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", tenantID, tenantPass)); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("From: news@e2e.example\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n\r\nHello, this is %s.\r\n",
		strings.Join(rcpts, ", "), subject, time.Now().Format(time.RFC1123Z), subject)
	if err := c.SendMail("news@e2e.example", rcpts, strings.NewReader(body)); err != nil {
		t.Fatalf("submit %s: %v", subject, err)
	}
}

// delivered waits for the message with subject at the receiver.
func (p *feedbackPipeline) delivered(t *testing.T, subject string) smtptest.Message {
	t.Helper()
	var found smtptest.Message
	eventually(t, 30*time.Second, "delivery of "+subject, func() (bool, string) {
		for _, m := range p.rcv.Messages() {
			if bytes.Contains(m.Data, []byte("Subject: "+subject+"\r\n")) {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages received", len(p.rcv.Messages()))
	})
	return found
}

var traceIDRE = regexp.MustCompile(`\(Outflow\) with ESMTPS?A id ([0-9a-f]{32})`)

// platformID is the message id ingest gave a delivered message.
func platformID(t *testing.T, m smtptest.Message) string {
	t.Helper()
	id := traceIDRE.FindSubmatch(m.Data)
	if id == nil {
		t.Fatalf("no Outflow trace header in the delivered message:\n%s", m.Data)
	}
	return string(id[1])
}

// mailReport sends a report to the MX listener as a receiver's MTA would:
// null sender, no AUTH.
func (p *feedbackPipeline) mailReport(t *testing.T, to string, report []byte) {
	t.Helper()
	c, err := smtp.Dial(p.mx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("mx.receiver.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("", []string{to}, bytes.NewReader(report)); err != nil {
		t.Fatalf("mail report to %s: %v", to, err)
	}
}

func (p *feedbackPipeline) query(t *testing.T, q string, args ...any) string {
	t.Helper()
	var s string
	if err := p.ch.QueryRow(context.Background(), q, args...).Scan(&s); err != nil {
		return "error: " + err.Error()
	}
	return s
}

// headerBlock is the header section of a message.
func headerBlock(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[:i+2]
	}
	return data
}

// dsn builds an RFC 3464 delivery status notification for rcpt of the
// original message, as a receiving MTA sends it after accepting the
// message (an asynchronous bounce).
func dsn(original []byte, rcpt, returnPath string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@mx.receiver.test>\r\n"+
		"To: %s\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: %s\r\n"+
		"Message-ID: <dsn-%d@mx.receiver.test>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY\"\r\n\r\n",
		returnPath, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	fmt.Fprintf(&b, "--BOUNDARY\r\nContent-Type: text/plain\r\n\r\n"+
		"This is the mail system at host mx.receiver.test.\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"+
		"be delivered to one or more recipients.\r\n\r\n<%s>: host store.receiver.test said: 550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table\r\n\r\n", rcpt, rcpt)
	fmt.Fprintf(&b, "--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"+
		"Reporting-MTA: dns; mx.receiver.test\r\nArrival-Date: %s\r\n\r\n"+
		"Final-Recipient: rfc822; %s\r\nOriginal-Recipient: rfc822;%s\r\nAction: failed\r\nStatus: 5.1.1\r\n"+
		"Remote-MTA: dns; store.receiver.test\r\n"+
		"Diagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table\r\n\r\n",
		time.Now().Format(time.RFC1123Z), rcpt, rcpt, rcpt)
	b.WriteString("--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n")
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", returnPath)
	b.Write(headerBlock(original))
	b.WriteString("\r\n--BOUNDARY--\r\n")
	return b.Bytes()
}

// arf builds an RFC 5965 abuse report about the original message, with the
// whole original attached, as a mailbox provider's feedback loop sends it.
func arf(original []byte, rcpt, returnPath string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Feedback Loop <feedback@fbl.receiver.test>\r\nTo: %s\r\n"+
		"Subject: FW: complaint about a message\r\nDate: %s\r\nMessage-ID: <arf-%d@fbl.receiver.test>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"ARFBOUNDARY\"\r\n\r\n",
		fblAddress, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	b.WriteString("--ARFBOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"This is an email abuse report for an email message received from IP 127.0.0.2.\r\n\r\n")
	fmt.Fprintf(&b, "--ARFBOUNDARY\r\nContent-Type: message/feedback-report\r\n\r\n"+
		"Feedback-Type: abuse\r\nUser-Agent: ReceiverFBL/1.0\r\nVersion: 1\r\n"+
		"Original-Mail-From: <%s>\r\nOriginal-Rcpt-To: <%s>\r\nSource-IP: 127.0.0.2\r\n"+
		"Reported-Domain: e2e.example\r\nArrival-Date: %s\r\n\r\n", returnPath, rcpt, time.Now().Format(time.RFC1123Z))
	b.WriteString("--ARFBOUNDARY\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n")
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", returnPath)
	b.Write(original)
	b.WriteString("\r\n--ARFBOUNDARY--\r\n")
	return b.Bytes()
}

// ctlSuppressionList runs "outflow ctl suppression list".
func ctlSuppressionList(t *testing.T, natsURL string) string {
	t.Helper()
	out, err := exec.Command(binary, "ctl", "-nats", natsURL, "suppression", "list", tenantID).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl suppression list: %v\n%s", err, out)
	}
	return string(out)
}

// TestFeedback_AsyncBounceAndComplaint is issue 5's done-when 1: a message
// delivered and then bounced asynchronously (a DSN mailed to the VERP return
// path through the MX listener) ends as a bounces row attributed to tenant
// and message, and its recipient is suppressed: a second message to it is
// not delivered and leaves a suppressions row. The same for an ARF
// complaint sent to the FBL address.
func TestFeedback_AsyncBounceAndComplaint(t *testing.T) {
	p := startFeedbackPipeline(t)
	cases := []struct {
		name, rcpt, mailbox string
		report              func(original []byte, rcpt, returnPath string) []byte
		to                  func(returnPath string) string
		rowQuery            string
	}{
		{
			name: "bounce", rcpt: "gone@d1.example", report: dsn,
			to: func(rp string) string { return rp },
			rowQuery: "SELECT concat(tenant, ' ', msg_id, ' ', rcpt, ' ', reason, ' ', toString(hard), ' ', attribution) " +
				"FROM outflow.bounces FINAL WHERE rcpt = ?",
		},
		{
			name: "complaint", rcpt: "angry@d2.example", report: arf,
			to: func(string) string { return fblAddress },
			rowQuery: "SELECT concat(tenant, ' ', msg_id, ' ', rcpt, ' ', feedback_type, ' ', attribution) " +
				"FROM outflow.complaints FINAL WHERE rcpt = ?",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first := "first " + tc.name
			p.send(t, first, tc.rcpt)
			m := p.delivered(t, first)
			msgID := platformID(t, m)
			if !strings.HasPrefix(m.From, "bounces+") || !strings.HasSuffix(m.From, "@"+bounceDomain) {
				t.Fatalf("MAIL FROM at the receiver = %q, want a VERP return path at %s", m.From, bounceDomain)
			}
			// The receiver accepted the message; later it reports back.
			p.mailReport(t, tc.to(m.From), tc.report(m.Data, tc.rcpt, m.From))

			var want string
			if tc.name == "bounce" {
				want = fmt.Sprintf("%s %s %s userunknown 1 verp", tenantID, msgID, tc.rcpt)
			} else {
				want = fmt.Sprintf("%s %s %s abuse verp", tenantID, msgID, tc.rcpt)
			}
			eventually(t, 30*time.Second, tc.name+" row in ClickHouse", func() (bool, string) {
				got := p.query(t, tc.rowQuery, tc.rcpt)
				return got == want, got
			})
			eventually(t, 10*time.Second, "suppression entry", func() (bool, string) {
				out := ctlSuppressionList(t, p.natsURL)
				return strings.Contains(out, tc.rcpt+"\t"+tc.name), out
			})

			// A second message to the suppressed recipient and to a fresh
			// one: only the fresh one is delivered.
			second := "second " + tc.name
			fresh := "fresh-" + tc.rcpt
			p.send(t, second, tc.rcpt, fresh)
			m2 := p.delivered(t, second)
			if len(m2.Rcpts) != 1 || m2.Rcpts[0] != fresh {
				t.Errorf("second message delivered to %v, want only %s", m2.Rcpts, fresh)
			}
			id2 := platformID(t, m2)
			eventually(t, 30*time.Second, "suppressions row", func() (bool, string) {
				got := p.query(t, "SELECT concat(tenant, ' ', rcpt, ' ', source) FROM outflow.suppressions FINAL WHERE msg_id = ?", id2)
				return got == tenantID+" "+tc.rcpt+" "+tc.name, got
			})
			for _, d := range p.rcv.Messages() {
				if bytes.Contains(d.Data, []byte("Subject: "+second+"\r\n")) && len(d.Rcpts) != 1 {
					t.Errorf("suppressed recipient received the second message: %v", d.Rcpts)
				}
			}
		})
	}

	// Every report was counted, none unparsed.
	eventually(t, 10*time.Second, "feedback_reports rows", func() (bool, string) {
		got := p.query(t, "SELECT arrayStringConcat(groupArray(concat(class, ':', attribution)), ',') FROM "+
			"(SELECT class, attribution FROM outflow.feedback_reports FINAL ORDER BY class)")
		return got == "arf:verp,dsn:verp", got
	})
}

// TestFeedback_DMARCUnparsedAndRelay: a DMARC aggregate report (gzip
// attachment) ends as dmarc_reports rows; a report nobody can parse is
// counted and kept; the MX listener of the running pipeline refuses to
// relay.
func TestFeedback_DMARCUnparsedAndRelay(t *testing.T) {
	p := startFeedbackPipeline(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprintf(zw, `<?xml version="1.0"?><feedback><report_metadata><org_name>receiver.test</org_name>`+
		`<report_id>agg-1</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>`+
		`<policy_published><domain>e2e.example</domain><p>none</p></policy_published>`+
		`<record><row><source_ip>%s</source_ip><count>40</count><policy_evaluated><disposition>none</disposition>`+
		`<dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>e2e.example</header_from></identifiers></record>`+
		`<record><row><source_ip>%s</source_ip><count>2</count><policy_evaluated><disposition>none</disposition>`+
		`<dkim>fail</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>e2e.example</header_from></identifiers></record>`+
		`</feedback>`, sharedIP, sharedIP)
	zw.Close()
	report := "From: noreply-dmarc@receiver.test\r\nTo: " + dmarcAddress + "\r\nSubject: Report domain: e2e.example\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"receiver.test!e2e.example!1700000000!1700086399.xml.gz\"\r\n\r\n" +
		base64.StdEncoding.EncodeToString(gz.Bytes()) + "\r\n"
	p.mailReport(t, dmarcAddress, []byte(report))
	eventually(t, 30*time.Second, "dmarc_reports rows", func() (bool, string) {
		got := p.query(t, "SELECT concat(toString(sum(messages)), '/', toString(sumIf(messages, dkim = 'pass')), ' ', any(org_name), ' ', any(domain)) "+
			"FROM outflow.dmarc_reports FINAL WHERE source_ip = ?", sharedIP)
		return got == "42/40 receiver.test e2e.example", got
	})

	p.mailReport(t, "postmaster@"+bounceDomain, []byte("From: someone@else.test\r\nSubject: hello\r\n\r\njust a note, no report here\r\n"))
	eventually(t, 30*time.Second, "unparsed report counted", func() (bool, string) {
		got := p.query(t, "SELECT concat(mailbox, ' ', class, ' ', toString(error != '')) FROM outflow.feedback_reports FINAL WHERE mailbox = 'bounce'")
		return got == "bounce unparsed 1", got
	})

	c, err := smtp.Dial(p.mx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("", nil); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"victim@example.net", "victim%example.net@" + bounceDomain, "victim@[127.0.0.1]"} {
		err := c.Rcpt(rcpt, nil)
		if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 {
			t.Errorf("RCPT TO:<%s> = %v, want 550 5.7.1", rcpt, err)
		}
	}
}

// TestCtl_Suppression drives "outflow ctl suppression" against a standalone
// NATS server as an operator would.
func TestCtl_Suppression(t *testing.T) {
	natsAddr := freeAddr(t)
	cfgPath := writeConfig(t, procConfig{NATSListen: natsAddr, MX: "127.0.0.1:25"})
	startProcess(t, "outflow nats", "nats", "-config", cfgPath)
	waitListening(t, natsAddr, 30*time.Second)
	url := "nats://" + natsAddr
	steps := []struct {
		args    []string
		wantErr bool
		want    string
	}{
		{[]string{"add", "acme", "Bob@Example.NET", "--reason", "asked by phone"}, false, "suppressed Bob@Example.NET for acme"},
		{[]string{"add", "acme", "tmp@example.net", "--ttl", "1h"}, false, "suppressed tmp@example.net"},
		{[]string{"list", "acme"}, false, "Bob@Example.NET\tmanual\tasked by phone\t"},
		{[]string{"list", "other"}, false, ""},
		{[]string{"remove", "acme", "bob@example.net"}, false, "removed bob@example.net"},
		{[]string{"remove", "acme", "bob@example.net"}, true, "not found"},
		{[]string{"add", "acme", "not-an-address"}, true, "bad entry"},
		{[]string{"list", "Bad Tenant"}, true, "tenant id"},
		{[]string{"frobnicate", "acme"}, true, "usage"},
	}
	for _, st := range steps {
		out, err := exec.Command(binary, append([]string{"ctl", "-nats", url, "suppression"}, st.args...)...).CombinedOutput()
		if (err != nil) != st.wantErr || !strings.Contains(string(out), st.want) {
			t.Errorf("ctl suppression %s: err=%v, output %q; want error=%v and output containing %q",
				strings.Join(st.args, " "), err, out, st.wantErr, st.want)
		}
	}
	out, _ := exec.Command(binary, "ctl", "-nats", url, "suppression", "list", "acme").CombinedOutput()
	if strings.Contains(string(out), "Bob@") || !strings.Contains(string(out), "tmp@example.net\tmanual") {
		t.Errorf("after remove, list = %q", out)
	}
}
