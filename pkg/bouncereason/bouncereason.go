// Package bouncereason names why a message was not delivered, in the
// vocabulary of the Sisimai project (libsisimai.org/en/reason): one reason
// per failed recipient, from the SMTP reply (or a DSN's Status and
// Diagnostic-Code). The sender classifies its synchronous replies with it
// and the DSN parser (pkg/dsn) the asynchronous bounces, so both count the
// same reasons in analytics and suppress on the same hard bounces.
//
// The decision follows Sisimai's: the enhanced status code (RFC 3463)
// names a tentative reason; phrases of the reply text confirm or override
// it in a fixed order of precedence; the SMTP command the reply answered
// and the reply code settle the rest.
package bouncereason

import (
	"regexp"
	"strconv"
	"strings"
)

// Reasons (Sisimai's names).
const (
	AuthFailure     = "authfailure"
	BadReputation   = "badreputation"
	Blocked         = "blocked"
	ContentError    = "contenterror"
	Delivered       = "delivered"
	ExceedLimit     = "exceedlimit"
	Expired         = "expired"
	FailedSTARTTLS  = "failedstarttls"
	Feedback        = "feedback"
	Filtered        = "filtered"
	HasMoved        = "hasmoved"
	HostUnknown     = "hostunknown"
	MailboxFull     = "mailboxfull"
	MailerError     = "mailererror"
	MesgTooBig      = "mesgtoobig"
	NetworkError    = "networkerror"
	NoRelaying      = "norelaying"
	NotAccept       = "notaccept"
	NotCompliantRFC = "notcompliantrfc"
	OnHold          = "onhold"
	PolicyViolation = "policyviolation"
	Rejected        = "rejected"
	RequirePTR      = "requireptr"
	SecurityError   = "securityerror"
	SpamDetected    = "spamdetected"
	Speeding        = "speeding"
	Suppressed      = "suppressed"
	Suspend         = "suspend"
	SyntaxError     = "syntaxerror"
	SystemError     = "systemerror"
	SystemFull      = "systemfull"
	TooManyConn     = "toomanyconn"
	Undefined       = "undefined"
	UserUnknown     = "userunknown"
	Vacation        = "vacation"
)

// Hard reports whether a reason is a hard bounce: the address or its
// domain does not exist or takes no mail, so sending again is pointless
// and the recipient should be suppressed. Everything else is soft (it may
// pass later, or it is about the sender, not the recipient). This is
// Sisimai's hardbounce for permanent failures.
func Hard(reason string) bool {
	switch reason {
	case UserUnknown, HostUnknown, HasMoved, NotAccept:
		return true
	}
	return false
}

// HardStatus is Hard for one failure: a notaccept answered with a
// temporary (4.x.x / 4xx) status is soft, as Sisimai has it.
func HardStatus(reason, status string, code int) bool {
	if reason == NotAccept && (strings.HasPrefix(status, "4.") || code/100 == 4) {
		return false
	}
	return Hard(reason)
}

// Input is what is known about one failed recipient.
type Input struct {
	// Code is the SMTP reply code (RFC 5321 4.2), 0 when unknown.
	Code int
	// Status is the enhanced status code (RFC 3463), e.g. "5.1.1".
	Status string
	// Text is the reply or diagnostic text.
	Text string
	// Command is the SMTP command the reply answered (CONN, EHLO, HELO,
	// STARTTLS, AUTH, MAIL, RCPT, DATA), "" when unknown; Command
	// guesses it from Text.
	Command string
	// Action is the DSN Action (RFC 3464 2.3.3): failed, delayed, ...
	Action string
	// Mailer says the failure came from a local delivery program
	// (Diagnostic-Code type X-Unix), not from SMTP.
	Mailer bool
	// Destination is the recipient's domain and RemoteHost the host
	// name of the MTA that answered, when known: some providers' replies
	// are read by their own rules (rhost.go).
	Destination, RemoteHost string
	// Reason is the reason the reporting MTA's own wording names (the
	// per-MTA tables of pkg/dsn, as Sisimai's lhost modules), "" when
	// none. A firm one is final; a tentative one (retried) yields to
	// the remote-host rules and the probes of the first order, and
	// wins over the phrase tables.
	Reason string
}

