package router

import (
	"slices"
	"testing"

	"github.com/outflowmail/outflow/pkg/pool"
	"github.com/outflowmail/outflow/pkg/tenant"
)

var testPools = pool.Set{
	{Name: "shared", Purpose: pool.Shared, IPs: []pool.IP{{Address: "127.0.0.2", EHLO: "a.test"}}},
	{Name: "high-risk", Purpose: pool.HighRisk, IPs: []pool.IP{{Address: "127.0.0.3", EHLO: "b.test"}}},
	{Name: "acme", Purpose: pool.Dedicated, IPs: []pool.IP{{Address: "127.0.0.4", EHLO: "c.test"}}},
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		giveLabel  string
		giveState  tenant.State
		giveDedic  string
		wantPool   string
		wantReason string
	}{
		{"clean good", "clean", tenant.StateGood, "", "shared", ReasonDefault},
		{"suspect stays shared", "suspect", tenant.StateGood, "", "shared", ReasonDefault},
		{"spam", "spam", tenant.StateGood, "", "high-risk", ReasonVerdict},
		{"malicious", "malicious", tenant.StateGood, "", "high-risk", ReasonVerdict},
		{"probation", "clean", tenant.StateProbation, "", "high-risk", ReasonProbation},
		{"throttled still shared", "clean", tenant.StateThrottled, "", "shared", ReasonDefault},
		{"dedicated", "clean", tenant.StateGood, "acme", "acme", ReasonDedicated},
		{"spam beats dedicated", "spam", tenant.StateGood, "acme", "high-risk", ReasonVerdict},
		{"probation beats dedicated", "clean", tenant.StateProbation, "acme", "high-risk", ReasonProbation},
		{"unknown dedicated falls back", "clean", tenant.StateGood, "gone", "shared", ReasonDefault},
		{"unscored", "", tenant.StateGood, "", "shared", ReasonDefault},
	}
	for _, tt := range tests {
		p, reason := Decide(testPools, tt.giveLabel, tenant.Policy{State: tt.giveState}, tt.giveDedic)
		if p.Name != tt.wantPool || reason != tt.wantReason {
			t.Errorf("%s: Decide(%q, %s, %q) = %s, %s; want %s, %s", tt.name, tt.giveLabel, tt.giveState, tt.giveDedic, p.Name, reason, tt.wantPool, tt.wantReason)
		}
	}
}

func TestSplitByDomain(t *testing.T) {
	domains, by := SplitByDomain([]string{"a@X.example", "b@y.example", "c@x.example"})
	if !slices.Equal(domains, []string{"x.example", "y.example"}) {
		t.Errorf("domains = %v", domains)
	}
	if !slices.Equal(by["x.example"], []string{"a@X.example", "c@x.example"}) || len(by["y.example"]) != 1 {
		t.Errorf("groups = %v", by)
	}
}
