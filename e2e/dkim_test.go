//go:build integration

package e2e

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/dkimsign"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/smtpload"
	"github.com/outflowmail/outflow/pkg/smtptest"
	"github.com/outflowmail/outflow/pkg/verp"
)

// pyVerify verifies every DKIM-Signature of a message with python3-dkim, an
// implementation independent of ours, answering its key queries from a
// JSON map name → TXT value (the test's keys) instead of DNS. It prints one
// line per signature and exits 1 unless there is at least one and all pass.
const pyVerify = `import dkim, json, sys
msg = open(sys.argv[1], 'rb').read()
keys = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    v = keys.get(name.decode().rstrip('.'))
    return v.encode() if v else None
d = dkim.DKIM(msg, minkey=1024)
n = len([1 for k, _ in d.headers if k.lower() == b'dkim-signature'])
ok = n > 0
for i in range(n):
    try:
        res = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        res = False
        print('error', e)
    ok = ok and res
    print('d=%s s=%s a=%s h=%s %s' % (d.domain.decode(), d.selector.decode(),
          d.signature_fields.get(b'a', b'').decode(), b':'.join(d.include_headers).decode(),
          'pass' if res else 'fail'))
sys.exit(0 if ok else 1)
`

// pythonDKIM runs pyVerify on msg; pass is whether every signature verified.
func pythonDKIM(t *testing.T, dir string, keys map[string]string, msg []byte) (lines []string, pass bool) {
	t.Helper()
	script, msgFile, keyFile := filepath.Join(dir, "verify.py"), filepath.Join(dir, "msg.eml"), filepath.Join(dir, "keys.json")
	kj, _ := json.Marshal(keys)
	for f, b := range map[string][]byte{script: []byte(pyVerify), msgFile: msg, keyFile: kj} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("/usr/bin/python3", script, msgFile, keyFile).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("python3-dkim: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), err == nil
}

// zoneLineRE reads the TXT record "outflow ctl dkim generate" prints.
var (
	zoneLineRE = regexp.MustCompile(`(?m)^(\S+)\. IN TXT \( (.*) \)$`)
	quotedRE   = regexp.MustCompile(`"([^"]*)"`)
)

// ctlDKIM runs "outflow ctl dkim ARGS" against natsURL and returns the TXT
// records it printed (name → value).
func ctlDKIM(t *testing.T, natsURL string, wantErr bool, args ...string) (string, map[string]string) {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"ctl", "-nats", natsURL, "dkim"}, args...)...).CombinedOutput()
	if (err != nil) != wantErr {
		t.Fatalf("ctl dkim %s: %v (want error: %v)\n%s", strings.Join(args, " "), err, wantErr, out)
	}
	recs := map[string]string{}
	for _, m := range zoneLineRE.FindAllStringSubmatch(string(out), -1) {
		var v strings.Builder
		for _, part := range quotedRE.FindAllStringSubmatch(m[2], -1) {
			v.WriteString(part[1])
		}
		recs[m[1]] = v.String()
	}
	return string(out), recs
}

