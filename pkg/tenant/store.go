package tenant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and writes tenants and policies in their KV buckets. It is
// what "outflow ctl" uses; the roles use a Directory.
type Store struct {
	Tenants jetstream.KeyValue
	Policy  jetstream.KeyValue
}

// Get returns one tenant.
func (s Store) Get(ctx context.Context, id string) (*Tenant, error) {
	e, err := s.Tenants.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("tenant %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get tenant %s: %w", id, err)
	}
	var t Tenant
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return nil, fmt.Errorf("decode tenant %s: %w", id, err)
	}
	return &t, nil
}

// Put writes a tenant after validating it.
func (s Store) Put(ctx context.Context, t *Tenant) error {
	if err := t.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode tenant %s: %w", t.ID, err)
	}
	if _, err := s.Tenants.Put(ctx, t.ID, b); err != nil {
		return fmt.Errorf("put tenant %s: %w", t.ID, err)
	}
	return nil
}

// Create writes a new tenant; it fails if the id exists.
func (s Store) Create(ctx context.Context, t *Tenant) error {
	if err := t.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode tenant %s: %w", t.ID, err)
	}
	if _, err := s.Tenants.Create(ctx, t.ID, b); errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("create tenant %s: %w", t.ID, ErrExists)
	} else if err != nil {
		return fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	return nil
}

// List returns every tenant id.
func (s Store) List(ctx context.Context) ([]string, error) {
	lister, err := s.Tenants.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k)
	}
	return ids, nil
}

// GetPolicy returns a tenant's policy; a tenant without one is good.
func (s Store) GetPolicy(ctx context.Context, id string) (Policy, error) {
	e, err := s.Policy.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Policy{State: StateGood}, nil
	}
	if err != nil {
		return Policy{}, fmt.Errorf("get policy %s: %w", id, err)
	}
	var p Policy
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return Policy{}, fmt.Errorf("decode policy %s: %w", id, err)
	}
	return p, nil
}

// PutPolicy writes a tenant's policy.
func (s Store) PutPolicy(ctx context.Context, id string, p Policy) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode policy %s: %w", id, err)
	}
	if _, err := s.Policy.Put(ctx, id, b); err != nil {
		return fmt.Errorf("put policy %s: %w", id, err)
	}
	return nil
}

// Directory is a read-only in-memory copy of the tenants and policy buckets,
// kept current by KV watches, so that roles look tenants up per connection
// and per message without a network round trip.
type Directory struct {
	mu       sync.RWMutex
	tenants  map[string]*Tenant
	policies map[string]Policy
	// ranges are every tenant's client_ips, parsed once per tenant change
	// rather than on every connection.
	ranges []clientRange
	ready  chan struct{}
}

type clientRange struct {
	prefix netip.Prefix
	tenant *Tenant
}

// NewDirectory returns an empty directory; Run fills it.
func NewDirectory() *Directory {
	return &Directory{tenants: map[string]*Tenant{}, policies: map[string]Policy{}, ready: make(chan struct{})}
}

// Ready is closed once both buckets' current contents are loaded.
func (d *Directory) Ready() <-chan struct{} { return d.ready }

// Run watches both buckets until ctx ends.
func (d *Directory) Run(ctx context.Context, s Store, log *slog.Logger) error {
	tw, err := s.Tenants.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch tenants: %w", err)
	}
	defer tw.Stop()
	pw, err := s.Policy.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer pw.Stop()
	tReady, pReady := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-tw.Updates():
			if !ok {
				return errors.New("watch tenants: closed")
			}
			if e == nil {
				tReady = true
			} else {
				d.applyTenant(e, log)
			}
		case e, ok := <-pw.Updates():
			if !ok {
				return errors.New("watch policy: closed")
			}
			if e == nil {
				pReady = true
			} else {
				d.applyPolicy(e, log)
			}
		}
		if tReady && pReady {
			select {
			case <-d.ready:
			default:
				close(d.ready)
			}
		}
	}
}

func (d *Directory) applyTenant(e jetstream.KeyValueEntry, log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.indexRanges()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.tenants, e.Key())
		return
	}
	var t Tenant
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		log.Error("tenant entry unreadable; ignored", "tenant", e.Key(), "err", err)
		return
	}
	d.tenants[e.Key()] = &t
}

// indexRanges rebuilds the parsed client ranges; d.mu must be held.
func (d *Directory) indexRanges() {
	d.ranges = d.ranges[:0]
	for _, t := range d.tenants {
		for _, c := range t.ClientIPs {
			if p, err := netip.ParsePrefix(c); err == nil {
				d.ranges = append(d.ranges, clientRange{prefix: p, tenant: t})
			}
		}
	}
}

func (d *Directory) applyPolicy(e jetstream.KeyValueEntry, log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(d.policies, e.Key())
		return
	}
	var p Policy
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		log.Error("policy entry unreadable; ignored", "tenant", e.Key(), "err", err)
		return
	}
	d.policies[e.Key()] = p
	log.Info("tenant policy", "tenant", e.Key(), "state", p.State, "reason", p.Reason)
}

// Tenant returns the tenant with id, or nil. The result must not be
// modified.
func (d *Directory) Tenant(id string) *Tenant {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.tenants[id]
}

// ByClientIP returns the tenant whose client_ips contain ip, preferring the
// most specific range, or nil.
func (d *Directory) ByClientIP(ip netip.Addr) *Tenant {
	ip = ip.Unmap()
	d.mu.RLock()
	defer d.mu.RUnlock()
	var best *Tenant
	bestBits := -1
	for _, r := range d.ranges {
		if r.prefix.Contains(ip) && r.prefix.Bits() > bestBits {
			best, bestBits = r.tenant, r.prefix.Bits()
		}
	}
	return best
}

// Policy returns a tenant's policy; a tenant without one is good.
func (d *Directory) Policy(id string) Policy {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if p, ok := d.policies[id]; ok {
		return p
	}
	return Policy{State: StateGood}
}
