package shaping

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	shapingrules "github.com/outflowmail/outflow/deploy/shaping"
	"github.com/outflowmail/outflow/pkg/delivery"
)

// Config is sender.shaping.
type Config struct {
	// Defaults are the limits of every (source IP, site) without an
	// override: 10 connections, 100 messages per connection, 100 recipients
	// per transaction, no rate limit, 30 s idle (KumoMTA's defaults).
	Defaults LimitsConfig `yaml:"defaults"`
	// Sites are tried before the rules file's sites; the first whose MX
	// patterns match a domain's MX host names names its site.
	Sites []SiteRule `yaml:"sites"`
	// Domains override limits for one recipient domain. A domain with its
	// own connection or rate limit is shaped as a site of its own (named
	// after the domain), since connections and rates are counted per site.
	Domains map[string]LimitsConfig `yaml:"domains"`
	// Backoff rules are tried before the rules file's rules.
	Backoff []Rule `yaml:"backoff"`
	// RulesFile replaces the shipped rules (deploy/shaping/rules.yaml,
	// embedded) with a file of the same format; empty uses the shipped one.
	RulesFile string `yaml:"rules_file"`
	// ConnLease is how long a connection slot stays taken when its holder
	// stops refreshing it (a crashed sender): slots are refreshed every
	// third of it.
	ConnLease time.Duration `yaml:"conn_lease"`
}

// LimitsConfig sets some limits; unset ones keep the value below them
// (defaults, then site, then domain).
type LimitsConfig struct {
	MaxConnections     *int           `yaml:"max_connections"`
	MaxMessagesPerConn *int           `yaml:"max_messages_per_conn"`
	MaxRcptsPerTxn     *int           `yaml:"max_rcpts_per_txn"`
	MessagesPerSecond  *float64       `yaml:"messages_per_second"`
	MessagesPerHour    *int           `yaml:"messages_per_hour"`
	IdleTimeout        *time.Duration `yaml:"idle_timeout"`
}

// SiteRule names the site of the domains whose MX hosts match.
type SiteRule struct {
	Name string `yaml:"name"`
	// MX are host name patterns: "*.example.com" matches every host under
	// example.com, anything else matches that host exactly. A site without
	// patterns only sets the limits of a site named elsewhere (a shipped
	// one, or a derived name).
	MX     []string     `yaml:"mx"`
	Limits LimitsConfig `yaml:"limits"`
}

// Rule is one response-based backoff rule. Every given match field must
// match the reply.
type Rule struct {
	Name string `yaml:"name"`
	// Code is a 3-digit reply code; x matches any digit ("4xx", "45x").
	Code string `yaml:"code"`
	// Enhanced is a prefix, by components, of the enhanced status code
	// (RFC 3463): "5.7" matches "5.7.1" but not "5.70.1".
	Enhanced string `yaml:"enhanced"`
	// Text is a regular expression (RE2) matched against the reply text.
	Text string `yaml:"text"`
	// Action is suspend, throttle or remove.
	Action   string        `yaml:"action"`
	Duration time.Duration `yaml:"duration"`
	// Scope is ip (the source IP toward the site) or site (every source IP
	// toward it); remove is always per ip.
	Scope string `yaml:"scope"`
	// Throttle settings: Factor multiplies the connection limit and the
	// message rate; Connections and Rate (messages per second) replace
	// them.
	Factor      float64 `yaml:"factor"`
	Connections int     `yaml:"connections"`
	Rate        float64 `yaml:"rate"`

	text *regexp.Regexp
}

// Action kinds.
const (
	KindSuspend  = "suspend"
	KindThrottle = "throttle"
	KindRemove   = "remove"
)

// Rule scopes.
const (
	ScopeIP   = "ip"
	ScopeSite = "site"
)

