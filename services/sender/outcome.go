package sender

import (
	"fmt"
	"time"

	"github.com/outflowmail/outflow/pkg/bouncereason"
	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
)

// plan is what becomes of a job after an attempt: each recipient's outcome
// and which recipients are tried again, when.
type plan struct {
	rcpts []events.RcptReply
	// retry are the deferred recipients, republished as a new job due at
	// next. Empty when the job reached a final state.
	retry []string
	next  time.Time
}

// final reports whether every recipient reached a final state.
func (p plan) final() bool { return len(p.retry) == 0 }

// expiredReply stands in for a server reply when a job is too old to try:
// RFC 3463 X.4.7, delivery time expired.
var expiredReply = delivery.Reply{Enhanced: "4.4.7"}

// decide is the one place where delivery results become outcomes, and so
// JetStream actions (see handle):
//
//   - accepted → delivered;
//   - permanent failure (5xx, null MX, no such domain) → bounced;
//   - temporary failure (4xx, network, DNS) → deferred, retried at next,
//     unless next would be past the message's maximum age: then this was
//     the last attempt and the recipient is expired;
//   - a job already past its maximum age is not tried: every recipient is
//     expired.
//
// attempted is false when the job expired before an attempt.
func decide(env *envelope.Envelope, res delivery.Result, attempted bool, now time.Time, r Retry, rnd func() float64) plan {
	var p plan
	deadline := expiresAt(env, r)
	next := now.Add(backoff(env.Attempt+1, r, rnd))
	if res.RetryAt.After(next) {
		// Shaping held some recipients until then: no sooner.
		next = res.RetryAt
	}
	for i, rcpt := range env.Rcpts {
		if !attempted {
			reply := expiredReply
			reply.Text = fmt.Sprintf("message expired: not delivered within %v", r.MaxAge)
			rp := rcptReply(rcpt, events.OutcomeExpired, reply)
			rp.Reason = bouncereason.Expired
			p.rcpts = append(p.rcpts, rp)
			continue
		}
		rr := res.Rcpts[i]
		switch {
		case rr.Err == nil:
			p.rcpts = append(p.rcpts, rcptReply(rcpt, events.OutcomeDelivered, rr.Reply))
		case rr.Err.Permanent:
			p.rcpts = append(p.rcpts, failed(rcpt, events.OutcomeBounced, rr.Err))
		case !deadline.IsZero() && next.After(deadline):
			p.rcpts = append(p.rcpts, failed(rcpt, events.OutcomeExpired, rr.Err))
		default:
			p.rcpts = append(p.rcpts, failed(rcpt, events.OutcomeDeferred, rr.Err))
			p.retry = append(p.retry, rcpt)
		}
	}
	if !p.final() {
		p.next = next
	}
	return p
}

// expiresAt is when a job's message is too old to try; zero (never) for a
// message without a receive time.
func expiresAt(env *envelope.Envelope, r Retry) time.Time {
	if env.Received.IsZero() {
		return time.Time{}
	}
	return env.Received.Add(r.MaxAge)
}

func rcptReply(rcpt string, o events.Outcome, r delivery.Reply) events.RcptReply {
	return events.RcptReply{Rcpt: rcpt, Outcome: o, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text}
}

// failed is rcptReply for a recipient the attempt did not deliver: with
// its reason, and for a bounce whether it is hard.
func failed(rcpt string, o events.Outcome, e *delivery.Error) events.RcptReply {
	rp := rcptReply(rcpt, o, e.Reply)
	rp.Reason = reason(o, e)
	if o == events.OutcomeBounced {
		rp.Bounce = "soft"
		if bouncereason.HardStatus(rp.Reason, e.Enhanced, e.Code) {
			rp.Bounce = "hard"
		}
	}
	return rp
}

// reason names why a recipient was not delivered, in Sisimai's vocabulary:
// expiry is known here; the rest is pkg/bouncereason's classification of
// the reply (the same as for asynchronous bounces), told which command it
// answered.
func reason(o events.Outcome, e *delivery.Error) string {
	if o == events.OutcomeExpired {
		return bouncereason.Expired
	}
	if e.Stage == delivery.StageShaping {
		return "" // no server was asked
	}
	return bouncereason.Classify(bouncereason.Input{Code: e.Code, Status: e.Enhanced, Text: e.Text, Command: commands[e.Stage]})
}

// commands name the SMTP command each stage's reply answered.
var commands = map[delivery.Stage]string{
	delivery.StageConnect: "CONN", delivery.StageGreeting: "EHLO", delivery.StageTLS: "STARTTLS",
	delivery.StageMail: "MAIL", delivery.StageRcpt: "RCPT", delivery.StageData: "DATA",
}

// backoff is the delay before the attempt after attempt (1-based):
// FirstDelay doubled for each earlier attempt, ±20% jitter so that
// recipients deferred together do not all return together, capped at
// MaxDelay. RFC 5321 4.5.4.1 asks for retry intervals of at least 30
// minutes; the 5-minute default first retry follows today's MTAs, which
// catch greylisting (typically 1-5 minutes) early and then back off.
func backoff(attempt int, r Retry, rnd func() float64) time.Duration {
	d := r.FirstDelay
	for i := 1; i < attempt && d < r.MaxDelay; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rnd()))
	return min(d, r.MaxDelay)
}