// TestDKIM_ThroughThePipelineVerifiedByPython sends a message through
// ingest, classifier, router and sender to an SMTP receiver, with a tenant
// key made by "outflow ctl dkim generate" and provider keys from files, and
// has python3-dkim verify every signature of what arrived — once with RSA
// keys only, once with Ed25519 signatures added. It also checks the VERP
// MAIL FROM of each recipient and the Feedback-ID, and that python3-dkim
// fails the message once a signed header is changed.
func TestDKIM_ThroughThePipelineVerifiedByPython(t *testing.T) {
	tests := []struct {
		name     string
		ed25519  bool
		wantSigs []string // d=/a= of each signature
	}{
		{"rsa", false, []string{"e2e.example/rsa-sha256", "outflow.e2e.test/rsa-sha256"}},
		{"rsa+ed25519", true, []string{"e2e.example/rsa-sha256", "e2e.example/ed25519-sha256", "outflow.e2e.test/rsa-sha256", "outflow.e2e.test/ed25519-sha256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ns := natstest.Start(t)
			mx := smtptest.Start(t, smtptest.Options{})
			submit := freeAddr(t)
			cfg := pipelineConfig(t, ns.ClientURL(), "127.0.0.1:9", mx.Addr(), submit)
			keys := map[string]string{} // DNS name → TXT value, for python's dnsfunc

			// Provider keys: files of mode 0600 created at start; their
			// public halves are read back from the files.
			id := &cfg.Sender.Identity
			id.ProviderID = "e2e-provider"
			id.DKIM.ProviderDomain, id.DKIM.Selector, id.DKIM.KeyFile = "outflow.e2e.test", "p1", filepath.Join(dir, "p1.pem")
			id.DKIM.CreateKeys = true
			if tt.ed25519 {
				id.DKIM.Ed25519Selector, id.DKIM.Ed25519KeyFile = "p1e", filepath.Join(dir, "p1e.pem")
			}
			id.VERP = verp.Config{Domain: "bounce.e2e.test", Secrets: []string{"e2e-verp-secret-0123456789"}, PerRecipient: true}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}

			ctx := runInProcess(t, cfg, []string{"sender", "router", "classifier", "ingest"})
			waitListening(t, submit, 30*time.Second)
			for sel, f := range map[string]string{"p1": id.DKIM.KeyFile, "p1e": id.DKIM.Ed25519KeyFile} {
				if f == "" {
					continue
				}
				// The sender creates it as it starts, maybe after ingest.
				var k crypto.Signer
				eventually(t, 10*time.Second, "provider key file "+f, func() (bool, string) {
					var err error
					k, _, err = dkimsign.LoadKeyFile(f)
					return err == nil, fmt.Sprint(err)
				})
				keys[dkimsign.RecordName(sel, "outflow.e2e.test")], _ = dkimsign.TXTRecord(k.Public())
			}

			// The tenant's keys, as an operator makes them.
			_, rec := ctlDKIM(t, ns.ClientURL(), false, "generate", tenantID, "e2e.example", "--selector", "t1")
			if tt.ed25519 {
				_, rec2 := ctlDKIM(t, ns.ClientURL(), false, "generate", tenantID, "e2e.example", "--selector", "t1e", "--algo", "ed25519")
				for k, v := range rec2 {
					rec[k] = v
				}
				out, shown := ctlDKIM(t, ns.ClientURL(), false, "show", tenantID, "e2e.example", "--selector", "t1e")
				if shown["t1e._domainkey.e2e.example"] != rec["t1e._domainkey.e2e.example"] || strings.Contains(out, "PRIVATE") {
					t.Errorf("dkim show prints %q, want the record generate printed and no private key", out)
				}
			} else {
				if out, _ := ctlDKIM(t, ns.ClientURL(), true, "generate", tenantID, "e2e.example", "--selector", "t1"); !strings.Contains(out, "exists") {
					t.Errorf("second generate with one selector: %q, want an exists error", out)
				}
				if out, _ := ctlDKIM(t, ns.ClientURL(), true, "generate", tenantID, "not-verified.example"); !strings.Contains(out, "verified domains") {
					t.Errorf("generate for an unverified domain: %q, want a refusal", out)
				}
				if out, _ := ctlDKIM(t, ns.ClientURL(), false, "list", tenantID); !strings.Contains(out, "e2e.example\tt1\trsa") {
					t.Errorf("dkim list: %q", out)
				}
			}
			if len(rec) != 1+btoi(tt.ed25519) {
				t.Fatalf("ctl printed records %v", rec)
			}
			for k, v := range rec {
				keys[k] = v
			}

			rcpts := []string{"bob@example.net", "carol@example.net"}
			body := "From: Sender <sender@e2e.example>\r\nTo: bob@example.net, carol@example.net\r\n" +
				"Subject: DKIM through the pipeline\r\nDate: Sun, 29 Nov 2026 07:00:00 +0000\r\n" +
				"Message-ID: <dkim-e2e@e2e.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
				"List-Unsubscribe: <mailto:unsub@e2e.example>\r\n" +
				"X-Campaign-ID: autumn:2026\r\nFeedback-ID: forged:other:shared:e2e-provider\r\n\r\n" +
				"Hello Bob and Carol,\r\nthis is a plain message about the weather and our meeting on Monday.\r\n"
			res := smtpload.Run(ctx, smtpload.Options{Addr: submit, Sessions: 1, User: tenantID, Pass: tenantPass},
				[]smtpload.Message{{Key: "dkim", From: "sender@e2e.example", To: rcpts, Data: []byte(body)}})
			if !res[0].Accepted {
				t.Fatalf("submission refused: %v", res[0].Err)
			}
			got := mx.Wait(t, 2)

			// Per-recipient VERP: one transaction each, a return path
			// that decodes to this message and that recipient.
			codec, err := verp.New(id.VERP)
			if err != nil {
				t.Fatal(err)
			}
			msgID := regexp.MustCompile(`with ESMTPS?A? id ([0-9a-f]{32})`).FindSubmatch(got[0].Data)
			if msgID == nil {
				t.Fatalf("no ingest Received header with the message id in\n%s", got[0].Data)
			}
			var gotRcpts []string
			for _, m := range got {
				if len(m.Rcpts) != 1 {
					t.Fatalf("transaction with recipients %v, want one each (per-recipient VERP)", m.Rcpts)
				}
				tok, err := codec.Decode(m.From)
				want := verp.Token{MsgID: string(msgID[1]), Tenant: tenantID, Rcpt: m.Rcpts[0]}
				if err != nil || tok != want {
					t.Errorf("MAIL FROM %s decodes to %+v, %v; want %+v", m.From, tok, err, want)
				}
				gotRcpts = append(gotRcpts, m.Rcpts[0])
				if !bytes.Equal(m.Data, got[0].Data) {
					t.Error("recipients received different bytes: the message was signed per recipient, want once per job")
				}
			}
			if slices.Sort(gotRcpts); !slices.Equal(gotRcpts, rcpts) {
				t.Errorf("recipients %v, want %v", gotRcpts, rcpts)
			}

			msg := got[0].Data
			if n := len(regexp.MustCompile(`(?im)^feedback-id:`).FindAll(msg, -1)); n != 1 || !bytes.Contains(msg, []byte("Feedback-ID: autumn2026:e2e:shared:e2e-provider\r\n")) {
				t.Errorf("want exactly one Feedback-ID, ours (found %d):\n%s", n, msg)
			}
			lines, pass := pythonDKIM(t, dir, keys, msg)
			t.Logf("python3-dkim:\n%s", strings.Join(lines, "\n"))
			if !pass {
				t.Fatalf("python3-dkim failed the message:\n%s\n%s", strings.Join(lines, "\n"), msg)
			}
			var sigs []string
			for _, l := range lines {
				f := strings.Fields(l)
				if len(f) != 5 {
					continue
				}
				sigs = append(sigs, strings.TrimPrefix(f[0], "d=")+"/"+strings.TrimPrefix(f[2], "a="))
				h := strings.Split(strings.TrimPrefix(f[3], "h="), ":")
				for _, want := range []string{"from", "to", "subject", "date", "message-id", "mime-version", "content-type", "feedback-id", "list-unsubscribe"} {
					if !slices.Contains(h, want) {
						t.Errorf("%s does not sign %s", f[0], want)
					}
				}
				if n := strings.Count(f[3], "from"); n < 2 {
					t.Errorf("%s: From signed %d times, want oversigned", f[0], n)
				}
			}
			if !slices.Equal(sigs, tt.wantSigs) {
				t.Errorf("signatures %v, want %v", sigs, tt.wantSigs)
			}

			// A changed signed header or body must fail every signature.
			for _, tamper := range [][2]string{
				{"Subject: DKIM through", "Subject: DKIM thru"},
				{"Feedback-ID: autumn2026", "Feedback-ID: autumn2027"},
				{"our meeting on Monday", "our meeting on Tuesday"},
			} {
				bad := bytes.Replace(msg, []byte(tamper[0]), []byte(tamper[1]), 1)
				if bytes.Equal(bad, msg) {
					t.Fatalf("tamper %q found nothing to change", tamper[0])
				}
				lines, pass := pythonDKIM(t, dir, keys, bad)
				if pass || slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, " pass") }) {
					t.Errorf("after %q → %q python3-dkim still passes:\n%s", tamper[0], tamper[1], strings.Join(lines, "\n"))
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
