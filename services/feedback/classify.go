package feedback

import (
	"bufio"
	"bytes"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Report kinds a raw report is first taken for, before a parser reads it.
const (
	kindDSN   = "dsn"
	kindARF   = "arf"
	kindDMARC = "dmarc"
)

// classify decides which parser reads a report, from its top-level header
// and the mailbox it was sent to. The report type of a multipart/report
// (RFC 6522) is authoritative; otherwise the mailbox decides, and mail to a
// bounce address goes to the DSN parser, which knows the non-standard
// bounce formats of real MTAs and tells auto-replies from bounces.
func classify(mailbox string, raw []byte) string {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == "multipart/report" {
		switch strings.ToLower(params["report-type"]) {
		case "feedback-report":
			return kindARF
		case "delivery-status", "global-delivery-status":
			return kindDSN
		}
	}
	switch mailbox {
	case "fbl":
		return kindARF
	case "dmarc":
		return kindDMARC
	}
	return kindDSN
}

// autoReply reports whether a message that is not a bounce says it was
// sent automatically (RFC 3834 5: Auto-Submitted other than "no"; the
// older X-Autoreply, X-Autorespond and Precedence: auto_reply headers).
func autoReply(raw []byte) bool {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if as := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); as != "" && as != "no" {
		return true
	}
	if h.Has("X-Autoreply") || h.Has("X-Autorespond") {
		return true
	}
	return strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply")
}
