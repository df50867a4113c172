package tlspolicy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/outflowmail/outflow/pkg/tlspolicy"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		give     string
		wantMode string
		wantAge  time.Duration
		wantMX   []string
		wantErr  bool
	}{
		{give: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
			wantMode: "enforce", wantAge: 604800 * time.Second, wantMX: []string{"mail.example.com", "*.example.net"}},
		{give: "version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 86400\nfuture: ignored\n",
			wantMode: "testing", wantAge: 86400 * time.Second, wantMX: []string{"mx.example.com"}},
		{give: "version: STSv1\nmode: none\nmax_age: 0\n", wantMode: "none"},
		{give: "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", wantMode: "enforce", wantAge: time.Second, wantMX: []string{"a.example"}},
		{give: "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", wantErr: true},
		{give: "mode: enforce\nmx: a.example\nmax_age: 1\n", wantErr: true},
		{give: "version: STSv1\nmode: enforce\nmax_age: 1\n", wantErr: true},
		{give: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", wantErr: true},
		{give: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", wantErr: true},
		{give: "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", wantErr: true},
		{give: "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", wantErr: true},
		{give: "version STSv1\n", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		p, err := tlspolicy.ParsePolicy([]byte(tt.give))
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParsePolicy(%q) = %+v, want an error", tt.give, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", tt.give, err)
			continue
		}
		if p.Mode != tt.wantMode || p.MaxAge != tt.wantAge || !slices.Equal(p.MX, tt.wantMX) {
			t.Errorf("ParsePolicy(%q) = %s %v %v, want %s %v %v", tt.give, p.Mode, p.MaxAge, p.MX, tt.wantMode, tt.wantAge, tt.wantMX)
		}
	}
}

func TestSTSPolicy_Matches(t *testing.T) {
	p := &tlspolicy.STSPolicy{MX: []string{"mail.example.com", "*.example.net"}}
	tests := []struct {
		give string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.example.com.", true},
		{"other.example.com", false},
		{"mx1.example.net", true},
		{"example.net", false},       // the wildcard needs one label
		{"a.mx1.example.net", false}, // and only one (RFC 8461 4.1)
		{"mx1.example.net.evil", false},
	}
	for _, tt := range tests {
		if got := p.Matches(tt.give); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestParseSTSRecord(t *testing.T) {
	tests := []struct {
		give    string
		wantID  string
		wantOK  bool
		wantErr bool
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z", true, false},
		{"v=STSv1;id=abc", "abc", true, false},
		{"v=spf1 -all", "", false, false},
		{"v=STSv1; id=", "", true, true},
		{"v=STSv1; id=has-dash", "", true, true},
		{"v=STSv1", "", true, true},
	}
	for _, tt := range tests {
		id, ok, err := tlspolicy.ParseSTSRecord(tt.give)
		if id != tt.wantID || ok != tt.wantOK || (err != nil) != tt.wantErr {
			t.Errorf("ParseSTSRecord(%q) = %q, %v, %v; want %q, %v, error %v", tt.give, id, ok, err, tt.wantID, tt.wantOK, tt.wantErr)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tlspolicy.ParsePolicy(b)
		if err != nil {
			return
		}
		if p.Mode != tlspolicy.STSNone && len(p.MX) == 0 {
			t.Fatalf("ParsePolicy(%q): mode %s without mx accepted", b, p.Mode)
		}
		for _, m := range p.MX {
			_ = p.Matches(m)
		}
	})
}
