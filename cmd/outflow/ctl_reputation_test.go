//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/chstore"
	"github.com/outflowmail/outflow/pkg/chtest"
	"github.com/outflowmail/outflow/pkg/envelope"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/held"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/tenant"
)

// TestCtlReputation: tenant policy --pin/--unpin, tenant show with the
// figures now from ClickHouse, and held list/release/purge on mail the
// router held.
func TestCtlReputation(t *testing.T) {
	ctx := context.Background()
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	cfgPath := filepath.Join(t.TempDir(), "outflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(`
nats: {url: "`+ns.ClientURL()+`"}
analytics: {clickhouse: {addr: "`+ch.Addr()+`"}, reputation: {windows: [5m, 1h]}}
pools:
  - {name: shared, purpose: shared, ips: [{address: 127.0.0.2, ehlo: a.test}]}
  - {name: high-risk, purpose: high-risk, ips: [{address: 127.0.0.3, ehlo: b.test}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runCtl(ctx, append([]string{"-config", cfgPath}, args...), strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}

	// Figures for tenant show.
	chc := chstore.DefaultConfig()
	chc.Addr = ch.Addr()
	s, err := chstore.Open(ctx, chc)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	v := events.Verdict{Label: "spam", Score: 0.9, Model: "m"}
	if err := s.Insert(ctx, []*events.Event{
		{ID: "m1.verdict", Type: events.TypeVerdict, Time: at, Tenant: "acme", MsgID: "m1", Verdict: &v},
		{ID: "m1.routed", Type: events.TypeRouted, Time: at, Tenant: "acme", MsgID: "m1",
			Routed: &events.Routed{Rcpts: []string{"a@x.example"}, Received: at, Verdict: v, Pool: "high-risk"}},
	}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args    []string
		wantErr bool
		want    string
	}{
		{[]string{"tenant", "create", "acme", "--client-ip", "10.0.0.0/24", "--domain", "acme.example"}, false, "created tenant acme"},
		{[]string{"tenant", "policy", "acme", "suspended", "--reason", "investigating", "--pin"}, false, "now suspended, pinned"},
		{[]string{"tenant", "show", "acme"}, false, `"pinned": true`},
		{[]string{"tenant", "show", "acme"}, false, "acme over 5m0s: 1 messages, spam 100.00% (1/1)"},
		{[]string{"tenant", "policy", "acme", "--unpin"}, false, "acme is suspended, unpinned"},
		{[]string{"tenant", "policy", "acme", "good", "--pin", "--unpin"}, true, "together"},
		{[]string{"tenant", "policy", "acme"}, true, "tenant policy ID STATE"},
		{[]string{"held", "list", "acme"}, false, "0 held messages of acme"},
		{[]string{"held", "list", "Not Valid"}, true, "tenant id"},
		{[]string{"held", "forget", "acme"}, true, "want list, release or purge"},
	}
	for _, st := range steps {
		out, err := ctl(st.args...)
		if (err != nil) != st.wantErr || !strings.Contains(out+errString(err), st.want) {
			t.Fatalf("ctl %v = %v\n%s\nwant error %v and %q", st.args, err, out, st.wantErr, st.want)
		}
	}
	out, _ := ctl("tenant", "show", "acme")
	var shown struct {
		Policy tenant.Policy `json:"policy"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.Policy.Pinned || shown.Policy.State != tenant.StateSuspended ||
		shown.Policy.Reason != "investigating" || shown.Policy.Since.IsZero() {
		t.Errorf("after --unpin: %v %+v", err, shown.Policy)
	}

	// Held mail: two messages put where the router holds them.
	bc := bus.DefaultConfig()
	bc.URL = ns.ClientURL()
	b, err := bus.Connect(ctx, bc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := held.Declare(ctx, b); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "acme", From: "a@acme.example", Rcpts: []string{"r@x.example"}}
		if err := b.PublishMessage(ctx, held.TenantSubject("acme"), env.ID, env, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []struct {
		args []string
		want string
	}{
		{[]string{"held", "list", "acme"}, "2 held messages of acme"},
		{[]string{"held", "release", "acme"}, "released 2 held messages of acme"},
		{[]string{"held", "list", "acme"}, "0 held messages"},
	} {
		if out, err := ctl(st.args...); err != nil || !strings.Contains(out, st.want) {
			t.Fatalf("ctl %v = %v\n%s\nwant %q", st.args, err, out, st.want)
		}
	}
	env := &envelope.Envelope{ID: envelope.NewID(), Tenant: "acme", From: "a@acme.example", Rcpts: []string{"r@x.example"}}
	if err := b.PublishMessage(ctx, held.TenantSubject("acme"), env.ID, env, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if out, err := ctl("held", "purge", "acme"); err != nil || !strings.Contains(out, "purged 1 held messages of acme") {
		t.Fatalf("ctl held purge = %v\n%s", err, out)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
