// Package verp builds and reads the VERP return path the sender puts in MAIL
// FROM: bounces+TOKEN@<bounce domain>, where TOKEN carries the message id,
// the tenant, optionally the recipient, and a truncated HMAC-SHA256. An
// asynchronous bounce sent to that address is attributed to its message,
// tenant and recipient without any lookup, and a bounce to a token we did
// not sign (a forgery, or backscatter aimed at our MX) is recognised.
//
// The token is lower-case base32 (RFC 4648 alphabet, no padding), so it is a
// valid dot-atom local part (RFC 5321 4.1.2) and survives receivers that
// fold the local part to lower or upper case.
package verp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Errors returned by Decode. ErrNotOurs means the address is not a VERP
// address of this platform at all (another domain, another local part); the
// other two mean the address claims to be ours but must not be trusted.
var (
	// ErrNotOurs: the address is not under our bounce domain or lacks the
	// "bounces+" prefix.
	ErrNotOurs = errors.New("verp: not our return path")
	// ErrMalformed: the token after the prefix is not one we could have
	// made (bad encoding, truncated, unknown version).
	ErrMalformed = errors.New("verp: malformed token")
	// ErrBadMAC: the token is well formed but no configured secret signed
	// it: forged, corrupted in transit, or signed with a retired secret.
	ErrBadMAC = errors.New("verp: bad MAC")
)

// Prefix starts the local part of every return path.
const Prefix = "bounces+"

const (
	version = 1
	// macLen is the truncated HMAC-SHA256 length: 64 bits make an online
	// forgery (one guess per bounce sent to our MX) hopeless, and keep the
	// token short.
	macLen = 8
	// MinSecretLen is the shortest accepted secret.
	MinSecretLen = 16
	// maxField bounds each text field; an RFC 5321 path is at most 256
	// octets (4.5.3.1.3).
	maxField = 256

	flagHexID = 1 << 0 // the message id is 32 hex digits, stored as 16 bytes
	flagRcpt  = 1 << 1 // a recipient follows the tenant
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Config configures return paths.
type Config struct {
	// Domain is the bounce domain: its MX must be the platform's MX
	// listener. Empty disables VERP: MAIL FROM is the tenant's envelope
	// sender unchanged.
	Domain string `yaml:"domain"`
	// Secrets are HMAC keys, newest first: the first signs, all verify, so
	// a new secret is added in front and an old one removed once bounces
	// to it have stopped arriving (a few days after the retry max age).
	Secrets []string `yaml:"secrets"`
	// PerRecipient puts the recipient in the token, so a bounce is
	// attributed to its recipient even when the DSN is missing or wrong
	// (forwarders, auto-replies). The price: every recipient needs its own
	// SMTP transaction (MAIL FROM differs), so a message to 50 recipients at
	// one domain costs 50 transactions instead of one. With false, one
	// token per message; the recipient comes from the DSN.
	PerRecipient bool `yaml:"per_recipient"`
}

// DefaultConfig returns the defaults: disabled, per-recipient when enabled.
func DefaultConfig() Config { return Config{PerRecipient: true} }

// Validate names the first bad key, relative to the section ("verp.…").
func (c Config) Validate() error {
	if c.Domain == "" {
		return nil
	}
	if c.Domain != strings.ToLower(c.Domain) || strings.ContainsAny(c.Domain, "@ +") || !strings.Contains(c.Domain, ".") {
		return fmt.Errorf("verp.domain: %q must be a lower-case domain name", c.Domain)
	}
	if len(c.Secrets) == 0 {
		return errors.New("verp.secrets: at least one secret is needed when verp.domain is set")
	}
	for i, s := range c.Secrets {
		if len(s) < MinSecretLen {
			return fmt.Errorf("verp.secrets[%d]: %d bytes, want at least %d", i, len(s), MinSecretLen)
		}
	}
	return nil
}

// Token is what a return path identifies.
type Token struct {
	// MsgID is the platform's message id (envelope.Envelope.ID).
	MsgID  string
	Tenant string
	// Rcpt is the recipient, empty in a per-message token.
	Rcpt string
}

// Codec makes and reads return paths. It is safe for concurrent use.
type Codec struct {
	domain  string
	keys    [][]byte
	perRcpt bool
}

// New returns a Codec for a valid, enabled config.
func New(cfg Config) (*Codec, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Domain == "" {
		return nil, errors.New("verp.domain: empty, VERP is disabled")
	}
	c := &Codec{domain: cfg.Domain, perRcpt: cfg.PerRecipient}
	for _, s := range cfg.Secrets {
		c.keys = append(c.keys, []byte(s))
	}
	return c, nil
}

// Domain is the bounce domain.
func (c *Codec) Domain() string { return c.domain }

// PerRecipient reports whether tokens carry the recipient.
func (c *Codec) PerRecipient() bool { return c.perRcpt }

// Address returns the return path for t, signed with the newest secret. A
// per-message codec drops t.Rcpt.
func (c *Codec) Address(t Token) (string, error) {
	if !c.perRcpt {
		t.Rcpt = ""
	}
	local, err := c.LocalPart(t)
	if err != nil {
		return "", err
	}
	return local + "@" + c.domain, nil
}

// LocalPart returns "bounces+TOKEN" for t, recipient included when set.
func (c *Codec) LocalPart(t Token) (string, error) {
	switch {
	case t.MsgID == "":
		return "", errors.New("verp: empty message id")
	case t.Tenant == "":
		return "", errors.New("verp: empty tenant")
	case len(t.MsgID) > maxField || len(t.Tenant) > maxField || len(t.Rcpt) > maxField:
		return "", fmt.Errorf("verp: field longer than %d bytes", maxField)
	}
	p := make([]byte, 0, 64)
	flags := byte(0)
	if id, ok := hexID(t.MsgID); ok {
		flags |= flagHexID
		p = append(p, version, flags)
		p = append(p, id...)
	} else {
		p = append(p, version, flags)
		p = appendField(p, t.MsgID)
	}
	p = appendField(p, t.Tenant)
	if t.Rcpt != "" {
		p[1] |= flagRcpt
		p = appendField(p, t.Rcpt)
	}
	p = append(p, mac(c.keys[0], p)...)
	return Prefix + b32.EncodeToString(p), nil
}

// Decode reads a return path (angle brackets allowed). It returns ErrNotOurs
// for an address outside our bounce domain or prefix, and ErrMalformed or
// ErrBadMAC for one that claims to be ours but was not signed by us.
func (c *Codec) Decode(addr string) (Token, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], c.domain) {
		return Token{}, ErrNotOurs
	}
	return c.DecodeLocal(addr[:at])
}

