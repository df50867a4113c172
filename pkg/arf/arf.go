// Package arf reads feedback-loop complaints: RFC 5965 Abuse Reporting
// Format reports (multipart/report; report-type=feedback-report), the
// sparse and redacted ones providers send, DMARC failure reports in that
// format (RFC 6591), and the few non-ARF complaints of large mailbox
// providers (Microsoft JMRP, a bare "unsubscribe" reply). It returns the
// feedback type and what the report quotes of the original message, so
// the feedback worker can attribute the complaint to a tenant.
package arf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// MaxSize is the largest report read.
const MaxSize = 8 << 20

// ErrEmpty: the input has no message.
var ErrEmpty = errors.New("arf: empty message")

// Feedback types (RFC 5965 7.3 registry, RFC 6650); None means the
// message is no complaint.
const (
	Abuse       = "abuse"
	AuthFailure = "auth-failure"
	Fraud       = "fraud"
	NotSpam     = "not-spam"
	OptOut      = "opt-out"
	Other       = "other"
	Virus       = "virus"
	None        = "none"
)

// Original is what a report quotes of the complained-about message.
type Original struct {
	MessageID  string            `json:"message_id,omitempty"`
	FeedbackID string            `json:"feedback_id,omitempty"`
	ReturnPath string            `json:"return_path,omitempty"`
	From       string            `json:"from,omitempty"`
	To         string            `json:"to,omitempty"`
	Subject    string            `json:"subject,omitempty"`
	Received   []string          `json:"received,omitempty"`
	Outflow    map[string]string `json:"outflow,omitempty"`
}

// Report is one complaint (RFC 5965 3.1, 3.2 fields).
type Report struct {
	FeedbackType string `json:"feedback_type"`
	// Types lists every Feedback-Type of a message with several reports.
	Types            []string `json:"feedback_types,omitempty"`
	UserAgent        string   `json:"user_agent,omitempty"`
	Version          string   `json:"version,omitempty"`
	SourceIP         string   `json:"source_ip,omitempty"`
	ReportingMTA     string   `json:"reporting_mta,omitempty"`
	OriginalMailFrom string   `json:"original_mail_from,omitempty"`
	OriginalRcptTo   []string `json:"original_rcpt_to,omitempty"`
	ArrivalDate      string   `json:"arrival_date,omitempty"`
	ReportedDomain   string   `json:"reported_domain,omitempty"`
	// Standard: the report has a message/feedback-report part.
	Standard bool     `json:"standard"`
	Original Original `json:"original"`
}

// Parse reads one message; it never panics.
func Parse(r io.Reader) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize))
	if err != nil {
		return nil, fmt.Errorf("arf: read: %w", err)
	}
	return ParseBytes(raw)
}

// ParseBytes is Parse on a message in memory.
func ParseBytes(raw []byte) (rep *Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("arf: malformed message: %v", p)
		}
	}()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrEmpty
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	rep = &Report{}
	e, _ := message.Read(bytes.NewReader(raw))
	if e == nil {
		return nil, fmt.Errorf("arf: unreadable header")
	}
	var orig *textproto.Header
	walk(e, 0, func(mt string, body []byte) {
		switch mt {
		case "message/feedback-report":
			rep.Standard = true
			rep.fields(body)
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
			if orig == nil {
				h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(bytes.TrimLeft(body, "\n"), '\n', '\n'))))
				if h.Len() > 0 {
					orig = &h
				}
			}
		}
	})
	if !rep.Standard {
		rep.FeedbackType = nonStandard(e.Header)
	}
	if orig != nil {
		rep.Original = original(*orig)
		if len(rep.OriginalRcptTo) == 0 {
			if v := orig.Get("X-Hmxmroriginalrecipient"); v != "" {
				rep.OriginalRcptTo = []string{strings.TrimSpace(v)}
			}
		}
	}
	if rep.OriginalMailFrom == "" {
		rep.OriginalMailFrom = rep.Original.ReturnPath
	}
	return rep, nil
}

// nonStandard names the complaint of a message without an ARF part.
func nonStandard(h message.Header) string {
	s := strings.ToLower(strings.TrimSpace(h.Get("Subject")))
	switch {
	case strings.HasPrefix(s, "complaint about message from"): // Microsoft JMRP
		return Abuse
	case s == "unsubscribe" || strings.HasPrefix(s, "unsubscribe "):
		return OptOut
	}
	return None
}

// fields reads the machine-readable part (RFC 5965 3.1-3.3); with several
// reports in one message the first type is the report's.
func (rep *Report) fields(body []byte) {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(bytes.TrimLeft(body, "\n"), '\n', '\n'))))
	ft := strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
	if ft != "" {
		rep.Types = append(rep.Types, ft)
		if rep.FeedbackType == "" {
			rep.FeedbackType = ft
		}
	}
	set := func(dst *string, key string) {
		if *dst == "" {
			*dst = strings.TrimSpace(h.Get(key))
		}
	}
	set(&rep.UserAgent, "User-Agent")
	set(&rep.Version, "Version")
	set(&rep.SourceIP, "Source-Ip")
	set(&rep.ArrivalDate, "Arrival-Date")
	if rep.ArrivalDate == "" {
		set(&rep.ArrivalDate, "Received-Date")
	}
	set(&rep.ReportedDomain, "Reported-Domain")
	if rep.ReportingMTA == "" {
		v := h.Get("Reporting-Mta")
		if _, after, ok := strings.Cut(v, ";"); ok {
			v = after
		}
		rep.ReportingMTA = strings.TrimSpace(v)
	}
	if rep.OriginalMailFrom == "" {
		rep.OriginalMailFrom = strings.Trim(strings.TrimSpace(h.Get("Original-Mail-From")), "<>")
	}
	for _, v := range h.Values("Original-Rcpt-To") {
		rep.OriginalRcptTo = append(rep.OriginalRcptTo, strings.Trim(strings.TrimSpace(v), "<>"))
	}
}

func original(h textproto.Header) Original {
	o := Original{
		MessageID:  strings.TrimSpace(h.Get("Message-Id")),
		FeedbackID: strings.TrimSpace(h.Get("Feedback-Id")),
		ReturnPath: strings.Trim(strings.TrimSpace(h.Get("Return-Path")), "<>"),
		From:       strings.TrimSpace(h.Get("From")),
		To:         strings.TrimSpace(h.Get("To")),
		Subject:    strings.TrimSpace(h.Get("Subject")),
		Received:   h.Values("Received"),
	}
	for f := h.Fields(); f.Next(); {
		if k := f.Key(); len(k) > 10 && strings.EqualFold(k[:10], "x-outflow-") {
			if o.Outflow == nil {
				o.Outflow = map[string]string{}
			}
			o.Outflow[k] = strings.TrimSpace(f.Value())
		}
	}
	return o
}

// walk calls fn with the media type and body of every leaf part.
func walk(e *message.Entity, depth int, fn func(mt string, body []byte)) {
	if depth > 8 {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			// Unknown charsets and encodings come with the part: read it
			// raw. Any other error ends the multipart (retrying could
			// loop forever on the same bytes).
			p, err := mr.NextPart()
			if err != nil && (p == nil || !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return
			}
			walk(p, depth+1, fn)
		}
	}
	mt, _, _ := e.Header.ContentType()
	body, _ := io.ReadAll(io.LimitReader(e.Body, MaxSize))
	fn(strings.ToLower(mt), body)
}
