//go:build integration

package e2e

import (
	"os"
	"os/exec"
	"testing"
)

// TestSmoke_MakeRunWithSwaks runs deploy/local/smoke.sh: `make run`'s
// pipeline with its dev config on the fixed dev ports, one message submitted
// by swaks, delivered from 127.0.0.2 into .data/sink and recorded in
// ClickHouse.
func TestSmoke_MakeRunWithSwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swaks is missing in CI")
		}
		t.Skip("swaks is not installed (apt-get install swaks)")
	}
	cmd := exec.Command("bash", "deploy/local/smoke.sh")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	t.Logf("smoke.sh:\n%s", out)
	if err != nil {
		t.Fatalf("smoke.sh: %v", err)
	}
}
