package dkimsign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/natstest"
)

const testMsg = "From: Alice <alice@tenant.example>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: hello\r\n" +
	"Date: Sun, 29 Nov 2026 07:00:00 +0000\r\n" +
	"Message-ID: <1@tenant.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Feedback-ID: c1:demo:shared:outflow\r\n" +
	"List-Unsubscribe: <mailto:unsub@tenant.example>\r\n" +
	"\r\n" +
	"Hello Bob,  \r\nsee you.\r\n"

// dnsKeys answers the verifier's TXT queries from keys made by the test.
type dnsKeys map[string]string

func (d dnsKeys) add(t testing.TB, selector, domain string, k crypto.Signer) {
	t.Helper()
	txt, err := TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	d[RecordName(selector, domain)] = txt
}

func (d dnsKeys) lookup(name string) ([]string, error) {
	if v, ok := d[name]; ok {
		// A resolver returns a record's strings joined (net.LookupTXT).
		return []string{strings.Join(SplitTXT(v), "")}, nil
	}
	return nil, errors.New("no such record: " + name)
}

// verify checks every signature with go-msgauth's verifier (the
// independent python3-dkim check runs in e2e) and returns the signing
// domains with the algorithm.
func verify(t testing.TB, dns dnsKeys, msg []byte) []string {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: dns.lookup})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature d=%s: %v", v.Domain, v.Err)
		}
		out = append(out, v.Domain)
	}
	return out
}

func providerFiles(t testing.TB, dns dnsKeys, ed bool) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.ProviderDomain, cfg.Selector, cfg.KeyFile = "outflow.example", "of1", filepath.Join(dir, "rsa.pem")
	k, err := CreateKeyFile(cfg.KeyFile, RSA)
	if err != nil {
		t.Fatal(err)
	}
	dns.add(t, "of1", "outflow.example", k)
	if ed {
		cfg.Ed25519Selector, cfg.Ed25519KeyFile = "of1e", filepath.Join(dir, "ed.pem")
		k, err := CreateKeyFile(cfg.Ed25519KeyFile, Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		dns.add(t, "of1e", "outflow.example", k)
	}
	return cfg
}

func testStore(t testing.TB) Store {
	t.Helper()
	b := bustest.Start(t)
	return Store{KV: b.DKIMKeys}
}

func putTenantKey(t testing.TB, st Store, dns dnsKeys, tenant, domain, selector string, algo Algo, notBefore time.Time) {
	t.Helper()
	k, err := Generate(algo)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Algo: algo, Created: time.Now(), NotBefore: notBefore, PrivateKey: string(pemKey)}
	if err := st.Create(context.Background(), tenant, domain, selector, r); err != nil {
		t.Fatal(err)
	}
	dns.add(t, selector, domain, k)
}

