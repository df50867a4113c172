package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/classify"
	"github.com/outflowmail/outflow/pkg/metrics"
	"github.com/outflowmail/outflow/pkg/natsserver"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/services/analytics"
	"github.com/outflowmail/outflow/services/capture"
	"github.com/outflowmail/outflow/services/classifier"
	"github.com/outflowmail/outflow/services/feedback"
	"github.com/outflowmail/outflow/services/ingest"
	"github.com/outflowmail/outflow/services/router"
	"github.com/outflowmail/outflow/services/sender"
)

// Config is the whole configuration file: one section per package.
type Config struct {
	Log  LogConfig  `yaml:"log"`
	NATS NATSConfig `yaml:"nats"`
	// Pools are the outbound IP pools, shared by router and sender.
	Pools pool.Set `yaml:"pools"`
	// Tenants are created at start when they do not exist yet (development
	// and first installs); afterwards "outflow ctl" manages them.
	Tenants    []SeedTenant     `yaml:"tenants"`
	Ingest     ingest.Config    `yaml:"ingest"`
	Classifier ClassifierConfig `yaml:"classifier"`
	Router     router.Config    `yaml:"router"`
	Sender     sender.Config    `yaml:"sender"`
	Analytics  analytics.Config `yaml:"analytics"`
	Feedback   feedback.Config  `yaml:"feedback"`
	Capture    CaptureConfig    `yaml:"capture"`
	// Metrics is the process's Prometheus endpoint (off unless listen is set).
	Metrics metrics.Config `yaml:"metrics"`
}

// LogConfig sets up log/slog.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// NATSConfig is the bus configuration plus the embedded server's.
type NATSConfig struct {
	bus.Config `yaml:",inline"`
	// Embedded is the server "outflow all" (with an empty url) and
	// "outflow nats" run in-process.
	Embedded natsserver.Config `yaml:"embedded"`
}

// ClassifierConfig is the classifier role and its engine.
type ClassifierConfig struct {
	classifier.Config `yaml:",inline"`
	// Engine holds the thresholds and rule settings of the spam engine.
	Engine classify.Config `yaml:"engine"`
}

// CaptureConfig enables the built-in capture receiver (development and
// benchmarks: it stands in for the Internet's MX hosts).
type CaptureConfig struct {
	Enabled        bool `yaml:"enabled"`
	capture.Config `yaml:",inline"`
}

// SeedTenant is a tenant created at start if absent.
type SeedTenant struct {
	ID string `yaml:"id"`
	// PasswordHash is a bcrypt hash ("outflow ctl hash-password" prints one).
	PasswordHash string   `yaml:"password_hash"`
	Domains      []string `yaml:"domains"`
	ClientIPs    []string `yaml:"client_ips"`
	Pool         string   `yaml:"pool"`
}

// Tenant converts the seed to a tenant record.
func (s SeedTenant) Tenant() (*tenant.Tenant, error) {
	t := &tenant.Tenant{ID: s.ID, PasswordHash: s.PasswordHash, ClientIPs: s.ClientIPs, Pool: s.Pool}
	for _, d := range s.Domains {
		if err := t.AddDomain(d); err != nil {
			return nil, err
		}
	}
	return t, t.Validate()
}

// DefaultConfig returns every package's defaults.
func DefaultConfig() Config {
	return Config{
		Log:        LogConfig{Level: "info", Format: "text"},
		NATS:       NATSConfig{Config: bus.DefaultConfig(), Embedded: natsserver.DefaultConfig()},
		Ingest:     ingest.DefaultConfig(),
		Classifier: ClassifierConfig{Engine: classify.DefaultConfig()},
		Router:     router.DefaultConfig(),
		Sender:     sender.DefaultConfig(),
		Analytics:  analytics.DefaultConfig(),
		Feedback:   feedback.DefaultConfig(),
		Capture:    CaptureConfig{Config: capture.DefaultConfig()},
	}
}

// Load reads a configuration file over the defaults. Unknown keys are
// errors, and so is any value that fails validation; both name the key.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a configuration from r over the defaults and validates it.
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, errors.New(nameKeys(data, strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// nameKeys adds the dotted key to yaml.v3's "line N: ..." messages, which
// name only the line, so that every configuration error names its key.
func nameKeys(data []byte, msg string) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return msg
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, ok := keys[v.Line]; !ok || v.Kind == yaml.ScalarNode {
					keys[v.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(&root, "")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		var n int
		t := strings.TrimSpace(l)
		if _, err := fmt.Sscanf(t, "line %d:", &n); err == nil {
			if k, ok := keys[n]; ok && !strings.Contains(t, "not found in type") {
				lines[i] = strings.Replace(l, fmt.Sprintf("line %d:", n), fmt.Sprintf("line %d: %s:", n, k), 1)
			}
		}
	}
	return strings.Join(lines, "\n")
}

// Validate checks every section.
func (c *Config) Validate() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q, want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format: %q, want text or json", c.Log.Format)
	}
	checks := []func() error{
		c.NATS.Config.Validate, c.NATS.Embedded.Validate, c.Pools.Validate,
		c.Ingest.Validate, c.Classifier.Config.Validate, c.Classifier.Engine.Validate,
		c.Router.Validate, c.Sender.Validate, c.Analytics.Validate, c.Feedback.Validate,
		c.Metrics.Validate,
	}
	if c.Capture.Enabled {
		checks = append(checks, c.Capture.Config.Validate)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	if d := c.Sender.VERP.Domain; d != "" && c.Ingest.MX.Addr != "" &&
		!slices.ContainsFunc(c.Ingest.MX.BounceDomains, func(b string) bool { return strings.EqualFold(b, d) }) {
		return fmt.Errorf("ingest.mx.bounce_domains: must include sender.verp.domain %q, or bounces to the return paths are refused", d)
	}
	for i, s := range c.Tenants {
		if _, err := s.Tenant(); err != nil {
			return fmt.Errorf("tenants[%d]: %w", i, err)
		}
		if s.Pool != "" {
			if _, ok := c.Pools.Get(s.Pool); !ok {
				return fmt.Errorf("tenants[%d].pool: no pool named %q", i, s.Pool)
			}
		}
	}
	for i, name := range c.Sender.Pools {
		if _, ok := c.Pools.Get(name); !ok {
			return fmt.Errorf("sender.pools[%d]: no pool named %q", i, name)
		}
	}
	return nil
}