// retried are the reasons that an MTA's own wording names only
// tentatively (Sisimai's GetRetried).
var retried = map[string]bool{
	Undefined: true, OnHold: true, SystemError: true, SecurityError: true, Expired: true,
	NetworkError: true, HostUnknown: true, UserUnknown: true,
}

// FromReply classifies an SMTP reply: its code, enhanced status code and
// text (the enhanced code may also lead the text).
func FromReply(code int, enhanced, text string) string {
	return Classify(Input{Code: code, Status: enhanced, Text: text})
}

// Classify returns the reason for in, never "".
func Classify(in Input) string {
	st := in.Status
	if st == "" {
		st = FindStatus(in.Text)
	}
	// The trailing space lets phrases that end in one ("transaction
	// failed ") match at the end of the text too.
	text := contRE.ReplaceAllString(normalize(in.Text), " ") + " "
	if in.Code == 0 {
		in.Code = FindCode(in.Text)
	}
	if in.Command == "" {
		in.Command = Command(text)
	}
	if strings.HasPrefix(st, "2.") {
		return Delivered
	}
	if in.Reason != "" && !retried[in.Reason] {
		return in.Reason
	}
	f := fact{status: st, name: StatusName(st), text: text, code: in.Code, cmd: in.Command, action: strings.ToLower(in.Action), reason: in.Reason}
	if p := rhostName(in.Destination, in.RemoteHost); p != "" {
		if r := byRemoteHost(p, &f, in.Text); r != "" {
			return r
		}
	}

	if !in.Mailer {
		for _, r := range firstOrder {
			if f.probe(r) {
				// A domain that does not resolve for now is a network
				// problem; hostunknown is the permanent verdict.
				if r == HostUnknown && (strings.HasPrefix(st, "4.") || in.Code/100 == 4) {
					return NetworkError
				}
				return r
			}
		}
	}
	r := f.another(in.Mailer)
	if r == "" && f.action == "delayed" {
		r = Expired
	}
	if r != "" {
		return r
	}
	if table[Vacation].match(text) {
		return Vacation
	}
	if strings.TrimSpace(text) != "" {
		return OnHold
	}
	return Undefined
}

// contRE matches the code prefixes of continuation lines of a multiline
// reply (RFC 5321 4.2.1: "550-5.2.1 "), which split phrases.
var contRE = regexp.MustCompile(` [245][0-9][0-9]-(?:[245]\.[0-9]{1,3}\.[0-9]{1,3} )?`)

// firstOrder is the order in which reasons are probed with the status
// code and the text together; the first that holds wins.
var firstOrder = []string{
	MailboxFull, MesgTooBig, ExceedLimit, Suspend, HasMoved, NoRelaying, AuthFailure, UserUnknown, Filtered,
	RequirePTR, NotCompliantRFC, BadReputation, ContentError, Rejected, HostUnknown, SpamDetected, Speeding,
	TooManyConn, Blocked,
}

// secondOrder is the order of the phrase tables tried when the status
// code alone left the reason open.
var secondOrder = []string{
	MailboxFull, AuthFailure, BadReputation, Speeding, SpamDetected, VirusDetected, PolicyViolation, NoRelaying,
	SystemError, NetworkError, Suspend, ContentError, SystemFull, NotAccept, Expired, FailedSTARTTLS, SecurityError,
	MailerError,
}

// VirusDetected is Sisimai's reason for a message refused for malware.
const VirusDetected = "virusdetected"

// openReasons are the reasons a status code names only tentatively: the
// text may say better.
var openReasons = map[string]bool{
	"": true, Undefined: true, OnHold: true, SystemError: true, SecurityError: true, Expired: true,
	NetworkError: true, HostUnknown: true, UserUnknown: true,
}

// beforeData are the commands that precede the message content: a reply
// to one of them cannot be about the content.
func beforeData(cmd string) bool {
	switch cmd {
	case "CONN", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT":
		return true
	}
	return false
}

