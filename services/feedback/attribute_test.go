package feedback

import (
	"io"
	"log/slog"
	"testing"

	"github.com/outflowmail/outflow/pkg/events"
	"github.com/outflowmail/outflow/pkg/tenant"
	"github.com/outflowmail/outflow/pkg/verp"
)

// tenantSet is a fixed set of existing tenants.
type tenantSet map[string]bool

func (s tenantSet) Tenant(id string) *tenant.Tenant {
	if s[id] {
		return &tenant.Tenant{ID: id}
	}
	return nil
}

func TestAttribute(t *testing.T) {
	codec, err := verp.New(verp.Config{Domain: "bounces.test", Secrets: []string{"0123456789abcdef0123"}, PerRecipient: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := verp.New(verp.Config{Domain: "bounces.test", Secrets: []string{"another-secret-entirely"}, PerRecipient: true})
	if err != nil {
		t.Fatal(err)
	}
	const id = "0123456789abcdef0123456789abcdef"
	good, _ := codec.Address(verp.Token{MsgID: id, Tenant: "acme", Rcpt: "bob@x.example"})
	forged, _ := other.Address(verp.Token{MsgID: id, Tenant: "acme", Rcpt: "bob@x.example"})
	trace := "from client ([127.0.0.1])\r\n\tby submit.test (Outflow) with ESMTPA id " + id + "\r\n\t(tenant acme, identity acme);\r\n\tMon, 01 Jan 2024 00:00:00 +0000"
	lookalike := "from x by submit.test (Outflow) with ESMTPA id ffffffffffffffffffffffffffffffff (tenant beta, identity beta); date"
	w := &Worker{verp: codec, tenants: tenantSet{"acme": true, "beta": true}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	tests := []struct {
		name       string
		rcpts      []string
		orig       Original
		want       attribution
		wantAttr   events.Attribution
		wantForged bool
	}{
		{"verp envelope rcpt", []string{good}, Original{}, attribution{"acme", id, "bob@x.example"}, events.AttrVERP, false},
		{"verp upper-cased by the receiver", []string{upper(good)}, Original{}, attribution{"acme", id, "bob@x.example"}, events.AttrVERP, false},
		{"verp in original return path", []string{"fbl@outflow.test"}, Original{ReturnPath: "<" + good + ">"}, attribution{"acme", id, "bob@x.example"}, events.AttrVERP, false},
		{"forged token not trusted, even with a trace", []string{forged}, Original{Received: []string{trace}}, attribution{}, events.AttrNone, true},
		{"trace header, topmost wins over a lookalike below", nil, Original{Received: []string{"from a by mx.x.example", trace, lookalike}}, attribution{"acme", id, ""}, events.AttrTrace, false},
		{"trace naming an unknown tenant", nil, Original{Received: []string{"by h (Outflow) with ESMTPA id " + id + " (tenant ghost, identity g);"}}, attribution{}, events.AttrNone, false},
		{"feedback-id", nil, Original{FeedbackID: "spring:acme:shared:outflow", MessageID: "<" + id + "@submit.test>"}, attribution{"acme", id, ""}, events.AttrFeedbackID, false},
		{"feedback-id, tenant's own message-id", nil, Original{FeedbackID: "c:acme:outflow", MessageID: "<hello@acme.example>"}, attribution{"acme", "", ""}, events.AttrFeedbackID, false},
		{"nothing", []string{"postmaster@bounces.test"}, Original{MessageID: "<x@y>"}, attribution{}, events.AttrNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &events.Report{}
			got := w.attribute(tt.rcpts, tt.orig, rep)
			if got != tt.want || rep.Attribution != tt.wantAttr || rep.Forged != tt.wantForged {
				t.Errorf("attribute = %+v (%s, forged %v), want %+v (%s, forged %v)", got, rep.Attribution, rep.Forged, tt.want, tt.wantAttr, tt.wantForged)
			}
		})
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func TestSuppresses(t *testing.T) {
	for ft, want := range map[string]bool{"abuse": true, "Fraud": true, "opt-out": true, "not-spam": false, "virus": false, "auth-failure": false} {
		if got := suppresses(ft); got != want {
			t.Errorf("suppresses(%q) = %v, want %v", ft, got, want)
		}
	}
}
