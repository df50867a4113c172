package events

import "time"

// Feedback event types: what receivers told us after the fact, and what the
// platform did about it.
const (
	// TypeBounce: an asynchronous bounce (a DSN) for one failed recipient.
	TypeBounce Type = "bounce"
	// TypeComplaint: a feedback-loop complaint (an ARF report) about one
	// message.
	TypeComplaint Type = "complaint"
	// TypeDMARC: one DMARC aggregate report, with its rows.
	TypeDMARC Type = "dmarc"
	// TypeSuppressed: the router dropped a recipient because it is on the
	// tenant's suppression list.
	TypeSuppressed Type = "suppressed"
	// TypeFeedbackReport: one report received on the MX listener and how the
	// feedback worker classified it, including reports that could not be
	// parsed and auto-replies, so that everything received is counted.
	TypeFeedbackReport Type = "feedback_report"
)

// Attribution says how a report was tied to a tenant and message.
type Attribution string

// Attributions, strongest first.
const (
	// AttrVERP: the return path's VERP token, its HMAC checked.
	AttrVERP Attribution = "verp"
	// AttrTrace: our own Received trace header in the original message.
	AttrTrace Attribution = "trace"
	// AttrFeedbackID: the tenant part of the original's Feedback-ID.
	AttrFeedbackID Attribution = "feedback-id"
	// AttrNone: the report could not be tied to a tenant.
	AttrNone Attribution = "none"
)

// FeedbackPayloads holds the payloads of the feedback event types; it is
// embedded in Event so that they sit beside the delivery payloads.
type FeedbackPayloads struct {
	Bounce     *Bounce     `json:"bounce,omitempty"`
	Complaint  *Complaint  `json:"complaint,omitempty"`
	DMARC      *DMARC      `json:"dmarc,omitempty"`
	Suppressed *Suppressed `json:"suppressed,omitempty"`
	Report     *Report     `json:"report,omitempty"`
}

// Bounce is one failed recipient of a DSN.
type Bounce struct {
	Rcpt string `json:"rcpt"`
	// Status is the DSN status code (RFC 3464 2.3.4), e.g. 5.1.1.
	Status    string `json:"status,omitempty"`
	ReplyCode int    `json:"reply_code,omitempty"`
	// Diagnostic is the remote MTA's reply text.
	Diagnostic string `json:"diagnostic,omitempty"`
	RemoteMTA  string `json:"remote_mta,omitempty"`
	// Reason is in Sisimai's vocabulary (userunknown, mailboxfull, ...).
	Reason string `json:"reason"`
	// Hard: a permanent recipient problem; the recipient is suppressed.
	Hard        bool        `json:"hard"`
	Attribution Attribution `json:"attribution"`
	// ReportID is the id the MX listener gave the report.
	ReportID string `json:"report_id"`
}

// Complaint is one feedback-loop report (RFC 5965).
type Complaint struct {
	// Rcpt is the complaining recipient, when the report gives it.
	Rcpt string `json:"rcpt,omitempty"`
	// FeedbackType is abuse, fraud, opt-out, not-spam, virus, auth-failure
	// or other (RFC 5965 7.3).
	FeedbackType string      `json:"feedback_type"`
	UserAgent    string      `json:"user_agent,omitempty"`
	ReportingMTA string      `json:"reporting_mta,omitempty"`
	SourceIP     string      `json:"source_ip,omitempty"`
	MessageID    string      `json:"message_id,omitempty"`
	FeedbackID   string      `json:"feedback_id,omitempty"`
	Arrival      time.Time   `json:"arrival,omitzero"`
	Attribution  Attribution `json:"attribution"`
	ReportID     string      `json:"report_id"`
}

// DMARC is one aggregate report (RFC 7489 7.2): who reported, for which
// domain and period, and one row per source IP and header From.
type DMARC struct {
	// OrgReportID is the reporter's own report id.
	OrgReportID string     `json:"org_report_id"`
	OrgName     string     `json:"org_name"`
	Domain      string     `json:"domain"`
	Begin       time.Time  `json:"begin"`
	End         time.Time  `json:"end"`
	Rows        []DMARCRow `json:"rows"`
	// ReportID is the id the MX listener gave the report.
	ReportID string `json:"report_id"`
}

// DMARCRow is one record of an aggregate report.
type DMARCRow struct {
	SourceIP    string `json:"source_ip"`
	Count       int64  `json:"count"`
	HeaderFrom  string `json:"header_from"`
	Disposition string `json:"disposition"`
	// DKIM and SPF are the policy-evaluated (aligned) results: pass or fail.
	DKIM string `json:"dkim"`
	SPF  string `json:"spf"`
}

// Suppressed is a recipient the router dropped.
type Suppressed struct {
	Rcpt string `json:"rcpt"`
	// Reason and Source come from the suppression entry: the bounce reason
	// or complaint type, and bounce, complaint or manual.
	Reason string    `json:"reason"`
	Source string    `json:"source"`
	Since  time.Time `json:"since"`
}

// Report is one report received on the MX listener.
type Report struct {
	ReportID string `json:"report_id"`
	// Mailbox is the kind of address it was sent to: bounce, fbl or dmarc.
	Mailbox string `json:"mailbox"`
	// Class is what the worker found: dsn, arf, dmarc, autoreply or
	// unparsed.
	Class       string      `json:"class"`
	Attribution Attribution `json:"attribution,omitempty"`
	// Forged: the VERP token's HMAC did not verify.
	Forged bool  `json:"forged,omitempty"`
	Size   int64 `json:"size"`
	// Error says why a report is unparsed; the report itself is kept on
	// the dead-letter stream.
	Error string `json:"error,omitempty"`
}
