package ingest

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// TLSMode says how a listener uses TLS.
type TLSMode string

// TLS modes.
const (
	// TLSNone: plain SMTP; AUTH only when allow_insecure_auth (loopback dev).
	TLSNone TLSMode = "none"
	// TLSStartTLS: STARTTLS offered (RFC 3207); AUTH only after it.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit: TLS from the first byte (RFC 8314, port 465).
	TLSImplicit TLSMode = "implicit"
)

// Listener is one SMTP submission endpoint.
type Listener struct {
	// Name appears in logs and the Received header.
	Name string `yaml:"name"`
	// Addr is host:port to listen on.
	Addr string `yaml:"addr"`
	// TLS is none, starttls or implicit.
	TLS TLSMode `yaml:"tls"`
	// CertFile and KeyFile are PEM files, required unless tls is none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// AllowInsecureAuth lets AUTH run on an unencrypted connection. Only for
	// loopback development listeners: it exposes passwords on the wire.
	AllowInsecureAuth bool `yaml:"allow_insecure_auth"`
	// ClientIPTenants identifies a tenant by the client's address (the
	// tenant's client_ips) when it does not authenticate, like Postfix's
	// mynetworks or an Exchange Online connector.
	ClientIPTenants bool `yaml:"client_ip_tenants"`
}

// Config of the ingest role.
type Config struct {
	// Hostname is the name ingest greets with and writes in Received headers
	// and generated Message-IDs.
	Hostname string `yaml:"hostname"`
	// Listeners to serve.
	Listeners []Listener `yaml:"listeners"`
	// MaxMessageSize in bytes, advertised with SIZE (RFC 1870); larger
	// messages get 552 5.3.4.
	MaxMessageSize int64 `yaml:"max_message_size"`
	// MaxRecipients per message; more get 452 4.5.3 (RFC 5321 4.5.3.1.10).
	MaxRecipients int `yaml:"max_recipients"`
	// ReadTimeout and WriteTimeout bound each SMTP command and reply.
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ShutdownGrace is how long open sessions may finish at shutdown before
	// their connections are closed.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MX is the listener for bounces, complaints and DMARC reports (mx.go).
	MX MXConfig `yaml:"mx"`
	// Limits are the per-tenant submission rates (limit.go).
	Limits LimitsConfig `yaml:"limits"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Hostname:       "localhost",
		MaxMessageSize: 25 << 20,
		MaxRecipients:  1000,
		ReadTimeout:    5 * time.Minute,
		WriteTimeout:   time.Minute,
		ShutdownGrace:  10 * time.Second,
		MX:             DefaultMXConfig(),
		Limits:         DefaultLimitsConfig(),
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.Hostname == "" {
		return errors.New("ingest.hostname: required")
	}
	if c.MaxMessageSize < 1024 {
		return fmt.Errorf("ingest.max_message_size: %d is too small", c.MaxMessageSize)
	}
	if c.MaxRecipients < 1 {
		return errors.New("ingest.max_recipients: must be at least 1")
	}
	if c.ReadTimeout <= 0 || c.WriteTimeout <= 0 {
		return errors.New("ingest.read_timeout, ingest.write_timeout: must be positive")
	}
	if err := c.MX.Validate(); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("ingest.listeners[%d]", i)
		if l.Name == "" || names[l.Name] {
			return fmt.Errorf("%s.name: required and unique", key)
		}
		names[l.Name] = true
		if _, _, err := net.SplitHostPort(l.Addr); err != nil {
			return fmt.Errorf("%s.addr: %w", key, err)
		}
		switch l.TLS {
		case TLSNone:
		case TLSStartTLS, TLSImplicit:
			if l.CertFile == "" || l.KeyFile == "" {
				return fmt.Errorf("%s.cert_file, key_file: required with tls %s", key, l.TLS)
			}
		default:
			return fmt.Errorf("%s.tls: %q, want none, starttls or implicit", key, l.TLS)
		}
	}
	return nil
}
