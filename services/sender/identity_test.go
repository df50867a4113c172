package sender

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/outflowmail/outflow/pkg/dkimsign"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/verp"
)

const identityMsg = "From: Alice <alice@demo.example>\r\n" +
	"To: bob@example.net, carol@example.net\r\n" +
	"Subject: spring sale\r\n" +
	"X-Campaign-ID: spring:2026\r\n" +
	"Feedback-ID: forged:other-tenant:shared:outflow\r\n" +
	"Message-ID: <1@demo.example>\r\n" +
	"\r\n" +
	"Hello.\r\n"

func testIdentity(t *testing.T, perRcpt bool) (*identity, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultIdentity()
	cfg.ProviderID = "outflow"
	cfg.DKIM.ProviderDomain, cfg.DKIM.Selector, cfg.DKIM.KeyFile = "outflow.example", "of1", filepath.Join(dir, "rsa.pem")
	cfg.DKIM.Ed25519Selector, cfg.DKIM.Ed25519KeyFile = "of1e", filepath.Join(dir, "ed.pem")
	cfg.VERP = verp.Config{Domain: "bounce.outflow.example", Secrets: []string{"a-test-secret-of-some-length"}, PerRecipient: perRcpt}
	dns := map[string]string{}
	for _, f := range []struct {
		sel, path string
		algo      dkimsign.Algo
	}{{"of1", cfg.DKIM.KeyFile, dkimsign.RSA}, {"of1e", cfg.DKIM.Ed25519KeyFile, dkimsign.Ed25519}} {
		k, err := dkimsign.CreateKeyFile(f.path, f.algo)
		if err != nil {
			t.Fatal(err)
		}
		dns[dkimsign.RecordName(f.sel, "outflow.example")] = txt(t, k)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	id, err := newIdentity(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return id, dns
}

func txt(t *testing.T, k crypto.Signer) string {
	t.Helper()
	v, err := dkimsign.TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPrepare(t *testing.T) {
	id, dns := testIdentity(t, true)
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "demo", From: "alice@demo.example", Rcpts: []string{"bob@example.net", "carol@example.net"}}
	rp, out, err := id.prepare(context.Background(), env, "shared", []byte(identityMsg))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(out, []byte("Feedback-ID:")); n != 1 || !bytes.Contains(out, []byte("Feedback-ID: spring2026:demo:shared:outflow\r\n")) {
		t.Errorf("want exactly our Feedback-ID (%d found) in\n%s", n, out)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(out), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if v, ok := dns[name]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("NXDOMAIN " + name)
	}})
	if err != nil || len(vs) != 2 {
		t.Fatalf("verify: %d signatures, %v; want 2 (RSA and Ed25519 of the provider, the tenant has no key)", len(vs), err)
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "outflow.example" || !containsFold(v.HeaderKeys, "Feedback-ID") {
			t.Errorf("signature d=%s h=%v: %v; want a valid provider signature covering Feedback-ID", v.Domain, v.HeaderKeys, v.Err)
		}
	}
	codec, _ := verp.New(verp.Config{Domain: "bounce.outflow.example", Secrets: []string{"a-test-secret-of-some-length"}})
	for _, rcpt := range env.Rcpts {
		tok, err := codec.Decode(rp(rcpt))
		if want := (verp.Token{MsgID: env.ID, Tenant: "demo", Rcpt: rcpt}); err != nil || tok != want {
			t.Errorf("return path of %s decodes to %+v, %v; want %+v", rcpt, tok, err, want)
		}
	}
	if rp(env.Rcpts[0]) == rp(env.Rcpts[1]) {
		t.Error("per-recipient VERP gave two recipients one return path")
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func TestPrepare_PerMessageVERP(t *testing.T) {
	id, _ := testIdentity(t, false)
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "demo", Rcpts: []string{"bob@example.net", "carol@example.net"}}
	rp, _, err := id.prepare(context.Background(), env, "shared", []byte(identityMsg))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := rp(env.Rcpts[0]), rp(env.Rcpts[1]); a != b || !strings.HasPrefix(a, "bounces+") {
		t.Errorf("per-message VERP: %q and %q, want one bounces+ address", a, b)
	}
}

func TestPrepare_NothingConfigured(t *testing.T) {
	cfg := DefaultIdentity()
	id, err := newIdentity(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rp, out, err := id.prepare(context.Background(), &envelope.Envelope{ID: "x", Tenant: "demo"}, "shared", []byte(identityMsg))
	if err != nil || rp != nil {
		t.Fatalf("prepare = %v, %v; want no return path function", rp != nil, err)
	}
	if bytes.Contains(out, []byte("Feedback-ID")) {
		t.Error("a tenant's Feedback-ID must be removed even without a provider id")
	}
}

func TestIdentityValidate(t *testing.T) {
	tests := []struct {
		give    func(c *Identity)
		wantErr string
	}{
		{func(c *Identity) {}, ""},
		{func(c *Identity) { c.ProviderID = "out:flow" }, "sender.provider_id"},
		{func(c *Identity) { c.VERP.Domain = "bounce.example" }, "sender.verp.secrets"},
		{func(c *Identity) { c.DKIM.ProviderDomain = "outflow.example" }, "sender.dkim.selector"},
	}
	for i, tt := range tests {
		c := DefaultIdentity()
		tt.give(&c)
		err := c.validate()
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("case %d: validate() = %v, want error naming %q", i, err, tt.wantErr)
		}
	}
}

func TestEndHeaderAtNonField(t *testing.T) {
	tests := []struct{ give, want string }{
		{"From: a@b\r\nSubject: x\r\n\r\nbody\r\n", "From: a@b\r\nSubject: x\r\n\r\nbody\r\n"},
		{"From: a@b\r\n folded\r\n\r\nbody\r\n", "From: a@b\r\n folded\r\n\r\nbody\r\n"},
		{"From: a@b\r\nbogus line\r\nSubject: x\r\n\r\nbody\r\n", "From: a@b\r\n\r\nbogus line\r\nSubject: x\r\n\r\nbody\r\n"},
		{"just text\r\n", "\r\njust text\r\n"},
		{"From: a@b\nSubject: x", "From: a@b\nSubject: x"},
		{"From: a@b\r\nBad Name: x\r\n", "From: a@b\r\n\r\nBad Name: x\r\n"},
	}
	for _, tt := range tests {
		if got := string(endHeaderAtNonField([]byte(tt.give))); got != tt.want {
			t.Errorf("endHeaderAtNonField(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestPrepare_MalformedHeaderStillSigned(t *testing.T) {
	id, _ := testIdentity(t, true)
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "demo", Rcpts: []string{"bob@example.net"}}
	msg := "From: a@demo.example\r\nthis is not a header\r\nFeedback-ID: forged:x:y:outflow\r\n\r\nbody\r\n"
	_, out, err := id.prepare(context.Background(), env, "shared", []byte(msg))
	if err != nil {
		t.Fatalf("prepare(malformed header) = %v, want it repaired and signed", err)
	}
	if !bytes.Contains(out, []byte("DKIM-Signature:")) || !bytes.Contains(out, []byte("Feedback-ID: none:demo:shared:outflow\r\n")) {
		t.Errorf("not signed or no Feedback-ID:\n%s", out)
	}
}

// FuzzSetFeedbackID feeds tenant-written messages to the header rewrite:
// it must never panic, and whatever it returns has exactly our Feedback-ID
// in its header.
func FuzzSetFeedbackID(f *testing.F) {
	f.Add([]byte(identityMsg))
	f.Add([]byte("From: a@b\r\nbogus\r\n\r\n"))
	f.Add([]byte("Feedback-ID: x\r\n\tfolded\r\nfeedback-id: y\r\n\r\nbody"))
	id := &identity{providerID: "outflow"}
	env := &envelope.Envelope{ID: "x", Tenant: "demo"}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := id.setFeedbackID(env, "shared", body)
		if err != nil {
			return
		}
		hdr := out
		if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 {
			hdr = out[:i+2]
		}
		if n := bytes.Count(bytes.ToLower(hdr), []byte("\nfeedback-id:")) + btoi(bytes.HasPrefix(bytes.ToLower(hdr), []byte("feedback-id:"))); n != 1 {
			t.Fatalf("%d Feedback-ID fields in the header of %q", n, out)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