type fact struct {
	status, name, text, cmd, action string
	// reason is the tentative reason the MTA's wording named.
	reason string
	code   int
}

func (f *fact) has(reason string) bool {
	if reason == Rejected {
		return f.hasRejected()
	}
	return table[reason].match(f.text)
}

// probe decides one reason of firstOrder.
func (f *fact) probe(r string) bool {
	if r == f.reason {
		return true
	}
	switch r {
	case UserUnknown:
		if f.name == UserUnknown {
			for _, o := range []string{NoRelaying, Blocked, MailboxFull, HasMoved, Rejected, NotAccept} {
				if f.has(o) {
					return false
				}
			}
			return true
		}
		// An addressing status (X.1.X, RFC 3463 3.2) says the reply is
		// about the address even when the command is not named.
		return (f.cmd == "RCPT" || f.cmd == "" && addressing(f.status)) && f.has(UserUnknown)
	case Filtered:
		if f.name == Filtered {
			return f.has(UserUnknown) || f.has(Filtered)
		}
		if beforeData(f.cmd) {
			return false
		}
		return f.has(Filtered) || f.has(UserUnknown)
	case MesgTooBig:
		if f.name == MesgTooBig {
			return true
		}
		if f.name == ExceedLimit {
			return false
		}
		return f.has(MesgTooBig)
	case Suspend:
		return f.code == 525 || f.has(Suspend)
	case NoRelaying:
		switch f.cmd {
		case "CONN", "EHLO", "HELO":
			return false
		}
		return f.has(NoRelaying)
	case HasMoved, NotCompliantRFC, BadReputation, Speeding:
		return f.has(r)
	case ContentError:
		if f.probe(SpamDetected) {
			return false
		}
		return f.name == ContentError || f.has(ContentError)
	case Rejected:
		if f.name == Rejected {
			return true
		}
		if !f.has(Rejected) {
			return false
		}
		switch {
		case f.cmd == "MAIL":
			return true
		case f.cmd == "DATA":
			return f.name != UserUnknown
		}
		return f.name == "" || f.name == SecurityError || f.name == SystemError
	case HostUnknown:
		if f.name == HostUnknown {
			return !f.has(NetworkError)
		}
		return f.has(HostUnknown)
	case SpamDetected:
		if f.status == "" {
			return false
		}
		if f.name == SpamDetected {
			return true
		}
		if beforeData(f.cmd) {
			return false
		}
		return f.has(SpamDetected)
	}
	// MailboxFull, ExceedLimit, AuthFailure, RequirePTR, TooManyConn,
	// Blocked: the status code or the text.
	return f.name == r || f.has(r)
}

// addressing reports whether an enhanced status code has the addressing
// subject (X.1.X).
func addressing(status string) bool { return len(status) > 3 && status[1:4] == ".1." }

// hasRejected matches the sender-rejected phrases, except where the text
// is about the recipient or the client IP.
func (f *fact) hasRejected() bool {
	for _, no := range []string{"5.1.0 address rejected", "recipient address rejected", "sender ip address rejected"} {
		if strings.Contains(f.text, no) {
			return false
		}
	}
	return table[Rejected].match(f.text)
}

// another decides when no probe held: phrases first, then the status
// code's reason, then its class.
func (f *fact) another(mailer bool) string {
	if f.reason != "" && f.reason != OnHold && f.reason != Undefined {
		return f.reason
	}
	if !openReasons[f.name] && !mailer {
		return f.name
	}
	for _, r := range secondOrder {
		if f.has(r) {
			return r
		}
	}
	if f.name != "" {
		return f.name
	}
	if len(f.status) > 3 {
		switch f.status[:3] {
		case "5.6", "4.6":
			return ContentError
		case "5.7", "4.7":
			return SecurityError
		}
	}
	if mailer {
		return MailerError
	}
	if (f.code > 400 && f.code < 408) || (f.code > 500 && f.code < 508) {
		return SyntaxError
	}
	if f.action == "delayed" || f.action == "expired" {
		return Expired
	}
	if f.cmd == "EHLO" || f.cmd == "HELO" {
		return Blocked
	}
	return ""
}

