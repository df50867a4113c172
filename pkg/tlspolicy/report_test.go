package tlspolicy_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/bus"
	"github.com/outflowmail/outflow/pkg/bustest"
	"github.com/outflowmail/outflow/pkg/delivery"
	"github.com/outflowmail/outflow/pkg/tlspolicy"
	"github.com/outflowmail/outflow/pkg/tlsrpt"
)

// TestReport_FromSessions runs TLS sessions that succeed and fail, with
// their results stored as tls events in a real JetStream events stream,
// and checks the day's RFC 8460 reports: field names as the RFC spells
// them, and counts equal to the sessions run.
func TestReport_FromSessions(t *testing.T) {
	b := bustest.Start(t)

	w := newWorld(t)
	self := selfSigned(t, "mx1.example.net")
	w.mx(t, "mx1.example.net", "127.0.0.1", &self)
	w.mx(t, "mx1.example.org", "127.0.0.10", nil) // no STARTTLS
	w.dns.AddMX("example.net", 10, "mx1.example.net")
	w.dns.AddMX("example.org", 10, "mx1.example.org")
	w.dns.AddTXT("_smtp._tls.example.net", "v=TLSRPTv1; rua=mailto:tlsrpt@example.net")
	w.dns.AddTXT("_smtp._tls.example.org", "v=TLSRPTv1; rua=https://reports.example.org/v1/tlsrpt")
	cfg := config()
	cfg.Policies = map[string]delivery.TLSMode{"example.org": delivery.TLSRequired}
	p, err := tlspolicy.New(t.Context(), cfg, tlspolicy.Options{Resolver: w.res, Publish: b.PublishEvent})
	if err != nil {
		t.Fatal(err)
	}
	const okSessions, failedSessions = 3, 2
	for range okSessions {
		if got := send(t, w.deliverer(p), "example.net"); got.Err != nil {
			t.Fatalf("example.net: %v", got.Err)
		}
	}
	for range failedSessions {
		if got := send(t, w.deliverer(p), "example.org"); got.Err == nil {
			t.Fatal("example.org: delivered without STARTTLS under required")
		}
	}

	results, err := tlsrpt.Collect(t.Context(), b.JS, bus.StreamEvents, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != okSessions+failedSessions {
		t.Fatalf("collected %d results, want %d", len(results), okSessions+failedSessions)
	}
	org := tlsrpt.Org{Name: "Outflow Test", Contact: "mailto:postmaster@outflow.test", Domain: "outflow.test"}
	reports := tlsrpt.Build(org, time.Now(), results)
	if got := slices.Sorted(maps.Keys(reports)); !slices.Equal(got, []string{"example.net", "example.org"}) {
		t.Fatalf("reports for %v, want example.net and example.org", got)
	}
	for _, domain := range []string{"example.net", "example.org"} {
		rec, ok, err := tlsrpt.Lookup(t.Context(), w.res, domain)
		if err != nil || !ok || len(rec.RUA) != 1 {
			t.Errorf("Lookup(%s) = %+v, %v, %v; want one rua", domain, rec, ok, err)
		}
	}

	// The JSON, read back generically, has the RFC 8460 4.4 fields.
	var net, org2 map[string]any
	decode(t, reports["example.net"], &net)
	decode(t, reports["example.org"], &org2)
	wantKeys(t, "report", net, "organization-name", "date-range", "contact-info", "report-id", "policies")
	wantKeys(t, "date-range", net["date-range"].(map[string]any), "start-datetime", "end-datetime")
	day := time.Now().UTC().Format(time.DateOnly)
	if got := net["date-range"].(map[string]any)["start-datetime"]; got != day+"T00:00:00Z" {
		t.Errorf("start-datetime = %v, want %sT00:00:00Z", got, day)
	}
	if got := net["date-range"].(map[string]any)["end-datetime"]; got != day+"T23:59:59Z" {
		t.Errorf("end-datetime = %v, want %sT23:59:59Z", got, day)
	}

	pn := policies(t, net)
	wantKeys(t, "example.net policy result", pn, "policy", "summary")
	wantKeys(t, "example.net policy", pn["policy"].(map[string]any), "policy-type", "policy-domain")
	wantSummary(t, "example.net", pn, okSessions, 0)

	po := policies(t, org2)
	wantKeys(t, "example.org policy result", po, "policy", "summary", "failure-details")
	wantSummary(t, "example.org", po, 0, failedSessions)
	details := po["failure-details"].([]any)
	if len(details) != 1 {
		t.Fatalf("example.org failure-details = %v, want one group", details)
	}
	d := details[0].(map[string]any)
	wantKeys(t, "failure-details[0]", d, "result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-ip",
		"failed-session-count", "failure-reason-code")
	if d["result-type"] != "starttls-not-supported" || d["failed-session-count"] != float64(failedSessions) ||
		d["receiving-mx-hostname"] != "mx1.example.org" || d["sending-mta-ip"] != source.Address || d["receiving-ip"] != "127.0.0.10" {
		t.Errorf("failure detail = %v", d)
	}
	if got := tlsrpt.FileName(org, "example.org", reports["example.org"]); got[:len("outflow.test!example.org!")] != "outflow.test!example.org!" {
		t.Errorf("FileName = %q", got)
	}
}

func decode(t *testing.T, r *tlsrpt.Report, v any) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func wantKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, slices.Sorted(slices.Values(keys))) {
		t.Errorf("%s has fields %v, want %v", what, got, slices.Sorted(slices.Values(keys)))
	}
}

func policies(t *testing.T, report map[string]any) map[string]any {
	t.Helper()
	ps, _ := report["policies"].([]any)
	if len(ps) != 1 {
		t.Fatalf("policies = %v, want one", report["policies"])
	}
	return ps[0].(map[string]any)
}

func wantSummary(t *testing.T, what string, pr map[string]any, ok, failed int) {
	t.Helper()
	s := pr["summary"].(map[string]any)
	wantKeys(t, what+" summary", s, "total-successful-session-count", "total-failure-session-count")
	if s["total-successful-session-count"] != float64(ok) || s["total-failure-session-count"] != float64(failed) {
		t.Errorf("%s summary = %v, want %d successful, %d failed", what, s, ok, failed)
	}
}
