package feedback

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/verp"
)

const testSecret = "feedback-test-secret-0123456789"

// fixture is a running worker on a real JetStream server.
type fixture struct {
	bus   *bus.Bus
	w     *Worker
	codec *verp.Codec
}

func startWorker(t *testing.T) *fixture {
	t.Helper()
	b := bustest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	codec, err := verp.New(verp.Config{Domain: "bounces.test", Secrets: []string{testSecret}, PerRecipient: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(ctx, DefaultConfig(), b, Deps{Parser: NewParser(), VERP: codec, Tenants: tenantSet{"acme": true}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &fixture{bus: b, w: w, codec: codec}
}

// spool puts a report on the feedback stream as the MX listener does.
func (f *fixture) spool(t *testing.T, mailbox string, rcpts []string, raw string) string {
	t.Helper()
	env := &envelope.Envelope{ID: envelope.NewID(), Rcpts: rcpts, Received: time.Now().UTC(), ClientIP: "127.0.0.9", Size: int64(len(raw))}
	if err := f.bus.PublishMessage(context.Background(), bus.SubjectFeedback+"."+mailbox, env.ID, env, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

// eventsOf reads the events stream until it holds want events made from
// report id, or 5 s pass.
func (f *fixture) eventsOf(t *testing.T, id string, want int) []*events.Event {
	t.Helper()
	ctx := context.Background()
	cons, err := f.bus.JS.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Event
	deadline := time.Now().Add(5 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		m, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if err != nil {
			continue
		}
		evs, err := events.UnmarshalAll(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Report != nil && e.Report.ReportID == id || e.Bounce != nil && e.Bounce.ReportID == id ||
				e.Complaint != nil && e.Complaint.ReportID == id {
				out = append(out, e)
			}
		}
	}
	return out
}

func TestWorker_UnparsedKeptAndCounted(t *testing.T) {
	f := startWorker(t)
	raw := "From: someone@else.test\r\nSubject: hi\r\n\r\nnot a report at all\r\n"
	id := f.spool(t, "bounce", []string{"postmaster@bounces.test"}, raw)
	evs := f.eventsOf(t, id, 1)
	if len(evs) != 1 || evs[0].Type != events.TypeFeedbackReport || evs[0].Report.Class != ClassUnparsed || evs[0].Report.Error == "" {
		t.Fatalf("events = %+v, want one feedback_report of class unparsed", evs)
	}
	// The report itself is kept on the dead-letter stream, with the error.
	dead, err := f.bus.JS.Stream(context.Background(), bus.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(context.Background(), SubjectUnparsed)
	if err != nil {
		t.Fatalf("unparsed report not kept: %v", err)
	}
	if string(m.Data) != raw || m.Header.Get(HeaderUnparsed) == "" {
		t.Errorf("kept report = %q, error header %q", m.Data, m.Header.Get(HeaderUnparsed))
	}
	if env, err := envelope.Decode(m.Header); err != nil || env.ID != id {
		t.Errorf("kept report's envelope = %+v, %v", env, err)
	}
	if n := f.w.Stats.Unparsed.Value(); n != 1 {
		t.Errorf("Stats.Unparsed = %d, want 1", n)
	}
	waitDrained(t, f)
}

// waitDrained waits until the feedback stream is empty: every report acked.
func waitDrained(t *testing.T, f *fixture) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := f.bus.JS.Stream(context.Background(), bus.StreamFeedback)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("feedback stream still holds %d reports", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const testMsgID = "00112233445566778899aabbccddeeff"

// testDSN is an RFC 3464 report for rcpt sent to returnPath, with the
// original's headers.
func testDSN(returnPath, rcpt, status, diag string) string {
	return "From: MAILER-DAEMON@mx.x.example\r\nTo: " + returnPath + "\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.x.example\r\n\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nAction: failed\r\nStatus: " + status + "\r\n" +
		"Remote-MTA: dns; store.x.example\r\nDiagnostic-Code: smtp; " + diag + "\r\n\r\n" +
		"Final-Recipient: rfc822; later@x.example\r\nAction: delayed\r\nStatus: 4.2.2\r\n\r\n" +
		"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + returnPath + ">\r\n" +
		"Received: from c ([127.0.0.1])\r\n\tby submit.test (Outflow) with ESMTPA id " + testMsgID + "\r\n\t(tenant acme, identity acme);\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\n" +
		"Message-ID: <m1@acme.example>\r\nSubject: hello\r\n\r\n--B--\r\n"
}

func testARF(returnPath, rcpt, feedbackType string) string {
	return "From: fbl@receiver.example\r\nTo: fbl@outflow.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n" +
		"--A\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n" +
		"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: " + feedbackType + "\r\nUser-Agent: Test-FBL/1.0\r\nVersion: 1\r\n" +
		"Original-Rcpt-To: " + rcpt + "\r\nSource-IP: 127.0.0.2\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n" +
		"--A\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <" + returnPath + ">\r\nMessage-ID: <m2@acme.example>\r\n" +
		"Feedback-ID: c:acme:shared:outflow\r\nSubject: buy\r\n\r\nbody\r\n--A--\r\n"
}

func TestWorker_Reports(t *testing.T) {
	f := startWorker(t)
	good, _ := f.codec.Address(verp.Token{MsgID: testMsgID, Tenant: "acme", Rcpt: "gone@x.example"})
	other, _ := verp.New(verp.Config{Domain: "bounces.test", Secrets: []string{"not-our-secret-at-all-0000"}, PerRecipient: true})
	forged, _ := other.Address(verp.Token{MsgID: testMsgID, Tenant: "acme", Rcpt: "victim@x.example"})
	angry, _ := f.codec.Address(verp.Token{MsgID: testMsgID, Tenant: "acme", Rcpt: "angry@y.example"})

	tests := []struct {
		name        string
		mailbox     string
		rcpt        string
		raw         string
		wantTypes   []events.Type
		wantReport  events.Report
		wantSuppr   string // address suppressed for acme, "" for none
		wantNoSuppr string
	}{
		{"hard bounce by VERP", "bounce", good, testDSN(good, "gone@x.example", "5.1.1", "550 5.1.1 <gone@x.example>: User unknown"),
			[]events.Type{events.TypeBounce, events.TypeFeedbackReport},
			events.Report{Mailbox: "bounce", Class: ClassDSN, Attribution: events.AttrVERP}, "gone@x.example", ""},
		{"soft bounce: mailbox full", "bounce", good, testDSN(good, "full@x.example", "4.2.2", "452 4.2.2 Mailbox full"),
			[]events.Type{events.TypeBounce, events.TypeFeedbackReport},
			events.Report{Mailbox: "bounce", Class: ClassDSN, Attribution: events.AttrVERP}, "", "full@x.example"},
		{"forged token", "bounce", forged, testDSN(forged, "victim@x.example", "5.1.1", "550 5.1.1 unknown"),
			[]events.Type{events.TypeBounce, events.TypeFeedbackReport},
			events.Report{Mailbox: "bounce", Class: ClassDSN, Attribution: events.AttrNone, Forged: true}, "", "victim@x.example"},
		{"complaint by return path", "fbl", "fbl@outflow.test", testARF(angry, "", "abuse"),
			[]events.Type{events.TypeComplaint, events.TypeFeedbackReport},
			events.Report{Mailbox: "fbl", Class: ClassARF, Attribution: events.AttrVERP}, "angry@y.example", ""},
		{"auto-reply", "bounce", good, "From: bob@x.example\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n",
			[]events.Type{events.TypeFeedbackReport},
			events.Report{Mailbox: "bounce", Class: ClassAutoReply}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := f.spool(t, tt.mailbox, []string{tt.rcpt}, tt.raw)
			evs := f.eventsOf(t, id, len(tt.wantTypes))
			var got []events.Type
			var rep *events.Report
			for _, e := range evs {
				got = append(got, e.Type)
				if e.Report != nil {
					rep = e.Report
				}
				if e.Bounce != nil && tt.wantReport.Attribution == events.AttrVERP && (e.Tenant != "acme" || e.MsgID != testMsgID) {
					t.Errorf("bounce event attributed to %s/%s", e.Tenant, e.MsgID)
				}
			}
			if len(got) != len(tt.wantTypes) || rep == nil {
				t.Fatalf("events %v, want %v", got, tt.wantTypes)
			}
			want := tt.wantReport
			want.ReportID, want.Size = id, int64(len(tt.raw))
			if *rep != want {
				t.Errorf("report = %+v, want %+v", *rep, want)
			}
			if tt.wantSuppr != "" {
				e, err := f.w.supp.Get(context.Background(), "acme", tt.wantSuppr)
				if err != nil || e.MsgID != testMsgID {
					t.Errorf("suppression of %s = %+v, %v", tt.wantSuppr, e, err)
				}
			}
			if tt.wantNoSuppr != "" {
				if _, err := f.w.supp.Get(context.Background(), "acme", tt.wantNoSuppr); err == nil {
					t.Errorf("%s suppressed, want not", tt.wantNoSuppr)
				}
			}
		})
	}
	waitDrained(t, f)
	if n := f.w.Stats.Forged.Value(); n != 1 {
		t.Errorf("Stats.Forged = %d, want 1", n)
	}
}
