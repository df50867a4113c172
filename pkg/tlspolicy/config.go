package tlspolicy

import (
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
)

// Config is sender.tls.
type Config struct {
	// Default is the mode of domains not in Policies: none, opportunistic
	// (the default), required or verify.
	Default delivery.TLSMode `yaml:"default"`
	// Policies set the mode per recipient domain (lower case). MTA-STS and
	// DANE can only make a domain's mode stricter.
	Policies map[string]delivery.TLSMode `yaml:"policies"`
	// CAFile is a PEM file of extra root CAs trusted, besides the system's,
	// when a certificate is verified (mode verify, MTA-STS enforce).
	CAFile string `yaml:"ca_file"`
	// MTASTS is sender.tls.mta_sts.
	MTASTS MTASTS `yaml:"mta_sts"`
	// DANE is sender.tls.dane.
	DANE DANE `yaml:"dane"`
	// Report is sender.tls.report (TLS-RPT, RFC 8460).
	Report Report `yaml:"report"`
}

// MTASTS configures MTA-STS (RFC 8461).
type MTASTS struct {
	// Enabled looks up and applies recipient domains' MTA-STS policies.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of root CAs trusted, besides the system's, for
	// the HTTPS policy fetch.
	CAFile string `yaml:"ca_file"`
	// FetchTimeout bounds one policy fetch (RFC 8461 3.3 suggests about a
	// minute at most).
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// RecheckTXT is how long the _mta-sts TXT record's id is trusted
	// before it is looked up again (a changed id means a new policy).
	RecheckTXT time.Duration `yaml:"recheck_txt"`
}

// DANE configures DANE for SMTP (RFC 7672).
type DANE struct {
	// Enabled looks up TLSA records of MX hosts. Only turn it on when
	// sender.resolver is a validating resolver reached over a trusted
	// path: its AD bit is what makes a TLSA record count.
	Enabled bool `yaml:"enabled"`
}

// Report configures TLS reporting (RFC 8460).
type Report struct {
	// Enabled records every TLS session result as a tls event.
	Enabled bool `yaml:"enabled"`
	// OrganizationName and ContactInfo go into the daily reports.
	OrganizationName string `yaml:"organization_name"`
	ContactInfo      string `yaml:"contact_info"`
	// Domain is our sending domain, the first part of report file names
	// (RFC 8460 5.3).
	Domain string `yaml:"domain"`
}

// DefaultConfig returns the defaults: opportunistic TLS, MTA-STS and
// reporting on, DANE off (it needs a trusted validating resolver).
func DefaultConfig() Config {
	return Config{
		Default: delivery.TLSOpportunistic,
		MTASTS:  MTASTS{Enabled: true, FetchTimeout: 30 * time.Second, RecheckTXT: 5 * time.Minute},
		Report:  Report{Enabled: true, OrganizationName: "Outflow"},
	}
}

func validMode(m delivery.TLSMode) bool {
	switch m {
	case delivery.TLSNone, delivery.TLSOpportunistic, delivery.TLSRequired, delivery.TLSVerify:
		return true
	}
	return false
}

// Validate names the first bad key (under sender.tls).
func (c Config) Validate() error {
	if !validMode(c.Default) {
		return fmt.Errorf("sender.tls.default: %q, want none, opportunistic, required or verify", c.Default)
	}
	for _, d := range slices.Sorted(maps.Keys(c.Policies)) {
		if d == "" || d != strings.ToLower(d) || strings.ContainsAny(d, "@ *") {
			return fmt.Errorf("sender.tls.policies: key %q must be a lower-case domain", d)
		}
		if m := c.Policies[d]; !validMode(m) {
			return fmt.Errorf("sender.tls.policies.%s: %q, want none, opportunistic, required or verify", d, m)
		}
	}
	if c.CAFile != "" {
		if _, err := loadRoots(c.CAFile); err != nil {
			return fmt.Errorf("sender.tls.ca_file: %w", err)
		}
	}
	if c.MTASTS.Enabled {
		if c.MTASTS.FetchTimeout <= 0 {
			return fmt.Errorf("sender.tls.mta_sts.fetch_timeout: %v, must be positive", c.MTASTS.FetchTimeout)
		}
		if c.MTASTS.RecheckTXT < 0 {
			return fmt.Errorf("sender.tls.mta_sts.recheck_txt: %v, must not be negative", c.MTASTS.RecheckTXT)
		}
		if c.MTASTS.CAFile != "" {
			if _, err := loadRoots(c.MTASTS.CAFile); err != nil {
				return fmt.Errorf("sender.tls.mta_sts.ca_file: %w", err)
			}
		}
	}
	return nil
}

// loadRoots returns the system roots plus the certificates of a PEM file.
func loadRoots(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if file == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
