package tlspolicy_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

// stsServer is a policy host mta-sts.<domain> on 127.0.0.1 over HTTPS with
// a certificate from ca; its policy can change during a test.
type stsServer struct {
	port int
	hits atomic.Int64

	mu          sync.Mutex
	policy      string
	contentType string
	status      int
}

func (w *world) stsHost(t *testing.T, ca *testCA, domain, id, policy string) *stsServer {
	t.Helper()
	s := &stsServer{policy: policy, contentType: "text/plain; charset=utf-8", status: http.StatusOK}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts."+domain {
			http.NotFound(rw, r)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		rw.Header().Set("Content-Type", s.contentType)
		rw.WriteHeader(s.status)
		_, _ = rw.Write([]byte(s.policy))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are what some tests cause
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, time.Now().Add(time.Hour), "mta-sts."+domain)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.port, _ = strconv.Atoi(srv.URL[strings.LastIndex(srv.URL, ":")+1:])
	w.dns.AddAddr("mta-sts."+domain, "127.0.0.1")
	w.dns.AddTXT("_mta-sts."+domain, "v=STSv1; id="+id)
	return s
}

func (s *stsServer) set(status int, contentType, policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.contentType, s.policy = status, contentType, policy
}

func stsConfig() tlspolicy.Config {
	c := config()
	c.MTASTS.Enabled = true
	return c
}

func policyText(mode string, mx ...string) string {
	s := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		s += "mx: " + m + "\r\n"
	}
	return s + "max_age: 86400\r\n"
}

// TestMTASTS_Enforce: hosts outside an enforce policy are not used, hosts
// in it must present a certificate that verifies.
func TestMTASTS_Enforce(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name             string
		policyMX         []string
		mx2Cert          func() tls.Certificate
		wantOK           bool
		wantErrText      string
		wantMX1, wantMX2 int // messages each receiver gets
		wantResults      []string
	}{
		{
			name: "non-matching mx1 skipped, matching mx2 used", policyMX: []string{"*.mail.example.net"},
			mx2Cert: func() tls.Certificate { return ca.issue(t, time.Now().Add(time.Hour), "mx2.mail.example.net") },
			wantOK:  true, wantMX2: 1,
			wantResults: []string{"sts:validation-failure", "sts:success"},
		},
		{
			name: "no MX matches: deferred", policyMX: []string{"mx9.example.net"},
			mx2Cert:     func() tls.Certificate { return ca.issue(t, time.Now().Add(time.Hour), "mx2.mail.example.net") },
			wantErrText: "mta-sts: no MX matches policy",
			wantResults: []string{"sts:validation-failure", "sts:validation-failure"},
		},
		{
			name: "matching MX with an untrusted certificate: deferred", policyMX: []string{"*.mail.example.net"},
			mx2Cert:     func() tls.Certificate { return selfSigned(t, "mx2.mail.example.net") },
			wantErrText: "certificate-not-trusted",
			wantResults: []string{"sts:validation-failure", "sts:certificate-not-trusted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			cert1, cert2 := ca.issue(t, time.Now().Add(time.Hour), "mx1.example.net"), tt.mx2Cert()
			mx1 := w.mx(t, "mx1.example.net", "127.0.0.1", &cert1)
			mx2 := w.mx(t, "mx2.mail.example.net", "127.0.0.10", &cert2)
			w.dns.AddMX("example.net", 10, "mx1.example.net")
			w.dns.AddMX("example.net", 20, "mx2.mail.example.net")
			sts := w.stsHost(t, ca, "example.net", "20261129", policyText("enforce", tt.policyMX...))
			p := w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port})
			got := send(t, w.deliverer(p), "example.net")
			if (got.Err == nil) != tt.wantOK {
				t.Fatalf("Deliver: err = %v, want ok %v", got.Err, tt.wantOK)
			}
			if !tt.wantOK && (got.Err.Permanent || !strings.Contains(got.Err.Text, tt.wantErrText)) {
				t.Errorf("Deliver: err = %v, want temporary with %q", got.Err, tt.wantErrText)
			}
			if mx1.Connections() != 0 {
				t.Errorf("mx1 (outside the policy) saw %d connections, want 0", mx1.Connections())
			}
			if n := len(mx1.Messages()) + len(mx2.Messages()); n != tt.wantMX1+tt.wantMX2 || len(mx2.Messages()) != tt.wantMX2 {
				t.Errorf("messages: mx1 %d, mx2 %d; want %d, %d", len(mx1.Messages()), len(mx2.Messages()), tt.wantMX1, tt.wantMX2)
			}
			if got := w.results(); !slices.Equal(got, tt.wantResults) {
				t.Errorf("TLS results = %v, want %v", got, tt.wantResults)
			}
			if sts.hits.Load() != 1 {
				t.Errorf("policy fetched %d times, want 1 (cached)", sts.hits.Load())
			}
		})
	}
}