// DecodeLocal reads the local part alone, for a listener that accepts
// several bounce domains.
func (c *Codec) DecodeLocal(local string) (Token, error) {
	if len(local) < len(Prefix) || !strings.EqualFold(local[:len(Prefix)], Prefix) {
		return Token{}, ErrNotOurs
	}
	raw, err := b32.DecodeString(strings.ToLower(local[len(Prefix):]))
	if err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(raw) < 2+macLen {
		return Token{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(raw))
	}
	body, sum := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if body[0] != version {
		return Token{}, fmt.Errorf("%w: version %d", ErrMalformed, body[0])
	}
	t, err := parse(body)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	for _, k := range c.keys {
		if hmac.Equal(sum, mac(k, body)) {
			return t, nil
		}
	}
	return Token{}, ErrBadMAC
}

func parse(body []byte) (Token, error) {
	var t Token
	flags, rest := body[1], body[2:]
	if flags&^(flagHexID|flagRcpt) != 0 {
		return t, fmt.Errorf("unknown flags %#x", flags)
	}
	var err error
	if flags&flagHexID != 0 {
		if len(rest) < 16 {
			return t, errors.New("truncated message id")
		}
		t.MsgID, rest = hex.EncodeToString(rest[:16]), rest[16:]
	} else if t.MsgID, rest, err = readField(rest, "message id"); err != nil {
		return t, err
	}
	if t.Tenant, rest, err = readField(rest, "tenant"); err != nil {
		return t, err
	}
	if flags&flagRcpt != 0 {
		if t.Rcpt, rest, err = readField(rest, "recipient"); err != nil {
			return t, err
		}
	}
	if len(rest) != 0 {
		return t, fmt.Errorf("%d trailing bytes", len(rest))
	}
	if t.MsgID == "" || t.Tenant == "" {
		return t, errors.New("empty message id or tenant")
	}
	return t, nil
}

func appendField(p []byte, s string) []byte {
	p = binary.AppendUvarint(p, uint64(len(s)))
	return append(p, s...)
}

func readField(p []byte, what string) (string, []byte, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > maxField || uint64(len(p)-k) < n {
		return "", nil, fmt.Errorf("truncated %s", what)
	}
	p = p[k:]
	return string(p[:n]), p[n:], nil
}

// hexID returns the 16 bytes of a 32-digit lower-case hex id (the form
// envelope.NewID makes), which halves its length in the token.
func hexID(id string) ([]byte, bool) {
	if len(id) != 32 || id != strings.ToLower(id) {
		return nil, false
	}
	b, err := hex.DecodeString(id)
	return b, err == nil
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)[:macLen]
}
