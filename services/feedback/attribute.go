package feedback

import (
	"errors"
	"regexp"
	"strings"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/feedbackid"
	"github.com/outflowmail/outflow/pkg/verp"
)

// attribution is the tenant, message and (when known) recipient a report
// is about.
type attribution struct {
	tenant, msgID, rcpt string
}

// attribute ties a report to its tenant and message, strongest evidence
// first, and records how in rep:
//
//  1. a VERP return path, the address the bounce was sent to (rcpts) or the
//     original's Return-Path: its HMAC proves we made it. A token that
//     claims to be ours but fails the check marks the report forged, and
//     nothing else in it is trusted.
//  2. our Received trace header in the original (ingest writes "by HOST
//     (Outflow) with ... id MSGID (tenant T, ...)"). The topmost one is
//     ours: a tenant can write lookalikes into its submission, but only
//     below the one ingest prepends.
//  3. the tenant field of the original's Feedback-ID (campaign:tenant:...),
//     with the message id when the Message-ID is one ingest generated.
//
// No lookup index is needed: every message leaves with its VERP return
// path, trace header and Feedback-ID, and receivers quote them.
func (w *Worker) attribute(rcpts []string, o Original, rep *events.Report) attribution {
	candidates := append(append([]string(nil), rcpts...), o.ReturnPath)
	if w.verp != nil {
		for _, addr := range candidates {
			if addr == "" {
				continue
			}
			tok, err := w.verp.Decode(addr)
			switch {
			case err == nil:
				rep.Attribution = events.AttrVERP
				return attribution{tenant: tok.Tenant, msgID: tok.MsgID, rcpt: tok.Rcpt}
			case errors.Is(err, verp.ErrNotOurs):
				continue
			default:
				rep.Forged = true
				rep.Attribution = events.AttrNone
				w.log.Warn("forged or corrupt VERP token; report not attributed", "report_id", rep.ReportID, "err", err)
				return attribution{}
			}
		}
	}
	if tenant, msgID := traceHeader(o.Received); tenant != "" && w.tenants.Tenant(tenant) != nil {
		rep.Attribution = events.AttrTrace
		return attribution{tenant: tenant, msgID: msgID}
	}
	if tenant := feedbackid.Tenant(o.FeedbackID); tenant != "" && w.tenants.Tenant(tenant) != nil {
		rep.Attribution = events.AttrFeedbackID
		return attribution{tenant: tenant, msgID: generatedMsgID(o.MessageID)}
	}
	rep.Attribution = events.AttrNone
	return attribution{}
}

// traceRE matches the Received header ingest writes (services/ingest
// trace.go), unfolded.
var traceRE = regexp.MustCompile(`\(Outflow\) with [A-Z]+ id ([0-9a-f]{32})\s*\(tenant ([a-z0-9][a-z0-9_-]{0,62}),`)

// traceHeader returns the tenant and message id of the topmost Outflow
// trace header among received (top first), or "", "".
func traceHeader(received []string) (tenant, msgID string) {
	for _, r := range received {
		if m := traceRE.FindStringSubmatch(strings.Join(strings.Fields(r), " ")); m != nil {
			return m[2], m[1]
		}
	}
	return "", ""
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// generatedMsgID returns the platform message id of a Message-ID that
// ingest generated (MSGID@hostname, for a submission without one), or "".
func generatedMsgID(messageID string) string {
	local, _, _ := strings.Cut(strings.Trim(strings.TrimSpace(messageID), "<>"), "@")
	if hexID.MatchString(local) {
		return local
	}
	return ""
}
