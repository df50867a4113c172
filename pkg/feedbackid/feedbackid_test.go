package feedbackid

import (
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		campaign, tenant, pool string
		want                   string
	}{
		{"spring-sale", "demo", "shared", "spring-sale:demo:shared:outflow"},
		{"", "demo", "high-risk", "none:demo:high-risk:outflow"},
		{"a:b:c:d", "demo", "shared", "abcd:demo:shared:outflow"},
		{"x\r\nBcc: victim@example.net", "demo", "shared", "xBccvictimexample.net:demo:shared:outflow"},
		{strings.Repeat("c", 100), "demo", "shared", strings.Repeat("c", 64) + ":demo:shared:outflow"},
	}
	for _, tt := range tests {
		got := Format(tt.campaign, tt.tenant, tt.pool, "outflow")
		if got != tt.want {
			t.Errorf("Format(%q, %q, %q) = %q, want %q", tt.campaign, tt.tenant, tt.pool, got, tt.want)
		}
		if Tenant(got) != tt.tenant {
			t.Errorf("Tenant(%q) = %q, want %q", got, Tenant(got), tt.tenant)
		}
	}
}

func TestTenant(t *testing.T) {
	tests := []struct{ value, want string }{
		{"spring:acme:shared:outflow", "acme"},
		{" spring:acme:outflow ", "acme"},
		{"acme:outflow", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Tenant(tt.value); got != tt.want {
			t.Errorf("Tenant(%q) = %q, want %q", tt.value, got, tt.want)
		}
	}
}
