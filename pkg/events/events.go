// Package events defines what the pipeline reports about every message:
// verdicts, routing decisions, delivery attempts and their outcomes. Every
// event goes to the events stream and from there into ClickHouse; the
// reputation loop reads its figures from those rows. Payloads carry a version
// so that consumers can evolve with them.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the payload version written by this code.
const Version = 1

// Type says what happened.
type Type string

// Event types.
const (
	// TypeVerdict: the classifier scored a message.
	TypeVerdict Type = "verdict"
	// TypeRouted: the router chose a pool; carries everything known about the
	// message, and is the source of its row in the messages table.
	TypeRouted Type = "routed"
	// TypeDelivery: one delivery attempt to one recipient domain, with its
	// outcome per recipient.
	TypeDelivery Type = "delivery"
	// TypePurged: an operator purged a held message (or one delivery job
	// of it): it will never be sent (pkg/held).
	TypePurged Type = "purged"
)

// Outcome is the result of a delivery attempt for one recipient.
type Outcome string

// Delivery outcomes.
const (
	OutcomeDelivered Outcome = "delivered"
	// OutcomeDeferred: temporary failure, another attempt is scheduled.
	OutcomeDeferred Outcome = "deferred"
	// OutcomeBounced: permanent failure (5xx), or the last attempt failed.
	OutcomeBounced Outcome = "bounced"
	// OutcomeExpired: the message outlived its maximum queue age.
	OutcomeExpired Outcome = "expired"
)

// Subject is the NATS subject prefix of events; an event of type T goes to
// Subject + "." + T.
const Subject = "outflow.events"

// Event is one record on the events stream. Exactly one of the pointer
// fields matching Type is set.
type Event struct {
	V    int       `json:"v"`
	ID   string    `json:"id"`
	Type Type      `json:"type"`
	Time time.Time `json:"time"`
	// Tenant and MsgID tie every event to a tenant and a message.
	Tenant string `json:"tenant"`
	MsgID  string `json:"msg_id"`

	Verdict  *Verdict  `json:"verdict,omitempty"`
	Routed   *Routed   `json:"routed,omitempty"`
	Delivery *Delivery `json:"delivery,omitempty"`
	Shaping  *Shaping  `json:"shaping,omitempty"`
	DNSBL    *DNSBL    `json:"dnsbl,omitempty"`
	TLS      *TLS      `json:"tls,omitempty"` // tls.go
	// Feedback payloads: bounce, complaint, dmarc, suppressed (feedback.go).
	FeedbackPayloads
}

// Verdict is the classifier's judgement.
type Verdict struct {
	Score       float64  `json:"score"`
	Label       string   `json:"label"`
	Symbols     []Symbol `json:"symbols,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Model       string   `json:"model,omitempty"`
}

// Symbol is one contribution to a verdict.
type Symbol struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
}

// Routed describes a message once its pool is chosen.
type Routed struct {
	MessageID  string    `json:"message_id,omitempty"`
	From       string    `json:"from"`
	FromDomain string    `json:"from_domain"`
	Rcpts      []string  `json:"rcpts"`
	Size       int64     `json:"size"`
	Received   time.Time `json:"received"`
	Verdict    Verdict   `json:"verdict"`
	Pool       string    `json:"pool"`
	Reason     string    `json:"reason"`
	Domains    int       `json:"domains"`
}

// Delivery is one attempt to hand a delivery job to a recipient domain's MX.
type Delivery struct {
	Domain   string `json:"domain"`
	Pool     string `json:"pool"`
	SourceIP string `json:"source_ip"`
	MX       string `json:"mx"`
	// Sender names the sender process that made the attempt (host:pid), so
	// an operator can tell several sender processes apart.
	Sender  string `json:"sender,omitempty"`
	Attempt int    `json:"attempt"`
	// Duration of the attempt (connect to final reply).
	DurationMs int64 `json:"duration_ms"`
	// Site is the destination site (shaping's name for the MX hosts);
	// MXAddr the address (ip:port) that took the transaction.
	Site   string `json:"site,omitempty"`
	MXAddr string `json:"mx_addr,omitempty"`
	// TLS says the transaction ran over STARTTLS; Reused that it ran on a
	// connection opened for an earlier job.
	TLS    bool `json:"tls,omitempty"`
	Reused bool `json:"reused,omitempty"`
	// Timings: TCP connect with greeting, STARTTLS with the second EHLO
	// (both 0 on a reused connection), and the SMTP transactions.
	ConnectMs int64 `json:"connect_ms,omitempty"`
	TLSMs     int64 `json:"tls_ms,omitempty"`
	TxnMs     int64 `json:"txn_ms,omitempty"`
	// NextAttempt is set when some recipient was deferred.
	NextAttempt time.Time   `json:"next_attempt,omitzero"`
	Rcpts       []RcptReply `json:"rcpts"`
}

// RcptReply is the outcome for one recipient of a delivery attempt.
type RcptReply struct {
	Rcpt     string  `json:"rcpt"`
	Outcome  Outcome `json:"outcome"`
	Code     int     `json:"code"`
	Enhanced string  `json:"enhanced,omitempty"`
	Text     string  `json:"text,omitempty"`
	// Reason is the failure in Sisimai's vocabulary (userunknown,
	// mailboxfull, blocked, expired, ...); empty when delivered.
	Reason string `json:"reason,omitempty"`
	// Bounce is "hard" or "soft" for a bounced recipient: hard when the
	// address or domain does not exist or accepts no mail (Sisimai's hard
	// bounces), soft for the other permanent refusals (policy, content,
	// size), which may succeed later or elsewhere.
	Bounce string `json:"bounce,omitempty"`
}

// Marshal encodes e, filling the version.
func Marshal(e *Event) ([]byte, error) {
	e.V = Version
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.Type, err)
	}
	return b, nil
}

// UnmarshalAll decodes the payload of one stream message: one event, or a
// batch of them, one JSON object per line (the bus publishes events that
// occur together as one message, so that the events stream pays one fsync
// for many). Any undecodable line fails the whole payload.
func UnmarshalAll(b []byte) ([]*Event, error) {
	var evs []*Event
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := Unmarshal(line)
		if err != nil {
			return nil, fmt.Errorf("event %d of the batch: %w", len(evs)+1, err)
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 {
		return nil, errors.New("decode event: empty payload")
	}
	return evs, nil
}

// Unmarshal decodes an event and checks its version.
func Unmarshal(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if e.V < 1 || e.V > Version {
		return nil, fmt.Errorf("decode event %s: unsupported version %d", e.ID, e.V)
	}
	return &e, nil
}
