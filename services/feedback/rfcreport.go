package feedback

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/outflowmail/outflow/pkg/events"
)

// This file reads RFC 6522 multipart/report messages with an RFC 5965
// feedback-report part: the worker's complaint reader until pkg/arf (issue
// 5's parser work) is built in. Bounces are read by pkg/dsn.

// Errors of the standard-report reader.
var (
	errNoFeedbackPart = errors.New("no message/feedback-report part")
)

// reportParts walks a multipart/report and returns the report part's body
// and the headers of the original message (text/rfc822-headers or
// message/rfc822), if included. reportType is the media type of the report
// part, e.g. "message/delivery-status".
func reportParts(raw []byte, reportTypes ...string) (report []byte, original textproto.Header, err error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil, textproto.Header{}, fmt.Errorf("read report: %w", err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil, textproto.Header{}, errors.New("report is not multipart")
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, textproto.Header{}, fmt.Errorf("read report part: %w", err)
		}
		mt, _, _ := p.Header.ContentType()
		switch mt = strings.ToLower(mt); {
		case containsFold(reportTypes, mt):
			if report, err = io.ReadAll(io.LimitReader(p.Body, 1<<20)); err != nil {
				return nil, textproto.Header{}, fmt.Errorf("read %s: %w", mt, err)
			}
		case mt == "text/rfc822-headers" || mt == "message/rfc822" || mt == "message/rfc822-headers" || mt == "message/global-headers":
			h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(p.Body, 1<<20)))
			if err == nil || h.Len() > 0 {
				original = h
			}
		}
	}
	return report, original, nil
}

func containsFold(list []string, s string) bool {
	for _, l := range list {
		if strings.EqualFold(l, s) {
			return true
		}
	}
	return false
}

// originalOf extracts what attribution needs from the original's header.
func originalOf(h textproto.Header) Original {
	o := Original{
		ReturnPath: addrOf(h.Get("Return-Path")),
		MessageID:  strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>"),
		FeedbackID: strings.TrimSpace(h.Get("Feedback-Id")),
	}
	for f := h.FieldsByKey("Received"); f.Next(); {
		o.Received = append(o.Received, f.Value())
	}
	return o
}

// addrOf returns the address of a path like "<a@b>" or "rfc822; a@b".
func addrOf(v string) string {
	if _, after, ok := strings.Cut(v, ";"); ok {
		v = after
	}
	v = strings.TrimSpace(v)
	if a, err := mail.ParseAddress(v); err == nil {
		return a.Address
	}
	return strings.Trim(v, "<> ")
}

// readFieldBlocks reads the field groups of a delivery-status or
// feedback-report body, separated by blank lines (RFC 3464 2.1).
func readFieldBlocks(body []byte) []textproto.Header {
	var out []textproto.Header
	br := bufio.NewReader(bytes.NewReader(body))
	for {
		// Skip blank lines between groups.
		for {
			b, err := br.Peek(1)
			if err != nil {
				return out
			}
			if b[0] != '\r' && b[0] != '\n' {
				break
			}
			_, _ = br.ReadByte()
		}
		h, err := textproto.ReadHeader(br)
		if h.Len() > 0 {
			out = append(out, h)
		}
		if err != nil {
			return out
		}
	}
}

// parseStandardARF reads an RFC 5965 feedback report.
func parseStandardARF(raw []byte) (Finding, error) {
	report, orig, err := reportParts(raw, "message/feedback-report")
	if err != nil {
		return Finding{}, err
	}
	if report == nil {
		return Finding{}, errNoFeedbackPart
	}
	blocks := readFieldBlocks(report)
	if len(blocks) == 0 {
		return Finding{}, errors.New("empty feedback-report part")
	}
	b := blocks[0]
	ft := strings.ToLower(strings.TrimSpace(b.Get("Feedback-Type")))
	if ft == "" {
		return Finding{}, errors.New("feedback-report lacks Feedback-Type (RFC 5965 3.1)")
	}
	o := originalOf(orig)
	if o.ReturnPath == "" {
		o.ReturnPath = addrOf(b.Get("Original-Mail-From"))
	}
	c := &events.Complaint{
		Rcpt: addrOf(b.Get("Original-Rcpt-To")), FeedbackType: ft,
		UserAgent: strings.TrimSpace(b.Get("User-Agent")), ReportingMTA: addrOf(b.Get("Reporting-MTA")),
		SourceIP: strings.TrimSpace(b.Get("Source-IP")), MessageID: o.MessageID, FeedbackID: o.FeedbackID,
	}
	if t, err := mail.ParseDate(b.Get("Arrival-Date")); err == nil {
		c.Arrival = t.UTC()
	}
	return Finding{Class: ClassARF, Complaint: c, Original: o}, nil
}
