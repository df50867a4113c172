// Package dsn reads bounce messages: RFC 3464 delivery status notifications
// (multipart/report; report-type=delivery-status, RFC 6522) and the
// free-text bounces many MTAs still send. For each failed recipient it
// gives the address, status, reply code, diagnostic and the reason in
// Sisimai's vocabulary (pkg/bouncereason); it quotes the original
// message's headers so the feedback worker can attribute the bounce to a
// tenant and message. Auto-replies are recognised and are not bounces.
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/outflowmail/outflow/pkg/bouncereason"
)

// MaxSize is the largest report read; bounces quoting huge originals are
// cut there, which keeps every header and status block.
const MaxSize = 8 << 20

// Errors.
var (
	// ErrEmpty: the input has no message.
	ErrEmpty = errors.New("dsn: empty message")
	// ErrHeader: the top-level header cannot be read.
	ErrHeader = errors.New("dsn: unreadable header")
)

// Recipient is one failed (or delayed, or delivered) recipient.
type Recipient struct {
	Address    string `json:"address"`
	Status     string `json:"status"`
	ReplyCode  int    `json:"reply_code"`
	Reason     string `json:"reason"`
	Hard       bool   `json:"hard"`
	Action     string `json:"action,omitempty"`
	Diagnostic string `json:"diagnostic,omitempty"`
	RemoteMTA  string `json:"remote_mta,omitempty"`
}

// Original is what the bounce quotes of the message that bounced.
type Original struct {
	MessageID  string   `json:"message_id,omitempty"`
	FeedbackID string   `json:"feedback_id,omitempty"`
	ReturnPath string   `json:"return_path,omitempty"`
	From       string   `json:"from,omitempty"`
	To         string   `json:"to,omitempty"`
	Subject    string   `json:"subject,omitempty"`
	Received   []string `json:"received,omitempty"`
	// Outflow holds the original's X-Outflow-* headers.
	Outflow map[string]string `json:"outflow,omitempty"`
}

// Report is a parsed bounce.
type Report struct {
	// IsBounce: the message reports a delivery failure (or delay).
	IsBounce bool
	// AutoReply: the message is an automatic reply (RFC 3834), e.g. a
	// vacation notice; IsBounce is false.
	AutoReply bool
	// Standard: the failures came from an RFC 3464 status part.
	Standard   bool
	Recipients []Recipient
	// ReportingMTA is the RFC 3464 Reporting-MTA, without its type.
	ReportingMTA string
	Original     Original
}

// Parse reads one message. It never panics; an error means nothing
// usable could be read.
func Parse(r io.Reader) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxSize))
	if err != nil {
		return nil, fmt.Errorf("dsn: read: %w", err)
	}
	return ParseBytes(raw)
}

