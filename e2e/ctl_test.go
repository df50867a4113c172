//go:build integration

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCtl_TenantLifecycle drives "outflow ctl" against a standalone NATS
// server as an operator would.
func TestCtl_TenantLifecycle(t *testing.T) {
	natsAddr := freeAddr(t)
	cfgPath := writeConfig(t, procConfig{NATSListen: natsAddr, MX: "127.0.0.1:25"})
	startProcess(t, "outflow nats", "nats", "-config", cfgPath)
	waitListening(t, natsAddr, 30*time.Second)
	url := "nats://" + natsAddr
	ctl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"ctl", "-nats", url}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	steps := []struct {
		stdin   string
		args    []string
		wantErr bool
		want    string
	}{
		{"s3cret-password\n", []string{"tenant", "create", "acme", "--password-stdin", "--domain", "Acme.Example", "--client-ip", "10.0.0.0/24"}, false, "created tenant acme"},
		{"s3cret-password\n", []string{"tenant", "create", "acme", "--password-stdin", "--domain", "acme.example"}, true, "exists"},
		{"", []string{"tenant", "create", "bad id", "--client-ip", "10.0.0.0/24"}, true, "tenant id"},
		{"", []string{"tenant", "create", "nopass", "--domain", "x.example"}, true, "--password-stdin or --client-ip"},
		{"", []string{"domain", "add", "acme", "news.acme.example"}, false, "news.acme.example"},
		{"", []string{"domain", "add", "acme", "not a domain"}, true, "not a valid"},
		{"", []string{"tenant", "policy", "acme", "probation", "--reason", "spam burst"}, false, "now probation"},
		{"", []string{"tenant", "policy", "acme", "grounded"}, true, "want good, probation"},
		{"", []string{"tenant", "policy", "ghost", "good"}, true, "not found"},
		{"", []string{"tenant", "list"}, false, "acme\tprobation"},
		{"", []string{"tenant", "show", "acme"}, false, `"reason": "spam burst"`},
	}
	for _, st := range steps {
		out, err := ctl(st.stdin, st.args...)
		if (err != nil) != st.wantErr || !strings.Contains(out, st.want) {
			t.Errorf("ctl %s: err=%v, output %q; want error=%v and output containing %q", strings.Join(st.args, " "), err, out, st.wantErr, st.want)
		}
	}
	out, _ := ctl("", "tenant", "show", "acme")
	for _, want := range []string{`"acme.example"`, `"news.acme.example"`, `"10.0.0.0/24"`, `"password_set": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("tenant show lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "$2a$") {
		t.Errorf("tenant show reveals the password or its hash:\n%s", out)
	}
}