// rulesFile is the format of the shipped rules and of rules_file.
type rulesFile struct {
	Sites   []SiteRule `yaml:"sites"`
	Backoff []Rule     `yaml:"backoff"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ConnLease: 30 * time.Second}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.ConnLease < 3*time.Second {
		return fmt.Errorf("sender.shaping.conn_lease: %v, want at least 3s (slots are refreshed every third of it)", c.ConnLease)
	}
	if err := c.Defaults.validate("sender.shaping.defaults"); err != nil {
		return err
	}
	if err := validateSites("sender.shaping.sites", c.Sites); err != nil {
		return err
	}
	for d, l := range c.Domains {
		if d == "" || d != strings.ToLower(d) || strings.ContainsAny(d, "@ *") {
			return fmt.Errorf("sender.shaping.domains: key %q must be a lower-case domain", d)
		}
		if err := l.validate("sender.shaping.domains." + d); err != nil {
			return err
		}
	}
	if err := validateRules("sender.shaping.backoff", c.Backoff); err != nil {
		return err
	}
	if c.RulesFile != "" {
		if _, err := loadRules(c.RulesFile); err != nil {
			return fmt.Errorf("sender.shaping.rules_file: %w", err)
		}
	}
	return nil
}

func (l LimitsConfig) validate(key string) error {
	switch {
	case l.MaxConnections != nil && *l.MaxConnections < 1:
		return fmt.Errorf("%s.max_connections: %d, want at least 1", key, *l.MaxConnections)
	case l.MaxMessagesPerConn != nil && *l.MaxMessagesPerConn < 1:
		return fmt.Errorf("%s.max_messages_per_conn: %d, want at least 1", key, *l.MaxMessagesPerConn)
	case l.MaxRcptsPerTxn != nil && *l.MaxRcptsPerTxn < 1:
		return fmt.Errorf("%s.max_rcpts_per_txn: %d, want at least 1", key, *l.MaxRcptsPerTxn)
	case l.MessagesPerSecond != nil && *l.MessagesPerSecond < 0:
		return fmt.Errorf("%s.messages_per_second: %v, want 0 (unlimited) or more", key, *l.MessagesPerSecond)
	case l.MessagesPerHour != nil && *l.MessagesPerHour < 0:
		return fmt.Errorf("%s.messages_per_hour: %d, want 0 (unlimited) or more", key, *l.MessagesPerHour)
	case l.IdleTimeout != nil && *l.IdleTimeout <= 0:
		return fmt.Errorf("%s.idle_timeout: %v, must be positive", key, *l.IdleTimeout)
	}
	return nil
}

// rated reports whether l sets a connection or rate limit: such a domain
// override makes the domain a site of its own.
func (l LimitsConfig) rated() bool {
	return l.MaxConnections != nil || l.MessagesPerSecond != nil || l.MessagesPerHour != nil
}

// apply overrides the limits l sets.
func (l LimitsConfig) apply(to *delivery.Limits) {
	if l.MaxConnections != nil {
		to.MaxConnections = *l.MaxConnections
	}
	if l.MaxMessagesPerConn != nil {
		to.MaxMessagesPerConn = *l.MaxMessagesPerConn
	}
	if l.MaxRcptsPerTxn != nil {
		to.MaxRcptsPerTxn = *l.MaxRcptsPerTxn
	}
	if l.MessagesPerSecond != nil {
		to.MessagesPerSecond = *l.MessagesPerSecond
	}
	if l.MessagesPerHour != nil {
		to.MessagesPerHour = *l.MessagesPerHour
	}
	if l.IdleTimeout != nil {
		to.IdleTimeout = *l.IdleTimeout
	}
}

var siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

func validateSites(key string, sites []SiteRule) error {
	for i, s := range sites {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !siteNameRE.MatchString(s.Name) {
			return fmt.Errorf("%s.name: %q must match %s", k, s.Name, siteNameRE)
		}
		for j, p := range s.MX {
			host := strings.TrimPrefix(p, "*.")
			if host == "" || strings.ContainsAny(host, "* @") || host != strings.ToLower(host) {
				return fmt.Errorf("%s.mx[%d]: %q, want a lower-case host name or *.domain", k, j, p)
			}
		}
		if err := s.Limits.validate(k + ".limits"); err != nil {
			return err
		}
	}
	return nil
}

var codeRE = regexp.MustCompile(`^[2-5][0-9x][0-9x]$`)

// validateRules checks rules and compiles their text expressions.
func validateRules(key string, rules []Rule) error {
	seen := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		k := fmt.Sprintf("%s[%d]", key, i)
		if r.Name == "" {
			return fmt.Errorf("%s.name: required", k)
		}
		if seen[r.Name] {
			return fmt.Errorf("%s.name: %q appears twice", k, r.Name)
		}
		seen[r.Name] = true
		if r.Code != "" && !codeRE.MatchString(r.Code) {
			return fmt.Errorf("%s.code: %q, want three digits where x matches any (421, 4xx)", k, r.Code)
		}
		if r.Enhanced != "" {
			for _, p := range strings.Split(r.Enhanced, ".") {
				if p == "" || strings.Trim(p, "0123456789") != "" {
					return fmt.Errorf("%s.enhanced: %q, want a prefix of an enhanced status such as 4.7 or 5.7.1", k, r.Enhanced)
				}
			}
		}
		if r.Text != "" {
			re, err := regexp.Compile(r.Text)
			if err != nil {
				return fmt.Errorf("%s.text: %w", k, err)
			}
			r.text = re
		}
		if r.Code == "" && r.Enhanced == "" && r.Text == "" {
			return fmt.Errorf("%s: needs at least one of code, enhanced, text", k)
		}
		switch r.Action {
		case KindSuspend, KindRemove:
		case KindThrottle:
			if r.Factor == 0 && r.Connections == 0 && r.Rate == 0 {
				return fmt.Errorf("%s: throttle needs factor, connections or rate", k)
			}
			if r.Factor < 0 || r.Factor >= 1 {
				return fmt.Errorf("%s.factor: %v, want between 0 and 1", k, r.Factor)
			}
			if r.Connections < 0 || r.Rate < 0 {
				return fmt.Errorf("%s: connections and rate must not be negative", k)
			}
		default:
			return fmt.Errorf("%s.action: %q, want suspend, throttle or remove", k, r.Action)
		}
		if r.Duration < time.Second {
			return fmt.Errorf("%s.duration: %v, want at least 1s", k, r.Duration)
		}
		switch r.Scope {
		case "":
			r.Scope = ScopeIP
		case ScopeIP:
		case ScopeSite:
			if r.Action == KindRemove {
				return fmt.Errorf("%s.scope: remove takes one source IP out of rotation; scope site does not apply", k)
			}
		default:
			return fmt.Errorf("%s.scope: %q, want ip or site", k, r.Scope)
		}
	}
	return nil
}

// loadRules reads a rules file (path) or, for "", the shipped rules.
func loadRules(path string) (rulesFile, error) {
	data := shapingrules.YAML
	name := "shipped rules"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return rulesFile{}, fmt.Errorf("read rules: %w", err)
		}
		name = path
	}
	var rf rulesFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		return rulesFile{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := validateSites(name+": sites", rf.Sites); err != nil {
		return rulesFile{}, err
	}
	if err := validateRules(name+": backoff", rf.Backoff); err != nil {
		return rulesFile{}, err
	}
	return rf, nil
}

// compiled is Config with the rules file merged in and expressions
// compiled.
type compiled struct {
	defaults delivery.Limits
	sites    []SiteRule
	bySite   map[string]LimitsConfig
	domains  map[string]LimitsConfig
	rules    []Rule
}

func compile(c Config) (*compiled, error) {
	rf, err := loadRules(c.RulesFile)
	if err != nil {
		return nil, err
	}
	own := rulesFile{Sites: append([]SiteRule(nil), c.Sites...), Backoff: append([]Rule(nil), c.Backoff...)}
	if err := validateSites("sender.shaping.sites", own.Sites); err != nil {
		return nil, err
	}
	if err := validateRules("sender.shaping.backoff", own.Backoff); err != nil {
		return nil, err
	}
	k := &compiled{
		defaults: delivery.Limits{
			MaxConnections: 10, MaxMessagesPerConn: 100, MaxRcptsPerTxn: 100, IdleTimeout: 30 * time.Second,
		},
		sites:   append(own.Sites, rf.Sites...),
		bySite:  map[string]LimitsConfig{},
		domains: c.Domains,
		rules:   own.Backoff,
	}
	c.Defaults.apply(&k.defaults)
	// The first rule of a name wins, so that sender.shaping.sites can
	// override a shipped site's limits by naming it.
	for _, s := range k.sites {
		if _, ok := k.bySite[s.Name]; !ok {
			k.bySite[s.Name] = s.Limits
		}
	}
	// A configured rule named like a shipped one replaces it.
	mine := map[string]bool{}
	for _, r := range own.Backoff {
		mine[r.Name] = true
	}
	for _, r := range rf.Backoff {
		if !mine[r.Name] {
			k.rules = append(k.rules, r)
		}
	}
	return k, nil
}
