package tlspolicy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/dnstest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/resolver"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

var source = pool.IP{Address: "127.0.0.2", EHLO: "out1.outflow.test"}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Outflow Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := x509.NewCertPool()
	p.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: p}
}

// issue makes a server certificate for names, valid until notAfter, with
// the CA's certificate in its chain (DANE-TA needs it sent).
func (ca *testCA) issue(t testing.TB, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

// selfSigned makes a certificate no CA vouches for.
func selfSigned(t testing.TB, name string) tls.Certificate {
	t.Helper()
	return newCA(t).issue(t, time.Now().Add(time.Hour), name)
}

// spkiSHA256 is the "3 1 1" TLSA data of a certificate.
func spkiSHA256(c tls.Certificate) string {
	h := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// world is a loopback Internet: a DNS server, MX receivers on one port
// (each on its own loopback address), and the TLS events recorded.
type world struct {
	dns  *dnstest.Server
	res  *resolver.Resolver
	port int

	mu     sync.Mutex
	events []events.TLS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ds := dnstest.Start(t)
	r, err := resolver.New(ds.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &world{dns: ds, res: r}
}

// mx starts a receiver for host at ip (on the world's SMTP port) and
// publishes its A record. A nil cert offers no STARTTLS.
func (w *world) mx(t *testing.T, host, ip string, cert *tls.Certificate) *smtptest.Receiver {
	t.Helper()
	opts := smtptest.Options{Addr: net.JoinHostPort(ip, strconv.Itoa(w.port))}
	if cert != nil {
		opts.TLS = true
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	r := smtptest.Start(t, opts)
	if w.port == 0 {
		w.port, _ = strconv.Atoi(r.Port())
	}
	w.dns.AddAddr(host, ip)
	return r
}

func (w *world) publish(_ context.Context, e *events.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Type == events.TypeTLS && e.TLS != nil {
		w.events = append(w.events, *e.TLS)
	}
	return nil
}

// results are the recorded TLS results, in order.
func (w *world) results() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, e := range w.events {
		out = append(out, e.PolicyType+":"+e.Result)
	}
	return out
}

// policy builds a Policy from cfg trusting ca (for SMTP and HTTPS).
func (w *world) policy(t *testing.T, cfg tlspolicy.Config, ca *testCA, opts tlspolicy.Options) *tlspolicy.Policy {
	t.Helper()
	opts.Resolver = w.res
	opts.Publish = w.publish
	if ca != nil {
		opts.RootCAs, opts.HTTPRootCAs = ca.pool, ca.pool
	}
	p, err := tlspolicy.New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *world) deliverer(p delivery.TLSPolicy) *delivery.Deliverer {
	return delivery.New(delivery.Options{
		Resolver: w.res, Port: w.port, TLS: p,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
	})
}

func send(t *testing.T, d *delivery.Deliverer, domain string) delivery.RcptResult {
	t.Helper()
	defer d.Close()
	res := d.Deliver(t.Context(), delivery.Job{
		Domain: domain, From: "a@sender.test", Rcpts: []string{"b@" + domain},
		Body: []byte("Subject: hi\r\n\r\nhello\r\n"), Sources: []pool.IP{source},
	})
	return res.Rcpts[0]
}

// config is DefaultConfig with MTA-STS off unless a test turns it on
// (each lookup would otherwise ask the DNS server for _mta-sts records).
func config() tlspolicy.Config {
	c := tlspolicy.DefaultConfig()
	c.MTASTS.Enabled = false
	return c
}
