package sender

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"

	"github.com/emersion/go-message/textproto"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/dkimsign"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/feedbackid"
	"github.com/outflowmail/outflow/pkg/verp"
)

// Identity is how receivers tell tenants apart on shared IPs: DKIM
// signatures, the VERP return path and the Feedback-ID header. Its fields are
// keys of the sender section (sender.dkim, sender.verp, sender.provider_id).
type Identity struct {
	// DKIM signs every message with the provider's domain and, when the
	// tenant has a key for its From domain, with the tenant's.
	DKIM dkimsign.Config `yaml:"dkim"`
	// VERP sets MAIL FROM to bounces+TOKEN@<bounce domain>.
	VERP verp.Config `yaml:"verp"`
	// ProviderID is the last field of the Feedback-ID header (Gmail's
	// "SenderId"): constant for the platform, chosen by the operator. Empty
	// adds no Feedback-ID (a tenant's is still removed).
	ProviderID string `yaml:"provider_id"`
}

// DefaultIdentity returns the defaults: each part off until configured.
func DefaultIdentity() Identity {
	return Identity{DKIM: dkimsign.DefaultConfig(), VERP: verp.DefaultConfig()}
}

var feedbackFieldRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (c Identity) validate() error {
	if err := c.DKIM.Validate(); err != nil {
		return fmt.Errorf("sender.%w", err)
	}
	if err := c.VERP.Validate(); err != nil {
		return fmt.Errorf("sender.%w", err)
	}
	if c.ProviderID != "" && !feedbackFieldRE.MatchString(c.ProviderID) {
		return fmt.Errorf("sender.provider_id: %q must match %s", c.ProviderID, feedbackFieldRE)
	}
	return nil
}

// identity applies Identity to the messages of delivery jobs.
type identity struct {
	signer     *dkimsign.Signer // nil: no DKIM
	verp       *verp.Codec      // nil: MAIL FROM is the tenant's
	providerID string
	log        *slog.Logger
}

// newIdentity loads the provider's keys (so a bad key file stops the role
// at start, not at the first message) and reads tenant keys from the bus.
func newIdentity(cfg Identity, b *bus.Bus, log *slog.Logger) (*identity, error) {
	id := &identity{providerID: cfg.ProviderID, log: log}
	if cfg.DKIM.Enabled() {
		var kv jetstream.KeyValue // nil in tests without a bus: provider keys only
		if b != nil {
			kv = b.DKIMKeys
		}
		s, err := dkimsign.New(cfg.DKIM, kv, dkimsign.Options{Log: log})
		if err != nil {
			return nil, fmt.Errorf("sender.%w", err)
		}
		id.signer = s
	}
	if cfg.VERP.Domain != "" {
		c, err := verp.New(cfg.VERP)
		if err != nil {
			return nil, fmt.Errorf("sender.%w", err)
		}
		id.verp = c
	}
	return id, nil
}

// HeaderCampaign is the tenant's header naming a campaign for Feedback-ID.
const HeaderCampaign = "X-Campaign-ID"

// errSign marks a message that could not be signed: a temporary failure,
// the job is retried.
var errSign = errors.New("sender: prepare message")

// prepare readies one job's message, once for all its recipients: the
// tenant's Feedback-ID is replaced by ours, the result DKIM-signed, and a
// return path chosen per recipient (nil keeps the envelope sender). Every
// recipient gets the same bytes, so the signature is made once per job.
func (id *identity) prepare(ctx context.Context, env *envelope.Envelope, poolName string, body []byte) (returnPath func(rcpt string) string, out []byte, err error) {
	out, err = id.setFeedbackID(env, poolName, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errSign, err)
	}
	if id.signer != nil {
		signed, sigs, err := id.signer.Sign(ctx, env.Tenant, out)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errSign, err)
		}
		out = signed
		if id.log.Enabled(ctx, slog.LevelDebug) {
			id.log.Debug("signed", "tenant", env.Tenant, "msg_id", env.ID, "signatures", fmt.Sprint(sigs))
		}
	}
	if id.verp != nil {
		returnPath, err = id.returnPath(env)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errSign, err)
		}
	}
	return returnPath, out, nil
}

// returnPath makes the VERP addresses of a job. Per-recipient tokens are
// made on demand (delivery asks once per recipient); a per-message token
// once.
func (id *identity) returnPath(env *envelope.Envelope) (func(string) string, error) {
	tok := verp.Token{MsgID: env.ID, Tenant: env.Tenant}
	if !id.verp.PerRecipient() {
		addr, err := id.verp.Address(tok)
		if err != nil {
			return nil, err
		}
		return func(string) string { return addr }, nil
	}
	// Check the fields once so that the per-recipient function cannot fail
	// on them; a recipient too long for a token keeps the per-message one.
	perMsg, err := id.verp.Address(tok)
	if err != nil {
		return nil, err
	}
	return func(rcpt string) string {
		t := tok
		t.Rcpt = rcpt
		addr, err := id.verp.Address(t)
		if err != nil {
			return perMsg
		}
		return addr
	}, nil
}

// setFeedbackID removes any Feedback-ID the tenant wrote (tenants must not
// speak for the platform's feedback loop) and adds
// <campaign>:<tenant>:<pool>:<provider id>, the campaign taken from the
// tenant's X-Campaign-ID header.
func (id *identity) setFeedbackID(env *envelope.Envelope, poolName string, body []byte) ([]byte, error) {
	body = endHeaderAtNonField(body)
	br := bufio.NewReader(bytes.NewReader(body))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if !h.Has("Feedback-ID") && id.providerID == "" {
		return body, nil
	}
	h.Del("Feedback-ID")
	if id.providerID != "" {
		// Raw, to keep the spelling receivers document ("Feedback-ID",
		// where Add would write "Feedback-Id"); the value is sanitised.
		h.AddRaw([]byte("Feedback-ID: " + feedbackid.Format(h.Get(HeaderCampaign), env.Tenant, poolName, id.providerID) + "\r\n"))
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + 100)
	if err := textproto.WriteHeader(&buf, h); err != nil {
		return nil, fmt.Errorf("write header: %w", err)
	}
	if _, err := io.Copy(&buf, br); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// endHeaderAtNonField makes the header end at its first line that is neither
// a field (RFC 5322 2.2: printable name, colon) nor a continuation, by
// inserting the empty line there, as Postfix's cleanup does. Ingest accepts
// such messages; without this they could be neither parsed nor signed, and
// would be retried for nothing.
func endHeaderAtNonField(body []byte) []byte {
	rest := body
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			return body // the header's own end
		}
		if trimmed[0] != ' ' && trimmed[0] != '\t' && !isFieldLine(trimmed) {
			at := len(body) - len(rest)
			out := make([]byte, 0, len(body)+2)
			out = append(append(append(out, body[:at]...), "\r\n"...), body[at:]...)
			return out
		}
		rest = rest[len(line):]
	}
	return body
}

func isFieldLine(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}
