package tlspolicy_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

// TestModes runs each per-domain mode against receivers without STARTTLS,
// with a self-signed certificate, with an expired one and with one from
// the trusted CA.
func TestModes(t *testing.T) {
	ca := newCA(t)
	good := ca.issue(t, time.Now().Add(time.Hour), "mx1.example.net")
	expired := ca.issue(t, time.Now().Add(-time.Hour), "mx1.example.net")
	wrongName := ca.issue(t, time.Now().Add(time.Hour), "other.example.org")
	self := selfSigned(t, "mx1.example.net")
	tests := []struct {
		name       string
		mode       delivery.TLSMode
		cert       *tls.Certificate
		wantOK     bool
		wantTLS    bool
		wantResult string // recorded TLS-RPT result, "" for none
	}{
		{"none never starts TLS", delivery.TLSNone, &good, true, false, ""},
		{"opportunistic without STARTTLS sends in clear", delivery.TLSOpportunistic, nil, true, false, "no-policy-found:starttls-not-supported"},
		{"opportunistic with self-signed", delivery.TLSOpportunistic, &self, true, true, "no-policy-found:success"},
		{"required without STARTTLS defers", delivery.TLSRequired, nil, false, false, "no-policy-found:starttls-not-supported"},
		{"required with self-signed", delivery.TLSRequired, &self, true, true, "no-policy-found:success"},
		{"verify without STARTTLS defers", delivery.TLSVerify, nil, false, false, "no-policy-found:starttls-not-supported"},
		{"verify with self-signed defers", delivery.TLSVerify, &self, false, false, "no-policy-found:certificate-not-trusted"},
		{"verify with expired defers", delivery.TLSVerify, &expired, false, false, "no-policy-found:certificate-expired"},
		{"verify with another name defers", delivery.TLSVerify, &wrongName, false, false, "no-policy-found:certificate-host-mismatch"},
		{"verify with CA certificate", delivery.TLSVerify, &good, true, true, "no-policy-found:success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			rcv := w.mx(t, "mx1.example.net", "127.0.0.1", tt.cert)
			w.dns.AddMX("example.net", 10, "mx1.example.net")
			cfg := config()
			cfg.Policies = map[string]delivery.TLSMode{"example.net": tt.mode}
			got := send(t, w.deliverer(w.policy(t, cfg, ca, tlspolicy.Options{})), "example.net")
			if (got.Err == nil) != tt.wantOK {
				t.Fatalf("Deliver: err = %v, want ok %v", got.Err, tt.wantOK)
			}
			msgs := rcv.Messages()
			if !tt.wantOK {
				if got.Err.Permanent || got.Err.Stage != delivery.StageTLS || got.Err.Enhanced != "4.7.5" {
					t.Errorf("Deliver: err = %+v, want a temporary starttls failure 4.7.5", got.Err)
				}
				if len(msgs) != 0 {
					t.Errorf("receiver got %d messages, want none (never in clear)", len(msgs))
				}
			} else if len(msgs) != 1 || msgs[0].TLS != tt.wantTLS {
				t.Errorf("receiver got %+v, want one message with TLS %v", msgs, tt.wantTLS)
			}
			var want []string
			if tt.wantResult != "" {
				want = []string{tt.wantResult}
			}
			if got := w.results(); !slices.Equal(got, want) {
				t.Errorf("TLS results = %v, want %v", got, want)
			}
		})
	}
}

// TestRequired_FallsBackToNextMX: the first MX cannot do TLS, the second
// can; under required the message goes to the second.
func TestRequired_FallsBackToNextMX(t *testing.T) {
	w := newWorld(t)
	self := selfSigned(t, "mx2.example.net")
	plain := w.mx(t, "mx1.example.net", "127.0.0.1", nil)
	secure := w.mx(t, "mx2.example.net", "127.0.0.10", &self)
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	w.dns.AddMX("example.net", 20, "mx2.example.net")
	cfg := config()
	cfg.Default = delivery.TLSRequired
	got := send(t, w.deliverer(w.policy(t, cfg, nil, tlspolicy.Options{})), "example.net")
	if got.Err != nil {
		t.Fatalf("Deliver: %v", got.Err)
	}
	if n := len(plain.Messages()); n != 0 {
		t.Errorf("mx1 (no STARTTLS) got %d messages, want 0", n)
	}
	if m := secure.Messages(); len(m) != 1 || !m[0].TLS {
		t.Errorf("mx2 got %+v, want one message over TLS", m)
	}
}

