// Package tenant holds the accounts that submit mail (id, credentials as a
// password hash, client IP ranges, verified sender domains, dedicated pool)
// and their policy state (good, probation, throttled, suspended). Both live
// in NATS KV buckets; roles keep a watched in-memory copy (Directory) so that
// no per-message lookup crosses the network.
package tenant

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Errors of this package.
var (
	// ErrNotFound: no tenant with that id.
	ErrNotFound = errors.New("tenant: not found")
	// ErrExists: a tenant with that id exists already.
	ErrExists = errors.New("tenant: exists already")
	// ErrBadPassword: the password does not match the stored hash.
	ErrBadPassword = errors.New("tenant: bad password")
)

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidID reports whether id is a well-formed tenant id. Ids appear in NATS
// KV keys, VERP tokens, Feedback-ID headers and ClickHouse rows, so they are
// restricted to lower-case letters, digits, '-' and '_'.
func ValidID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("tenant id %q: must match %s", id, idRE)
	}
	return nil
}

// Tenant is one account.
type Tenant struct {
	ID string `json:"id"`
	// PasswordHash is a bcrypt hash; the plain password is never stored.
	PasswordHash string `json:"password_hash,omitempty"`
	// ClientIPs are CIDR ranges whose connections are this tenant's without
	// AUTH, on listeners that allow it (a connector, like Postfix's
	// mynetworks).
	ClientIPs []string `json:"client_ips,omitempty"`
	// Domains the tenant may use in MAIL FROM (and From).
	Domains []Domain `json:"domains"`
	// Pool is a dedicated pool for this tenant's good mail, if any.
	Pool    string    `json:"pool,omitempty"`
	Created time.Time `json:"created"`
}

// Domain is a verified sender domain.
type Domain struct {
	Name string `json:"name"`
}

// Validate checks the fields an operator sets.
func (t *Tenant) Validate() error {
	if err := ValidID(t.ID); err != nil {
		return err
	}
	for _, c := range t.ClientIPs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("tenant %s: client_ips: %w", t.ID, err)
		}
	}
	for _, d := range t.Domains {
		if err := ValidDomain(d.Name); err != nil {
			return fmt.Errorf("tenant %s: domains: %w", t.ID, err)
		}
	}
	return nil
}

var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidDomain checks a lower-case DNS domain name.
func ValidDomain(d string) error {
	if len(d) > 253 || !domainRE.MatchString(d) {
		return fmt.Errorf("domain %q: not a valid lower-case DNS name", d)
	}
	return nil
}

// SetPassword stores a bcrypt hash of password.
func (t *Tenant) SetPassword(password string) error {
	if len(password) < 8 {
		return errors.New("password: at least 8 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	t.PasswordHash = string(h)
	return nil
}

// CheckPassword compares password with the stored hash in constant time.
func (t *Tenant) CheckPassword(password string) error {
	if t.PasswordHash == "" {
		return ErrBadPassword
	}
	if bcrypt.CompareHashAndPassword([]byte(t.PasswordHash), []byte(password)) != nil {
		return ErrBadPassword
	}
	return nil
}

// HasDomain reports whether the tenant verified domain d (case-insensitive).
func (t *Tenant) HasDomain(d string) bool {
	d = strings.ToLower(d)
	return slices.ContainsFunc(t.Domains, func(x Domain) bool { return x.Name == d })
}

// AddDomain adds d if it is not there yet.
func (t *Tenant) AddDomain(d string) error {
	d = strings.ToLower(d)
	if err := ValidDomain(d); err != nil {
		return err
	}
	if !t.HasDomain(d) {
		t.Domains = append(t.Domains, Domain{Name: d})
	}
	return nil
}

// State is a tenant's standing, set by the reputation loop or an operator.
type State string

// Policy states.
const (
	// StateGood: mail goes through the shared (or dedicated) pool.
	StateGood State = "good"
	// StateProbation: all the tenant's mail goes through the high-risk pool.
	StateProbation State = "probation"
	// StateThrottled: ingest accepts the tenant's mail at a lowered rate.
	StateThrottled State = "throttled"
	// StateSuspended: ingest refuses the tenant's mail.
	StateSuspended State = "suspended"
)

// ParseState checks s.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StateGood, StateProbation, StateThrottled, StateSuspended:
		return st, nil
	}
	return "", fmt.Errorf("state %q: want good, probation, throttled or suspended", s)
}

// Policy is a tenant's current state with the evidence behind it.
type Policy struct {
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Figures are the measurements that caused the state (rates, counts).
	Figures map[string]float64 `json:"figures,omitempty"`
	Since   time.Time          `json:"since"`
	Until   time.Time          `json:"until,omitzero"`
	// Pinned states are set by an operator and not changed automatically.
	Pinned bool   `json:"pinned,omitempty"`
	By     string `json:"by,omitempty"`
}
