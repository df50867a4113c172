package chstore

import (
	"time"

	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// feedbackTables are the destinations of the feedback events (bounce,
// complaint, dmarc, suppressed, feedback_report). Every row's time is the
// event's time, which the feedback worker and router set to the received
// time of the report or message, identical in every copy.
func feedbackTables() []table {
	eventTime := func(e *events.Event) time.Time { return dateTime(e.Time) }
	return []table{
		{
			name: "bounces",
			columns: "event_id, time, tenant, msg_id, rcpt, rcpt_domain, status, reply_code, diagnostic, " +
				"remote_mta, reason, hard, attribution, report_id",
			timeColumn: "time", rows: bounceRows, rowTime: eventTime,
		},
		{
			name: "complaints",
			columns: "event_id, time, tenant, msg_id, rcpt, feedback_type, user_agent, reporting_mta, " +
				"source_ip, message_id, feedback_id, arrival, attribution, report_id",
			timeColumn: "time", rows: complaintRows, rowTime: eventTime,
		},
		{
			name: "dmarc_reports",
			columns: "event_id, time, tenant, msg_id, record, org_name, org_report_id, domain, period_begin, " +
				"period_end, source_ip, messages, header_from, disposition, dkim, spf",
			timeColumn: "time", rows: dmarcRows, rowTime: eventTime,
		},
		{
			name:       "suppressions",
			columns:    "event_id, time, tenant, msg_id, rcpt, reason, source, since",
			timeColumn: "time", rows: suppressedRows, rowTime: eventTime,
		},
		{
			name:       "feedback_reports",
			columns:    "event_id, time, tenant, msg_id, mailbox, class, attribution, forged, size, error",
			timeColumn: "time", rows: reportRows, rowTime: eventTime,
		},
	}
}

// feedbackStorable reports whether e is a feedback event with its payload.
func feedbackStorable(e *events.Event) bool {
	switch e.Type {
	case events.TypeBounce:
		return e.Bounce != nil
	case events.TypeComplaint:
		return e.Complaint != nil
	case events.TypeDMARC:
		return e.DMARC != nil && len(e.DMARC.Rows) > 0
	case events.TypeSuppressed:
		return e.Suppressed != nil
	case events.TypeFeedbackReport:
		return e.Report != nil
	}
	return false
}

func bounceRows(e *events.Event) [][]any {
	if e.Type != events.TypeBounce || e.Bounce == nil {
		return nil
	}
	b := e.Bounce
	return [][]any{{
		e.ID, dateTime(e.Time), e.Tenant, e.MsgID, b.Rcpt, envelope.Domain(b.Rcpt), b.Status,
		clampU16(int64(b.ReplyCode)), b.Diagnostic, b.RemoteMTA, b.Reason, boolU8(b.Hard), string(b.Attribution), b.ReportID,
	}}
}

func complaintRows(e *events.Event) [][]any {
	if e.Type != events.TypeComplaint || e.Complaint == nil {
		return nil
	}
	c := e.Complaint
	return [][]any{{
		e.ID, dateTime(e.Time), e.Tenant, e.MsgID, c.Rcpt, c.FeedbackType, c.UserAgent, c.ReportingMTA,
		c.SourceIP, c.MessageID, c.FeedbackID, dateTime(c.Arrival), string(c.Attribution), c.ReportID,
	}}
}

func dmarcRows(e *events.Event) [][]any {
	if e.Type != events.TypeDMARC || e.DMARC == nil {
		return nil
	}
	d := e.DMARC
	rows := make([][]any, 0, len(d.Rows))
	for i, r := range d.Rows {
		rows = append(rows, []any{
			e.ID, dateTime(e.Time), e.Tenant, e.MsgID, clampU32(int64(i)), d.OrgName, d.OrgReportID, d.Domain,
			dateTime(d.Begin), dateTime(d.End), r.SourceIP, uint64(max(r.Count, 0)), r.HeaderFrom,
			r.Disposition, r.DKIM, r.SPF,
		})
	}
	return rows
}

func suppressedRows(e *events.Event) [][]any {
	if e.Type != events.TypeSuppressed || e.Suppressed == nil {
		return nil
	}
	s := e.Suppressed
	return [][]any{{e.ID, dateTime(e.Time), e.Tenant, e.MsgID, s.Rcpt, s.Reason, s.Source, dateTime(s.Since)}}
}

func reportRows(e *events.Event) [][]any {
	if e.Type != events.TypeFeedbackReport || e.Report == nil {
		return nil
	}
	r := e.Report
	return [][]any{{
		e.ID, dateTime(e.Time), e.Tenant, e.MsgID, r.Mailbox, r.Class, string(r.Attribution),
		boolU8(r.Forged), uint64(max(r.Size, 0)), r.Error,
	}}
}