// statusReasons maps enhanced status codes (RFC 3463, RFC 5248 registry)
// to the reason they stand for, as Sisimai does; codes not listed say
// nothing by themselves.
var statusReasons = map[string]string{
	"2.1.5": Delivered,
	"4.1.6": HasMoved, "4.1.7": Rejected, "4.1.8": Rejected, "4.1.9": SystemError,
	"4.2.1": Blocked, "4.2.2": MailboxFull, "4.2.3": ExceedLimit, "4.2.4": Filtered,
	"4.3.1": SystemFull, "4.3.2": NotAccept, "4.3.3": SystemError, "4.3.5": SystemError,
	"4.4.1": Expired, "4.4.2": NetworkError, "4.4.3": SystemError, "4.4.4": NetworkError, "4.4.5": SystemFull,
	"4.4.6": NetworkError, "4.4.7": Expired, "4.4.8": NetworkError,
	"4.5.3": SystemError, "4.5.5": SystemError,
	"4.6.0": ContentError, "4.6.2": ContentError, "4.6.5": ContentError,
	"4.7.1": Blocked, "4.7.2": Blocked, "4.7.5": SecurityError, "4.7.6": SecurityError, "4.7.7": SecurityError,
	"4.7.12": SecurityError, "4.7.15": SecurityError, "4.7.16": MesgTooBig, "4.7.24": AuthFailure,
	"4.7.25": RequirePTR, "4.7.26": AuthFailure,
	"5.1.0": UserUnknown, "5.1.1": UserUnknown, "5.1.2": HostUnknown, "5.1.3": UserUnknown, "5.1.4": Filtered,
	"5.1.6": HasMoved, "5.1.7": Rejected, "5.1.8": Rejected, "5.1.9": SystemError, "5.1.10": NotAccept,
	"5.2.0": Filtered, "5.2.1": Filtered, "5.2.2": MailboxFull, "5.2.3": ExceedLimit, "5.2.4": Filtered,
	"5.3.0": SystemError, "5.3.1": SystemFull, "5.3.2": NotAccept, "5.3.3": SystemError, "5.3.4": MesgTooBig,
	"5.3.5": SystemError,
	"5.4.0": NetworkError, "5.4.3": SystemError, "5.4.4": HostUnknown,
	"5.5.2": SyntaxError, "5.5.3": TooManyConn, "5.5.4": SystemError, "5.5.5": SystemError, "5.5.6": SyntaxError,
	"5.6.0": ContentError, "5.6.1": ContentError, "5.6.2": ContentError, "5.6.3": ContentError,
	"5.6.5": ContentError, "5.6.6": ContentError, "5.6.7": ContentError, "5.6.8": ContentError, "5.6.9": ContentError,
	"5.7.0": SecurityError, "5.7.1": SecurityError, "5.7.2": SecurityError, "5.7.3": SecurityError,
	"5.7.4": SecurityError, "5.7.5": SecurityError, "5.7.6": SecurityError, "5.7.7": SecurityError,
	"5.7.8": SecurityError, "5.7.9": SecurityError, "5.7.10": SecurityError, "5.7.11": SecurityError,
	"5.7.13": Suspend, "5.7.14": SecurityError, "5.7.15": SecurityError, "5.7.16": MesgTooBig,
	"5.7.17": HasMoved, "5.7.18": HasMoved, "5.7.19": SecurityError,
	"5.7.20": AuthFailure, "5.7.21": AuthFailure, "5.7.22": AuthFailure, "5.7.23": AuthFailure,
	"5.7.24": AuthFailure, "5.7.25": RequirePTR, "5.7.26": AuthFailure, "5.7.27": NotAccept,
	"5.7.28": SpamDetected, "5.7.29": AuthFailure, "5.7.30": FailedSTARTTLS,
}

// StatusName returns the reason an enhanced status code stands for, or "".
func StatusName(status string) string { return statusReasons[status] }

