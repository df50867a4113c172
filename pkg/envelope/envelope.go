// Package envelope is the metadata that travels with every message on the
// bus: who submitted it, to whom it goes, what the classifier said and which
// pool carries it. The body never goes through JSON: on the bus it is the raw
// NATS payload (or an object-store reference for large bodies), and only this
// small envelope is JSON, in a message header.
package envelope

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/outflowmail/outflow/pkg/events"
)

// Header names used on bus messages.
const (
	// HeaderEnvelope carries the JSON-encoded Envelope.
	HeaderEnvelope = "Outflow-Envelope"
	// HeaderTenant repeats the tenant id so that tooling (and NATS subject
	// transforms, stream views) can see it without decoding the envelope.
	HeaderTenant = "Outflow-Tenant"
)

// Errors returned by Decode.
var (
	// ErrNoEnvelope means a bus message lacks the envelope header.
	ErrNoEnvelope = errors.New("envelope: missing " + HeaderEnvelope + " header")
)

// Verdict is the classifier's judgement as carried on the bus; it is the
// same record the verdict event reports.
type Verdict = events.Verdict

// Symbol is one rule or model contribution to a verdict.
type Symbol = events.Symbol

// Envelope describes one message (or, after routing, one delivery job: the
// recipients of one domain).
type Envelope struct {
	// ID is the platform's message id, unique per accepted submission. Delivery
	// jobs keep it; their job id adds the recipient domain.
	ID       string    `json:"id"`
	Tenant   string    `json:"tenant"`
	From     string    `json:"from"`
	Rcpts    []string  `json:"rcpts"`
	Size     int64     `json:"size"`
	Received time.Time `json:"received"`
	// ClientIP and AuthID say who handed the message to ingest.
	ClientIP string `json:"client_ip,omitempty"`
	AuthID   string `json:"auth_id,omitempty"`
	// MessageID is the RFC 5322 Message-ID header (without angle brackets).
	MessageID string `json:"message_id,omitempty"`
	// BodyRef names the object in the bodies object store when the body was
	// too large to travel inline; empty when the payload is the body.
	BodyRef string `json:"body_ref,omitempty"`

	Verdict *Verdict `json:"verdict,omitempty"`

	// Set by the router.
	Pool        string `json:"pool,omitempty"`
	RouteReason string `json:"route_reason,omitempty"`
	// Domain is the recipient domain of a delivery job.
	Domain string `json:"domain,omitempty"`
	// Jobs is how many delivery jobs the router split the message into; the
	// body object is deleted when all have reached a final state.
	Jobs int `json:"jobs,omitempty"`

	// Set by the sender when it defers a job.
	Attempt   int       `json:"attempt,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
}

// NewID returns a new random message id: 16 bytes of entropy, hex encoded, so
// it is safe in a VERP local part, a file name and a NATS message id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// JobID identifies one delivery job of a message (and one attempt of it), for
// the Nats-Msg-Id of its publish.
func (e *Envelope) JobID() string {
	return fmt.Sprintf("%s.%s.%d", e.ID, e.Domain, e.Attempt)
}

// FromDomain is the domain part of the envelope sender.
func (e *Envelope) FromDomain() string { return Domain(e.From) }

// Domain returns the lower-cased domain part of an address, or "".
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// Clone returns a copy that shares no slices with e.
func (e *Envelope) Clone() *Envelope {
	c := *e
	c.Rcpts = append([]string(nil), e.Rcpts...)
	if e.Verdict != nil {
		v := *e.Verdict
		v.Symbols = append([]Symbol(nil), e.Verdict.Symbols...)
		c.Verdict = &v
	}
	return &c
}

// Encode stores e in the headers of m.
func Encode(m *nats.Msg, e *Envelope) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderEnvelope, string(b))
	m.Header.Set(HeaderTenant, e.Tenant)
	return nil
}

// Decode reads the envelope from message headers.
func Decode(h nats.Header) (*Envelope, error) {
	v := h.Get(HeaderEnvelope)
	if v == "" {
		return nil, ErrNoEnvelope
	}
	var e Envelope
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	return &e, nil
}