// TestMTASTS_Testing: a testing policy delivers to a host it does not list
// with a certificate nobody trusts, and reports the failure.
func TestMTASTS_Testing(t *testing.T) {
	ca := newCA(t)
	w := newWorld(t)
	self := selfSigned(t, "mx1.example.net")
	mx1 := w.mx(t, "mx1.example.net", "127.0.0.1", &self)
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	sts := w.stsHost(t, ca, "example.net", "1", policyText("testing", "mx9.example.net"))
	got := send(t, w.deliverer(w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port})), "example.net")
	if got.Err != nil {
		t.Fatalf("Deliver: %v", got.Err)
	}
	if m := mx1.Messages(); len(m) != 1 || !m[0].TLS {
		t.Errorf("mx1 got %+v, want one message over TLS", m)
	}
	if got, want := w.results(), []string{"sts:validation-failure"}; !slices.Equal(got, want) {
		t.Errorf("TLS results = %v, want %v", got, want)
	}
	if d := w.events[0].Detail; !strings.Contains(d, "no MX matches policy") {
		t.Errorf("detail = %q, want the MX mismatch", d)
	}
}

// TestMTASTS_BadPolicies: a policy that cannot be fetched or read is
// reported and delivery goes on as if there were none (RFC 8461 5).
func TestMTASTS_BadPolicies(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name        string
		status      int
		ctype, body string
		want        string
	}{
		{"404", http.StatusNotFound, "text/plain", "", "sts:sts-policy-fetch-error"},
		{"redirect not followed", http.StatusFound, "text/plain", "", "sts:sts-policy-fetch-error"},
		{"wrong content type", http.StatusOK, "text/html", policyText("enforce", "mx9.example.net"), "sts:sts-policy-invalid"},
		{"bad mode", http.StatusOK, "text/plain", "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "sts:sts-policy-invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			self := selfSigned(t, "mx1.example.net")
			mx1 := w.mx(t, "mx1.example.net", "127.0.0.1", &self)
			w.dns.AddMX("example.net", 10, "mx1.example.net")
			sts := w.stsHost(t, ca, "example.net", "1", "")
			sts.set(tt.status, tt.ctype, tt.body)
			got := send(t, w.deliverer(w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port})), "example.net")
			if got.Err != nil || len(mx1.Messages()) != 1 {
				t.Fatalf("Deliver: err %v, %d messages; want delivered as without a policy", got.Err, len(mx1.Messages()))
			}
			if got, want := w.results(), []string{tt.want, "no-policy-found:success"}; !slices.Equal(got, want) {
				t.Errorf("TLS results = %v, want %v", got, want)
			}
		})
	}
	t.Run("untrusted policy host", func(t *testing.T) {
		w := newWorld(t)
		self := selfSigned(t, "mx1.example.net")
		w.mx(t, "mx1.example.net", "127.0.0.1", &self)
		w.dns.AddMX("example.net", 10, "mx1.example.net")
		sts := w.stsHost(t, ca, "example.net", "1", policyText("enforce", "mx9.example.net"))
		// Trust another CA for HTTPS: the policy host's certificate fails.
		p := w.policy(t, stsConfig(), nil, tlspolicy.Options{HTTPSPort: sts.port, HTTPRootCAs: newCA(t).pool})
		if got := send(t, w.deliverer(p), "example.net"); got.Err != nil {
			t.Fatalf("Deliver: %v", got.Err)
		}
		if got, want := w.results(), []string{"sts:sts-webpki-invalid", "no-policy-found:success"}; !slices.Equal(got, want) {
			t.Errorf("TLS results = %v, want %v", got, want)
		}
	})
}