// FindStatus returns the first failure (class 4 or 5) enhanced status
// code (RFC 3463 2: class.subject.detail) in s, else the first success
// (class 2) one, or "": a session transcript shows the accepted commands
// before the failing one.
func FindStatus(s string) string {
	first := ""
	for off := 0; off < len(s); {
		st, end := findStatus(s[off:])
		if st == "" {
			break
		}
		if st[0] != '2' {
			return st
		}
		if first == "" {
			first = st
		}
		off += end
	}
	return first
}

// findStatus returns the first enhanced status code in s and the offset
// after it.
func findStatus(s string) (string, int) {
	for i := 0; i+5 <= len(s); i++ {
		c := s[i]
		if c != '2' && c != '4' && c != '5' || s[i+1] != '.' {
			continue
		}
		if i > 0 && (isDigit(s[i-1]) || s[i-1] == '.') {
			continue
		}
		j := i + 2
		k := j
		for k < len(s) && k-j < 3 && isDigit(s[k]) {
			k++
		}
		if k == j || k >= len(s) || s[k] != '.' {
			continue
		}
		m := k + 1
		n := m
		for n < len(s) && n-m < 3 && isDigit(s[n]) {
			n++
		}
		if n == m || n < len(s) && (isDigit(s[n]) || s[n] == '.' && n+1 < len(s) && isDigit(s[n+1])) {
			continue
		}
		return s[i:n], n
	}
	return "", 0
}

// FindCode returns the first failure SMTP reply code (RFC 5321 4.2: 4yz
// or 5yz, three digits standing alone) in s, else the first 2yz, or 0.
func FindCode(s string) int {
	first := 0
	for off := 0; off < len(s); {
		c, end := findCode(s[off:])
		if c == 0 {
			break
		}
		if c >= 400 {
			return c
		}
		if first == 0 {
			first = c
		}
		off += end
	}
	return first
}

func findCode(s string) (int, int) {
	for i := 0; i+3 <= len(s); i++ {
		c := s[i]
		if c != '2' && c != '4' && c != '5' || !isDigit(s[i+1]) || !isDigit(s[i+2]) {
			continue
		}
		if s[i+1] > '5' {
			continue
		}
		if i > 0 && (isDigit(s[i-1]) || s[i-1] == '.' || s[i-1] == '#' || isLetter(s[i-1])) {
			continue
		}
		if i+3 < len(s) && (isDigit(s[i+3]) || s[i+3] == '.' || isLetter(s[i+3])) {
			continue
		}
		n, _ := strconv.Atoi(s[i : i+3])
		return n, i + 3
	}
	return 0, 0
}

// Command guesses from a lower-cased text the SMTP command a reply
// answered, as MTAs write it ("in reply to RCPT TO command", "after
// end of data", "SMTP error from remote mail server after MAIL FROM:").
func Command(text string) string {
	t := strings.ToLower(text)
	for _, c := range commandPhrases {
		for _, p := range c.phrases {
			if strings.Contains(t, p) {
				return c.cmd
			}
		}
	}
	return ""
}

var commandPhrases = []struct {
	cmd     string
	phrases []string
}{
	{"DATA", []string{"end of data", "in reply to data", "after data", "in reply to end of", "after end of", "data command", ">>> data"}},
	{"RCPT", []string{"rcpt to", "in reply to rcpt", "after rcpt", ">>> rcpt", "rcpt_to", "rcpt command"}},
	{"MAIL", []string{"mail from", "in reply to mail", "after mail", ">>> mail"}},
	{"STARTTLS", []string{"starttls"}},
	{"EHLO", []string{"in reply to ehlo", "after ehlo", ">>> ehlo"}},
	{"HELO", []string{"in reply to helo", "after helo", ">>> helo"}},
	{"CONN", []string{"after initial connection", "while connected to", "greeting"}},
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// normalize lower-cases s and collapses runs of white space to one space,
// so phrases match across folded lines.
func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range strings.ToLower(s) {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// containsFold is strings.Contains on already lower-cased text.
func containsFold(s, sub string) bool { return strings.Contains(s, sub) }

// aligned reports whether the parts occur in s in order, without
// overlapping.
func aligned(s string, parts []string) bool {
	for _, p := range parts {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return true
}
