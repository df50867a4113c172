package dsn

import (
	"net/textproto"
	"strings"

	"github.com/outflowmail/outflow/pkg/bouncereason"

	gtp "github.com/emersion/go-message/textproto"
)

// originalMarkers start the quoted original in free-text bounces; text
// after them is the original, not the diagnostic.
var originalMarkers = []string{
	"--- below this line is a copy of the message",
	"------ this is a copy of the message",
	"----- original message follows",
	"----- transcript of session follows",
	"--- the header of the original message is following",
	"----- unsent message follows",
	"----- original message -----",
	"original message headers",
	"\nreceived: ",
	"\nreturn-path: ",
}

// fromText finds failed recipients in a free-text bounce: each address
// that stands on a line of the human-readable part, with the lines next
// to it as its diagnostic.
func fromText(rep *Report, body string) {
	text := readable(body)
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		l := strings.ToLower(strings.TrimSpace(line))
		if l == "" || headerLine(l) {
			continue
		}
		for _, a := range addrRE.FindAllString(line, -1) {
			a = strings.ToLower(strings.Trim(a, ".,;:"))
			if seen[a] || systemAddr(a) {
				continue
			}
			seen[a] = true
			rep.Recipients = append(rep.Recipients, Recipient{Address: a, Diagnostic: around(text, a)})
			break
		}
		if len(rep.Recipients) >= 20 {
			break
		}
	}
}

// readable is the human-readable part of a free-text bounce: the text
// before the quoted original.
func readable(body string) string {
	lower := strings.ToLower(body)
	cut := len(body)
	for _, m := range originalMarkers {
		if i := strings.Index(lower, m); i >= 0 && i < cut && i > 0 {
			// keep transcripts: they hold the reply
			if strings.Contains(m, "transcript") {
				continue
			}
			cut = i
		}
	}
	return body[:cut]
}

func headerLine(l string) bool {
	for _, p := range []string{"mail from:", "from:", "to:", "cc:", "reply-to:", "sender:", "return-path:", "message-id:", "received:", "subject:", "date:", "references:", "in-reply-to:"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// systemAddr: addresses of mail systems, not recipients.
func systemAddr(a string) bool {
	local, _, _ := strings.Cut(a, "@")
	switch local {
	case "mailer-daemon", "postmaster", "mail-daemon", "noreply", "no-reply", "root", "abuse", "daemon":
		return true
	}
	return false
}

// around returns the diagnostic lines for addr in text: the line with the
// address and the next lines up to a blank line (at most 8 lines), or,
// when addr is absent, the human-readable text's lines carrying a reply.
func around(text, addr string) string {
	lower := strings.ToLower(text)
	lines := strings.Split(text, "\n")
	llines := strings.Split(lower, "\n")
	var starts []int
	if addr != "" {
		for i, l := range llines {
			if strings.Contains(l, addr) && !headerLine(strings.TrimSpace(l)) {
				starts = append(starts, i)
				if len(starts) == 3 {
					break
				}
			}
		}
	}
	var b strings.Builder
	for _, start := range starts {
		// A session transcript (sendmail: ">>> RCPT To:<addr>", "<<< 550
		// ...", then "554 <addr>... reason") puts the command and the
		// remote reply on the lines before the address's own.
		for back := 0; back < 4 && start > 0; back++ {
			p := strings.TrimSpace(lines[start-1])
			if !strings.HasPrefix(p, "<<<") && !strings.HasPrefix(p, ">>>") {
				break
			}
			start--
		}
		n := 0
		for i := start; i < len(lines) && n < 8; i++ {
			t := strings.TrimSpace(lines[i])
			// The next recipient's lines are not this one's diagnostic.
			if i > start && otherAddr(llines[i], addr) {
				break
			}
			if t == "" {
				if n > 1 {
					break
				}
				continue
			}
			b.WriteString(t)
			b.WriteByte(' ')
			n++
		}
	}
	// Lines that look like a reply anywhere in the readable part, when
	// the address's own lines do not hold one.
	if b.Len() > 0 && bouncereason.FindCode(b.String()) != 0 {
		return strings.TrimSpace(b.String())
	}
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if len(t) < 6 || len(t) > 400 {
			continue
		}
		if (t[0] == '4' || t[0] == '5') && len(t) > 3 && t[1] >= '0' && t[1] <= '9' && t[2] >= '0' && t[2] <= '9' && (t[3] == ' ' || t[3] == '-') ||
			strings.Contains(strings.ToLower(t), "said:") || strings.HasPrefix(strings.ToLower(t), "remote host said") ||
			strings.HasPrefix(strings.ToLower(t), "reason:") || strings.HasPrefix(strings.ToLower(t), "diagnostic") {
			if !strings.Contains(b.String(), t) {
				b.WriteString(t)
				b.WriteByte(' ')
			}
		}
		if b.Len() > 2000 {
			break
		}
	}
	if b.Len() == 0 {
		// The readable part itself, shortened.
		s := strings.Join(strings.Fields(text), " ")
		if len(s) > 1500 {
			s = s[:1500]
		}
		return s
	}
	return strings.TrimSpace(b.String())
}

// looksLikeBounce: a sender, subject or text that only bounces have.
func looksLikeBounce(subject, from, body string) bool {
	s := strings.ToLower(subject)
	for _, k := range []string{"undeliver", "delivery status", "delivery fail", "failure notice", "returned mail", "mail delivery", "delivery notification", "non-delivery", "nondeliverable", "not delivered", "could not be delivered", "delivery problem", "mail system error", "rejected", "bounce", "warning: ", "delayed mail", "undelivered", "error", "failed"} {
		if strings.Contains(s, k) {
			return true
		}
	}
	for _, k := range []string{"mailer-daemon", "postmaster", "mail delivery", "mail-daemon", "mailer_daemon", "bounce"} {
		if strings.Contains(from, k) {
			return true
		}
	}
	b := strings.ToLower(body)
	for _, k := range []string{"could not be delivered", "undeliverable", "delivery has failed", "permanent error", "following address", "following recipient", "user unknown", "was not delivered", "delivery to the following", "returned to sender", "failed recipient"} {
		if strings.Contains(b, k) {
			return true
		}
	}
	return false
}

// autoReply: RFC 3834 5 Auto-Submitted: auto-replied, the older
// X-Autoreply family, or a vacation subject.
func autoReply(h gtp.Header, subject string) bool {
	as := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	if strings.HasPrefix(as, "auto-replied") {
		return true
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Mail-Autoreply"} {
		if h.Has(textproto.CanonicalMIMEHeaderKey(k)) || h.Has(k) {
			return true
		}
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") {
		return true
	}
	s := strings.ToLower(subject)
	for _, k := range []string{"out of office", "out of the office", "auto-reply", "autoreply", "auto reply", "automatic reply", "vacation", "abwesenheit", "absence", "away from"} {
		if strings.Contains(s, k) {
			return true
		}
	}
	return false
}

// otherAddr reports whether a lower-cased line starts with an address
// other than addr: the entry of the next recipient.
func otherAddr(line, addr string) bool {
	t := strings.TrimLeft(line, " \t<\"")
	loc := addrRE.FindStringIndex(t)
	if loc == nil || loc[0] != 0 {
		return false
	}
	return strings.Trim(t[:loc[1]], ".,;:") != addr
}