// TestMTASTS_SharedCache: a policy fetched by one sender is found in the
// mta-sts KV bucket by another (which does not fetch it while the TXT id
// is unchanged, even when the policy host is down), and a new id makes a
// sender fetch the new policy.
func TestMTASTS_SharedCache(t *testing.T) {
	js := natstest.JetStream(t)
	ca := newCA(t)
	w := newWorld(t)
	cert := ca.issue(t, time.Now().Add(time.Hour), "mx1.example.net")
	mx1 := w.mx(t, "mx1.example.net", "127.0.0.1", &cert)
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	sts := w.stsHost(t, ca, "example.net", "v1", policyText("enforce", "mx1.example.net"))
	first := w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port, JS: js})
	if got := send(t, w.deliverer(first), "example.net"); got.Err != nil {
		t.Fatalf("first sender: %v", got.Err)
	}
	kv, err := js.KeyValue(t.Context(), tlspolicy.BucketMTASTS)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(t.Context(), "example.net"); err != nil || !strings.Contains(string(e.Value()), `"id":"v1"`) {
		t.Fatalf("KV entry for example.net: %v, want the policy with id v1", err)
	}

	// The policy host is down now; a second sender uses the shared cache.
	sts.set(http.StatusInternalServerError, "text/plain", "")
	second := w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port, JS: js})
	if got := send(t, w.deliverer(second), "example.net"); got.Err != nil {
		t.Fatalf("second sender: %v", got.Err)
	}
	if n := sts.hits.Load(); n != 1 {
		t.Errorf("policy fetched %d times, want 1", n)
	}

	// A new id (seen by a third sender, through another DNS server)
	// makes it fetch the new policy, which no longer lists mx1.
	w3 := newWorld(t)
	w3.port = w.port
	w3.dns.AddMX("example.net", 10, "mx1.example.net")
	w3.dns.AddAddr("mx1.example.net", "127.0.0.1")
	w3.dns.AddAddr("mta-sts.example.net", "127.0.0.1")
	w3.dns.AddTXT("_mta-sts.example.net", "v=STSv1; id=v2")
	sts.set(http.StatusOK, "text/plain", policyText("enforce", "mx7.example.net"))
	third := w3.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port, JS: js})
	got := send(t, w3.deliverer(third), "example.net")
	if got.Err == nil || !strings.Contains(got.Err.Text, "mta-sts: no MX matches policy") {
		t.Fatalf("third sender: err = %v, want the new policy to rule mx1 out", got.Err)
	}
	if n := sts.hits.Load(); n != 2 {
		t.Errorf("policy fetched %d times, want 2", n)
	}
	if n := len(mx1.Messages()); n != 2 {
		t.Errorf("mx1 got %d messages, want 2", n)
	}
}

// TestMTASTS_OneFetchForConcurrentWorkers: workers asking at once for a
// domain whose policy is not cached share one fetch.
func TestMTASTS_OneFetchForConcurrentWorkers(t *testing.T) {
	ca := newCA(t)
	w := newWorld(t)
	sts := w.stsHost(t, ca, "example.net", "1", policyText("enforce", "mx1.example.net"))
	p := w.policy(t, stsConfig(), ca, tlspolicy.Options{HTTPSPort: sts.port})
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			req, err := p.ForHost(t.Context(), "example.net", "mx1.example.net")
			if err == nil && req.Mode != "verify" {
				err = fmt.Errorf("mode %s, want verify", req.Mode)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := sts.hits.Load(); n != 1 {
		t.Errorf("policy fetched %d times by 16 concurrent workers, want 1", n)
	}
}

// TestMTASTS_TestingUnderVerify: the operator's verify mode decides on the
// certificate alone; a testing policy that does not list the host does not
// make delivery fail.
func TestMTASTS_TestingUnderVerify(t *testing.T) {
	ca := newCA(t)
	w := newWorld(t)
	cert := ca.issue(t, time.Now().Add(time.Hour), "mx1.example.net")
	mx1 := w.mx(t, "mx1.example.net", "127.0.0.1", &cert)
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	sts := w.stsHost(t, ca, "example.net", "1", policyText("testing", "mx9.example.net"))
	cfg := stsConfig()
	cfg.Default = "verify"
	if got := send(t, w.deliverer(w.policy(t, cfg, ca, tlspolicy.Options{HTTPSPort: sts.port})), "example.net"); got.Err != nil {
		t.Fatalf("Deliver: %v", got.Err)
	}
	if len(mx1.Messages()) != 1 {
		t.Errorf("mx1 got %d messages, want 1", len(mx1.Messages()))
	}
}