// TestDANE covers DANE-EE and DANE-TA records with and without the AD bit.
func TestDANE(t *testing.T) {
	ca := newCA(t)
	self := selfSigned(t, "mx1.example.net")
	other := selfSigned(t, "mx1.example.net")
	fromCA := ca.issue(t, time.Now().Add(time.Hour), "mx1.example.net")
	fromCAWrongName := ca.issue(t, time.Now().Add(time.Hour), "elsewhere.example.org")
	caHash := fmt.Sprintf("%x", sha256.Sum256(ca.cert.Raw))
	tests := []struct {
		name       string
		cert       tls.Certificate
		tlsa       string
		secure     bool
		wantOK     bool
		wantResult string
	}{
		{"EE SPKI sha256 matches", self, "3 1 1 " + spkiSHA256(self), true, true, "tlsa:success"},
		{"EE full cert sha512 matches", self, "3 0 2 " + fmt.Sprintf("%x", sha512.Sum512(self.Leaf.Raw)), true, true, "tlsa:success"},
		{"EE mismatch defers", other, "3 1 1 " + spkiSHA256(self), true, false, "tlsa:tlsa-invalid"},
		{"EE mismatch without AD is ignored", other, "3 1 1 " + spkiSHA256(self), false, true, "no-policy-found:success"},
		{"TA matches and names the host", fromCA, "2 0 1 " + caHash, true, true, "tlsa:success"},
		{"TA matches, wrong host name, defers", fromCAWrongName, "2 0 1 " + caHash, true, false, "tlsa:certificate-host-mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			rcv := w.mx(t, "mx1.example.net", "127.0.0.1", &tt.cert)
			w.dns.AddMX("example.net", 10, "mx1.example.net")
			w.dns.Add(t, "_25._tcp.mx1.example.net. 300 IN TLSA "+tt.tlsa)
			if tt.secure {
				w.dns.Secure("_25._tcp.mx1.example.net")
			}
			cfg := config()
			cfg.DANE.Enabled = true
			got := send(t, w.deliverer(w.policy(t, cfg, nil, tlspolicy.Options{})), "example.net")
			if (got.Err == nil) != tt.wantOK {
				t.Fatalf("Deliver: err = %v, want ok %v", got.Err, tt.wantOK)
			}
			if n := len(rcv.Messages()); n != map[bool]int{true: 1}[tt.wantOK] {
				t.Errorf("receiver got %d messages", n)
			}
			if !tt.wantOK && (got.Err.Permanent || got.Err.Stage != delivery.StageTLS) {
				t.Errorf("Deliver: err = %+v, want a temporary TLS failure", got.Err)
			}
			if got := w.results(); !slices.Equal(got, []string{tt.wantResult}) {
				t.Errorf("TLS results = %v, want [%s]", got, tt.wantResult)
			}
		})
	}
}

// TestDANE_ServFailRulesOutHost: a TLSA lookup that fails (a validating
// resolver's answer to bogus data) must not be taken as "no TLSA".
func TestDANE_ServFailRulesOutHost(t *testing.T) {
	w := newWorld(t)
	self := selfSigned(t, "mx1.example.net")
	rcv := w.mx(t, "mx1.example.net", "127.0.0.1", &self)
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	w.dns.Fail("_25._tcp.mx1.example.net", 52, 2) // TLSA, SERVFAIL
	cfg := config()
	cfg.DANE.Enabled = true
	got := send(t, w.deliverer(w.policy(t, cfg, nil, tlspolicy.Options{})), "example.net")
	if got.Err == nil || got.Err.Permanent || !strings.Contains(got.Err.Text, "dnssec-invalid") {
		t.Fatalf("Deliver: err = %v, want a temporary dnssec-invalid failure", got.Err)
	}
	if rcv.Connections() != 0 {
		t.Errorf("receiver saw %d connections, want 0", rcv.Connections())
	}
}
