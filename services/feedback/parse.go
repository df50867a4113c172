package feedback

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/outflowmail/outflow/pkg/arf"
	"github.com/outflowmail/outflow/pkg/dsn"
	"github.com/outflowmail/outflow/pkg/events"
)

// ErrNoParser: no parser for the report's kind is built in yet; the report
// is kept as unparsed, to be processed again once one is.
var ErrNoParser = errors.New("feedback: no parser for this kind of report")

// reportParser reads reports by kind.
type reportParser struct{}

// NewParser returns the parser of every report kind.
func NewParser() Parser { return reportParser{} }

// Parse reads raw as the kind classify gives it. A report to a bounce
// address that is no DSN but says it was sent automatically is an
// auto-reply (RFC 3834), counted and otherwise ignored.
func (reportParser) Parse(mailbox string, raw []byte) (Finding, error) {
	switch kind := classify(mailbox, raw); kind {
	case kindARF:
		f, err := parseComplaint(raw)
		if err != nil && mailbox == "fbl" {
			// Some receivers send bounces of our own mail to the FBL address.
			if d, derr := parseDSN(raw); derr == nil && d.Class == ClassDSN {
				return d, nil
			}
		}
		if err != nil {
			return Finding{}, fmt.Errorf("complaint: %w", err)
		}
		return f, nil
	case kindDSN:
		f, err := parseDSN(raw)
		if err != nil {
			if autoReply(raw) {
				return Finding{Class: ClassAutoReply}, nil
			}
			return Finding{}, fmt.Errorf("bounce: %w", err)
		}
		return f, nil
	case kindDMARC:
		return parseDMARC(raw)
	default:
		return Finding{}, fmt.Errorf("%s report: %w", kind, ErrNoParser)
	}
}

// errNotBounce: the DSN parser found neither a bounce nor an auto-reply.
var errNotBounce = errors.New("not a delivery status notification")

// parseDSN reads a bounce with pkg/dsn (RFC 3464 and the free-text formats
// of real MTAs): one bounce per recipient whose delivery failed. A delay
// notice is a DSN without bounces: counted, nothing else.
func parseDSN(raw []byte) (Finding, error) {
	r, err := dsn.ParseBytes(raw)
	if err != nil {
		return Finding{}, err
	}
	if r.AutoReply {
		return Finding{Class: ClassAutoReply}, nil
	}
	if !r.IsBounce {
		return Finding{}, errNotBounce
	}
	f := Finding{Class: ClassDSN, Original: Original{
		ReturnPath: r.Original.ReturnPath, MessageID: r.Original.MessageID,
		FeedbackID: r.Original.FeedbackID, Received: r.Original.Received,
	}}
	for _, rc := range r.Recipients {
		// RFC 3464 2.3.3: only "failed" is a bounce; free-text formats give
		// no action.
		switch strings.ToLower(rc.Action) {
		case "", "failed":
		default:
			continue
		}
		f.Bounces = append(f.Bounces, events.Bounce{
			Rcpt: rc.Address, Status: rc.Status, ReplyCode: rc.ReplyCode, Diagnostic: rc.Diagnostic,
			RemoteMTA: rc.RemoteMTA, Reason: rc.Reason, Hard: rc.Hard,
		})
	}
	return f, nil
}

// errNotComplaint: the ARF parser found no feedback type.
var errNotComplaint = errors.New("no feedback report (RFC 5965 3.1 Feedback-Type)")

// parseComplaint reads a complaint with pkg/arf (RFC 5965, sparse and
// redacted reports, JMRP).
func parseComplaint(raw []byte) (Finding, error) {
	r, err := arf.ParseBytes(raw)
	if err != nil {
		return Finding{}, err
	}
	if r.FeedbackType == "" || r.FeedbackType == arf.None {
		return Finding{}, errNotComplaint
	}
	o := Original{
		ReturnPath: r.Original.ReturnPath, MessageID: r.Original.MessageID,
		FeedbackID: r.Original.FeedbackID, Received: r.Original.Received,
	}
	if o.ReturnPath == "" {
		o.ReturnPath = r.OriginalMailFrom
	}
	c := &events.Complaint{
		FeedbackType: r.FeedbackType, UserAgent: r.UserAgent, ReportingMTA: r.ReportingMTA,
		SourceIP: r.SourceIP, MessageID: o.MessageID, FeedbackID: o.FeedbackID,
	}
	if len(r.OriginalRcptTo) > 0 {
		c.Rcpt = strings.Trim(r.OriginalRcptTo[0], "<> ")
	}
	if t, err := mail.ParseDate(r.ArrivalDate); err == nil {
		c.Arrival = t.UTC()
	}
	return Finding{Class: ClassARF, Complaint: c, Original: o}, nil
}