// ParseBytes is Parse on a message in memory.
func ParseBytes(raw []byte) (rep *Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("dsn: malformed message: %v", p)
		}
	}()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrEmpty
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	// An mbox "From " separator line is not a header field.
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		}
	}
	top, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil && top.Len() == 0 {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	w := walker{}
	w.walk(raw, 0)

	if len(w.status) == 0 {
		w.status = rawStatus(raw)
	}
	rep = &Report{}
	subject := decodeWord(top.Get("Subject"))
	from := strings.ToLower(top.Get("From"))
	if len(w.status) > 0 {
		rep.Standard = true
		w.fromStatus(rep)
	}
	body := w.text.String()
	if strings.TrimSpace(body) == "" {
		// A multipart without its boundaries, or no readable part: the
		// body as it is.
		if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
			body = string(raw[i+2:])
		}
	}
	if !rep.Standard {
		// Exim and Google name the failed recipients in a header; it is
		// more reliable than the addresses found in the text.
		if xf := top.Values("X-Failed-Recipients"); len(xf) > 0 {
			for _, v := range xf {
				for _, a := range addrRE.FindAllString(v, -1) {
					rep.Recipients = append(rep.Recipients, Recipient{Address: strings.ToLower(a)})
				}
			}
		}
		if len(rep.Recipients) == 0 {
			fromText(rep, body)
			rep.Recipients = notSender(rep.Recipients, top, w.original)
		}
	}
	bounceish := rep.Standard || looksLikeBounce(subject, from, body)
	if bounceish && len(rep.Recipients) == 0 {
		// Exim names them in a header; otherwise the original's To.
		for _, v := range append(top.Values("X-Failed-Recipients"), w.originalTo()) {
			for _, a := range addrRE.FindAllString(v, -1) {
				rep.Recipients = append(rep.Recipients, Recipient{Address: strings.ToLower(a), Diagnostic: around(body, strings.ToLower(a))})
			}
		}
	}
	// The SMTP command a reply answered is often named only in the
	// human-readable text ("in reply to RCPT TO command").
	cmd := bouncereason.Command(body)
	by := reportingMTA(top, subject, body)
	for i := range rep.Recipients {
		rc := &rep.Recipients[i]
		if rc.Diagnostic == "" {
			rc.Diagnostic = around(readable(body), rc.Address)
		}
		classify(rc, cmd, by)
		// Google Groups: the group refused the post (it does not exist or
		// the sender may not post); the notice is localised, so its text
		// says nothing the phrase tables know.
		if strings.HasSuffix(rc.Address, "@googlegroups.com") && strings.Contains(from, "mailer-daemon@google") {
			rc.Reason, rc.Hard = bouncereason.Rejected, false
		}
	}
	// DSNs may carry Auto-Submitted: auto-replied too (RFC 3834 5), so
	// only a message without bounce evidence is taken as an auto-reply.
	if !bounceish && autoReply(top, subject) {
		rep.AutoReply = true
		rep.Recipients = nil
		return rep.withOriginal(w), nil
	}
	rep.IsBounce = bounceish && len(rep.Recipients) > 0
	if !rep.IsBounce {
		rep.Recipients = nil
	}
	return rep.withOriginal(w), nil
}

func (rep *Report) withOriginal(w walker) *Report {
	if w.original != nil {
		h := w.original
		rep.Original = Original{
			MessageID:  strings.TrimSpace(h.Get("Message-Id")),
			FeedbackID: strings.TrimSpace(h.Get("Feedback-Id")),
			ReturnPath: strings.Trim(strings.TrimSpace(h.Get("Return-Path")), "<>"),
			From:       strings.TrimSpace(h.Get("From")),
			To:         strings.TrimSpace(h.Get("To")),
			Subject:    decodeWord(h.Get("Subject")),
			Received:   h.Values("Received"),
		}
		for f := h.Fields(); f.Next(); {
			if k := f.Key(); len(k) > 10 && strings.EqualFold(k[:10], "x-outflow-") {
				if rep.Original.Outflow == nil {
					rep.Original.Outflow = map[string]string{}
				}
				rep.Original.Outflow[k] = strings.TrimSpace(f.Value())
			}
		}
	}
	return rep
}

// classify fills the reason and hard flag from status, code and text.
func classify(rc *Recipient, cmd string, by *mta) {
	in := bouncereason.Input{Status: rc.Status, Code: rc.ReplyCode, Text: rc.Diagnostic, Action: rc.Action, RemoteHost: rc.RemoteMTA}
	if by != nil {
		in.Reason = by.reason(rc.Diagnostic)
	}
	if i := strings.LastIndexByte(rc.Address, '@'); i >= 0 {
		in.Destination = rc.Address[i+1:]
	}
	if bouncereason.Command(rc.Diagnostic) == "" {
		in.Command = cmd
	}
	if rc.ReplyCode == 0 {
		rc.ReplyCode = bouncereason.FindCode(rc.Diagnostic)
	}
	// A status of class-only detail (x.0.0) says less than the text.
	if st := bouncereason.FindStatus(rc.Diagnostic); st != "" && (rc.Status == "" || strings.HasSuffix(rc.Status, ".0.0")) && !strings.HasSuffix(st, ".0.0") {
		in.Status = st
		if rc.Status == "" {
			rc.Status = st
		}
	}
	if strings.Contains(strings.ToLower(rc.Diagnostic), "x-unix;") {
		in.Mailer = true
	}
	switch strings.ToLower(rc.Action) {
	case "delivered", "relayed", "expanded":
		rc.Reason = bouncereason.Delivered
	default:
		rc.Reason = bouncereason.Classify(in)
	}
	rc.Hard = bouncereason.HardStatus(rc.Reason, rc.Status, rc.ReplyCode)
}

