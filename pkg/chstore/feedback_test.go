//go:build integration

package chstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/events"
)

// feedbackEvents returns one event of every feedback type for message m.
func feedbackEvents(m string, at time.Time) []*events.Event {
	bounce := &events.Event{ID: "r1.bounce.0", Type: events.TypeBounce, Time: at, Tenant: "t1", MsgID: m}
	bounce.Bounce = &events.Bounce{Rcpt: "gone@x.example", Status: "5.1.1", ReplyCode: 550, Diagnostic: "no such user",
		RemoteMTA: "mx.x.example", Reason: "userunknown", Hard: true, Attribution: events.AttrVERP, ReportID: "r1"}
	complaint := &events.Event{ID: "r2.complaint", Type: events.TypeComplaint, Time: at, Tenant: "t1", MsgID: m}
	complaint.Complaint = &events.Complaint{Rcpt: "angry@y.example", FeedbackType: "abuse", UserAgent: "Yahoo!-Mail-Feedback/2.0",
		SourceIP: "127.0.0.2", MessageID: "abc@t1.example", Arrival: at.Add(-time.Hour), Attribution: events.AttrTrace, ReportID: "r2"}
	dmarc := &events.Event{ID: "r3.dmarc", Type: events.TypeDMARC, Time: at, Tenant: "t1", MsgID: "r3"}
	dmarc.DMARC = &events.DMARC{OrgReportID: "g-1", OrgName: "google.com", Domain: "t1.example", Begin: at.Add(-24 * time.Hour), End: at,
		ReportID: "r3", Rows: []events.DMARCRow{
			{SourceIP: "127.0.0.2", Count: 40, HeaderFrom: "t1.example", Disposition: "none", DKIM: "pass", SPF: "pass"},
			{SourceIP: "127.0.0.2", Count: 2, HeaderFrom: "t1.example", Disposition: "none", DKIM: "fail", SPF: "pass"},
		}}
	supp := &events.Event{ID: m + ".suppressed.h", Type: events.TypeSuppressed, Time: at, Tenant: "t1", MsgID: m}
	supp.Suppressed = &events.Suppressed{Rcpt: "gone@x.example", Reason: "userunknown", Source: "bounce", Since: at.Add(-time.Minute)}
	report := &events.Event{ID: "r4.report", Type: events.TypeFeedbackReport, Time: at, MsgID: "r4"}
	report.Report = &events.Report{ReportID: "r4", Mailbox: "bounce", Class: "unparsed", Size: 1234, Error: "no report part"}
	return []*events.Event{bounce, complaint, dmarc, supp, report}
}

func testFeedbackTables(t *testing.T, s *chstore.Store) {
	ctx := context.Background()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := feedbackEvents("m1", at)
	for _, e := range evs {
		if !chstore.Storable(e) {
			t.Errorf("Storable(%s) = false", e.Type)
		}
	}
	present, err := s.Present(ctx, evs)
	if err != nil || len(present) != 0 {
		t.Fatalf("Present before insert = %v, %v", present, err)
	}
	if err := s.Insert(ctx, evs); err != nil {
		t.Fatal(err)
	}
	present, err = s.Present(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if !present[e.ID] {
			t.Errorf("Present misses %s after insert", e.ID)
		}
	}
	tests := []struct {
		query string
		want  string
	}{
		{"SELECT concat(tenant, msg_id, rcpt, rcpt_domain, status, toString(reply_code), reason, toString(hard), attribution, report_id) FROM bounces",
			"t1m1gone@x.examplex.example5.1.1550userunknown1verpr1"},
		{"SELECT concat(rcpt, feedback_type, source_ip, message_id, toString(arrival), attribution) FROM complaints",
			"angry@y.exampleabuse127.0.0.2abc@t1.example2025-06-01 11:00:00trace"},
		{"SELECT concat(toString(sum(messages)), '/', toString(sumIf(messages, dkim = 'pass')), '/', toString(count())) FROM dmarc_reports WHERE source_ip = '127.0.0.2'",
			"42/40/2"},
		{"SELECT concat(tenant, msg_id, rcpt, reason, source, toString(since)) FROM suppressions",
			"t1m1gone@x.exampleuserunknownbounce2025-06-01 11:59:00"},
		{"SELECT concat(msg_id, mailbox, class, toString(size), error) FROM feedback_reports",
			"r4bounceunparsed1234no report part"},
	}
	for _, tt := range tests {
		var got string
		if err := s.Conn().QueryRow(ctx, tt.query).Scan(&got); err != nil {
			t.Errorf("%s: %v", tt.query, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s = %q, want %q", tt.query, got, tt.want)
		}
	}
}