func TestSign_ProviderOnly(t *testing.T) {
	dns := dnsKeys{}
	s, err := New(providerFiles(t, dns, false), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, sigs, err := s.Sign(context.Background(), "demo", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if got := verify(t, dns, out); len(got) != 1 || got[0] != "outflow.example" || len(sigs) != 1 {
		t.Fatalf("signatures by %v (%v), want outflow.example", got, sigs)
	}
	sig := string(out[:bytes.Index(out, []byte("From: Alice"))])
	for _, want := range []string{"a=rsa-sha256", "c=relaxed/relaxed", "h=From:From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:Feedback-ID:List-Unsubscribe"} {
		if !strings.Contains(strings.Join(strings.Fields(sig), ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("signature %q lacks %q", sig, want)
		}
	}
	if !bytes.HasSuffix(out, []byte(testMsg)) {
		t.Error("the message itself changed")
	}
}

func TestSign_TenantAndProvider(t *testing.T) {
	tests := []struct {
		name      string
		ed        bool
		keys      func(t *testing.T, st Store, dns dnsKeys)
		wantAlgos []string // domain/algo of each signature, in order
	}{
		{"no tenant key", false, func(*testing.T, Store, dnsKeys) {}, []string{"outflow.example/rsa"}},
		{"tenant rsa", false, func(t *testing.T, st Store, dns dnsKeys) {
			putTenantKey(t, st, dns, "demo", "tenant.example", "s1", RSA, time.Time{})
		}, []string{"tenant.example/rsa", "outflow.example/rsa"}},
		{"tenant rsa and ed25519, provider ed25519", true, func(t *testing.T, st Store, dns dnsKeys) {
			putTenantKey(t, st, dns, "demo", "tenant.example", "s1", RSA, time.Time{})
			putTenantKey(t, st, dns, "demo", "tenant.example", "s1e", Ed25519, time.Time{})
		}, []string{"tenant.example/rsa", "tenant.example/ed25519", "outflow.example/rsa", "outflow.example/ed25519"}},
		{"key of another tenant is not used", false, func(t *testing.T, st Store, dns dnsKeys) {
			putTenantKey(t, st, dns, "other", "tenant.example", "s1", RSA, time.Time{})
		}, []string{"outflow.example/rsa"}},
		{"key for another domain is not used", false, func(t *testing.T, st Store, dns dnsKeys) {
			putTenantKey(t, st, dns, "demo", "other.example", "s1", RSA, time.Time{})
		}, []string{"outflow.example/rsa"}},
		{"rotation: the new key waits for not_before", false, func(t *testing.T, st Store, dns dnsKeys) {
			putTenantKey(t, st, dns, "demo", "tenant.example", "old", RSA, time.Time{})
			putTenantKey(t, st, dns, "demo", "tenant.example", "new", RSA, time.Now().Add(time.Hour))
		}, []string{"tenant.example/rsa:old", "outflow.example/rsa"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dns := dnsKeys{}
			st := testStore(t)
			tt.keys(t, st, dns)
			s, err := New(providerFiles(t, dns, tt.ed), st.KV, Options{})
			if err != nil {
				t.Fatal(err)
			}
			out, sigs, err := s.Sign(context.Background(), "demo", []byte(testMsg))
			if err != nil {
				t.Fatal(err)
			}
			verify(t, dns, out)
			var got []string
			for _, sg := range sigs {
				g := sg.Domain + "/" + string(sg.Algo)
				if strings.Contains(tt.name, "rotation") && sg.Domain == "tenant.example" {
					g += ":" + sg.Selector
				}
				got = append(got, g)
			}
			if strings.Join(got, " ") != strings.Join(tt.wantAlgos, " ") {
				t.Errorf("signatures %v, want %v", got, tt.wantAlgos)
			}
		})
	}
}

func TestSign_TamperedFails(t *testing.T) {
	dns := dnsKeys{}
	s, err := New(providerFiles(t, dns, true), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := s.Sign(context.Background(), "demo", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []struct{ old, new string }{
		{"Subject: hello", "Subject: hellO"},
		{"Feedback-ID: c1:demo", "Feedback-ID: c2:demo"},
		{"see you.", "see you!"},
		{"From: Alice", "From: Alice\r\nFrom: Mallory <m@evil.example>\r\nX-A: Alice"},
	} {
		bad := bytes.Replace(out, []byte(tamper.old), []byte(tamper.new), 1)
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(bad), &dkim.VerifyOptions{LookupTXT: dns.lookup})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Errorf("after %q → %q, signature d=%s still verifies", tamper.old, tamper.new, v.Domain)
			}
		}
	}
}

func TestNew_KeyFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.ProviderDomain, cfg.Selector, cfg.KeyFile = "outflow.example", "of1", filepath.Join(dir, "rsa.pem")

	if _, err := New(cfg, nil, Options{}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "dkim.key_file") {
		t.Errorf("missing key file: %v, want a not-exist error naming dkim.key_file", err)
	}
	cfg.CreateKeys = true
	if _, err := New(cfg, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created key file: %v, %v, want mode 0600", fi.Mode(), err)
	}
	if err := os.Chmod(cfg.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil, Options{}); !errors.Is(err, ErrKeyFileMode) {
		t.Errorf("world-readable key file: %v, want ErrKeyFileMode", err)
	}
	os.Chmod(cfg.KeyFile, 0o600)
	cfg.Ed25519Selector, cfg.Ed25519KeyFile = "of1e", cfg.KeyFile // an RSA key where Ed25519 is expected
	if _, err := New(cfg, nil, Options{}); err == nil || !strings.Contains(err.Error(), "dkim.ed25519_key_file") {
		t.Errorf("RSA key as Ed25519 key: %v, want an error naming dkim.ed25519_key_file", err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{ProviderDomain: "outflow.example", Selector: "s1", KeyFile: "k.pem", CacheTTL: time.Minute}
	tests := []struct {
		give    func(c *Config)
		wantErr string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { *c = DefaultConfig() }, ""},
		{func(c *Config) { c.Selector = "" }, "dkim.selector"},
		{func(c *Config) { c.Selector = "a.b" }, "dkim.selector"},
		{func(c *Config) { c.KeyFile = "" }, "dkim.key_file"},
		{func(c *Config) { c.ProviderDomain = "Outflow.Example" }, "dkim.provider_domain"},
		{func(c *Config) { c.Ed25519Selector = "e1" }, "dkim.ed25519"},
		{func(c *Config) { c.Ed25519Selector, c.Ed25519KeyFile = "s1", "e.pem" }, "dkim.ed25519_selector"},
		{func(c *Config) { c.CacheTTL = 0 }, "dkim.cache_ttl"},
	}
	for i, tt := range tests {
		c := ok
		tt.give(&c)
		err := c.Validate()
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("case %d: Validate(%+v) = %v, want error naming %q", i, c, err, tt.wantErr)
		}
	}
}

func TestSplitTXT(t *testing.T) {
	k, _ := Generate(RSA)
	txt, err := TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	parts := SplitTXT(txt)
	if len(parts) < 2 || strings.Join(parts, "") != txt {
		t.Fatalf("SplitTXT of %d bytes: %d parts", len(txt), len(parts))
	}
	for _, p := range parts {
		if len(p) > 255 {
			t.Errorf("part of %d bytes", len(p))
		}
	}
}

func TestRecordNeverLogsKey(t *testing.T) {
	r := Record{Algo: RSA, PrivateKey: "-----BEGIN PRIVATE KEY-----SECRET"}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "key", r)
	if strings.Contains(buf.String(), "SECRET") || strings.Contains(r.String(), "SECRET") {
		t.Errorf("private key in log output: %s / %s", buf.String(), r)
	}
}