// notSender drops the original message's sender (the bounce's To, the
// original's From and Return-Path) from the recipients a free-text
// bounce names ("The original message was received ... from <sender>"):
// the sender is never the failed recipient, unless it is the only
// address there is.
func notSender(rcpts []Recipient, top textproto.Header, original *textproto.Header) []Recipient {
	senders := map[string]bool{}
	fields := []string{top.Get("To")}
	if original != nil {
		fields = append(fields, original.Get("From"), original.Get("Return-Path"))
	}
	for _, v := range fields {
		for _, a := range addrRE.FindAllString(v, -1) {
			senders[strings.ToLower(a)] = true
		}
	}
	var out []Recipient
	for _, rc := range rcpts {
		if !senders[rc.Address] {
			out = append(out, rc)
		}
	}
	if len(out) == 0 {
		return rcpts
	}
	return out
}

func (w walker) originalTo() string {
	if w.original == nil {
		return ""
	}
	return w.original.Get("To")
}

// walker collects the parts of a message that matter.
type walker struct {
	status   [][]byte          // message/delivery-status bodies
	text     bytes.Buffer      // text/plain bodies (the human-readable part)
	original *textproto.Header // the original's header
}

const maxDepth = 8

func (w *walker) walk(raw []byte, depth int) {
	if depth > maxDepth {
		return
	}
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		w.text.Write(raw)
		return
	}
	_ = err // unknown charsets and encodings: read what there is
	w.entity(e, depth)
}

func (w *walker) entity(e *message.Entity, depth int) {
	mt, _, _ := e.Header.ContentType()
	mt = strings.ToLower(mt)
	if mr := e.MultipartReader(); mr != nil {
		for {
			// Unknown charsets and encodings come with the part: read it
			// raw. Any other error ends the multipart (retrying could
			// loop forever on the same bytes).
			p, err := mr.NextPart()
			if err != nil && (p == nil || !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return
			}
			w.entity(p, depth+1)
		}
	}
	body, _ := io.ReadAll(io.LimitReader(e.Body, MaxSize))
	switch {
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		w.status = append(w.status, body)
	case mt == "message/rfc822" || mt == "message/global" || mt == "text/rfc822-headers" || mt == "message/rfc822-headers" || mt == "message/global-headers":
		if w.original == nil {
			h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(bytes.TrimLeft(body, "\n"), '\n', '\n'))))
			if h.Len() > 0 {
				w.original = &h
			}
		}
	case mt == "" || strings.HasPrefix(mt, "text/"):
		if w.text.Len() < 256<<10 {
			w.text.Write(body)
			w.text.WriteByte('\n')
		}
		if w.original == nil {
			w.originalInText(body)
		}
	}
}

// originalInText finds a quoted original header in free text (qmail and
// others append it after a marker line).
func (w *walker) originalInText(body []byte) {
	i := bytes.Index(body, []byte("\nMessage-ID:"))
	if i < 0 {
		i = bytes.Index(body, []byte("\nMessage-Id:"))
	}
	if i < 0 {
		return
	}
	start := bytes.LastIndex(body[:i], []byte("\n\n"))
	if start < 0 {
		start = 0
	}
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(bytes.TrimLeft(body[start:], "\n \t"), '\n', '\n'))))
	if h.Has("Message-Id") {
		w.original = &h
	}
}

