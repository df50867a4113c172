package delivery

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/outflowmail/outflow/pkg/resolver"
)

// Conditions delivery detects itself; classify gives each its reply.
var (
	// ErrNullMX: the domain publishes a null MX, it accepts no mail
	// (RFC 7505 3).
	ErrNullMX = errors.New("delivery: domain accepts no mail (null MX)")
	// ErrNoUsableMX: no MX host (or the implicit MX) has an address
	// (RFC 5321 5.1: "MUST be reported as an error").
	ErrNoUsableMX = errors.New("delivery: no MX host has an address")
	// ErrNoRoute: the MX hosts have addresses, but none of the source
	// address's family (an IPv4 pool cannot reach an IPv6-only MX).
	ErrNoRoute = errors.New("delivery: no MX address of the source address's family")
	// ErrSMTPUTF8: an address is not ASCII and the server lacks SMTPUTF8
	// (RFC 6531 3.2).
	ErrSMTPUTF8 = errors.New("delivery: server does not support SMTPUTF8")
	// ErrBadSource: the source address is not an IP address.
	ErrBadSource = errors.New("delivery: bad source address")
	// ErrNoSource: the Shaper left no source address usable toward the
	// site (suspended, listed, over its warm-up cap).
	ErrNoSource = errors.New("delivery: no source address may send")
)

// Stage is where in a delivery attempt an error happened.
type Stage string

// Stages of an attempt.
const (
	StageDNS      Stage = "dns"
	StageConnect  Stage = "connect"
	StageGreeting Stage = "greeting" // 220 greeting and EHLO (RFC 5321 4.3.1)
	StageTLS      Stage = "starttls"
	StageMail     Stage = "mail"
	StageRcpt     Stage = "rcpt"
	StageData     Stage = "data"
	// StageShaping: shaping kept the recipients from being tried (no
	// usable source, connection or rate limit); no server was asked.
	StageShaping Stage = "shaping"
)

// Reply is an SMTP reply, or what stands for one when there was none: Code
// is 0 for network and DNS failures, and Enhanced (RFC 3463) is always set.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// Error is the one error type of a delivery attempt: every failure, from
// DNS, the network or the remote server, is classified into one (by
// classify) so that the sender decides retry or bounce from Permanent alone.
type Error struct {
	Reply
	// Permanent failures are bounced; the others are retried later.
	Permanent bool
	// Host is the MX host (or transport host) that failed or answered;
	// empty for failures before one was chosen.
	Host  string
	Stage Stage
	// Err is the underlying error.
	Err error
}

func (e *Error) Error() string {
	where := string(e.Stage)
	if e.Host != "" {
		where = e.Host + " at " + where
	}
	if e.Code == 0 {
		return fmt.Sprintf("%s: %s %s", where, e.Enhanced, e.Text)
	}
	return fmt.Sprintf("%s: %d %s %s", where, e.Code, e.Enhanced, e.Text)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away by itself.
func (e *Error) Temporary() bool { return !e.Permanent }

// classify is the one function that turns what went wrong into an *Error:
// remote replies keep their code, and the enhanced code they sent or the
// one implied by their class; local conditions get the RFC 3463 code that
// says what happened. A reply's basic code decides permanence (RFC 5321
// 4.2.1: 5yz is permanent, 4yz transient); an unexpected 1yz-3yz reply is
// treated as transient, since no standard reply at that point means it.
func classify(stage Stage, host string, err error) *Error {
	if prev, ok := errors.AsType[*Error](err); ok {
		return prev
	}
	e := &Error{Stage: stage, Host: host, Err: err}
	if code, enh, text, ok := replyOf(err); ok {
		e.Code, e.Enhanced, e.Text = code, enh, text
		e.Permanent = code/100 == 5
		if e.Enhanced == "" || e.Enhanced[0] != byte('0'+code/100) {
			// RFC 3463 2: the enhanced class must match the reply's; when
			// it is missing or disagrees, the basic code wins.
			e.Enhanced = classOf(code) + ".0.0"
		}
		return e
	}
	e.Text = err.Error()
	switch {
	case errors.Is(err, ErrNullMX):
		// RFC 7505 4.3 registers 556 and 5.1.10 for exactly this.
		e.Code, e.Enhanced, e.Permanent = 556, "5.1.10", true
	case errors.Is(err, ErrNoUsableMX):
		e.Enhanced, e.Permanent = "5.4.4", true // unable to route
	case errors.Is(err, resolver.ErrNXDomain):
		e.Enhanced, e.Permanent = "5.1.2", true // bad destination system address
	case errors.Is(err, ErrSMTPUTF8):
		e.Enhanced, e.Permanent = "5.6.7", true // RFC 6533 3: non-ASCII address not permitted
	case errors.Is(err, ErrBadSource):
		e.Enhanced = "4.3.5" // system incorrectly configured
	case errors.Is(err, ErrNoRoute):
		e.Enhanced = "4.4.4" // unable to route
	case errors.Is(err, resolver.ErrServFail):
		e.Enhanced = "4.4.3" // directory server failure
	case stage == StageConnect:
		e.Enhanced = "4.4.1" // no answer from host
	default:
		e.Enhanced = "4.4.2" // bad connection
	}
	return e
}

// replyOf extracts an SMTP reply from go-smtp's error or from the
// textproto error our STARTTLS exchange returns.
func replyOf(err error) (code int, enhanced, text string, ok bool) {
	if re, isReply := errors.AsType[*ReplyError](err); isReply {
		return re.Code, re.Enhanced, re.Text, true
	}
	if se, isSMTP := errors.AsType[*smtp.SMTPError](err); isSMTP {
		ec := se.EnhancedCode
		if ec != smtp.NoEnhancedCode && ec != smtp.EnhancedCodeNotSet {
			enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		}
		return se.Code, enhanced, se.Message, true
	}
	if te, isText := errors.AsType[*textproto.Error](err); isText {
		enhanced, text = splitEnhanced(te.Msg)
		return te.Code, enhanced, text, true
	}
	return 0, "", "", false
}

// splitEnhanced separates a leading enhanced status code (RFC 2034 4) from
// reply text: "2.0.0 OK: queued" → "2.0.0", "OK: queued".
func splitEnhanced(s string) (enhanced, text string) {
	first, rest, _ := strings.Cut(s, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return "", s
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		// RFC 3463 2: class is 2, 4 or 5; subject up to 3 digits, detail
		// up to 3 digits.
		if err != nil || n < 0 || n > 999 || (i == 0 && n != 2 && n != 4 && n != 5) {
			return "", s
		}
	}
	return first, rest
}

func classOf(code int) string {
	switch code / 100 {
	case 2:
		return "2"
	case 5:
		return "5"
	}
	return "4"
}
