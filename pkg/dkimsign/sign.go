// Package dkimsign DKIM-signs outbound messages in the sender role (RFC 6376,
// with github.com/emersion/go-msgauth/dkim). Every message gets the
// provider's signature (its own signing domain, so receivers and analysts
// can attribute mail on shared IPs), and the tenant's own signature when the
// tenant stored a key for the From header's domain (aligned for DMARC).
// RSA-2048 by default, Ed25519 (RFC 8463) as an additional signature.
//
// Tenant keys live in the dkim-keys NATS KV bucket (Store), provider keys in
// files only their owner can read. Parsed keys are cached; a message is
// signed once per delivery job, whatever its number of recipients.
package dkimsign

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/nats-io/nats.go/jetstream"
)

// Config of signing, in the sender's section (sender.dkim).
type Config struct {
	// ProviderDomain is the provider's signing domain (d=); empty disables
	// DKIM signing altogether.
	ProviderDomain string `yaml:"provider_domain"`
	// Selector and KeyFile are the provider's RSA key (PEM, mode 0600).
	Selector string `yaml:"selector"`
	KeyFile  string `yaml:"key_file"`
	// Ed25519Selector and Ed25519KeyFile add an Ed25519 provider
	// signature when set.
	Ed25519Selector string `yaml:"ed25519_selector"`
	Ed25519KeyFile  string `yaml:"ed25519_key_file"`
	// CreateKeys generates missing provider key files at start (mode 0600)
	// and logs the TXT records to publish: for development and first
	// installs.
	CreateKeys bool `yaml:"create_keys"`
	// CacheTTL is how long tenant keys read from NATS KV are used before
	// being read again; a new or deleted key takes effect within it.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// DefaultConfig returns the defaults: signing off until a provider domain
// is configured.
func DefaultConfig() Config { return Config{CacheTTL: time.Minute} }

// Validate names the first bad key, relative to the section ("dkim.…").
func (c Config) Validate() error {
	if c.ProviderDomain == "" {
		return nil
	}
	if c.ProviderDomain != strings.ToLower(c.ProviderDomain) || !strings.Contains(c.ProviderDomain, ".") || strings.ContainsAny(c.ProviderDomain, "@ ") {
		return fmt.Errorf("dkim.provider_domain: %q must be a lower-case domain name", c.ProviderDomain)
	}
	if err := ValidSelector(c.Selector); err != nil {
		return fmt.Errorf("dkim.selector: %w", err)
	}
	if c.KeyFile == "" {
		return errors.New("dkim.key_file: empty, the provider's RSA key is required when dkim.provider_domain is set")
	}
	if (c.Ed25519Selector == "") != (c.Ed25519KeyFile == "") {
		return errors.New("dkim.ed25519_selector, dkim.ed25519_key_file: set both or neither")
	}
	if c.Ed25519Selector != "" {
		if err := ValidSelector(c.Ed25519Selector); err != nil {
			return fmt.Errorf("dkim.ed25519_selector: %w", err)
		}
		if c.Ed25519Selector == c.Selector {
			return errors.New("dkim.ed25519_selector: must differ from dkim.selector")
		}
	}
	if c.CacheTTL <= 0 {
		return fmt.Errorf("dkim.cache_ttl: %v, must be positive", c.CacheTTL)
	}
	return nil
}

// Enabled reports whether messages are signed.
func (c Config) Enabled() bool { return c.ProviderDomain != "" }

// headerKeys are the fields signed when present (RFC 6376 5.4.1); From is
// listed twice: the second, absent instance makes the signature fail if a
// From field is added (oversigning, RFC 6376 8.15). List-Unsubscribe-Post
// goes with List-Unsubscribe (RFC 8058 4 requires both signed).
var headerKeys = []string{
	"From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "Feedback-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Options replace what tests control.
type Options struct {
	// Now is the clock used for key activation and the cache.
	Now func() time.Time
	Log *slog.Logger
}

// Signer signs messages. It is safe for concurrent use.
type Signer struct {
	provider []signingKey
	store    *Store
	ttl      time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu    sync.Mutex
	cache map[string]cached // by tenant "\x00" domain
}

type signingKey struct {
	domain, selector string
	algo             Algo
	key              crypto.Signer
}

type cached struct {
	keys    []signingKey
	fetched time.Time
}

// New loads the provider keys (creating them when cfg.CreateKeys) and
// returns a Signer reading tenant keys from kv (nil: provider keys only).
// It fails on a missing, unreadable or group/world-readable key file.
func New(cfg Config, kv jetstream.KeyValue, opts Options) (*Signer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("dkim.provider_domain: empty, signing is disabled")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Signer{ttl: cfg.CacheTTL, now: opts.Now, log: opts.Log, cache: map[string]cached{}}
	if kv != nil {
		s.store = &Store{KV: kv}
	}
	files := []struct {
		key, sel, path string
		algo           Algo
	}{
		{"dkim.key_file", cfg.Selector, cfg.KeyFile, RSA},
		{"dkim.ed25519_key_file", cfg.Ed25519Selector, cfg.Ed25519KeyFile, Ed25519},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		k, err := loadOrCreate(cfg, f.path, f.sel, f.algo, opts.Log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		if a := algoOf(k); a != f.algo {
			return nil, fmt.Errorf("%s: %s holds an %s key, want %s", f.key, f.path, a, f.algo)
		}
		sk := signingKey{domain: cfg.ProviderDomain, selector: f.sel, algo: f.algo, key: fastSigner(k)}
		s.provider = append(s.provider, sk)
		if sk.algo == RSA {
			opts.Log.Info("dkim provider key", "selector", sk.selector, "rsa_by", rsaImplementation(sk.key))
		}
	}
	return s, nil
}

// rsaImplementation names what makes k's signatures, for the log.
func rsaImplementation(k crypto.Signer) string {
	if signsWithOpenSSL(k) {
		return "openssl"
	}
	return "go"
}

func loadOrCreate(cfg Config, path, selector string, algo Algo, log *slog.Logger) (crypto.Signer, error) {
	k, _, err := LoadKeyFile(path)
	if err == nil || !cfg.CreateKeys || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = CreateKeyFile(path, algo)
	if err != nil {
		return nil, err
	}
	txt, err := TXTRecord(k.Public())
	if err != nil {
		return nil, err
	}
	log.Warn("created a DKIM provider key; publish its TXT record", "file", path,
		"name", RecordName(selector, cfg.ProviderDomain), "txt", txt)
	return k, nil
}

func algoOf(k crypto.Signer) Algo {
	if _, ok := k.Public().(*rsa.PublicKey); ok {
		return RSA
	}
	return Ed25519
}

// Signature describes one signature added to a message.
type Signature struct {
	Domain, Selector string
	Algo             Algo
}

// Sign returns msg with DKIM-Signature fields prepended: the tenant's
// (when it has an active key for the From header's domain) and the
// provider's. A failure to read tenant keys is an error only when none is
// cached; a tenant without a key is not an error.
func (s *Signer) Sign(ctx context.Context, tenant string, msg []byte) ([]byte, []Signature, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return nil, nil, fmt.Errorf("dkim sign: read header: %w", err)
	}
	keys := s.provider
	if d := fromDomain(h.Get("From")); d != "" && s.store != nil {
		tk, err := s.tenantKeys(ctx, tenant, d)
		if err != nil {
			return nil, nil, err
		}
		// A new slice: tk is shared with the cache.
		keys = slices.Concat(tk, keys)
	}
	fields := []string{"From"}
	for _, k := range headerKeys {
		if h.Has(k) {
			fields = append(fields, k)
		}
	}
	signers := make([]*dkim.Signer, 0, len(keys))
	defer func() {
		for _, sg := range signers {
			_ = sg.Close()
		}
	}()
	ws := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: k.domain, Selector: k.selector, Signer: k.key,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             fields,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("dkim sign %s/%s: %w", k.domain, k.selector, err)
		}
		signers = append(signers, sg)
		ws = append(ws, sg)
	}
	if _, err := io.MultiWriter(ws...).Write(msg); err != nil {
		return nil, nil, fmt.Errorf("dkim sign: %w", err)
	}
	out := make([]byte, 0, len(msg)+len(keys)*600)
	sigs := make([]Signature, 0, len(keys))
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			return nil, nil, fmt.Errorf("dkim sign %s/%s: %w", keys[i].domain, keys[i].selector, err)
		}
		out = append(out, sg.Signature()...)
		sigs = append(sigs, Signature{Domain: keys[i].domain, Selector: keys[i].selector, Algo: keys[i].algo})
	}
	return append(out, msg...), sigs, nil
}