// fromStatus reads the RFC 3464 fields: a per-message block, then one
// block per recipient (RFC 3464 2.2, 2.3).
func (w *walker) fromStatus(rep *Report) {
	for _, body := range w.status {
		blocks := splitBlocks(body)
		for i, b := range blocks {
			h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(b, '\n', '\n'))))
			if i == 0 && rep.ReportingMTA == "" {
				rep.ReportingMTA = typed(h.Get("Reporting-Mta"))
			}
			addr := typed(h.Get("Final-Recipient"))
			if addr == "" {
				addr = typed(h.Get("Original-Recipient"))
			}
			if addr == "" {
				continue
			}
			rc := Recipient{
				Address:    cleanAddr(addr),
				Status:     statusField(h.Get("Status")),
				Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
				Diagnostic: strings.Join(strings.Fields(h.Get("Diagnostic-Code")), " "),
				RemoteMTA:  typed(h.Get("Remote-Mta")),
			}
			if strings.HasPrefix(strings.ToLower(h.Get("Diagnostic-Code")), "x-unix") && !strings.Contains(strings.ToLower(rc.Diagnostic), "x-unix;") {
				rc.Diagnostic = "X-Unix; " + rc.Diagnostic
			}
			rep.Recipients = append(rep.Recipients, rc)
		}
	}
}

func splitBlocks(body []byte) [][]byte {
	var out [][]byte
	for _, b := range bytes.Split(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		if b = bytes.Trim(b, "\n"); len(bytes.TrimSpace(b)) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// typed strips the address-type or MTA-name-type of an RFC 3464 field
// ("rfc822; user@example.org" → "user@example.org").
func typed(v string) string {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ";"); ok {
		v = after
	}
	return strings.TrimSpace(v)
}

var statusRE = regexp.MustCompile(`[245]\.\d{1,3}\.\d{1,3}`)

func statusField(v string) string { return statusRE.FindString(v) }

func cleanAddr(a string) string {
	a = strings.TrimSpace(a)
	if m := addrRE.FindString(a); m != "" {
		return strings.ToLower(m)
	}
	return strings.ToLower(strings.Trim(a, "<>"))
}

var addrRE = regexp.MustCompile(`[A-Za-z0-9._%+=\-/!#$&'*?^{|}~]+@[A-Za-z0-9.\-\[\]:]+[A-Za-z0-9\]]`)

func decodeWord(s string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// rawStatus finds delivery-status parts in the raw bytes, for messages
// whose MIME structure breaks before them (a malformed part header ends
// the multipart reader).
func rawStatus(raw []byte) [][]byte {
	var out [][]byte
	lower := bytes.ToLower(raw)
	for off := 0; off < len(lower); {
		i := bytes.Index(lower[off:], []byte("content-type: message/delivery-status"))
		if i < 0 {
			i = bytes.Index(lower[off:], []byte("content-type: message/global-delivery-status"))
		}
		if i < 0 {
			break
		}
		start := off + i
		j := bytes.Index(raw[start:], []byte("\n\n"))
		if j < 0 {
			break
		}
		body := raw[start+j+2:]
		if k := bytes.Index(body, []byte("\n--")); k >= 0 {
			body = body[:k]
		}
		out = append(out, body)
		off = start + j + 2
	}
	if len(out) == 0 {
		if b := bareStatus(raw, lower); b != nil {
			out = append(out, b)
		}
	}
	return out
}

var fieldLineRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:`)

// bareStatus finds RFC 3464 fields written into a message without MIME
// structure: the paragraphs of "Field: value" lines from Reporting-MTA (or
// the first Final-Recipient) on.
func bareStatus(raw, lower []byte) []byte {
	i := bytes.Index(lower, []byte("\nfinal-recipient:"))
	if i < 0 {
		return nil
	}
	if r := bytes.LastIndex(lower[:i], []byte("\nreporting-mta:")); r >= 0 {
		i = r
	}
	var b bytes.Buffer
	for _, para := range bytes.Split(raw[i+1:], []byte("\n\n")) {
		if !fieldLineRE.Match(para) || !bytes.Contains(bytes.ToLower(para), []byte("-mta:")) && !bytes.Contains(bytes.ToLower(para), []byte("recipient:")) {
			break
		}
		b.Write(para)
		b.WriteString("\n\n")
	}
	return b.Bytes()
}