func BenchmarkSign(b *testing.B) {
	for _, ed := range []bool{false, true} {
		name := "rsa"
		if ed {
			name = "rsa+ed25519"
		}
		b.Run(name, func(b *testing.B) {
			s, err := New(providerFiles(b, dnsKeys{}, ed), nil, Options{})
			if err != nil {
				b.Fatal(err)
			}
			msg := []byte(testMsg + strings.Repeat("a line of body text, about sixty characters long.....\r\n", 300))
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, _, err := s.Sign(context.Background(), "demo", msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ed25519", func(b *testing.B) {
		k, _ := Generate(Ed25519)
		s := &Signer{provider: []signingKey{{domain: "outflow.example", selector: "e", algo: Ed25519, key: k}}, cache: map[string]cached{}}
		msg := []byte(testMsg)
		for b.Loop() {
			if _, _, err := s.Sign(context.Background(), "demo", msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSign_StoreDown(t *testing.T) {
	dns := dnsKeys{}
	ns := natstest.Start(t)
	b := bustest.ConnectTo(t, ns.ClientURL(), nil)
	st := Store{KV: b.DKIMKeys}
	putTenantKey(t, st, dns, "demo", "tenant.example", "s1", RSA, time.Time{})
	now := time.Now()
	s, err := New(providerFiles(t, dns, false), st.KV, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, sigs, err := s.Sign(context.Background(), "demo", []byte(testMsg)); err != nil || len(sigs) != 2 {
		t.Fatalf("with the store up: %v, %v; want tenant and provider signatures", sigs, err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	now = now.Add(2 * time.Minute) // past the cache TTL: the store is asked again and fails
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	out, sigs, err := s.Sign(ctx, "demo", []byte(testMsg))
	if err != nil || len(sigs) != 2 || sigs[0].Domain != "tenant.example" {
		t.Fatalf("store down, keys cached: %v, %v; want the cached tenant key to keep signing", sigs, err)
	}
	verify(t, dns, out)
	msg := strings.Replace(testMsg, "alice@tenant.example", "alice@uncached.example", 1)
	if _, _, err := s.Sign(ctx, "demo", []byte(msg)); err == nil {
		t.Error("store down, nothing cached: signed anyway; want an error (a temporary failure, not an unaligned message)")
	}
}