// fromDomain is the domain of the header From's (first) address, lower
// case; "" when it cannot be read.
func fromDomain(v string) string {
	if v == "" {
		return ""
	}
	addrs, err := mail.ParseAddressList(v)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	a := addrs[0].Address
	return strings.ToLower(a[strings.LastIndexByte(a, '@')+1:])
}

// tenantKeys returns the tenant's active keys for domain, newest of each
// algorithm, from the cache or the store.
func (s *Signer) tenantKeys(ctx context.Context, tenant, domain string) ([]signingKey, error) {
	id := tenant + "\x00" + domain
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Sub(c.fetched) < s.ttl {
		return c.keys, nil
	}
	infos, err := s.store.List(ctx, tenant, domain)
	if err != nil {
		if ok {
			s.log.Warn("read tenant DKIM keys; using cached ones", "tenant", tenant, "domain", domain, "err", err)
			return c.keys, nil
		}
		return nil, fmt.Errorf("tenant dkim keys: %w", err)
	}
	var keys []signingKey
	seen := map[Algo]bool{}
	for _, ki := range infos { // newest first
		if seen[ki.Algo] || ki.NotBefore.After(now) {
			continue
		}
		k, algo, err := ParsePrivateKey([]byte(ki.PrivateKey))
		if err != nil {
			s.log.Error("unusable tenant DKIM key; skipped", "tenant", tenant, "domain", domain, "selector", ki.Selector, "err", err)
			continue
		}
		seen[algo] = true
		keys = append(keys, signingKey{domain: domain, selector: ki.Selector, algo: algo, key: fastSigner(k)})
	}
	// RSA first: the signature every verifier understands.
	slices.SortStableFunc(keys, func(a, b signingKey) int { return strings.Compare(string(b.algo), string(a.algo)) })
	s.mu.Lock()
	s.cache[id] = cached{keys: keys, fetched: now}
	s.mu.Unlock()
	return keys, nil
}
