package tlsrpt_test

import (
	"slices"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/tlsrpt"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		give    string
		wantRUA []string
		wantOK  bool
		wantErr bool
	}{
		{"v=TLSRPTv1; rua=mailto:reports@example.com", []string{"mailto:reports@example.com"}, true, false},
		{"v=TLSRPTv1;rua=mailto:a@example.com,https://r.example.com/tlsrpt", []string{"mailto:a@example.com", "https://r.example.com/tlsrpt"}, true, false},
		{"v=spf1 -all", nil, false, false},
		{"v=TLSRPTv1;", nil, true, true},
		{"v=TLSRPTv1; rua=ftp://example.com/", nil, true, true},
	}
	for _, tt := range tests {
		rec, ok, err := tlsrpt.ParseRecord(tt.give)
		if !slices.Equal(rec.RUA, tt.wantRUA) || ok != tt.wantOK || (err != nil) != tt.wantErr {
			t.Errorf("ParseRecord(%q) = %v, %v, %v; want %v, %v, error %v", tt.give, rec.RUA, ok, err, tt.wantRUA, tt.wantOK, tt.wantErr)
		}
	}
}

// TestBuild_Groups: results split by policy (a changed policy is another
// entry), failures grouped by kind and ends, and counted.
func TestBuild_Groups(t *testing.T) {
	sts1 := events.TLS{PolicyDomain: "example.com", PolicyType: events.TLSPolicySTS,
		PolicyStrings: []string{"version: STSv1", "mode: enforce"}, MXPatterns: []string{"*.example.com"}}
	sts2 := sts1
	sts2.PolicyStrings = []string{"version: STSv1", "mode: testing"}
	with := func(e events.TLS, result, mx, sip string) events.TLS {
		e.Result, e.MX, e.SendingIP = result, mx, sip
		return e
	}
	results := []events.TLS{
		with(sts1, events.TLSSuccess, "mx1.example.com", "192.0.2.1"),
		with(sts1, events.TLSSuccess, "mx1.example.com", "192.0.2.1"),
		with(sts1, "certificate-expired", "mx2.example.com", "192.0.2.1"),
		with(sts1, "certificate-expired", "mx2.example.com", "192.0.2.1"),
		with(sts1, "certificate-expired", "mx2.example.com", "192.0.2.2"),
		with(sts2, "sts-policy-fetch-error", "", ""),
		{PolicyDomain: "", PolicyType: events.TLSPolicyNone, Result: events.TLSSuccess}, // no domain: ignored
	}
	day := time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC)
	reps := tlsrpt.Build(tlsrpt.Org{Name: "Outflow", Contact: "mailto:p@outflow.test"}, day, results)
	if len(reps) != 1 {
		t.Fatalf("Build made %d reports, want 1", len(reps))
	}
	r := reps["example.com"]
	if !r.DateRange.Start.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) || !r.DateRange.End.Equal(time.Date(2026, 11, 28, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("date range = %v", r.DateRange)
	}
	if len(r.Policies) != 2 {
		t.Fatalf("policies = %+v, want 2", r.Policies)
	}
	var enforce, testingPol tlsrpt.PolicyResult
	for _, p := range r.Policies {
		if p.Policy.Strings[1] == "mode: enforce" {
			enforce = p
		} else {
			testingPol = p
		}
	}
	if enforce.Summary != (tlsrpt.Summary{Successful: 2, Failed: 3}) {
		t.Errorf("enforce summary = %+v, want 2 successful, 3 failed", enforce.Summary)
	}
	want := []tlsrpt.FailureDetail{
		{ResultType: "certificate-expired", SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx2.example.com", FailedSessionCount: 2},
		{ResultType: "certificate-expired", SendingMTAIP: "192.0.2.2", ReceivingMXHostname: "mx2.example.com", FailedSessionCount: 1},
	}
	if !slices.Equal(enforce.FailureDetails, want) {
		t.Errorf("enforce failure details = %+v, want %+v", enforce.FailureDetails, want)
	}
	if testingPol.Summary != (tlsrpt.Summary{Failed: 1}) || testingPol.FailureDetails[0].ResultType != "sts-policy-fetch-error" {
		t.Errorf("testing policy = %+v", testingPol)
	}
	again := tlsrpt.Build(tlsrpt.Org{Name: "Outflow", Contact: "mailto:p@outflow.test"}, day, results)
	if again["example.com"].ReportID != r.ReportID {
		t.Errorf("report id changed when built again: %s, %s", r.ReportID, again["example.com"].ReportID)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:reports@example.com")
	f.Add("v=TLSRPTv1;rua=https://r.example/x,mailto:a@b")
	f.Fuzz(func(t *testing.T, s string) {
		rec, ok, err := tlsrpt.ParseRecord(s)
		if err == nil && ok && len(rec.RUA) == 0 {
			t.Fatalf("ParseRecord(%q): accepted without rua", s)
		}
	})
}
