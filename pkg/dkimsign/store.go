package dkimsign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Record is a tenant's key as stored in the dkim-keys bucket under
// <tenant>.<domain>.<selector>.
type Record struct {
	Algo    Algo      `json:"algo"`
	Created time.Time `json:"created"`
	// NotBefore is when the key starts signing: rotating to a new selector
	// gives the tenant time to publish its TXT record first.
	NotBefore time.Time `json:"not_before"`
	// PrivateKey is PKCS #8 PEM. It never appears in logs (LogValue).
	PrivateKey string `json:"private_key"`
}

// LogValue keeps the private key out of structured logs.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("algo", string(r.Algo)), slog.Time("created", r.Created), slog.Time("not_before", r.NotBefore))
}

// String keeps the private key out of fmt output.
func (r Record) String() string {
	return fmt.Sprintf("{%s created %s not before %s}", r.Algo, r.Created.Format(time.RFC3339), r.NotBefore.Format(time.RFC3339))
}

// KeyInfo names one stored key.
type KeyInfo struct {
	Tenant, Domain, Selector string
	Record
}

// Errors of the store.
var (
	// ErrKeyExists: a key is stored under that tenant, domain and selector.
	ErrKeyExists = errors.New("dkimsign: key exists already")
	// ErrNoKey: no key under that tenant, domain and selector.
	ErrNoKey = errors.New("dkimsign: no such key")
)

// Store keeps tenants' keys in a NATS KV bucket (bus.BucketDKIMKeys).
type Store struct {
	KV jetstream.KeyValue
}

// StoreKey is the KV key of a tenant's key. Domains contain dots, so the
// selector (one DNS label) is always the last part and the tenant id (no
// dots) the first.
func StoreKey(tenant, domain, selector string) string {
	return tenant + "." + domain + "." + selector
}

// Create stores a new key; it never replaces one (ErrKeyExists).
func (s Store) Create(ctx context.Context, tenant, domain, selector string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode dkim key: %w", err)
	}
	if _, err := s.KV.Create(ctx, StoreKey(tenant, domain, selector), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%s %s %s: %w", tenant, domain, selector, ErrKeyExists)
		}
		return fmt.Errorf("store dkim key: %w", err)
	}
	return nil
}

// Get returns one key.
func (s Store) Get(ctx context.Context, tenant, domain, selector string) (KeyInfo, error) {
	e, err := s.KV.Get(ctx, StoreKey(tenant, domain, selector))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return KeyInfo{}, fmt.Errorf("%s %s %s: %w", tenant, domain, selector, ErrNoKey)
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("load dkim key: %w", err)
	}
	return decodeEntry(tenant, domain, selector, e.Value())
}

// List returns a tenant's keys, or one domain's when domain is not empty,
// sorted by domain, then newest first.
func (s Store) List(ctx context.Context, tenant, domain string) ([]KeyInfo, error) {
	filter := tenant + ".>"
	if domain != "" {
		filter = tenant + "." + domain + ".*"
	}
	l, err := s.KV.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list dkim keys: %w", err)
	}
	defer l.Stop()
	var out []KeyInfo
	for k := range l.Keys() {
		rest := strings.TrimPrefix(k, tenant+".")
		dot := strings.LastIndexByte(rest, '.')
		if dot < 0 {
			continue
		}
		ki, err := s.Get(ctx, tenant, rest[:dot], rest[dot+1:])
		if errors.Is(err, ErrNoKey) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ki)
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		if c := strings.Compare(a.Domain, b.Domain); c != 0 {
			return c
		}
		return b.Created.Compare(a.Created)
	})
	return out, nil
}

// Delete removes a key (after its selector's TXT record is withdrawn).
func (s Store) Delete(ctx context.Context, tenant, domain, selector string) error {
	if _, err := s.Get(ctx, tenant, domain, selector); err != nil {
		return err
	}
	if err := s.KV.Purge(ctx, StoreKey(tenant, domain, selector)); err != nil {
		return fmt.Errorf("delete dkim key: %w", err)
	}
	return nil
}

func decodeEntry(tenant, domain, selector string, v []byte) (KeyInfo, error) {
	ki := KeyInfo{Tenant: tenant, Domain: domain, Selector: selector}
	if err := json.Unmarshal(v, &ki.Record); err != nil {
		return KeyInfo{}, fmt.Errorf("dkim key %s: decode: %w", StoreKey(tenant, domain, selector), err)
	}
	return ki, nil
}
