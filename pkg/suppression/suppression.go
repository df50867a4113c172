// Package suppression is the per-tenant list of recipients the platform no
// longer mails: addresses that hard-bounced or complained. The feedback
// worker adds entries, operators add and remove them with "outflow ctl
// suppression", and the router drops suppressed recipients before routing.
//
// Entries live in the NATS KV bucket "suppression", keyed
// "<tenant>.<hash of the lower-cased address>" so that a tenant's entries
// can be listed by prefix and an address never appears in a subject. The
// router reads them through a List, a local copy kept current by a KV watch,
// so the hot path makes no round trip per recipient.
package suppression

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outflowmail/outflow/pkg/jsdeclare"
)

// Bucket is the KV bucket of suppression entries.
const Bucket = "suppression"

// Sources of an entry.
const (
	SourceBounce    = "bounce"
	SourceComplaint = "complaint"
	SourceManual    = "manual"
)

// Errors.
var (
	// ErrNotFound: the address is not suppressed for the tenant.
	ErrNotFound = errors.New("suppression: not found")
	// ErrBadEntry: an entry lacks its tenant or a plausible address.
	ErrBadEntry = errors.New("suppression: bad entry")
)

// Config says how long entries last.
type Config struct {
	// BounceTTL is how long a hard bounce suppresses its recipient; mailbox
	// owners come back, and a stale entry would lose the tenant real mail.
	BounceTTL time.Duration `yaml:"bounce_ttl"`
	// ComplaintTTL is how long a complaint suppresses; 0 means forever: a
	// recipient who reported mail as spam must not get it again.
	ComplaintTTL time.Duration `yaml:"complaint_ttl"`
}

// DefaultConfig returns the defaults: 30 days for bounces, complaints
// forever.
func DefaultConfig() Config {
	return Config{BounceTTL: 30 * 24 * time.Hour}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.BounceTTL < 0 {
		return errors.New("feedback.suppression.bounce_ttl: must not be negative")
	}
	if c.ComplaintTTL < 0 {
		return errors.New("feedback.suppression.complaint_ttl: must not be negative (0 is forever)")
	}
	return nil
}

// TTL returns how long an entry from source lasts; 0 is forever.
func (c Config) TTL(source string) time.Duration {
	switch source {
	case SourceBounce:
		return c.BounceTTL
	case SourceComplaint:
		return c.ComplaintTTL
	}
	return 0
}

// Entry is one suppressed recipient of one tenant.
type Entry struct {
	Tenant  string `json:"tenant"`
	Address string `json:"address"`
	// Reason is the bounce reason (userunknown, ...) or the complaint's
	// feedback type (abuse, ...), or the operator's text.
	Reason string `json:"reason"`
	// Source is bounce, complaint or manual.
	Source string `json:"source"`
	// MsgID is the message whose bounce or complaint caused the entry.
	MsgID   string    `json:"msg_id,omitempty"`
	Created time.Time `json:"created"`
	// Expires is when the entry stops applying; zero means never.
	Expires time.Time `json:"expires,omitzero"`
}

// Active reports whether the entry applies at now.
func (e Entry) Active(now time.Time) bool {
	return e.Expires.IsZero() || now.Before(e.Expires)
}

// Key is the KV key of an address of a tenant. Addresses compare without
// case: receivers treat local parts case-insensitively in practice, and a
// differently-cased copy must not slip past the list.
func Key(tenant, address string) string {
	return tenant + "." + AddressHash(address)
}

// AddressHash names an address without revealing it (keys and event ids
// are visible to more people than the list): 128 bits of the SHA-256 of
// the lower-cased address, hex encoded.
func AddressHash(address string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(address))))
	return hex.EncodeToString(sum[:16])
}

// Store reads and writes the bucket.
type Store struct {
	KV jetstream.KeyValue
}

// Open declares the bucket (idempotently) and returns its store.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	if replicas < 1 {
		replicas = 1
	}
	kv, err := jsdeclare.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "suppressed recipients per tenant",
		Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Store{KV: kv}, nil
}

// Add stores e. An existing entry that lasts longer (a complaint, kept
// forever, against a later bounce) is kept, so that a weaker entry never
// shortens a stronger one. It reports whether e was stored.
func (s *Store) Add(ctx context.Context, e Entry) (bool, error) {
	if e.Tenant == "" || strings.LastIndexByte(e.Address, '@') <= 0 {
		return false, fmt.Errorf("%w: tenant %q address %q", ErrBadEntry, e.Tenant, e.Address)
	}
	key := Key(e.Tenant, e.Address)
	old, err := s.Get(ctx, e.Tenant, e.Address)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return false, err
	case old.Active(e.Created) && outlasts(old, e):
		return false, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("encode suppression %s: %w", key, err)
	}
	if _, err := s.KV.Put(ctx, key, b); err != nil {
		return false, fmt.Errorf("store suppression %s: %w", key, err)
	}
	return true, nil
}

// outlasts reports whether a expires no earlier than b.
func outlasts(a, b Entry) bool {
	if a.Expires.IsZero() {
		return true
	}
	return !b.Expires.IsZero() && !a.Expires.Before(b.Expires)
}

// Get returns the entry of address for tenant, expired or not.
func (s *Store) Get(ctx context.Context, tenant, address string) (Entry, error) {
	key := Key(tenant, address)
	kve, err := s.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read suppression %s: %w", key, err)
	}
	return decode(kve)
}

// Remove deletes the entry of address for tenant.
func (s *Store) Remove(ctx context.Context, tenant, address string) error {
	if _, err := s.Get(ctx, tenant, address); err != nil {
		return err
	}
	key := Key(tenant, address)
	if err := s.KV.Delete(ctx, key); err != nil {
		return fmt.Errorf("remove suppression %s: %w", key, err)
	}
	return nil
}

// List returns every entry of tenant, expired ones included.
func (s *Store) List(ctx context.Context, tenant string) ([]Entry, error) {
	lister, err := s.KV.ListKeysFiltered(ctx, tenant+".*")
	if err != nil {
		return nil, fmt.Errorf("list suppressions of %s: %w", tenant, err)
	}
	var out []Entry
	for key := range lister.Keys() {
		kve, err := s.KV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read suppression %s: %w", key, err)
		}
		e, err := decode(kve)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func decode(kve jetstream.KeyValueEntry) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return Entry{}, fmt.Errorf("decode suppression %s: %w", kve.Key(), err)
	}
	return e, nil
}

// Purge deletes the entries that expired before now, so that the bucket
// and every router's copy of it do not grow without end. An entry renewed
// meanwhile (a new bounce) is kept: the delete is conditional on the
// revision read. It returns how many entries it deleted.
func (s *Store) Purge(ctx context.Context, now time.Time) (int, error) {
	lister, err := s.KV.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, fmt.Errorf("purge %s: %w", Bucket, err)
	}
	n := 0
	for key := range lister.Keys() {
		kve, err := s.KV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("purge %s: %w", key, err)
		}
		e, err := decode(kve)
		if err != nil || e.Active(now) {
			continue // an unreadable entry is left for an operator to see
		}
		if err := s.KV.Delete(ctx, key, jetstream.LastRevision(kve.Revision())); err != nil {
			continue // renewed meanwhile, or deleted by another purge
		}
		n++
	}
	return n, nil
}
