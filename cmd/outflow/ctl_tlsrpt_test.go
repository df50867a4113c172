package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/dnstest"
	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/natstest"
	"github.com/outflowmail/outflow/pkg/tlsrpt"
)

// TestCtlTLSRPT: "ctl tlsrpt report" writes one report per domain that
// publishes a _smtp._tls record, from the day's tls events.
func TestCtlTLSRPT(t *testing.T) {
	ns := natstest.Start(t)
	b := bustest.ConnectTo(t, ns.ClientURL(), nil)
	now := time.Now().UTC()
	publish := func(id, domain, result string) {
		t.Helper()
		e := &events.Event{ID: id, Type: events.TypeTLS, Time: now, TLS: &events.TLS{
			PolicyDomain: domain, PolicyType: events.TLSPolicyNone, Result: result, MX: "mx." + domain, SendingIP: "127.0.0.2"}}
		if err := b.PublishEvent(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	publish("t1", "reports.example", events.TLSSuccess)
	publish("t2", "reports.example", "starttls-not-supported")
	publish("t3", "quiet.example", events.TLSSuccess) // publishes no _smtp._tls record
	ds := dnstest.Start(t)
	ds.AddTXT("_smtp._tls.reports.example", "v=TLSRPTv1; rua=mailto:tlsrpt@reports.example")

	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := runCtl(t.Context(), []string{"-nats", ns.ClientURL(), "tlsrpt", "report", "--date", now.Format(time.DateOnly),
		"--out", dir, "--resolver", ds.Addr}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("ctl tlsrpt report: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "3 TLS sessions, 2 policy domains, 1 reports written, 1 domains without") {
		t.Errorf("summary line: %s", stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 || !strings.HasPrefix(filepath.Base(files[0]), "outflow!reports.example!") {
		t.Fatalf("files = %v, want one report for reports.example", files)
	}
	if !strings.Contains(stdout.String(), "mailto:tlsrpt@reports.example") {
		t.Errorf("stdout %q does not name the rua", stdout.String())
	}
	data, _ := os.ReadFile(files[0])
	var r tlsrpt.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Policies) != 1 || r.Policies[0].Summary != (tlsrpt.Summary{Successful: 1, Failed: 1}) {
		t.Errorf("report policies = %+v", r.Policies)
	}

	if err := runCtl(t.Context(), []string{"-nats", ns.ClientURL(), "tlsrpt", "report", "--date", "yesterday"}, nil, &stdout, &stderr); err == nil ||
		!strings.Contains(err.Error(), "--date") {
		t.Errorf("bad --date: err = %v, want one naming --date", err)
	}
}
