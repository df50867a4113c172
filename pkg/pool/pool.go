// Package pool describes the outbound IP pools: named sets of source
// addresses, each with the EHLO name that matches its PTR record. The router
// picks a pool for each message; the sender binds one of the pool's addresses
// for each connection.
package pool

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Purpose says what mail a pool carries.
type Purpose string

// Pool purposes.
const (
	// Shared carries the mail of tenants in good standing; its reputation is
	// what the platform protects.
	Shared Purpose = "shared"
	// HighRisk carries mail scored as spam and the mail of tenants on
	// probation, so that the shared pool stays clean.
	HighRisk Purpose = "high-risk"
	// Dedicated belongs to one tenant.
	Dedicated Purpose = "dedicated"
)

// IP is one source address of a pool.
type IP struct {
	// Address to bind as the local address of outbound connections.
	Address string `yaml:"address"`
	// EHLO is the name the sender greets with from this address; it should be
	// the address's PTR name (RFC 5321 4.1.1.1, and receivers check it).
	EHLO string `yaml:"ehlo"`
	// WarmupStart is the first day (YYYY-MM-DD, UTC) of a new address's
	// warm-up: until its schedule (sender.warmup) ends, it sends each
	// destination site no more than that day's cap. Empty: no warm-up.
	WarmupStart string `yaml:"warmup_start"`
}

// Pool is a named set of source addresses.
type Pool struct {
	Name    string  `yaml:"name"`
	Purpose Purpose `yaml:"purpose"`
	IPs     []IP    `yaml:"ips"`
}

// Set is every configured pool.
type Set []Pool

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate names the first bad key. A usable set has exactly one shared and
// at least one high-risk pool.
func (s Set) Validate() error {
	seen := map[string]bool{}
	var shared, highRisk int
	for i, p := range s {
		key := fmt.Sprintf("pools[%d]", i)
		if !nameRE.MatchString(p.Name) {
			return fmt.Errorf("%s.name: %q must match %s (it is part of a NATS subject)", key, p.Name, nameRE)
		}
		if seen[p.Name] {
			return fmt.Errorf("%s.name: %q appears twice", key, p.Name)
		}
		seen[p.Name] = true
		switch p.Purpose {
		case Shared:
			shared++
		case HighRisk:
			highRisk++
		case Dedicated:
		default:
			return fmt.Errorf("%s.purpose: %q, want shared, high-risk or dedicated", key, p.Purpose)
		}
		if len(p.IPs) == 0 {
			return fmt.Errorf("%s.ips: a pool needs at least one address", key)
		}
		for j, ip := range p.IPs {
			if _, err := netip.ParseAddr(ip.Address); err != nil {
				return fmt.Errorf("%s.ips[%d].address: %w", key, j, err)
			}
			if ip.EHLO == "" {
				return fmt.Errorf("%s.ips[%d].ehlo: required (the PTR name of %s)", key, j, ip.Address)
			}
			if ip.WarmupStart != "" {
				if _, err := time.Parse(time.DateOnly, ip.WarmupStart); err != nil {
					return fmt.Errorf("%s.ips[%d].warmup_start: %q, want a date YYYY-MM-DD", key, j, ip.WarmupStart)
				}
			}
		}
	}
	if shared != 1 {
		return fmt.Errorf("pools: need exactly one pool with purpose shared, have %d", shared)
	}
	if highRisk < 1 {
		return errors.New("pools: need a pool with purpose high-risk")
	}
	return nil
}

// Get returns the pool named name.
func (s Set) Get(name string) (Pool, bool) {
	for _, p := range s {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}

// ByPurpose returns the first pool with purpose p.
func (s Set) ByPurpose(p Purpose) (Pool, bool) {
	for _, x := range s {
		if x.Purpose == p {
			return x, true
		}
	}
	return Pool{}, false
}
